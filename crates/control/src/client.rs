//! Blocking client of the daemon's API over its Unix socket, or over TCP with the bearer
//! token (one connection per request, `Connection: close`), used by `rvsadm`.

use crate::api::{ApiError, Command, ConnView, ErrorKind, Reply, Snapshot};
use crate::http;
use crate::ops::{ConnFilter, DrainRequest, DrainingView, ReloadReply, ReloadRequest};
use std::io::{self, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where rvsd listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/rvs/rvsd.sock";
/// Environment variable overriding the socket path.
pub const SOCKET_ENV: &str = "RVS_SOCKET";
/// Environment variable naming the TCP API (`HOST:PORT`) to use instead of the socket.
pub const ADDR_ENV: &str = "RVS_API_ADDR";

/// What can go wrong talking to the daemon.
#[derive(Debug)]
pub enum ClientError {
    /// The socket could not be opened (daemon not running, no permission...).
    Connect(io::Error),
    /// The connection broke or the answer was not HTTP.
    Transport(String),
    /// The daemon answered with an API error.
    Api(ApiError),
    /// The server refused to serve the request at all (too many connections, timeout,
    /// unauthenticated, too large): its status and message, shown as they are.
    Refused { status: u16, message: String },
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Connect(e) => write!(f, "{e}"),
            ClientError::Transport(m) => write!(f, "{m}"),
            ClientError::Api(e) => write!(f, "{}", e.message),
            ClientError::Refused { status, message } => {
                write!(f, "server refused the request: {status} {}: {message}", http::reason(*status))
            }
        }
    }
}

impl std::error::Error for ClientError {}

/// Where the daemon is reached.
#[derive(Clone)]
enum Endpoint {
    Unix(PathBuf),
    /// `HOST:PORT` and the bearer token sent with every request.
    Tcp(String, String),
}

impl std::fmt::Debug for Endpoint {
    /// Never prints the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "Unix({})", p.display()),
            Endpoint::Tcp(a, _) => write!(f, "Tcp({a})"),
        }
    }
}

/// A handle on the daemon's API; cheap, connects per request.
#[derive(Debug, Clone)]
pub struct Client {
    endpoint: Endpoint,
    timeout: Duration,
}

/// Statuses with which the server refuses to serve a request at all (rather than answering
/// it with an API error of the request's own making).
fn is_refusal(status: u16) -> bool {
    matches!(status, 401 | 408 | 413 | 429 | 431 | 503)
}

/// The largest request body [`Client::commands`] sends (the server takes up to
/// `http::MAX_REQUEST_BODY`).
pub const BATCH_BODY: usize = 1000 * 1024;

impl Client {
    /// The API on the Unix socket at `path`.
    pub fn new(path: impl AsRef<Path>) -> Self {
        Client { endpoint: Endpoint::Unix(path.as_ref().to_path_buf()), timeout: Duration::from_secs(30) }
    }

    /// The API on TCP at `addr` (`HOST:PORT`), authenticated with `token`.
    pub fn tcp(addr: impl Into<String>, token: impl Into<String>) -> Self {
        Client { endpoint: Endpoint::Tcp(addr.into(), token.into()), timeout: Duration::from_secs(30) }
    }

    /// The socket path (the `HOST:PORT` for TCP), for messages.
    pub fn path(&self) -> &Path {
        match &self.endpoint {
            Endpoint::Unix(p) => p,
            Endpoint::Tcp(a, _) => Path::new(a.as_str()),
        }
    }

    /// Sends one request and returns the status and raw body.
    pub fn request(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<(u16, Vec<u8>), ClientError> {
        self.request_full(method, path, body).map(|r| (r.status, r.body))
    }

    /// Sends one request and returns the whole response (headers included).
    pub fn request_full(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<http::Response, ClientError> {
        let t = |e: io::Error| ClientError::Transport(e.to_string());
        let auth;
        let (stream, headers): (Box<dyn Stream>, Vec<(&str, &str)>) = match &self.endpoint {
            Endpoint::Unix(p) => {
                let s = UnixStream::connect(p).map_err(ClientError::Connect)?;
                s.set_read_timeout(Some(self.timeout)).map_err(t)?;
                s.set_write_timeout(Some(self.timeout)).map_err(t)?;
                (Box::new(s), vec![])
            }
            Endpoint::Tcp(a, token) => {
                let s = TcpStream::connect(a.as_str()).map_err(ClientError::Connect)?;
                s.set_read_timeout(Some(self.timeout)).map_err(t)?;
                s.set_write_timeout(Some(self.timeout)).map_err(t)?;
                auth = format!("Bearer {token}");
                (Box::new(s), vec![("Authorization", auth.as_str())])
            }
        };
        let mut stream = stream;
        http::write_request_with(&mut stream, method, path, &headers, body).map_err(t)?;
        let mut r = BufReader::new(stream);
        let resp = http::read_response(&mut r).map_err(|e| ClientError::Transport(e.to_string()))?;
        if is_refusal(resp.status) {
            let message = serde_json::from_slice::<ApiError>(&resp.body)
                .map(|e| e.message)
                .unwrap_or_else(|_| String::from_utf8_lossy(&resp.body).trim().to_string());
            return Err(ClientError::Refused { status: resp.status, message });
        }
        Ok(resp)
    }

    /// Sends a request and decodes a 200 body as `T`, or the error body as `ApiError`.
    fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<T, ClientError> {
        let (status, body) = self.request(method, path, body)?;
        decode(status, body)
    }

    /// `POST /v1/command`.
    pub fn command(&self, cmd: &Command) -> Result<Reply, ClientError> {
        let body =
            serde_json::to_vec(cmd).map_err(|e| ClientError::Transport(format!("cannot encode command: {e}")))?;
        self.call("POST", "/v1/command", Some(&body))
    }

    /// Several commands as [`Command::Batch`] requests (one table publish each): split so
    /// that each request body stays under [`BATCH_BODY`] bytes and [`crate::api::MAX_BATCH`]
    /// commands. One result per command, in order (`None`: done).
    pub fn commands(&self, cmds: &[Command]) -> Result<Vec<Option<ApiError>>, ClientError> {
        let enc = |c: &Command| {
            serde_json::to_vec(c).map_err(|e| ClientError::Transport(format!("cannot encode command: {e}")))
        };
        let mut out = Vec::with_capacity(cmds.len());
        let mut body = Vec::new();
        let mut n = 0;
        let send = |body: &mut Vec<u8>, n: &mut usize, out: &mut Vec<Option<ApiError>>| {
            if *n == 0 {
                return Ok(());
            }
            body.extend_from_slice(b"]}");
            let r: Reply = self.call("POST", "/v1/command", Some(body))?;
            match r {
                Reply::Batch(rs) if rs.len() == *n => out.extend(rs),
                _ => {
                    return Err(ClientError::Transport(
                        "the daemon did not answer the batch command by command".into(),
                    ));
                }
            }
            body.clear();
            *n = 0;
            Ok(())
        };
        for c in cmds {
            let one = enc(c)?;
            if n > 0 && (body.len() + one.len() + 3 > BATCH_BODY || n == crate::api::MAX_BATCH) {
                send(&mut body, &mut n, &mut out)?;
            }
            body.extend_from_slice(if n == 0 { b"{\"Batch\":[" as &[u8] } else { b"," });
            body.extend_from_slice(&one);
            n += 1;
        }
        send(&mut body, &mut n, &mut out)?;
        Ok(out)
    }

    /// `GET /v1/snapshot`.
    pub fn snapshot(&self) -> Result<Snapshot, ClientError> {
        self.call("GET", "/v1/snapshot", None)
    }

    /// `GET /v1/connections`.
    pub fn connections(&self) -> Result<Vec<ConnView>, ClientError> {
        self.call("GET", "/v1/connections", None)
    }

    /// `GET /v1/connections?service=…&server=…&state=…` (rvs extension; filtered by the daemon).
    pub fn connections_filtered(&self, f: &ConnFilter) -> Result<Vec<ConnView>, ClientError> {
        self.call("GET", &format!("/v1/connections{}", f.to_query()), None)
    }

    /// [`Client::connections_filtered`], also telling whether the listing is incomplete
    /// (a worker had more matches than it may return: `X-Rvs-Truncated: true`).
    pub fn connections_listing(&self, f: &ConnFilter) -> Result<(Vec<ConnView>, bool), ClientError> {
        let r = self.request_full("GET", &format!("/v1/connections{}", f.to_query()), None)?;
        let truncated = r
            .headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case(http::TRUNCATED_HEADER) && v.eq_ignore_ascii_case("true"));
        Ok((decode(r.status, r.body)?, truncated))
    }

    /// `POST /v1/drain` (rvs extension).
    pub fn drain(&self, req: &DrainRequest) -> Result<Reply, ClientError> {
        let body = serde_json::to_vec(req).map_err(|e| ClientError::Transport(format!("cannot encode: {e}")))?;
        self.call("POST", "/v1/drain", Some(&body))
    }

    /// `GET /v1/draining` (rvs extension).
    pub fn draining(&self) -> Result<Vec<DrainingView>, ClientError> {
        self.call("GET", "/v1/draining", None)
    }

    /// `POST /v1/reload` (rvs extension): reload the configuration file, or `path`.
    pub fn reload(&self, path: Option<&str>) -> Result<ReloadReply, ClientError> {
        let req = ReloadRequest { path: path.map(str::to_string) };
        let body = serde_json::to_vec(&req).map_err(|e| ClientError::Transport(format!("cannot encode: {e}")))?;
        self.call("POST", "/v1/reload", Some(&body))
    }
}

/// A connected stream of either kind.
trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

/// A 200 body decoded as `T`, or the error body as `ApiError`.
fn decode<T: serde::de::DeserializeOwned>(status: u16, body: Vec<u8>) -> Result<T, ClientError> {
    if status == 200 {
        serde_json::from_slice(&body).map_err(|e| ClientError::Transport(format!("bad reply from daemon: {e}")))
    } else {
        let err = serde_json::from_slice::<ApiError>(&body).unwrap_or_else(|_| {
            ApiError::new(
                ErrorKind::Internal,
                format!("daemon answered {status}: {}", String::from_utf8_lossy(&body).trim()),
            )
        });
        Err(ClientError::Api(err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufReader;
    use std::os::unix::net::UnixListener;

    #[test]
    fn round_trip_against_a_fake_server() {
        let dir = std::env::temp_dir().join(format!("rvs-client-test-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let sock = dir.join("s.sock");
        let _ = std::fs::remove_file(&sock);
        let listener = UnixListener::bind(&sock).expect("bind");
        let server = std::thread::spawn(move || {
            for answer in [0, 1] {
                let (s, _) = listener.accept().expect("accept");
                let mut r = BufReader::new(&s);
                let req = http::read_request(&mut r).expect("request");
                let mut w = &s;
                if answer == 0 {
                    assert_eq!(req.path, "/v1/command");
                    let cmd: Command = serde_json::from_slice(&req.body).expect("json");
                    assert_eq!(cmd, Command::Clear);
                    http::write_response(&mut w, 200, "application/json", b"\"Done\"").expect("write");
                } else {
                    let e = ApiError::new(ErrorKind::NoSuchService, "no");
                    let b = serde_json::to_vec(&e).expect("json");
                    http::write_response(&mut w, 404, "application/json", &b).expect("write");
                }
            }
        });
        let c = Client::new(&sock);
        assert_eq!(c.command(&Command::Clear).expect("ok"), Reply::Done);
        match c.command(&Command::Zero(None)) {
            Err(ClientError::Api(e)) => assert_eq!(e.kind, ErrorKind::NoSuchService),
            other => panic!("unexpected {other:?}"),
        }
        server.join().expect("server");
        let _ = std::fs::remove_file(&sock);
        let missing = Client::new(dir.join("missing.sock"));
        assert!(matches!(missing.snapshot(), Err(ClientError::Connect(_))));
    }

    #[test]
    fn a_truncated_listing_is_reported() {
        let dir = std::env::temp_dir().join(format!("rvs-client-trunc-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let sock = dir.join("s.sock");
        let _ = std::fs::remove_file(&sock);
        let listener = UnixListener::bind(&sock).expect("bind");
        let server = std::thread::spawn(move || {
            for truncated in [true, false] {
                let (s, _) = listener.accept().expect("accept");
                let req = http::read_request(&mut BufReader::new(&s)).expect("request");
                assert_eq!(req.path, "/v1/connections?state=ESTABLISHED");
                let h: &[(&str, &str)] = if truncated { &[(http::TRUNCATED_HEADER, "true")] } else { &[] };
                http::write_response_with(&mut &s, 200, "application/json", h, b"[]").expect("write");
            }
        });
        let c = Client::new(&sock);
        let f = ConnFilter { state: Some("ESTABLISHED".into()), ..Default::default() };
        assert_eq!(c.connections_listing(&f).expect("listing"), (vec![], true));
        assert_eq!(c.connections_listing(&f).expect("listing"), (vec![], false));
        server.join().expect("server");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
