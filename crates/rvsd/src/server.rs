//! The control API: HTTP/1.1 + JSON as control/README.md and `docs/api/openapi.json` define
//! it, on the Unix socket (who may open it is the file's mode and owner) and optionally on TCP
//! (`--api-listen`, every request with `Authorization: Bearer TOKEN`).
//!
//! Served by hyper (HTTP/1 only, one request per connection) on a current-thread tokio
//! runtime per listener, so a held connection costs a task, not a thread; the handlers, which
//! block (table commands, reloads), run on the runtime's blocking threads. Nobody can starve
//! the listeners ([`Limits`], docs/design.md "Control API threat model"):
//! - every connection has a deadline for its head, one for its body and one for the whole
//!   exchange; bodies are bounded;
//! - on the Unix socket, a uid other than 0 holds at most `per_peer` of the slots, and
//!   `root_reserve` slots are root's alone, so root's `rvsadm` always gets through;
//! - on TCP, a connection holds one of the general slots only once its head carried the token
//!   (checked before the body is read); until then it is in a separate budget with a short
//!   head deadline, where the oldest is cut to make room for a new one, so held-open
//!   connections cannot keep out a client that sends its request at once.

mod threaded;

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::{IpAddr, TcpListener};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use control::api::{ApiError, Command, ErrorKind};
use control::http;
use control::ops::{ConnFilter, DrainRequest, ReloadRequest};

pub use threaded::{Policy, accept_loop};

use crate::admin::Admin;
use crate::host::Refusal;
use crate::operate::Operator;

/// What the API handlers reach: the table (commands, listings) and the operator
/// (configuration, health).
pub struct Api {
    pub admin: Arc<Admin>,
    pub ops: Arc<Operator>,
}

// ---------------------------------------------------------------------------------------
// Routes: one line per endpoint. `docs/api/openapi.json` lists exactly these (openapi.rs).
// ---------------------------------------------------------------------------------------

/// One endpoint: method, path, the query parameters it takes (any other is refused, 400) and
/// its handler (run on a blocking thread with the query string and the request body).
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub query: &'static [&'static str],
    handler: fn(&Api, &str, &[u8]) -> Answer,
}

pub const ROUTES: &[Route] = &[
    Route { method: "POST", path: "/v1/command", query: &[], handler: command },
    Route { method: "GET", path: "/v1/snapshot", query: &[], handler: snapshot },
    Route { method: "GET", path: "/v1/connections", query: &["service", "server", "state"], handler: connections },
    Route { method: "GET", path: "/v1/stats", query: &[], handler: stats },
    Route { method: "POST", path: "/v1/reload", query: &[], handler: reload },
    Route { method: "GET", path: "/v1/config", query: &[], handler: config },
    Route { method: "GET", path: "/v1/health", query: &[], handler: health },
    Route { method: "POST", path: "/v1/drain", query: &[], handler: drain },
    Route { method: "GET", path: "/v1/draining", query: &[], handler: draining },
    Route { method: "GET", path: "/v1/procfs", query: &[], handler: procfs },
    Route { method: "GET", path: control::sysctl::PATH, query: &[], handler: crate::sysctl::get },
    Route { method: "PUT", path: control::sysctl::PATH, query: &[], handler: crate::sysctl::set },
    Route { method: "POST", path: control::sysctl::PATH, query: &[], handler: crate::sysctl::set },
];

fn command(api: &Api, _: &str, body: &[u8]) -> Answer {
    match serde_json::from_slice::<Command>(body) {
        Ok(cmd) => result(api.admin.command(&cmd)),
        Err(e) => bad(format!("bad command: {e}")),
    }
}

fn snapshot(api: &Api, _: &str, _: &[u8]) -> Answer {
    json(&api.admin.snapshot())
}

/// Every matching entry, however many: a JSON array streamed (chunked) page by page from
/// each worker (listing.rs), so neither side holds the whole table's text. Should a worker stop
/// answering half-way, the response is cut short (no final chunk) and the client fails.
fn connections(api: &Api, query: &str, _: &[u8]) -> Answer {
    let f = match ConnFilter::from_target(&format!("?{query}")) {
        Ok(f) => f,
        Err(e) => return bad(e),
    };
    let admin = api.admin.clone();
    let mut a = json(&());
    a.body = b"[".to_vec();
    a.stream = Some(Box::new(move |send| {
        let mut first = true;
        for w in 0..admin.worker_count() {
            let mut from = 0;
            loop {
                let page = admin.connections_page(w, &f, from, crate::listing::PAGE).map_err(|e| e.message)?;
                let mut buf = Vec::with_capacity(page.records.len() * 240);
                for v in crate::listing::views(&page) {
                    if !std::mem::take(&mut first) {
                        buf.push(b',');
                    }
                    serde_json::to_writer(&mut buf, &v).map_err(|e| e.to_string())?;
                }
                if !send(Bytes::from(buf)) {
                    return Ok(()); // the client went away
                }
                if !page.truncated {
                    break;
                }
                from = page.next;
            }
        }
        send(Bytes::from_static(b"]"));
        Ok(())
    }));
    a
}

fn stats(api: &Api, _: &str, _: &[u8]) -> Answer {
    json(&api.admin.stats())
}

fn reload(api: &Api, _: &str, body: &[u8]) -> Answer {
    let req = if body.iter().all(u8::is_ascii_whitespace) {
        Ok(ReloadRequest::default())
    } else {
        json_object::<ReloadRequest>(body)
    };
    match req {
        Ok(r) => result(api.ops.reload(r.path.as_deref())),
        Err(e) => bad(format!("bad reload request: {e}")),
    }
}

fn config(api: &Api, _: &str, _: &[u8]) -> Answer {
    json(&api.ops.config_status())
}

fn health(api: &Api, _: &str, _: &[u8]) -> Answer {
    json(&api.ops.health())
}

/// A request body that must be one JSON object. serde's derived structs also accept an array
/// of their fields in order, which the OpenAPI description does not allow (schemathesis found
/// a reload with an array body answered 200).
pub(crate) fn json_object<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, serde_json::Error> {
    let v: serde_json::Value = serde_json::from_slice(body)?;
    if !v.is_object() {
        return Err(serde::de::Error::custom("expected a JSON object"));
    }
    serde_json::from_value(v)
}

fn drain(api: &Api, _: &str, body: &[u8]) -> Answer {
    match json_object::<DrainRequest>(body) {
        Ok(r) => result(api.admin.drain(&r)),
        Err(e) => bad(format!("bad drain request: {e}")),
    }
}

fn draining(api: &Api, _: &str, _: &[u8]) -> Answer {
    json(&api.admin.draining())
}

fn procfs(api: &Api, _: &str, _: &[u8]) -> Answer {
    let (status, body) = crate::procfs::route(&api.admin);
    Answer { status, headers: vec![], body, stream: None }
}

/// An answer: status, extra headers, JSON body, and the rest of the body when it is streamed.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    pub stream: Option<Producer>,
}

/// Writes the rest of a streamed body through `send` (false: the client is gone, stop) on a
/// blocking thread; an error cuts the response short.
pub type Producer = Box<dyn FnOnce(&mut dyn FnMut(Bytes) -> bool) -> Result<(), String> + Send>;

fn json<T: serde::Serialize>(v: &T) -> Answer {
    match serde_json::to_vec(v) {
        Ok(body) => Answer { status: 200, headers: vec![], body, stream: None },
        Err(e) => fail(ApiError::new(ErrorKind::Internal, e.to_string())),
    }
}

/// An error answer; its status is always its kind's (`ErrorKind::http_status`).
fn fail(e: ApiError) -> Answer {
    let status = e.kind.http_status();
    Answer { status, headers: vec![], body: serde_json::to_vec(&e).unwrap_or_else(|_| b"{}".to_vec()), stream: None }
}

fn refuse(kind: ErrorKind, m: impl Into<String>) -> Answer {
    fail(ApiError::new(kind, m))
}

fn bad(m: String) -> Answer {
    refuse(ErrorKind::BadRequest, m)
}

fn result<T: serde::Serialize>(r: Result<T, ApiError>) -> Answer {
    match r {
        Ok(v) => json(&v),
        Err(e) => fail(e),
    }
}

/// The route for `method` and `target`, or the answer refusing it: 404 for an unknown path,
/// 405 with `Allow` for another method, 400 for a query parameter the route does not take.
pub fn find_route(method: &str, target: &str) -> Result<&'static Route, Answer> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let on_path: Vec<&Route> = ROUTES.iter().filter(|r| r.path == path).collect();
    if on_path.is_empty() {
        return Err(refuse(ErrorKind::NotFound, format!("no such endpoint: {path}")));
    }
    let Some(route) = on_path.iter().find(|r| r.method == method) else {
        let allow: Vec<&str> = on_path.iter().map(|r| r.method).collect();
        let mut a = refuse(
            ErrorKind::MethodNotAllowed,
            format!("method {method} not allowed on {path} (allowed: {})", allow.join(", ")),
        );
        a.headers.push(("Allow", allow.join(", ")));
        return Err(a);
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let name = pair.split_once('=').map_or(pair, |(n, _)| n);
        if !route.query.contains(&name) {
            let takes = if route.query.is_empty() { "none".to_string() } else { route.query.join(", ") };
            return Err(bad(format!("unknown query parameter '{name}' on {path} (it takes: {takes})")));
        }
    }
    Ok(route)
}

/// Dispatches one request (the whole target, query included); the answer's status matches
/// its error kind on every error. (The server does the same in steps: route, body, handler.)
#[cfg(test)]
pub fn route(api: &Api, method: &str, target: &str, body: &[u8]) -> Answer {
    match find_route(method, target) {
        Ok(r) => (r.handler)(api, target.split_once('?').map_or("", |(_, q)| q), body),
        Err(a) => a,
    }
}

// ---------------------------------------------------------------------------------------
// Limits and who holds what
// ---------------------------------------------------------------------------------------

/// What one listener allows (docs/design.md "Control API threat model").
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Requests served at once.
    pub slots: usize,
    /// Of `slots`, kept for uid 0 (Unix socket).
    pub root_reserve: usize,
    /// Most slots one peer holds: a uid other than 0 on the socket, a source address on TCP.
    pub per_peer: usize,
    /// TCP: connections not yet authenticated, in all; beyond, the oldest is cut.
    pub unauth: usize,
    /// TCP: the same per source address.
    pub unauth_per_peer: usize,
    /// For the request head, from accept.
    pub head_timeout: Duration,
    /// For the body, once the head is in.
    pub body_timeout: Duration,
    /// For the whole exchange, the answer included.
    pub total_timeout: Duration,
    /// Longest request body (commands, reload and drain requests are a few hundred bytes).
    pub max_body: usize,
}

/// The Unix socket's limits: 64 slots, 16 of them root's alone, 8 per other uid.
pub const UNIX_LIMITS: Limits = Limits {
    slots: 64,
    root_reserve: 16,
    per_peer: 8,
    unauth: 0,
    unauth_per_peer: 0,
    head_timeout: Duration::from_secs(5),
    body_timeout: Duration::from_secs(10),
    total_timeout: Duration::from_secs(120),
    max_body: http::MAX_REQUEST_BODY,
};

/// The TCP listener's limits: 64 authenticated slots, 16 per source address; 128
/// connections waiting to authenticate, 64 per source address, 2 s to send the head.
pub const TCP_LIMITS: Limits = Limits {
    slots: 64,
    root_reserve: 0,
    per_peer: 16,
    unauth: 128,
    unauth_per_peer: 64,
    head_timeout: Duration::from_secs(2),
    body_timeout: Duration::from_secs(10),
    total_timeout: Duration::from_secs(120),
    max_body: http::MAX_REQUEST_BODY,
};

/// Who is at the other end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Peer {
    Uid(u32),
    Ip(IpAddr),
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Uid(u) => write!(f, "uid {u}"),
            Peer::Ip(a) => write!(f, "{a}"),
        }
    }
}

#[derive(Default)]
struct State {
    busy: usize,
    busy_by_peer: HashMap<Peer, usize>,
    /// TCP connections waiting to authenticate, oldest first: id -> (source, its task).
    unauth: BTreeMap<u64, (IpAddr, tokio::task::AbortHandle)>,
    unauth_by_peer: HashMap<IpAddr, usize>,
    next_id: u64,
}

/// One listener's shared part.
struct Shared {
    api: Arc<Api>,
    token: Option<String>,
    limits: Limits,
    state: Mutex<State>,
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A general slot for `peer`, or why not.
    fn take_slot(self: &Arc<Self>, peer: Peer) -> Result<SlotGuard, String> {
        let l = &self.limits;
        let mut st = self.state();
        let held = st.busy_by_peer.get(&peer).copied().unwrap_or(0);
        let (cap, per_peer) = match peer {
            Peer::Uid(0) => (l.slots, l.slots),
            _ => (l.slots.saturating_sub(l.root_reserve), l.per_peer),
        };
        if held >= per_peer {
            return Err(format!("too many connections from {peer}"));
        }
        if st.busy >= cap {
            return Err(format!(
                "too many connections ({} in use{})",
                st.busy,
                match peer {
                    Peer::Uid(0) | Peer::Ip(_) => "",
                    Peer::Uid(_) => ", the rest kept for root",
                }
            ));
        }
        st.busy += 1;
        *st.busy_by_peer.entry(peer).or_insert(0) += 1;
        Ok(SlotGuard { shared: self.clone(), peer })
    }

    /// Registers a connection waiting to authenticate; cuts the oldest of its source (or of
    /// all) when the budget is full.
    fn add_unauth(&self, ip: IpAddr, task: tokio::task::AbortHandle) -> u64 {
        let l = &self.limits;
        let mut st = self.state();
        if st.unauth_by_peer.get(&ip).copied().unwrap_or(0) >= l.unauth_per_peer {
            let oldest = st.unauth.iter().find(|(_, (a, _))| *a == ip).map(|(id, _)| *id);
            if let Some(id) = oldest {
                Self::cut(&mut st, id);
            }
        }
        if st.unauth.len() >= l.unauth
            && let Some(id) = st.unauth.keys().next().copied()
        {
            Self::cut(&mut st, id);
        }
        let id = st.next_id;
        st.next_id += 1;
        st.unauth.insert(id, (ip, task));
        *st.unauth_by_peer.entry(ip).or_insert(0) += 1;
        id
    }

    fn cut(st: &mut State, id: u64) {
        if let Some((ip, task)) = Self::forget(st, id) {
            tracing::debug!("api tcp: cutting a connection from {ip} still unauthenticated");
            task.abort();
        }
    }

    fn forget(st: &mut State, id: u64) -> Option<(IpAddr, tokio::task::AbortHandle)> {
        let (ip, task) = st.unauth.remove(&id)?;
        if let Some(n) = st.unauth_by_peer.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                st.unauth_by_peer.remove(&ip);
            }
        }
        Some((ip, task))
    }

    fn authenticated(&self, id: u64) {
        Self::forget(&mut self.state(), id);
    }
}

/// A general slot, given back when the connection ends.
struct SlotGuard {
    shared: Arc<Shared>,
    peer: Peer,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let mut st = self.shared.state();
        st.busy -= 1;
        if let Some(n) = st.busy_by_peer.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                st.busy_by_peer.remove(&self.peer);
            }
        }
    }
}

/// Takes a TCP connection out of the waiting budget when its task ends (however it ends).
struct UnauthGuard {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for UnauthGuard {
    fn drop(&mut self) {
        self.shared.authenticated(self.id);
    }
}

// ---------------------------------------------------------------------------------------
// Listeners
// ---------------------------------------------------------------------------------------

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

/// A current-thread runtime for one listener; its blocking threads run the handlers.
fn runtime(name: &str, limits: &Limits) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .max_blocking_threads(limits.slots.max(1))
        .thread_name(format!("{name}-h"))
        .build()
}

/// Lets this process hold as many descriptors as its hard limit allows: held-open
/// connections must meet the limits above, not `EMFILE`.
fn raise_nofile() {
    // SAFETY: plain struct in, plain struct out.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max.min(1 << 20);
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// Serves the API on the Unix socket until the process ends.
pub fn serve(listener: UnixListener, api: Arc<Api>, path: PathBuf) {
    serve_unix_with(listener, api, path, UNIX_LIMITS)
}

fn serve_unix_with(listener: UnixListener, api: Arc<Api>, path: PathBuf, limits: Limits) {
    raise_nofile();
    let shared = Arc::new(Shared { api, token: None, limits, state: Mutex::default() });
    let rt = match runtime("rvsd-api", &limits) {
        Ok(rt) => rt,
        Err(e) => return tracing::error!("api {}: cannot start its runtime: {e}", path.display()),
    };
    rt.block_on(async move {
        let l = match listener.set_nonblocking(true).and_then(|()| tokio::net::UnixListener::from_std(listener)) {
            Ok(l) => l,
            Err(e) => return tracing::error!("api {}: {e}", path.display()),
        };
        loop {
            let stream = match l.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::error!("api {}: accept: {e}", path.display());
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            // SO_PEERCRED: the uid of the process that connected.
            let uid = match stream.peer_cred() {
                Ok(c) => c.uid(),
                Err(e) => {
                    tracing::debug!("api: no peer credentials: {e}");
                    continue;
                }
            };
            match shared.take_slot(Peer::Uid(uid)) {
                Ok(slot) => {
                    let sh = shared.clone();
                    tokio::spawn(async move {
                        let _slot = slot;
                        connection(stream, sh, None).await
                    });
                }
                Err(why) => {
                    tracing::debug!("api: refusing uid {uid}: {why}");
                    tokio::spawn(refuse_raw(stream, why));
                }
            }
        }
    })
}

/// The API on TCP (`--api-listen`): every request must carry `Authorization: Bearer TOKEN`.
pub fn serve_tcp(listener: TcpListener, api: Arc<Api>, token: String) {
    serve_tcp_with(listener, api, token, TCP_LIMITS)
}

fn serve_tcp_with(listener: TcpListener, api: Arc<Api>, token: String, limits: Limits) {
    raise_nofile();
    let shared = Arc::new(Shared { api, token: Some(token), limits, state: Mutex::default() });
    let rt = match runtime("rvsd-api-tcp", &limits) {
        Ok(rt) => rt,
        Err(e) => return tracing::error!("api tcp: cannot start its runtime: {e}"),
    };
    rt.block_on(async move {
        let l = match listener.set_nonblocking(true).and_then(|()| tokio::net::TcpListener::from_std(listener)) {
            Ok(l) => l,
            Err(e) => return tracing::error!("api tcp: {e}"),
        };
        loop {
            let (stream, from) = match l.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::error!("api tcp: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let sh = shared.clone();
            let (tx, rx) = tokio::sync::oneshot::channel::<u64>();
            let task = tokio::spawn(async move {
                // The id is sent right after spawning, before this task first runs.
                let Ok(id) = rx.await else { return };
                let _waiting = UnauthGuard { shared: sh.clone(), id };
                connection(stream, sh, Some((from.ip(), id))).await
            });
            let id = shared.add_unauth(from.ip(), task.abort_handle());
            let _ = tx.send(id);
        }
    })
}

/// Answers 503 with `why` without reading the request, then lets the peer finish writing (so
/// it reads the answer rather than a reset) for a moment before closing.
async fn refuse_raw<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, why: String) {
    let a = refuse(ErrorKind::Unavailable, why);
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        a.body.len()
    );
    let mut answer = head.into_bytes();
    answer.extend_from_slice(&a.body);
    let write = async {
        s.write_all(&answer).await?;
        s.shutdown().await
    };
    if tokio::time::timeout(Duration::from_millis(500), write).await.is_err() {
        return;
    }
    let mut sink = [0u8; 4096];
    let drain = async {
        let mut n = 0;
        while n < 64 * 1024 {
            match s.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(k) => n += k,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(500), drain).await;
}

/// Serves one connection (one request): `tcp` is the source address and the id in the
/// waiting budget of a TCP connection, `None` on the socket (already holding a slot).
async fn connection<S>(stream: S, shared: Arc<Shared>, tcp: Option<(IpAddr, u64)>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = shared.limits;
    // The TCP connection's slot, taken once its head carried the token; held to the end.
    let slot: Arc<Mutex<Option<SlotGuard>>> = Arc::default();
    let slot_in = slot.clone();
    let service = service_fn(move |req: hyper::Request<Incoming>| {
        let (shared, slot) = (shared.clone(), slot_in.clone());
        async move { Ok::<_, Infallible>(respond(req, shared, tcp, slot).await) }
    });
    let mut b = http1::Builder::new();
    b.keep_alive(false).timer(TokioTimer::new()).header_read_timeout(limits.head_timeout).max_buf_size(64 * 1024);
    let conn = b.serve_connection(TokioIo::new(stream), service);
    match tokio::time::timeout(limits.total_timeout, conn).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!("api connection: {e}"),
        Err(_) => tracing::debug!("api connection: cut after {:?}", limits.total_timeout),
    }
    drop(slot);
}

/// One request: authentication and the slot (TCP), the route, the body within its limits,
/// then the handler on a blocking thread.
async fn respond(
    req: hyper::Request<Incoming>,
    shared: Arc<Shared>,
    tcp: Option<(IpAddr, u64)>,
    slot: Arc<Mutex<Option<SlotGuard>>>,
) -> hyper::Response<Body> {
    let limits = shared.limits;
    let (parts, mut body) = req.into_parts();
    if let Some((ip, id)) = tcp {
        let token = shared.token.as_deref().unwrap_or_default();
        if !authorized(parts.headers.get(AUTHORIZATION), token) {
            return to_response(refuse(ErrorKind::Unauthorized, "missing or wrong bearer token"));
        }
        shared.authenticated(id);
        match shared.take_slot(Peer::Ip(ip)) {
            Ok(g) => *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(g),
            Err(why) => return to_response(refuse(ErrorKind::Unavailable, why)),
        }
    }
    let target = parts.uri.path_and_query().map_or_else(|| parts.uri.path().to_string(), |p| p.as_str().to_string());
    let method = parts.method.as_str().to_string();
    let route = match find_route(&method, &target) {
        Ok(r) => r,
        Err(a) => return to_response(a),
    };
    let announced = parts.headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limits.max_body as u64) {
        return to_response(too_large(limits.max_body));
    }
    let mut data = Vec::new();
    let read = async {
        while let Some(frame) = std::future::poll_fn(|cx| HttpBody::poll_frame(Pin::new(&mut body), cx)).await {
            let frame = frame.map_err(|e| bad(format!("bad body: {e}")))?;
            if let Ok(chunk) = frame.into_data() {
                if data.len() + chunk.len() > limits.max_body {
                    return Err(too_large(limits.max_body));
                }
                data.extend_from_slice(&chunk);
            }
        }
        Ok(())
    };
    match tokio::time::timeout(limits.body_timeout, read).await {
        Ok(Ok(())) => {}
        Ok(Err(a)) => return to_response(a),
        Err(_) => return to_response(refuse(ErrorKind::Timeout, "the request body did not arrive in time")),
    }
    let api = shared.api.clone();
    let query = target.split_once('?').map_or("", |(_, q)| q).to_string();
    let handler = route.handler;
    match tokio::task::spawn_blocking(move || handler(&api, &query, &data)).await {
        Ok(a) => to_response(a),
        Err(e) => to_response(refuse(ErrorKind::Internal, format!("handler failed: {e}"))),
    }
}

fn too_large(max: usize) -> Answer {
    refuse(ErrorKind::TooLarge, format!("request body larger than {max} bytes"))
}

/// True when `auth` is `Bearer <token>` (compared in constant time).
fn authorized(auth: Option<&HeaderValue>, token: &str) -> bool {
    auth.and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .is_some_and(|t| !token.is_empty() && control::token::same(t.trim().as_bytes(), token.as_bytes()))
}

fn to_response(a: Answer) -> hyper::Response<Body> {
    let body = match a.stream {
        None => Body::Full(Some(Bytes::from(a.body))),
        Some(producer) => {
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, String>>(4);
            let head = Bytes::from(a.body);
            tokio::task::spawn_blocking(move || {
                if tx.blocking_send(Ok(head)).is_err() {
                    return;
                }
                if let Err(e) = producer(&mut |b| tx.blocking_send(Ok(b)).is_ok()) {
                    tracing::warn!("api: a streamed answer failed half-way: {e}");
                    let _ = tx.blocking_send(Err(e));
                }
            });
            Body::Stream(rx)
        }
    };
    let mut r = hyper::Response::new(body);
    *r.status_mut() = hyper::StatusCode::from_u16(a.status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for (name, value) in a.headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    r
}

/// A response body: whole, or streamed from a producer on a blocking thread.
pub enum Body {
    Full(Option<Bytes>),
    Stream(tokio::sync::mpsc::Receiver<Result<Bytes, String>>),
}

impl HttpBody for Body {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::Stream(rx) => rx.poll_recv(cx).map(|o| o.map(|r| r.map(Frame::data).map_err(std::io::Error::other))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Body::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Body::Full(None) => SizeHint::with_exact(0),
            Body::Stream(_) => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests;
