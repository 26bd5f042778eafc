//! The control API on a Unix socket: HTTP/1.1 + JSON exactly as control/README.md defines it,
//! one thread per connection (administration is rare; no async runtime needed).

use std::io::{self, BufReader};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use control::api::{ApiError, Command, ErrorKind};
use control::http;

use crate::admin::Admin;
use crate::host::Refusal;

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
pub fn serve(listener: UnixListener, admin: Arc<Admin>, path: PathBuf) {
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                let admin = admin.clone();
                let spawned = std::thread::Builder::new().name("rvsd-api".into()).spawn(move || {
                    if let Err(e) = handle(&stream, &admin) {
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

/// Answers one request (clients send `Connection: close`; one request per connection).
fn handle(stream: &UnixStream, admin: &Admin) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream);
    let (status, body) = match http::read_request(&mut reader) {
        Ok(req) => route(admin, &req.method, &req.path, &req.body),
        Err(http::HttpError::Closed) => return Ok(()),
        Err(e) => {
            let status = e.status();
            let err = ApiError::new(ErrorKind::BadRequest, e.to_string());
            (status, serde_json::to_vec(&err).unwrap_or_default())
        }
    };
    http::write_response(&mut &*stream, status, "application/json", &body)
}

/// Dispatch on method and path; returns the status and JSON body.
pub fn route(admin: &Admin, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let path = path.split('?').next().unwrap_or(path);
    match (method, path) {
        ("POST", "/v1/command") => match serde_json::from_slice::<Command>(body) {
            Ok(cmd) => match admin.command(&cmd) {
                Ok(reply) => json(&reply),
                Err(e) => error(e),
            },
            Err(e) => error(ApiError::new(ErrorKind::BadRequest, format!("bad command: {e}"))),
        },
        ("GET", "/v1/snapshot") => json(&admin.snapshot()),
        ("GET", "/v1/connections") => match admin.connections() {
            Ok(c) => json(&c),
            Err(e) => error(e),
        },
        ("GET", "/v1/stats") => json(&admin.stats()),
        (_, "/v1/command" | "/v1/snapshot" | "/v1/connections" | "/v1/stats") => {
            let (_, body) =
                error(ApiError::new(ErrorKind::BadRequest, format!("method {method} not allowed on {path}")));
            (405, body)
        }
        _ => {
            let (_, body) = error(ApiError::new(ErrorKind::BadRequest, format!("no such endpoint: {method} {path}")));
            (404, body)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rates::RateTable;
    use std::sync::atomic::AtomicUsize;

    fn admin() -> Arc<Admin> {
        let node = node::Node::new(Arc::new(ipvs::Ipvs::new(100)), node::NetState::default());
        let sizes: Arc<[AtomicUsize]> = vec![AtomicUsize::new(0)].into();
        Arc::new(Admin::new(node, Arc::new(RateTable::default()), Box::new(|_| false), vec![], sizes, None, vec![]))
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
        let a = admin();
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
