//! The control API on a Unix socket (and optionally TCP with a bearer token): HTTP/1.1 +
//! JSON as control/README.md and `docs/api/openapi.json` define it, one thread per
//! connection (administration is rare; no async runtime needed) within a [`Policy`]: at most
//! 64 connections at once (503 beyond), 10 s for a whole request, the bearer token checked
//! before the body is read, bodies of at most 1 MiB.

use std::io::{self, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

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
    ("GET", "/v1/procfs"),
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

/// What a listener allows its connections (control/README.md "Limits").
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// Connections served at once; one more is answered 503 and closed.
    pub max_conns: usize,
    /// For the whole request, head and body: a peer trickling bytes is cut there.
    pub deadline: Duration,
    /// Longest request body (checked against `Content-Length` before reading it).
    pub max_body: usize,
}

/// The API listeners' policy: 64 connections, 10 s per request, 1 MiB bodies.
pub const API_POLICY: Policy =
    Policy { max_conns: 64, deadline: Duration::from_secs(10), max_body: http::MAX_REQUEST_BODY };

/// Frees a connection slot when the connection's thread ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Takes a slot of `used` if fewer than `max` are taken.
fn take_slot(used: &Arc<AtomicUsize>, max: usize) -> Option<Slot> {
    used.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)).ok()?;
    Some(Slot(used.clone()))
}

/// Accepts connections until the listener fails for good, one thread each and at most
/// `max_conns` at once: the excess is answered 503 from the accepting thread, without waiting
/// (non-blocking write of a few bytes), and closed.
pub fn accept_loop<S, I>(incoming: I, what: &str, max_conns: usize, serve_one: Arc<dyn Fn(S) + Send + Sync>)
where
    S: Conn + Send + 'static,
    for<'a> &'a S: Write,
    I: Iterator<Item = io::Result<S>>,
{
    let used = Arc::new(AtomicUsize::new(0));
    for conn in incoming {
        match conn {
            Ok(stream) => {
                let Some(slot) = take_slot(&used, max_conns) else {
                    tracing::debug!("{what}: {max_conns} connections open, refusing one more");
                    let err = ApiError::new(ErrorKind::Internal, "too many connections; try again later");
                    let body = serde_json::to_vec(&err).unwrap_or_default();
                    if stream.set_nonblocking(true).is_ok() {
                        let _ = http::write_response(&mut &stream, 503, "application/json", &body);
                    }
                    continue;
                };
                let f = serve_one.clone();
                let spawned = std::thread::Builder::new().name(what.into()).spawn(move || {
                    let _slot = slot;
                    f(stream)
                });
                if let Err(e) = spawned {
                    tracing::error!("{what}: cannot start a connection thread: {e}");
                }
            }
            Err(e) => {
                tracing::error!("{what}: accept: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Serves the API on the Unix socket until the process ends.
pub fn serve(listener: UnixListener, api: Arc<Api>, path: PathBuf) {
    serve_unix_with(listener, api, path, API_POLICY)
}

fn serve_unix_with(listener: UnixListener, api: Arc<Api>, path: PathBuf, policy: Policy) {
    let what = format!("api {}", path.display());
    let f: Arc<dyn Fn(UnixStream) + Send + Sync> = Arc::new(move |stream: UnixStream| {
        if let Err(e) = handle(&stream, &api, None, &policy) {
            tracing::debug!("api connection: {e}");
        }
    });
    accept_loop(listener.incoming(), &what, policy.max_conns, f)
}

/// The API on TCP (`--api-listen`): every request must carry `Authorization: Bearer TOKEN`.
pub fn serve_tcp(listener: TcpListener, api: Arc<Api>, token: String) {
    serve_tcp_with(listener, api, token, API_POLICY)
}

fn serve_tcp_with(listener: TcpListener, api: Arc<Api>, token: String, policy: Policy) {
    let f: Arc<dyn Fn(TcpStream) + Send + Sync> = Arc::new(move |stream: TcpStream| {
        if let Err(e) = handle(&stream, &api, Some(&token), &policy) {
            tracing::debug!("api tcp connection: {e}");
        }
    });
    accept_loop(listener.incoming(), "rvsd-api-tcp", policy.max_conns, f)
}

/// Constant-time comparison, so the token cannot be guessed byte by byte from timings.
fn same_token(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// True when the request carries `Authorization: Bearer <token>`.
pub fn authorized(req: &http::RequestHead, token: &str) -> bool {
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
    fn set_write_timeout(&self, d: Option<Duration>) -> io::Result<()>;
    fn set_nonblocking(&self, on: bool) -> io::Result<()>;
}

impl Conn for UnixStream {
    fn set_write_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        UnixStream::set_write_timeout(self, d)
    }
    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        UnixStream::set_nonblocking(self, on)
    }
}

impl Conn for TcpStream {
    fn set_write_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        TcpStream::set_write_timeout(self, d)
    }
    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        TcpStream::set_nonblocking(self, on)
    }
}

/// An error answer with its status and JSON body.
fn failure(status: u16, kind: ErrorKind, message: String) -> (u16, Vec<u8>) {
    (status, serde_json::to_vec(&ApiError::new(kind, message)).unwrap_or_default())
}

/// Answers one request (clients send `Connection: close`; one request per connection). The
/// whole request must arrive within `policy.deadline`. With `token`, the bearer token is
/// checked right after the headers: a request without it gets 401 before any of its body is
/// read. A body longer than `policy.max_body` gets 413, also unread.
fn handle<S: Conn>(stream: &S, api: &Api, token: Option<&str>, policy: &Policy) -> io::Result<()>
where
    for<'a> &'a S: http::ReadTimeout + Read + Write,
{
    stream.set_write_timeout(Some(policy.deadline))?;
    let deadline = Instant::now() + policy.deadline;
    let mut reader = BufReader::new(http::DeadlineReader::new(stream, deadline));
    let (status, body) = match http::read_request_head(&mut reader) {
        Ok(head) if token.is_some_and(|t| !authorized(&head, t)) => {
            failure(401, ErrorKind::PermissionDenied, "missing or wrong bearer token".into())
        }
        Ok(head) => match http::read_body(&mut reader, &head, policy.max_body) {
            Ok(body) => {
                let (status, body, headers) = route_with_headers(api, &head.method, &head.path, &body);
                let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let mut w = stream;
                return http::write_response_with(&mut w, status, "application/json", &headers, &body);
            }
            Err(e) => failure(e.status().max(400), ErrorKind::BadRequest, e.to_string()),
        },
        Err(http::HttpError::Closed) => return Ok(()),
        Err(http::HttpError::Io(e)) => return Err(e),
        Err(e) => failure(e.status(), ErrorKind::BadRequest, e.to_string()),
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
        ("GET", "/v1/procfs") => crate::procfs::route(admin),
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

    /// A TCP API server with `policy` and token `t0k`.
    fn tcp_server(policy: Policy) -> std::net::SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let a = api();
        std::thread::spawn(move || serve_tcp_with(l, a, "t0k".into(), policy));
        addr
    }

    fn status_of(s: &TcpStream) -> u16 {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        http::read_response(&mut BufReader::new(s)).map(|r| r.status).unwrap_or(0)
    }

    #[test]
    fn a_slow_client_is_cut_at_the_request_deadline() {
        let addr = tcp_server(Policy { deadline: Duration::from_millis(500), ..API_POLICY });
        let mut s = TcpStream::connect(addr).unwrap();
        let t0 = Instant::now();
        // A byte every 100 ms: far within a per-read timeout, never a whole request.
        let head = b"GET /v1/snapshot HTTP/1.1\r\nAuthorization: Bearer t0k\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaa";
        for b in head {
            if s.write_all(&[*b]).is_err() || t0.elapsed() > Duration::from_secs(3) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            if t0.elapsed() > Duration::from_millis(700) {
                break;
            }
        }
        assert_eq!(status_of(&s), 408);
        assert!(t0.elapsed() < Duration::from_secs(2), "cut after {:?}", t0.elapsed());
    }

    #[test]
    fn an_unauthenticated_or_oversized_body_is_refused_before_it_is_read() {
        let addr = tcp_server(API_POLICY);
        // 50 MB announced, nothing sent: the answer comes at once, without the body.
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"POST /v1/command HTTP/1.1\r\nContent-Length: 50000000\r\n\r\n").unwrap();
        let t0 = Instant::now();
        assert_eq!(status_of(&s), 401);
        assert!(t0.elapsed() < Duration::from_secs(2));
        // Authenticated but above the 1 MiB body limit: 413, also unread.
        let mut s = TcpStream::connect(addr).unwrap();
        let len = http::MAX_REQUEST_BODY + 1;
        s.write_all(
            format!("POST /v1/command HTTP/1.1\r\nAuthorization: Bearer t0k\r\nContent-Length: {len}\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
        let t0 = Instant::now();
        assert_eq!(status_of(&s), 413);
        assert!(t0.elapsed() < Duration::from_secs(2));
        // Within the limit, the request is served.
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"POST /v1/command HTTP/1.1\r\nAuthorization: Bearer t0k\r\nContent-Length: 7\r\n\r\n\"Clear\"")
            .unwrap();
        assert_eq!(status_of(&s), 200);
    }

    #[test]
    fn connections_above_the_cap_get_503() {
        let addr = tcp_server(Policy { max_conns: 3, ..API_POLICY });
        // Three idle connections hold every slot.
        let idle: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
        std::thread::sleep(Duration::from_millis(200));
        let s = TcpStream::connect(addr).unwrap();
        let t0 = Instant::now();
        assert_eq!(status_of(&s), 503);
        assert!(t0.elapsed() < Duration::from_secs(2));
        // One closes: its slot is free again.
        drop(idle.into_iter().next());
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            std::thread::sleep(Duration::from_millis(50));
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /v1/stats HTTP/1.1\r\nAuthorization: Bearer t0k\r\n\r\n").unwrap();
            match status_of(&s) {
                200 => break,
                503 if Instant::now() < deadline => continue,
                other => panic!("status {other}"),
            }
        }
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
