//! The API server in-process: routes and errors, the token, timeouts, and the limits that
//! keep held connections from starving anyone.

use super::*;
use crate::rates::RateTable;
use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::sync::atomic::AtomicUsize;
use std::time::Instant;

pub fn api() -> Arc<Api> {
    let node = node::Node::new(Arc::new(ipvs::Ipvs::new(100)), node::NetState::default());
    let sizes: Arc<[AtomicUsize]> = vec![AtomicUsize::new(0)].into();
    let admin =
        Arc::new(Admin::new(node, Arc::new(RateTable::default()), Box::new(|_| false), vec![], sizes, None, vec![]));
    let ops = Arc::new(Operator::new(admin.clone(), None));
    Arc::new(Api { admin, ops })
}

fn spec() -> control::api::ServiceSpec {
    control::api::ServiceSpec {
        key: control::api::ServiceKey::Tcp { addr: "10.0.0.100".parse().unwrap(), port: 80 },
        scheduler: "rr".into(),
        sched_flags: Default::default(),
        persistent: None,
        netmask: u32::MAX,
        ops: false,
        pe: None,
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rvsd-unit-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn serves_the_api_over_a_socket_with_0600() {
    let dir = temp_dir("sock");
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
    c.command(&Command::AddService(spec())).unwrap();
    match c.command(&Command::AddService(spec())) {
        Err(control::client::ClientError::Api(e)) => assert_eq!(e.kind, ErrorKind::ServiceExists),
        other => panic!("{other:?}"),
    }
    let s = c.snapshot().unwrap();
    assert_eq!(s.services[0].spec, spec());
    assert_eq!(c.connections().unwrap(), vec![]);
    let (st, body) = c.request("GET", "/v1/stats", None).unwrap();
    assert_eq!(st, 200);
    let stats: crate::admin::NodeStats = serde_json::from_slice(&body).unwrap();
    assert_eq!(stats.rx, 0);
    // Every error's kind is its status's; 405 says what is allowed.
    let kind = |body: &[u8]| serde_json::from_slice::<ApiError>(body).unwrap().kind;
    let r = c.request_full("GET", "/v1/nothing", None).unwrap();
    assert_eq!((r.status, kind(&r.body)), (404, ErrorKind::NotFound));
    let r = c.request_full("GET", "/v1/command", None).unwrap();
    assert_eq!((r.status, kind(&r.body)), (405, ErrorKind::MethodNotAllowed));
    assert_eq!(r.headers.iter().find(|(k, _)| k == "allow").map(|(_, v)| v.as_str()), Some("POST"));
    let r = c.request_full("POST", "/v1/command", Some(b"{not json")).unwrap();
    assert_eq!((r.status, kind(&r.body)), (400, ErrorKind::BadRequest));
    let r = c.request_full("GET", "/v1/stats?verbose=1", None).unwrap();
    assert_eq!((r.status, kind(&r.body)), (400, ErrorKind::BadRequest));
    assert!(String::from_utf8_lossy(&r.body).contains("unknown query parameter 'verbose'"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_route_answers_with_a_status_matching_its_kind() {
    let a = api();
    for method in ["GET", "POST", "PUT", "DELETE"] {
        for target in
            ["/v1/command", "/v1/connections?state=x&bogus=1", "/", "/v1/stats?", "/v1/connections?service=zz"]
        {
            let r = route(&a, method, target, b"{}");
            if r.status != 200 {
                let e: ApiError = serde_json::from_slice(&r.body).unwrap();
                assert_eq!(e.kind.http_status(), r.status, "{method} {target}: {}", e.message);
            }
            if r.status == 405 {
                assert!(r.headers.iter().any(|(k, _)| *k == "Allow"), "{method} {target}");
            }
        }
    }
}

/// One raw HTTP exchange over TCP.
fn tcp_request(addr: std::net::SocketAddr, head: &str) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let r = http::read_response(&mut BufReader::new(&s)).unwrap();
    (r.status, r.body)
}

/// A TCP API server with `limits` and token `t0k`.
fn tcp_server(limits: Limits) -> std::net::SocketAddr {
    tcp_server_of(api(), limits)
}

fn tcp_server_of(a: Arc<Api>, limits: Limits) -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || serve_tcp_with(l, a, "t0k".into(), limits));
    addr
}

fn status_of(s: &TcpStream) -> u16 {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    http::read_response(&mut BufReader::new(s)).map(|r| r.status).unwrap_or(0)
}

#[test]
fn the_tcp_listener_wants_the_bearer_token() {
    let addr = tcp_server(TCP_LIMITS);
    let get = |auth: &str| tcp_request(addr, &format!("GET /v1/snapshot HTTP/1.1\r\nHost: x\r\n{auth}\r\n"));
    let (st, body) = get("");
    assert_eq!(st, 401);
    let e: ApiError = serde_json::from_slice(&body).unwrap();
    assert_eq!(e.kind, ErrorKind::Unauthorized);
    assert_eq!(get("Authorization: Bearer wrong\r\n").0, 401);
    assert_eq!(get("Authorization: Bearer t0\r\n").0, 401);
    assert_eq!(get("Authorization: Basic t0k\r\n").0, 401);
    let (st, body) = get("Authorization: Bearer t0k\r\n");
    assert_eq!(st, 200);
    assert!(serde_json::from_slice::<control::api::Snapshot>(&body).is_ok());
    // The client sends it too.
    let c = control::client::Client::tcp(addr.to_string(), "t0k");
    assert!(c.snapshot().is_ok());
    match control::client::Client::tcp(addr.to_string(), "nope").snapshot() {
        Err(e @ control::client::ClientError::Refused { status: 401, .. }) => {
            assert!(e.to_string().starts_with("server refused the request: 401 Unauthorized: "), "{e}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_slow_head_is_cut_at_its_deadline() {
    let addr = tcp_server(Limits { head_timeout: Duration::from_millis(500), ..TCP_LIMITS });
    let mut s = TcpStream::connect(addr).unwrap();
    let t0 = Instant::now();
    // A byte every 100 ms: never a whole head.
    for b in b"GET /v1/snapshot HTTP/1.1\r\nAuthorization: Bearer t0k\r\nX-Pad: aaaaaaa" {
        if s.write_all(&[*b]).is_err() || t0.elapsed() > Duration::from_millis(800) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let st = status_of(&s);
    assert!(st == 0 || st == 408, "{st}");
    assert!(t0.elapsed() < Duration::from_secs(2), "cut after {:?}", t0.elapsed());
}

#[test]
fn a_silent_connection_is_cut_at_the_head_deadline() {
    let addr = tcp_server(Limits { head_timeout: Duration::from_millis(500), ..TCP_LIMITS });
    let s = TcpStream::connect(addr).unwrap();
    let t0 = Instant::now();
    let st = status_of(&s);
    assert!(st == 0 || st == 408, "{st}");
    assert!(t0.elapsed() >= Duration::from_millis(400) && t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
}

#[test]
fn an_unauthenticated_or_oversized_body_is_refused_before_it_is_read() {
    let addr = tcp_server(TCP_LIMITS);
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
        format!("POST /v1/command HTTP/1.1\r\nAuthorization: Bearer t0k\r\nContent-Length: {len}\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let t0 = Instant::now();
    assert_eq!(status_of(&s), 413);
    assert!(t0.elapsed() < Duration::from_secs(2));
    // A body that does not come: 408 at the body deadline.
    let addr2 = tcp_server(Limits { body_timeout: Duration::from_millis(300), ..TCP_LIMITS });
    let mut s = TcpStream::connect(addr2).unwrap();
    s.write_all(b"POST /v1/command HTTP/1.1\r\nAuthorization: Bearer t0k\r\nContent-Length: 7\r\n\r\n\"Cl").unwrap();
    assert_eq!(status_of(&s), 408);
    // Within the limit, the request is served.
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"POST /v1/command HTTP/1.1\r\nAuthorization: Bearer t0k\r\nContent-Length: 7\r\n\r\n\"Clear\"")
        .unwrap();
    assert_eq!(status_of(&s), 200);
}

#[test]
fn held_unauthenticated_connections_do_not_keep_out_a_client_with_the_token() {
    let addr =
        tcp_server(Limits { unauth: 8, unauth_per_peer: 4, head_timeout: Duration::from_secs(30), ..TCP_LIMITS });
    // 100 connections holding half a head each, far above the waiting budget.
    let held: Vec<TcpStream> = (0..100)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /v1/snapshot HTTP/1.1\r\nHost: x\r\n").unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    for _ in 0..5 {
        let t0 = Instant::now();
        let (st, _) = tcp_request(addr, "GET /v1/stats HTTP/1.1\r\nAuthorization: Bearer t0k\r\n\r\n");
        assert_eq!(st, 200);
        assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    }
    // The oldest were cut: at most the budget is still open on the server's side.
    let open = held
        .iter()
        .filter(|s| {
            s.set_nonblocking(true).unwrap();
            let mut b = [0u8; 1];
            matches!((&**s).read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        })
        .count();
    assert!(open <= 8, "{open} still open");
}

#[test]
fn authenticated_slots_are_limited_per_source_address() {
    let a = api();
    let sh = Arc::new(Shared {
        api: a,
        token: None,
        limits: Limits { slots: 4, per_peer: 2, ..TCP_LIMITS },
        state: Mutex::default(),
    });
    let ip1 = Peer::Ip("127.0.0.1".parse().unwrap());
    let ip2 = Peer::Ip("127.0.0.2".parse().unwrap());
    let g1 = sh.take_slot(ip1).unwrap();
    let _g2 = sh.take_slot(ip1).unwrap();
    assert_eq!(sh.take_slot(ip1).err().unwrap(), "too many connections from 127.0.0.1");
    let _g3 = sh.take_slot(ip2).unwrap();
    drop(g1);
    let _g4 = sh.take_slot(ip1).unwrap();
    let _g5 = sh.take_slot(ip2).unwrap();
    assert!(sh.take_slot(Peer::Ip("127.0.0.3".parse().unwrap())).err().unwrap().starts_with("too many connections ("));
}

#[test]
fn on_the_socket_other_uids_are_capped_and_root_keeps_a_reserve() {
    let sh = Arc::new(Shared {
        api: api(),
        token: None,
        limits: Limits { slots: 6, root_reserve: 2, per_peer: 2, ..UNIX_LIMITS },
        state: Mutex::default(),
    });
    let mut held = vec![sh.take_slot(Peer::Uid(1000)).unwrap(), sh.take_slot(Peer::Uid(1000)).unwrap()];
    assert_eq!(sh.take_slot(Peer::Uid(1000)).err().unwrap(), "too many connections from uid 1000");
    held.push(sh.take_slot(Peer::Uid(1001)).unwrap());
    held.push(sh.take_slot(Peer::Uid(1002)).unwrap());
    // 4 of 6 in use: the last 2 are root's.
    let e = sh.take_slot(Peer::Uid(1003)).err().unwrap();
    assert!(e.contains("kept for root"), "{e}");
    held.push(sh.take_slot(Peer::Uid(0)).unwrap());
    held.push(sh.take_slot(Peer::Uid(0)).unwrap());
    assert!(sh.take_slot(Peer::Uid(0)).is_err(), "the cap holds for root too");
    held.clear();
    assert_eq!(sh.state().busy, 0);
    assert!(sh.state().busy_by_peer.is_empty());
}

#[test]
fn a_refused_socket_client_reads_the_status_and_message() {
    let dir = temp_dir("refuse");
    let path = dir.join("s.sock");
    let l = bind(&path).unwrap();
    let a = api();
    let p = path.clone();
    // Root's share is 0 slots: every connection is refused, with the reason.
    std::thread::spawn(move || serve_unix_with(l, a, p, Limits { slots: 0, root_reserve: 0, ..UNIX_LIMITS }));
    let e = control::client::Client::new(&path).snapshot().unwrap_err();
    let uid = unsafe { libc::geteuid() };
    let want = format!("server refused the request: 503 Service Unavailable: too many connections from uid {uid}");
    // The per-peer check comes first for other uids, the cap for root; both are 503.
    assert!(
        e.to_string().starts_with("server refused the request: 503 Service Unavailable: too many connections"),
        "{e}"
    );
    if uid != 0 {
        assert_eq!(e.to_string(), want);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The system's python3, which nobody can run (not one under root's home).
fn python() -> &'static str {
    if std::path::Path::new("/usr/bin/python3").exists() { "/usr/bin/python3" } else { "python3" }
}

/// With root, as in the field: a process of `nobody` holds `n` connections with half a
/// request head each on the TCP listener (and tries the socket); root's client on the socket
/// and a TCP client with the token still answer in under a second.
fn held_by_nobody(n: usize) {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root (to run the holder as nobody)");
        return;
    }
    let dir = temp_dir(&format!("nobody{n}"));
    let path = dir.join("s.sock");
    let l = bind(&path).unwrap();
    let a = api();
    let p = path.clone();
    let addr = tcp_server_of(a.clone(), TCP_LIMITS);
    std::thread::spawn(move || serve(l, a, p));
    let root = control::client::Client::new(&path);
    root.command(&Command::AddService(spec())).unwrap();
    let script = format!(
        "import socket,sys,resource,time\n\
         resource.setrlimit(resource.RLIMIT_NOFILE,(4096,4096))\n\
         held=[]\n\
         for i in range({n}):\n\
         \x20 s=socket.create_connection(('127.0.0.1',{port}))\n\
         \x20 try: s.send(b'GET /v1/snapshot HTTP/1.1\\r\\nHost: x\\r\\n')\n\
         \x20 except OSError: pass\n\
         \x20 held.append(s)\n\
         print('held',flush=True)\n\
         time.sleep(30)\n",
        port = addr.port()
    );
    let mut holder = std::process::Command::new(python())
        .args(["-c", &script])
        .uid(65534)
        .gid(65534)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut BufReader::new(holder.stdout.take().unwrap()), &mut line).unwrap();
    assert_eq!(line.trim(), "held", "the holder opened its {n} connections");
    let t0 = Instant::now();
    let snap = root.snapshot().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(1), "root on the socket: {:?}", t0.elapsed());
    assert_eq!(snap.services.len(), 1);
    let tcp = control::client::Client::tcp(addr.to_string(), "t0k");
    for _ in 0..3 {
        let t0 = Instant::now();
        assert_eq!(tcp.snapshot().unwrap().services.len(), 1);
        assert!(t0.elapsed() < Duration::from_secs(1), "TCP with the token: {:?}", t0.elapsed());
    }
    // nobody cannot open the 0600 socket, nor clear the table over TCP without the token.
    let out = std::process::Command::new(python())
        .args([
            "-c",
            &format!(
                "import socket\n\
                 try:\n\
                 \x20 socket.socket(socket.AF_UNIX).connect('{}'); print('unix open')\n\
                 except PermissionError: print('unix refused')\n\
                 s=socket.create_connection(('127.0.0.1',{}))\n\
                 s.send(b'POST /v1/command HTTP/1.1\\r\\nContent-Length: 7\\r\\n\\r\\n\"Clear\"')\n\
                 print(s.recv(100).split(b' ')[1].decode())\n",
                path.display(),
                addr.port()
            ),
        ])
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["unix", "refused", "401"], "{out}");
    assert_eq!(root.snapshot().unwrap().services.len(), 1, "the table is unchanged");
    let _ = holder.kill();
    let _ = holder.wait();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// With root: a socket an operator opened to everyone (0666), nobody holding 100
/// connections on it with half a request head each: nobody gets 8 of them served at most and
/// is told why past that; root's requests still answer in under a second (its reserve).
#[test]
fn a_socket_open_to_others_keeps_roots_reserve() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root (to run the holder as nobody)");
        return;
    }
    let dir = temp_dir("open-sock");
    let path = dir.join("s.sock");
    let l = bind(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let a = api();
    let p = path.clone();
    std::thread::spawn(move || serve(l, a, p));
    let script = format!(
        "import socket,time\n\
         held=[]\n\
         for i in range(100):\n\
         \x20 s=socket.socket(socket.AF_UNIX); s.connect('{sock}')\n\
         \x20 try: s.send(b'GET /v1/snapshot HTTP/1.1\\r\\nHost: x\\r\\n')\n\
         \x20 except OSError: pass\n\
         \x20 held.append(s)\n\
         time.sleep(0.3)\n\
         s=socket.socket(socket.AF_UNIX); s.connect('{sock}')\n\
         try: s.send(b'GET /v1/stats HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n')\n\
         except OSError: pass\n\
         a=b''\n\
         while True:\n\
         \x20 d=s.recv(4096)\n\
         \x20 if not d: break\n\
         \x20 a+=d\n\
         print(a.decode(errors='replace').replace('\\r\\n',' '),flush=True)\n\
         time.sleep(30)\n",
        sock = path.display()
    );
    let mut holder = std::process::Command::new(python())
        .args(["-c", &script])
        .uid(65534)
        .gid(65534)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut BufReader::new(holder.stdout.take().unwrap()), &mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 503 "), "{line}");
    assert!(line.contains("too many connections from uid 65534"), "{line}");
    let root = control::client::Client::new(&path);
    for _ in 0..3 {
        let t0 = Instant::now();
        root.snapshot().unwrap();
        assert!(t0.elapsed() < Duration::from_secs(1), "root on the socket: {:?}", t0.elapsed());
    }
    let _ = holder.kill();
    let _ = holder.wait();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn two_hundred_connections_held_by_nobody_stop_no_one() {
    held_by_nobody(200);
}

#[test]
fn a_thousand_connections_held_by_nobody_stop_no_one() {
    held_by_nobody(1000);
}

#[test]
fn stale_socket_is_replaced_and_non_sockets_are_refused() {
    let dir = temp_dir("stale");
    let path = dir.join("s.sock");
    drop(UnixListener::bind(&path).unwrap()); // leaves the file, nobody listening
    assert!(bind(&path).is_ok());
    let file = dir.join("plain");
    std::fs::write(&file, b"x").unwrap();
    assert!(bind(&file).unwrap_err().0.contains("not a socket"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An API whose one packet worker holds `n` connection entries (no traffic: the entries are
/// put in the table directly) and answers listing requests as a worker does, between
/// "batches" (worker.rs: `listing::collect` on each request).
fn api_with_entries(n: u32) -> Arc<Api> {
    use ipvs::conn::{Conn, ConnAddrs, ConnTable};
    let (tx, rx) = std::sync::mpsc::channel::<crate::listing::ConnRequest>();
    std::thread::spawn(move || {
        let mut t = ConnTable::new(n as usize);
        for i in 0..n {
            let a = ConnAddrs {
                caddr: std::net::IpAddr::V4(std::net::Ipv4Addr::from(0x0a80_0000 + i)),
                vaddr: "10.0.0.100".parse().unwrap(),
                daddr: "192.168.1.11".parse().unwrap(),
            };
            let mut c = Conn::new(6, (1024 + i % 60000) as u16, 80, 8080);
            c.state = 1;
            c.timeout = 900;
            c.expires = 900_000;
            t.insert(a, c).unwrap();
        }
        while let Ok(req) = rx.recv() {
            let _ = req.reply.send(crate::listing::collect(&t, 0, &req.filter, req.from, req.limit));
        }
    });
    let node = node::Node::new(Arc::new(ipvs::Ipvs::new(100)), node::NetState::default());
    let sizes: Arc<[AtomicUsize]> = vec![AtomicUsize::new(0)].into();
    let admin =
        Arc::new(Admin::new(node, Arc::new(RateTable::default()), Box::new(|_| false), vec![tx], sizes, None, vec![]));
    let ops = Arc::new(Operator::new(admin.clone(), None));
    Arc::new(Api { admin, ops })
}

/// `GET /v1/connections` at 200 000 entries (twice what one worker used to return): every
/// entry, once, streamed; a filter applied across every page.
#[test]
fn the_listing_is_complete_at_200_000_entries() {
    let n = 200_000u32;
    let dir = temp_dir("list");
    let path = dir.join("s.sock");
    let l = bind(&path).unwrap();
    let a = api_with_entries(n);
    let p = path.clone();
    std::thread::spawn(move || serve(l, a, p));
    let c = control::client::Client::new(&path);
    let t0 = Instant::now();
    let r = c.request_full("GET", "/v1/connections", None).unwrap();
    let took = t0.elapsed();
    assert_eq!(r.status, 200);
    assert!(r.headers.iter().any(|(k, v)| k == "transfer-encoding" && v == "chunked"), "streamed");
    let conns: Vec<control::api::ConnView> = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(conns.len(), n as usize, "every entry");
    let unique: std::collections::HashSet<_> = conns.iter().map(|v| v.caddr).collect();
    assert_eq!(unique.len(), n as usize, "each once");
    eprintln!("200 000 entries listed in {took:?} ({} bytes)", r.body.len());
    let f = ConnFilter { state: Some("SYN_RECV".into()), ..Default::default() };
    assert_eq!(c.connections_listing(&f).unwrap().0.len(), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A worker that stops answering half-way: the streamed answer is cut short (no last
/// chunk), and the client fails rather than taking half a listing for the whole.
#[test]
fn a_listing_cut_half_way_fails_in_the_client() {
    let (tx, rx) = std::sync::mpsc::channel::<crate::listing::ConnRequest>();
    std::thread::spawn(move || {
        // One page, "more to come", then the worker is gone.
        if let Ok(req) = rx.recv() {
            let r = crate::listing::ConnRecord {
                caddr: "198.51.100.7".parse().unwrap(),
                vaddr: "10.0.0.100".parse().unwrap(),
                daddr: "192.168.1.11".parse().unwrap(),
                cport: 1000,
                vport: 80,
                dport: 80,
                protocol: 6,
                state: 1,
                flags: 0,
                expires_secs: 900,
                fwmark: 0,
            };
            let list = crate::listing::ConnList { records: vec![r], truncated: true, next: 1, pe_data: Vec::new() };
            let _ = req.reply.send(list);
        }
    });
    let node = node::Node::new(Arc::new(ipvs::Ipvs::new(100)), node::NetState::default());
    let sizes: Arc<[AtomicUsize]> = vec![AtomicUsize::new(0)].into();
    let admin =
        Arc::new(Admin::new(node, Arc::new(RateTable::default()), Box::new(|_| false), vec![tx], sizes, None, vec![]));
    let ops = Arc::new(Operator::new(admin.clone(), None));
    let dir = temp_dir("cut");
    let path = dir.join("s.sock");
    let l = bind(&path).unwrap();
    let p = path.clone();
    std::thread::spawn(move || serve(l, Arc::new(Api { admin, ops }), p));
    // Whether the server had sent the head before the worker went is a race: either way the
    // client must fail, never return the one record as the whole listing.
    let e = control::client::Client::new(&path).connections().unwrap_err();
    let e = e.to_string();
    assert!(e.contains("cut short") || e.contains("connection closed"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_body_that_must_be_an_object_refuses_an_array() {
    use control::ops::ReloadRequest;
    assert_eq!(super::json_object::<ReloadRequest>(b"{}").unwrap(), ReloadRequest::default());
    assert_eq!(super::json_object::<ReloadRequest>(br#"{"path":"/x"}"#).unwrap().path.as_deref(), Some("/x"));
    // serde alone takes a struct from an array of its fields; the API does not.
    assert!(serde_json::from_slice::<ReloadRequest>(br#"["/x"]"#).is_ok());
    let e = super::json_object::<ReloadRequest>(br#"["/x"]"#).unwrap_err();
    assert!(e.to_string().contains("expected a JSON object"), "{e}");
}
