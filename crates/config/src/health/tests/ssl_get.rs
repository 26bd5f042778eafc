//! SSL_GET against a real `openssl s_server` on 127.0.0.1 with a self-signed
//! certificate: up, server stopped → down within the timing bound, restarted → up; the
//! digest rule over TLS; an attempt bounded by connect_timeout (the s_client child is
//! killed). Skipped with a note when `openssl` is not installed.

use super::*;
use crate::keepalived;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};

fn have_openssl() -> bool {
    let ok = Command::new("openssl").arg("version").stdout(Stdio::null()).status().is_ok_and(|s| s.success());
    if !ok {
        println!("note: `openssl` not found (Debian package openssl): SSL_GET test skipped");
    }
    ok
}

/// A self-signed certificate and key in `dir`.
fn certificate(dir: &Path) {
    let st = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=test", "-days", "1"])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl req");
    assert!(st.success(), "openssl req failed");
}

/// `openssl s_server -WWW` serving the files of `dir/doc`; killed on drop.
struct TlsServer {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl TlsServer {
    fn new(dir: &Path) -> TlsServer {
        std::fs::create_dir_all(dir.join("doc")).unwrap();
        let mut s = TlsServer { dir: dir.to_path_buf(), port: free_port(), child: None };
        s.start();
        s
    }
    /// Starts the server and waits until it accepts connections.
    fn start(&mut self) {
        let child = Command::new("openssl")
            .args(["s_server", "-quiet", "-WWW", "-accept", &format!("127.0.0.1:{}", self.port)])
            .arg("-cert")
            .arg(self.dir.join("cert.pem"))
            .arg("-key")
            .arg(self.dir.join("key.pem"))
            .current_dir(self.dir.join("doc"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_server");
        self.child = Some(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        assert!(
            wait_for(Duration::from_secs(5), || TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok()),
            "s_server did not start"
        );
    }
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
    fn serve(&self, name: &str, body: &str) {
        std::fs::write(self.dir.join("doc").join(name), body).unwrap();
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// keepalived's timers of these tests: delay_loop 0.2, retry 1, delay_before_retry 0.2,
/// connect_timeout 1 (an attempt spawns s_client and does a handshake).
fn ssl_config(port: u16, digest: &str) -> Config {
    let text = format!(
        "virtual_server 10.0.0.1 443 {{\n lvs_sched rr\n lvs_method NAT\n protocol TCP\n\
         delay_loop 0.2\n retry 1\n delay_before_retry 0.2\n connect_timeout 1\n warmup 0\n\
         real_server 127.0.0.1 {port} {{\n  SSL_GET {{\n   url {{\n    path /health.txt\n    digest {digest}\n   }}\n\
         enable_sni\n   sni_name test\n  }}\n }}\n}}\n"
    );
    let cfg = keepalived::import_str(&text, "k.conf").unwrap();
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    cfg
}

#[test]
fn ssl_get_detects_failure_and_recovery_in_time() {
    if !have_openssl() {
        return;
    }
    let dir = tmpdir("ssl");
    certificate(&dir);
    let mut srv = TlsServer::new(&dir);
    srv.serve("health.txt", "ok\n");
    let digest = super::super::md5::hex(&super::super::md5::md5(b"ok\n"));
    let log = Log::default();
    let engine = Engine::start(&ssl_config(srv.port, &digest), log.apply());
    warm(&engine, 0, 0);
    let st = engine.status();
    assert!(st.services[0].reals[0].up && st.services[0].reals[0].checks_failed == 0, "{st:?}");
    assert!(log.commands().is_empty(), "a healthy server changes nothing");

    // delay_loop + (retry + 1) × connect_timeout + retry × delay_before_retry (module docs).
    let down_bound = Duration::from_millis(200 + 2 * 1000 + 200) + SLACK;
    let t0 = Instant::now();
    srv.stop();
    let d = log.wait(t0, Duration::from_secs(10), is_delete(srv.port)).expect("failure detected");
    println!("SSL_GET: server stopped, detected after {d:?} (bound {down_bound:?})");
    assert!(d <= down_bound, "detected after {d:?}");

    // delay_loop + connect_timeout.
    let up_bound = Duration::from_millis(200 + 1000) + SLACK;
    srv.start();
    let t1 = Instant::now();
    let d = log.wait(t1, Duration::from_secs(10), is_add(srv.port, 1)).expect("recovery detected");
    println!("SSL_GET: server restarted, recovered after {d:?} (bound {up_bound:?})");
    assert!(d <= up_bound, "recovered after {d:?}");

    // The HTTP_GET digest rule, over TLS.
    let t2 = Instant::now();
    srv.serve("health.txt", "changed\n");
    log.wait(t2, Duration::from_secs(10), is_delete(srv.port)).expect("digest mismatch is a failure");
    assert!(wait_for(Duration::from_secs(1), || !engine.status().services[0].reals[0].up));
    let reason = engine.status().events.iter().rev().find_map(|e| match &e.kind {
        EventKind::RealDown { reason } => Some(reason.clone()),
        _ => None,
    });
    assert!(reason.as_deref().unwrap_or_default().contains("digest"), "{reason:?}");
    let t3 = Instant::now();
    srv.serve("health.txt", "ok\n");
    log.wait(t3, Duration::from_secs(10), is_add(srv.port, 1)).expect("digest right again");

    let r = &engine.status().services[0].reals[0];
    assert_eq!((r.transitions_down, r.transitions_up), (2, 2));
    engine.stop();
}

#[test]
fn ssl_get_attempt_is_bounded_and_the_child_killed() {
    if !have_openssl() {
        return;
    }
    // A TCP server that never speaks TLS: s_client waits for a ServerHello forever.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let cfg = ssl_config(port, "00000000000000000000000000000000");
    let check = &cfg.services[0].reals[0].checks[0];
    let target = probe::Target { addr: SocketAddr::from(([127, 0, 0, 1], port)), bind: None };
    let t0 = Instant::now();
    let out = probe::probe(check, &target, 1);
    let took = t0.elapsed();
    assert!(matches!(&out, probe::Outcome::Down(r) if r.contains("timed out")), "{out:?}");
    assert!(took >= Duration::from_millis(900) && took <= Duration::from_millis(1000) + SLACK, "{took:?}");
    // The connection was closed with the killed child: the server reads EOF at once.
    let (mut c, _) = l.accept().unwrap();
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut hello = Vec::new();
    assert!(c.read_to_end(&mut hello).is_ok(), "the s_client connection is closed");
    assert!(hello.first() == Some(&0x16), "a TLS handshake record was sent");

    // Nothing listening: refused, with s_client's reason.
    drop(l);
    let out = probe::probe(check, &target, 1);
    assert!(matches!(&out, probe::Outcome::Down(r) if r.contains("errno=111") || r.contains("refused")), "{out:?}");
}
