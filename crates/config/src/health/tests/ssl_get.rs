//! SSL_GET (in process, rustls) against a real `openssl s_server` on 127.0.0.1 with
//! certificates made by `openssl` in the test: up, server stopped → down within the timing
//! bound, restarted → up; the digest rule over TLS; an attempt bounded by connect_timeout;
//! SNI in the ClientHello and the server choosing its certificate by it; `verify` with the
//! right and a wrong CA; a client certificate with a clear and an encrypted key. Skipped
//! with a note when `openssl` is not installed.

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
        let cert = (self.dir.join("cert.pem").display().to_string(), self.dir.join("key.pem").display().to_string());
        self.start_with(&cert, &[]);
    }
    fn start_with(&mut self, (cert, key): &(String, String), extra: &[&str]) {
        let child = Command::new("openssl")
            .args(["s_server", "-quiet", "-WWW", "-accept", &format!("127.0.0.1:{}", self.port)])
            .args(["-cert", cert, "-key", key])
            .args(extra)
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
/// connect_timeout 1.
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
fn ssl_get_attempt_is_bounded_by_connect_timeout_and_sends_sni() {
    // A TCP server that never speaks TLS: the handshake waits for a ServerHello forever.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (check, target) = ssl_check(port, "", "enable_sni\n sni_name sni-probe.example\n");
    let t0 = Instant::now();
    let out = probe::probe(&check, &target, 1);
    let took = t0.elapsed();
    assert!(matches!(&out, probe::Outcome::Down(r) if r.contains("timed out")), "{out:?}");
    assert!(took >= Duration::from_millis(900) && took <= Duration::from_millis(1000) + SLACK, "{took:?}");
    // The attempt's connection is closed when it gives up: the server reads EOF at once.
    let (mut c, _) = l.accept().unwrap();
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut hello = Vec::new();
    assert!(c.read_to_end(&mut hello).is_ok(), "the connection is closed");
    assert!(hello.first() == Some(&0x16), "a TLS handshake record was sent");
    assert!(contains(&hello, b"sni-probe.example"), "the ClientHello carries the SNI name");

    // Without enable_sni the name is not sent, even with a virtualhost.
    let (check, target) = ssl_check(port, "", "enable_sni off\n virtualhost sni-probe.example\n");
    let h = std::thread::spawn(move || probe::probe(&check, &target, 1));
    let (mut c, _) = l.accept().unwrap();
    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut hello = Vec::new();
    assert!(c.read_to_end(&mut hello).is_ok());
    assert!(!hello.is_empty() && !contains(&hello, b"sni-probe.example"), "no SNI without enable_sni");
    assert!(!h.join().unwrap().is_up());

    // Nothing listening: refused.
    drop(l);
    let (check, target) = ssl_check(port, "", "");
    let out = probe::probe(&check, &target, 1);
    assert!(matches!(&out, probe::Outcome::Down(r) if r.contains("refused")), "{out:?}");
}

#[test]
fn ssl_get_verify_refuses_a_wrong_ca_only_when_asked() {
    if !have_openssl() {
        return;
    }
    let dir = tmpdir("ssl-verify");
    let pki = Pki::new(&dir);
    let srv = s_server(&dir, &pki.server_a, &[]);
    let port = srv.port;
    let probe_with = |ssl_block: &str, get: &str| {
        let (check, target) = ssl_check(port, ssl_block, get);
        probe::probe(&check, &target, 1)
    };
    let (ca_a, ca_b) = (pki.ca_a.display(), pki.ca_b.display());
    let sni = "enable_sni\n sni_name rs.test\n";

    // keepalived's default: no verification, whatever the CA file says.
    assert!(probe_with(&format!("ca {ca_b}"), sni).is_up(), "not verified by default");
    // Verified against the right CA, for the SNI name or for the address.
    assert!(probe_with(&format!("ca {ca_a}\n verify"), sni).is_up());
    assert!(probe_with(&format!("ca {ca_a}"), "verify\n").is_up(), "the IP SAN");
    // A wrong CA, a wrong name, the platform store (which does not know our CA): refused.
    let out = probe_with(&format!("ca {ca_b}\n verify"), sni);
    assert!(matches!(&out, probe::Outcome::Down(r) if r.contains("UnknownIssuer")), "{out:?}");
    let out = probe_with(&format!("ca {ca_a}\n verify"), "enable_sni\n sni_name other.test\n");
    assert!(matches!(&out, probe::Outcome::Down(r) if r.contains("not valid for name")), "{out:?}");
    let out = probe_with("verify", sni);
    assert!(matches!(&out, probe::Outcome::Down(r) if r.contains("certificate")), "{out:?}");
}

#[test]
fn ssl_get_sni_picks_the_servers_certificate() {
    if !have_openssl() {
        return;
    }
    let dir = tmpdir("ssl-sni");
    let pki = Pki::new(&dir);
    // Default certificate from CA B; for SNI "rs.test" the one from CA A (`-cert2`).
    let extra = ["-servername", "rs.test", "-cert2", &pki.server_a.0, "-key2", &pki.server_a.1];
    let srv = s_server(&dir, &pki.server_b, &extra);
    let block = format!("ca {}\n verify", pki.ca_a.display());
    let (check, target) = ssl_check(srv.port, &block, "enable_sni\n sni_name rs.test\n");
    assert!(probe::probe(&check, &target, 1).is_up(), "the server saw SNI rs.test and showed CA A's certificate");
    let (check, target) = ssl_check(srv.port, &block, "enable_sni off\n sni_name rs.test\n");
    let out = probe::probe(&check, &target, 1);
    assert!(matches!(&out, probe::Outcome::Down(r) if r.contains("UnknownIssuer")), "without SNI: {out:?}");
}

#[test]
fn ssl_get_presents_the_client_certificate() {
    if !have_openssl() {
        return;
    }
    let dir = tmpdir("ssl-client");
    let pki = Pki::new(&dir);
    // The server demands a client certificate issued by CA A.
    let ca_a = pki.ca_a.display().to_string();
    let srv = s_server(&dir, &pki.server_a, &["-Verify", "1", "-verify_return_error", "-CAfile", &ca_a]);
    let (cert, key) = &pki.client_a;
    let ok = |block: &str| {
        let (check, target) = ssl_check(srv.port, block, "");
        probe::probe(&check, &target, 1)
    };
    assert!(ok(&format!("certificate {cert}\n key {key}")).is_up());
    assert!(!ok("").is_up(), "no client certificate: refused by the server");
    // An encrypted key with its password (decrypted once when the check starts).
    let enc = dir.join("client-enc.key").display().to_string();
    run(&["openssl", "pkey", "-in", key, "-aes256", "-passout", "pass:s3cret", "-out", &enc]);
    assert!(ok(&format!("certificate {cert}\n key {enc}\n password s3cret")).is_up());
    let out = ok(&format!("certificate {cert}\n key {enc}\n password wrong"));
    assert!(matches!(&out, probe::Outcome::Down(r) if r.contains("cannot decrypt")), "{out:?}");
}

#[test]
fn ssl_get_needs_tls_1_2() {
    if !have_openssl() {
        return;
    }
    // The difference from keepalived's OpenSSL named in docs/semantics.md: rustls speaks
    // TLS 1.2 and 1.3 only, so a real server stuck at TLS 1.1 fails the check, with the reason.
    let dir = tmpdir("ssl-tls11");
    let pki = Pki::new(&dir);
    let old = s_server(&dir, &pki.server_a, &["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"]);
    let (check, target) = ssl_check(old.port, "", "");
    let out = probe::probe(&check, &target, 1);
    assert!(matches!(&out, probe::Outcome::Down(r) if r.starts_with("TLS: ")), "{out:?}");
    println!("SSL_GET against a TLS 1.1 server: {out:?}");
    let new = s_server(&dir, &pki.server_a, &["-tls1_2"]);
    let (check, target) = ssl_check(new.port, "", "");
    assert!(probe::probe(&check, &target, 1).is_up());
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn run(argv: &[&str]) {
    let st = Command::new(argv[0]).args(&argv[1..]).stdout(Stdio::null()).stderr(Stdio::null()).status();
    assert!(st.is_ok_and(|s| s.success()), "{argv:?} failed");
}

/// One SSL_GET check of a keepalived file (top-level `SSL { ssl_block }`, `get` inside
/// SSL_GET) against 127.0.0.1:`port`, connect_timeout 1 s.
fn ssl_check(port: u16, ssl_block: &str, get: &str) -> (crate::model::Check, probe::Target) {
    let text = format!(
        "SSL {{\n {ssl_block}\n}}\nvirtual_server 10.0.0.1 443 {{\n lvs_sched rr\n lvs_method NAT\n protocol TCP\n\
         connect_timeout 1\n real_server 127.0.0.1 {port} {{\n  SSL_GET {{\n   url {{\n    path /health.txt\n   }}\n\
         {get}\n  }}\n }}\n}}\n"
    );
    let cfg = keepalived::import_str(&text, "k.conf").unwrap();
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    let check = cfg.services[0].reals[0].checks[0].clone();
    (check, probe::Target { addr: SocketAddr::from(([127, 0, 0, 1], port)), bind: None })
}

/// Two CAs (EC P-256, made by `openssl` here) and the certificates they sign:
/// `server_a` (CA A, names rs.test and 127.0.0.1), `server_b` (CA B, same names),
/// `client_a` (CA A, a client certificate). Pairs are (certificate, key) paths.
struct Pki {
    ca_a: PathBuf,
    ca_b: PathBuf,
    server_a: (String, String),
    server_b: (String, String),
    client_a: (String, String),
}

impl Pki {
    fn new(dir: &Path) -> Pki {
        let p = |n: &str| dir.join(n).display().to_string();
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1"];
        for ca in ["ca-a", "ca-b"] {
            let (k, c, subj) = (p(&format!("{ca}.key")), p(&format!("{ca}.pem")), format!("/CN=rvs test {ca}"));
            run(&[&["openssl", "req", "-x509"], &ec[..], &["-subj", &subj, "-keyout", &k, "-out", &c]].concat());
        }
        std::fs::write(dir.join("server.ext"), "subjectAltName=DNS:rs.test,IP:127.0.0.1\n").unwrap();
        std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
        let sign = |name: &str, ca: &str, ext: &str| {
            let (k, csr, c) = (p(&format!("{name}.key")), p(&format!("{name}.csr")), p(&format!("{name}.pem")));
            run(&[&["openssl", "req"], &ec[..], &["-subj", &format!("/CN={name}"), "-keyout", &k, "-out", &csr]]
                .concat());
            let (cac, cak, extf) = (p(&format!("{ca}.pem")), p(&format!("{ca}.key")), p(ext));
            let x509 = ["openssl", "x509", "-req", "-CAcreateserial", "-days", "1", "-in", &csr, "-out", &c];
            run(&[&x509[..], &["-CA", &cac, "-CAkey", &cak, "-extfile", &extf]].concat());
            (c, k)
        };
        Pki {
            ca_a: dir.join("ca-a.pem"),
            ca_b: dir.join("ca-b.pem"),
            server_a: sign("server-a", "ca-a", "server.ext"),
            server_b: sign("server-b", "ca-b", "server.ext"),
            client_a: sign("client-a", "ca-a", "client.ext"),
        }
    }
}

/// `openssl s_server -WWW` with `cert` and `extra` arguments, serving `health.txt`.
fn s_server(dir: &Path, cert: &(String, String), extra: &[&str]) -> TlsServer {
    std::fs::create_dir_all(dir.join("doc")).unwrap();
    std::fs::write(dir.join("doc/health.txt"), "ok\n").unwrap();
    let mut s = TlsServer { dir: dir.to_path_buf(), port: free_port(), child: None };
    s.start_with(cert, extra);
    s
}
