//! The real binary against a fake daemon on a temporary Unix socket.

use control::api::{ApiError, Command, ErrorKind, Snapshot, Timeouts};
use control::http;
use std::io::{BufReader, Write};
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

/// Serves `n` requests, recording (method, target, body); answers from `answer`.
fn recording_daemon(
    path: &PathBuf,
    n: usize,
    answer: fn(&str) -> (u16, Vec<u8>),
) -> std::thread::JoinHandle<Vec<(String, String, Vec<u8>)>> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path).expect("bind");
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        for _ in 0..n {
            let (s, _) = listener.accept().expect("accept");
            let req = http::read_request(&mut BufReader::new(&s)).expect("request");
            let (status, body) = answer(&req.path);
            http::write_response(&mut &s, status, "application/json", &body).expect("write");
            seen.push((req.method, req.path, req.body));
        }
        seen
    })
}

#[test]
fn rvs_extensions_filter_drain_and_top() {
    let path = sock("ext");
    let server = recording_daemon(&path, 4, |target| {
        if target.starts_with("/v1/connections") {
            let c = control::api::ConnView {
                proto: 6,
                caddr: "198.51.100.7".parse().unwrap(),
                cport: 40000,
                vaddr: "10.0.0.1".parse().unwrap(),
                vport: 80,
                daddr: "192.168.1.2".parse().unwrap(),
                dport: 8080,
                state: "ESTABLISHED".into(),
                expires_secs: 899,
                template: false,
                one_packet: false,
                fwmark: 0,
                pe_name: None,
                pe_data: None,
                synced: false,
            };
            (200, serde_json::to_vec(&vec![c]).unwrap())
        } else if target == "/v1/drain" {
            let e = ApiError::new(ErrorKind::NoSuchDest, "no");
            (404, serde_json::to_vec(&e).unwrap())
        } else if target == "/v1/snapshot" {
            let snap = Snapshot {
                version: "1.2.1".into(),
                conn_tab_size: 4096,
                services: vec![],
                timeouts: Timeouts::default(),
                daemons: vec![],
            };
            (200, serde_json::to_vec(&snap).unwrap())
        } else {
            (200, b"\"Done\"".to_vec())
        }
    });
    let run = |args: &[&str]| Proc::new(bin()).arg("--socket").arg(&path).args(args).output().expect("run");
    let out =
        run(&["-Lnc", "-t", "10.0.0.1:80", "--filter-server", "192.168.1.2:8080", "--filter-state", "ESTABLISHED"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("TCP 14:59  ESTABLISHED 198.51.100.7:40000 10.0.0.1:80        192.168.1.2:8080"), "{text}");
    let out = run(&["--drain", "-t", "10.0.0.1:80", "-r", "192.168.1.2:8080", "--drain-timeout", "30"]);
    assert_eq!(out.status.code(), Some(255));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "No such destination\n");
    let out = run(&["top", "--once"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("rvs top — 0 services"), "{out:?}");
    let out = run(&["-Ln"]);
    assert_eq!(out.status.code(), Some(0));
    let seen = server.join().unwrap();
    assert_eq!(seen[0].1, "/v1/connections?service=tcp%3A10.0.0.1%3A80&server=192.168.1.2%3A8080&state=ESTABLISHED");
    assert_eq!(seen[1].0, "POST");
    let drain: serde_json::Value = serde_json::from_slice(&seen[1].2).unwrap();
    assert_eq!(drain["timeout_secs"], 30);
    assert_eq!(drain["port"], 8080);
    assert_eq!(seen[2].1, "/v1/snapshot");
    assert_eq!(seen[3].1, "/v1/snapshot", "plain listings are untouched");
}

/// A listing the daemon says is incomplete, or whose stream is cut short, is never printed as
/// if whole: a message on stderr and a non-zero exit. A refusal shows the server's status and
/// message.
#[test]
fn an_incomplete_listing_or_a_refusal_fails_loudly() {
    let refusal = r#"{"kind":"Unavailable","message":"too many connections from uid 1000"}"#;
    let answers = [
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Rvs-Truncated: true\r\nContent-Length: 2\r\n\r\n[]"
            .to_string(),
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n[\r\n".to_string(),
        format!("HTTP/1.1 503 Service Unavailable\r\nContent-Length: {}\r\n\r\n{refusal}", refusal.len()),
    ];
    for (k, answer) in answers.iter().enumerate() {
        let path = sock(&format!("trunc{k}"));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).expect("bind");
        let answer = answer.clone().into_bytes();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            let req = http::read_request(&mut BufReader::new(&s)).expect("request");
            s.write_all(&answer).expect("write");
            req.path
        });
        let out = Proc::new(bin()).arg("--socket").arg(&path).args(["-Lnc"]).output().expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{out:?}");
        assert!(out.stdout.is_empty(), "nothing printed as if whole: {out:?}");
        match k {
            0 => assert!(err.contains("listing is incomplete"), "{err}"),
            1 => assert!(err.contains("cut short"), "{err}"),
            _ => assert_eq!(
                err.trim(),
                "rvsadm: server refused the request: 503 Service Unavailable: too many connections from uid 1000"
            ),
        }
        assert_eq!(server.join().unwrap(), "/v1/connections");
        let _ = std::fs::remove_file(&path);
    }
}

/// `rvsadm -L -n -c` of 200 000 entries streamed in chunks (as rvsd streams a listing): every
/// entry printed, exit 0.
#[test]
fn a_streamed_listing_of_200_000_entries_is_printed_whole() {
    const N: u32 = 200_000;
    let path = sock("big");
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).expect("bind");
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let req = http::read_request(&mut BufReader::new(&s)).expect("request");
        let mut w = std::io::BufWriter::new(&mut s);
        w.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap();
        let mut chunk = String::from("[");
        for i in 0..N {
            if i > 0 {
                chunk.push(',');
            }
            chunk.push_str(&format!(
                r#"{{"proto":6,"caddr":"10.{}.{}.{}","cport":{},"vaddr":"10.0.0.100","vport":80,"daddr":"192.168.1.11","dport":8080,"state":"ESTABLISHED","expires_secs":899,"template":false,"one_packet":false,"fwmark":0,"pe_name":null,"pe_data":null}}"#,
                128 + (i >> 16),
                (i >> 8) & 255,
                i & 255,
                1024 + i % 60000
            ));
            if chunk.len() > 1 << 20 || i == N - 1 {
                if i == N - 1 {
                    chunk.push(']');
                }
                write!(w, "{:x}\r\n{chunk}\r\n", chunk.len()).unwrap();
                chunk.clear();
            }
        }
        w.write_all(b"0\r\n\r\n").unwrap();
        req.path
    });
    let out = Proc::new(bin()).arg("--socket").arg(&path).args(["-L", "-n", "-c"]).output().expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let entries = text.lines().filter(|l| l.starts_with("TCP ")).count();
    assert_eq!(entries, N as usize, "every entry printed");
    assert!(text.lines().any(|l| l.contains("10.131.13.63:")), "the last entry too");
    assert_eq!(server.join().unwrap(), "/v1/connections");
    let _ = std::fs::remove_file(&path);
}
