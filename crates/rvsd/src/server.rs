//! The control API on a Unix socket (and optionally TCP with a bearer token): HTTP/1.1 +
//! JSON as control/README.md and `docs/api/openapi.json` define it, one thread per
//! connection (administration is rare; no async runtime needed).

use std::io::{self, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use control::api::{ApiError, Command, ErrorKind};
use control::http;
use control::ops::{ConnFilter, DrainRequest, ReloadRequest};

use crate::admin::Admin;
use crate::host::Refusal;
use crate::operate::Operator;

/// What the API handlers reach: the table (commands, listings) and the operator
/// (configuration, health).
pub struct Api {
    pub admin: Arc<Admin>,
    pub ops: Arc<Operator>,
}

/// Every (method, path) the server answers; `docs/api/openapi.json` must list exactly these
/// (checked by the tests in `openapi.rs`).
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/command"),
    ("GET", "/v1/snapshot"),
    ("GET", "/v1/connections"),
    ("GET", "/v1/stats"),
    ("POST", "/v1/reload"),
    ("GET", "/v1/config"),
    ("GET", "/v1/health"),
    ("POST", "/v1/drain"),
    ("GET", "/v1/draining"),
];

/// Binds the socket: creates the parent directory, replaces a stale socket (refuses if a
/// daemon still answers on it) and restricts it to its owner (0600).
pub fn bind(path: &Path) -> Result<UnixListener, Refusal> {
    let shown = path.display();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Refusal(format!("cannot create {}: {e}", dir.display())))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if UnixStream::connect(path).is_ok() {
                return Err(Refusal(format!("another daemon is listening on {shown}")));
            }
            std::fs::remove_file(path).map_err(|e| Refusal(format!("cannot remove stale socket {shown}: {e}")))?;
            tracing::info!("removed stale socket {shown}");
        }
        Ok(_) => return Err(Refusal(format!("{shown} exists and is not a socket"))),
        Err(_) => {}
    }
    let l = UnixListener::bind(path).map_err(|e| Refusal(format!("cannot listen on {shown}: {e}")))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Refusal(format!("cannot chmod {shown}: {e}")))?;
    Ok(l)
}

/// Accepts connections until the process ends, one thread each.
pub fn serve(listener: UnixListener, api: Arc<Api>, path: PathBuf) {
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                let api = api.clone();
                let spawned = std::thread::Builder::new().name("rvsd-api".into()).spawn(move || {
                    if let Err(e) = handle(&stream, &api, None) {
                        tracing::debug!("api connection: {e}");
                    }
                });
                if let Err(e) = spawned {
                    tracing::error!("cannot start an api thread: {e}");
                }
            }
            Err(e) => {
                tracing::error!("accept on {}: {e}", path.display());
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// The API on TCP (`--api-listen`): every request must carry `Authorization: Bearer TOKEN`.
pub fn serve_tcp(listener: TcpListener, api: Arc<Api>, token: String) {
    let token = Arc::new(token);
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                let (api, token) = (api.clone(), token.clone());
                let spawned = std::thread::Builder::new().name("rvsd-api-tcp".into()).spawn(move || {
                    if let Err(e) = handle(&stream, &api, Some(&token)) {
                        tracing::debug!("api tcp connection: {e}");
                    }
                });
                if let Err(e) = spawned {
                    tracing::error!("cannot start an api thread: {e}");
                }
            }
            Err(e) => {
                tracing::error!("accept on the TCP API listener: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Constant-time comparison, so the token cannot be guessed byte by byte from timings.
fn same_token(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// True when the request carries `Authorization: Bearer <token>`.
pub fn authorized(req: &http::Request, token: &str) -> bool {
    req.header("authorization")
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .is_some_and(|t| same_token(t.trim().as_bytes(), token.as_bytes()))
}

fn json<T: serde::Serialize>(v: &T) -> (u16, Vec<u8>) {
    match serde_json::to_vec(v) {
        Ok(b) => (200, b),
        Err(e) => error(ApiError::new(ErrorKind::Internal, e.to_string())),
    }
}

fn error(e: ApiError) -> (u16, Vec<u8>) {
    let status = e.kind.http_status();
    (status, serde_json::to_vec(&e).unwrap_or_else(|_| b"{}".to_vec()))
}

/// A stream the API is served on.
pub trait Conn {
    fn timeouts(&self, d: Duration) -> io::Result<()>;
}

impl Conn for UnixStream {
    fn timeouts(&self, d: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(d))?;
        self.set_write_timeout(Some(d))
    }
}

impl Conn for TcpStream {
    fn timeouts(&self, d: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(d))?;
        self.set_write_timeout(Some(d))
    }
}

/// Answers one request (clients send `Connection: close`; one request per connection).
/// With `token`, a request without the right bearer token gets 401.
fn handle<S: Conn>(stream: &S, api: &Api, token: Option<&str>) -> io::Result<()>
where
    for<'a> &'a S: Read + Write,
{
    stream.timeouts(Duration::from_secs(10))?;
    let mut reader = BufReader::new(stream);
    let (status, body) = match http::read_request(&mut reader) {
        Ok(req) if token.is_some_and(|t| !authorized(&req, t)) => {
            let err = ApiError::new(ErrorKind::PermissionDenied, "missing or wrong bearer token");
            (401, serde_json::to_vec(&err).unwrap_or_default())
        }
        Ok(req) => {
            let (status, body, headers) = route_with_headers(api, &req.method, &req.path, &req.body);
            let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let mut w = stream;
            return http::write_response_with(&mut w, status, "application/json", &headers, &body);
        }
        Err(http::HttpError::Closed) => return Ok(()),
        Err(e) => {
            let status = e.status();
            let err = ApiError::new(ErrorKind::BadRequest, e.to_string());
            (status, serde_json::to_vec(&err).unwrap_or_default())
        }
    };
    let mut w = stream;
    http::write_response(&mut w, status, "application/json", &body)
}

fn bad(m: String) -> (u16, Vec<u8>) {
    error(ApiError::new(ErrorKind::BadRequest, m))
}

fn result<T: serde::Serialize>(r: Result<T, ApiError>) -> (u16, Vec<u8>) {
    match r {
        Ok(v) => json(&v),
        Err(e) => error(e),
    }
}

/// [`route`], plus the extra response headers: `X-Rvs-Truncated: true` on an incomplete
/// connection listing.
pub fn route_with_headers(
    api: &Api,
    method: &str,
    target: &str,
    body: &[u8],
) -> (u16, Vec<u8>, Vec<(&'static str, String)>) {
    let path = target.split('?').next().unwrap_or(target);
    if (method, path) == ("GET", "/v1/connections") {
        return match ConnFilter::from_target(target).map(|f| api.admin.connections_filtered(&f)) {
            Ok(Ok(l)) => {
                let (status, body) = json(&l.conns);
                let headers = if l.truncated { vec![(http::TRUNCATED_HEADER, "true".to_string())] } else { vec![] };
                (status, body, headers)
            }
            Ok(Err(e)) => {
                let (status, body) = error(e);
                (status, body, vec![])
            }
            Err(e) => {
                let (status, body) = bad(e);
                (status, body, vec![])
            }
        };
    }
    let (status, body) = route(api, method, target, body);
    (status, body, vec![])
}

/// Dispatch on method and path (the query is passed on to the handlers that take one);
/// returns the status and JSON body.
pub fn route(api: &Api, method: &str, target: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let path = target.split('?').next().unwrap_or(target);
    let admin = &api.admin;
    match (method, path) {
        ("POST", "/v1/command") => match serde_json::from_slice::<Command>(body) {
            Ok(cmd) => result(admin.command(&cmd)),
            Err(e) => bad(format!("bad command: {e}")),
        },
        ("GET", "/v1/snapshot") => json(&admin.snapshot()),
        ("GET", "/v1/connections") => match ConnFilter::from_target(target) {
            Ok(f) => result(admin.connections_filtered(&f).map(|l| l.conns)),
            Err(e) => bad(e),
        },
        ("GET", "/v1/stats") => json(&admin.stats()),
        ("POST", "/v1/reload") => {
            let req = if body.iter().all(u8::is_ascii_whitespace) {
                Ok(ReloadRequest::default())
            } else {
                serde_json::from_slice::<ReloadRequest>(body)
            };
            match req {
                Ok(r) => result(api.ops.reload(r.path.as_deref())),
                Err(e) => bad(format!("bad reload request: {e}")),
            }
        }
        ("GET", "/v1/config") => json(&api.ops.config_status()),
        ("GET", "/v1/health") => json(&api.ops.health()),
        ("POST", "/v1/drain") => match serde_json::from_slice::<DrainRequest>(body) {
            Ok(r) => result(admin.drain(&r)),
            Err(e) => bad(format!("bad drain request: {e}")),
        },
        ("GET", "/v1/draining") => json(&admin.draining()),
        _ if ROUTES.iter().any(|(_, p)| *p == path) => {
            let (_, body) = bad(format!("method {method} not allowed on {path}"));
            (405, body)
        }
        _ => {
            let (_, body) = bad(format!("no such endpoint: {method} {path}"));
            (404, body)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rates::RateTable;
    use std::sync::atomic::AtomicUsize;

    pub fn api() -> Arc<Api> {
        let node = node::Node::new(Arc::new(ipvs::Ipvs::new(100)), node::NetState::default());
        let sizes: Arc<[AtomicUsize]> = vec![AtomicUsize::new(0)].into();
        let admin = Arc::new(Admin::new(
            node,
            Arc::new(RateTable::default()),
            Box::new(|_| false),
            vec![],
            sizes,
            None,
            vec![],
        ));
        let ops = Arc::new(Operator::new(admin.clone(), None));
        Arc::new(Api { admin, ops })
    }

    #[test]
    fn serves_the_api_over_a_socket_with_0600() {
        let dir = std::env::temp_dir().join(format!("rvsd-unit-{}", std::process::id()));
        let path = dir.join("sub/rvsd.sock");
        let l = bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // A second daemon on the same path is refused while the first listens.
        assert!(bind(&path).unwrap_err().0.contains("another daemon"));
        let a = api();
        let p2 = path.clone();
        std::thread::spawn(move || serve(l, a, p2));

        let c = control::client::Client::new(&path);
        let key = control::api::ServiceKey::Tcp { addr: "10.0.0.100".parse().unwrap(), port: 80 };
        let spec = control::api::ServiceSpec {
            key,
            scheduler: "rr".into(),
            sched_flags: Default::default(),
            persistent: None,
            netmask: u32::MAX,
            ops: false,
            pe: None,
        };
        c.command(&Command::AddService(spec.clone())).unwrap();
        match c.command(&Command::AddService(spec.clone())) {
            Err(control::client::ClientError::Api(e)) => assert_eq!(e.kind, ErrorKind::ServiceExists),
            other => panic!("{other:?}"),
        }
        let s = c.snapshot().unwrap();
        assert_eq!(s.services[0].spec, spec);
        assert_eq!(c.connections().unwrap(), vec![]);
        let (st, body) = c.request("GET", "/v1/stats", None).unwrap();
        assert_eq!(st, 200);
        let stats: crate::admin::NodeStats = serde_json::from_slice(&body).unwrap();
        assert_eq!(stats.rx, 0);
        assert_eq!(c.request("GET", "/v1/nothing", None).unwrap().0, 404);
        assert_eq!(c.request("GET", "/v1/command", None).unwrap().0, 405);
        assert_eq!(c.request("POST", "/v1/command", Some(b"{not json")).unwrap().0, 400);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// One raw HTTP exchange over TCP.
    fn tcp_request(addr: std::net::SocketAddr, head: &str) -> (u16, Vec<u8>) {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(head.as_bytes()).unwrap();
        let r = http::read_response(&mut BufReader::new(&s)).unwrap();
        (r.status, r.body)
    }

    #[test]
    fn the_tcp_listener_wants_the_bearer_token() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let a = api();
        std::thread::spawn(move || serve_tcp(l, a, "s3cret".into()));
        let get = |auth: &str| tcp_request(addr, &format!("GET /v1/snapshot HTTP/1.1\r\nHost: x\r\n{auth}\r\n"));
        let (st, body) = get("");
        assert_eq!(st, 401);
        let e: ApiError = serde_json::from_slice(&body).unwrap();
        assert_eq!(e.kind, ErrorKind::PermissionDenied);
        assert_eq!(get("Authorization: Bearer wrong\r\n").0, 401);
        assert_eq!(get("Authorization: Bearer s3cre\r\n").0, 401);
        assert_eq!(get("Authorization: Basic s3cret\r\n").0, 401);
        let (st, body) = get("Authorization: Bearer s3cret\r\n");
        assert_eq!(st, 200);
        assert!(serde_json::from_slice::<control::api::Snapshot>(&body).is_ok());
        assert!(same_token(b"abc", b"abc") && !same_token(b"abc", b"abd") && !same_token(b"ab", b"abc"));
    }

    #[test]
    fn stale_socket_is_replaced_and_non_sockets_are_refused() {
        let dir = std::env::temp_dir().join(format!("rvsd-unit-stale-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        drop(UnixListener::bind(&path).unwrap()); // leaves the file, nobody listening
        assert!(bind(&path).is_ok());
        let file = dir.join("plain");
        std::fs::write(&file, b"x").unwrap();
        assert!(bind(&file).unwrap_err().0.contains("not a socket"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
