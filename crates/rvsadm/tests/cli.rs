//! The real binary against a fake daemon on a temporary Unix socket.

use control::api::{ApiError, Command, ErrorKind, Snapshot, Timeouts};
use control::http;
use std::io::BufReader;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::Command as Proc;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_rvsadm")
}

fn sock(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rvsadm-cli-{}-{name}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    dir.join("rvsd.sock")
}

/// Serves `n` requests: snapshots are empty, AddService fails with ServiceExists.
fn fake_daemon(path: &PathBuf, n: usize) -> std::thread::JoinHandle<Vec<Command>> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path).expect("bind");
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        for _ in 0..n {
            let (s, _) = listener.accept().expect("accept");
            let req = http::read_request(&mut BufReader::new(&s)).expect("request");
            let (status, body) = match req.path.as_str() {
                "/v1/snapshot" => {
                    let snap = Snapshot {
                        version: "1.2.1".into(),
                        conn_tab_size: 4096,
                        services: vec![],
                        timeouts: Timeouts { tcp: 900, tcpfin: 60, udp: 300 },
                        daemons: vec![],
                    };
                    (200, serde_json::to_vec(&snap).expect("json"))
                }
                _ => {
                    let cmd: Command = serde_json::from_slice(&req.body).expect("command");
                    let failing = matches!(cmd, Command::AddService(_));
                    seen.push(cmd);
                    if failing {
                        let e = ApiError::new(ErrorKind::ServiceExists, "exists");
                        (409, serde_json::to_vec(&e).expect("json"))
                    } else {
                        (200, b"\"Done\"".to_vec())
                    }
                }
            };
            http::write_response(&mut &s, status, "application/json", &body).expect("write");
        }
        seen
    })
}

#[test]
fn argument_errors_need_no_daemon() {
    let out =
        Proc::new(bin()).args(["-A", "-t", "10.0.0.1:0", "--socket", "/nonexistent/rvsd.sock"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(out.stderr, b"Zero port specified for non-persistent service\n");
}

#[test]
fn unreachable_daemon_exits_2() {
    let out = Proc::new(bin()).args(["-C"]).env("RVS_SOCKET", "/nonexistent/rvsd.sock").output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("Can't initialize ipvs: "), "{err}");
    assert!(err.contains("/nonexistent/rvsd.sock"), "{err}");
}

#[test]
fn listing_and_commands_through_the_socket() {
    let path = sock("list");
    let server = fake_daemon(&path, 3);
    let out = Proc::new(bin()).args(["-Ln", "--socket", path.to_str().expect("utf8")]).output().expect("run");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "IP Virtual Server version 1.2.1 (size=4096)\n\
         Prot LocalAddress:Port Scheduler Flags\n\
         \x20 -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"
    );
    let out = Proc::new(bin()).args(["-A", "-t", "10.0.0.1:80"]).env("RVS_SOCKET", &path).output().expect("run");
    assert_eq!(out.status.code(), Some(255));
    assert_eq!(out.stderr, b"Service already exists\n");
    let out = Proc::new(bin()).args(["--set", "0", "60", "0"]).env("RVS_SOCKET", &path).output().expect("run");
    assert_eq!(out.status.code(), Some(0));
    let seen = server.join().expect("server");
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1], Command::SetTimeouts(Timeouts { tcp: 0, tcpfin: 60, udp: 0 }));
    let _ = std::fs::remove_file(&path);
}
