//! SSL_GET's transport (keepalived.md §6 "as HTTP_GET over TLS"): each attempt runs the
//! system's `openssl s_client` as a child process, writes the HTTP_GET request to its
//! stdin and reads the reply from its stdout, so rvs needs no TLS library. The verdict
//! (status list, MD5 digest) is HTTP_GET's (`probe::each_url`).
//!
//! Like keepalived, the server certificate is not verified (no `-verify_return_error`):
//! the check asks whether the service answers, not whether it is trusted. The child is
//! killed when the attempt's connect_timeout runs out.

use super::probe::{self, Target, fail, left};
use crate::model::{HttpCheck, Tls};
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The program run (found on `PATH`; Debian package `openssl`).
pub const OPENSSL: &str = "openssl";

/// Environment variable carrying the key's pass phrase to the child (`-pass env:…`), so
/// that it does not show in the process list.
const PASS_ENV: &str = "RVS_SSL_KEY_PASSWORD";

/// Most of s_client's stderr kept for the failure reason.
const MAX_STDERR: u64 = 4096;

/// One SSL_GET attempt: every URL over its own TLS connection.
pub(super) fn get(h: &HttpCheck, tls: &Tls, t: &Target, timeout: Duration) -> io::Result<()> {
    probe::each_url(h, t, timeout, |request, vhost, deadline| fetch(tls, t, request, vhost, deadline))
}

/// The SNI name sent: with `enable_sni`, `sni_name`, else the URL's or check's
/// virtualhost. Address literals are never sent (RFC 6066 §3).
fn sni_name<'a>(tls: &'a Tls, vhost: Option<&'a str>) -> Option<&'a str> {
    if !tls.enable_sni {
        return None;
    }
    tls.sni_name.as_deref().or(vhost).filter(|n| !n.is_empty() && n.parse::<IpAddr>().is_err())
}

/// The s_client command of one connection. `-quiet` prints only the application data
/// and ignores the end of stdin, so the reply is read until the server closes.
pub fn command(tls: &Tls, t: &Target, vhost: Option<&str>) -> Command {
    let mut c = Command::new(OPENSSL);
    c.args(["s_client", "-quiet", "-connect"]).arg(probe::host_header(&t.addr));
    match sni_name(tls, vhost) {
        Some(n) => c.arg("-servername").arg(n),
        None => c.arg("-noservername"),
    };
    if let Some(b) = t.bind {
        c.arg("-bind").arg(probe::host_header(&b));
    }
    if let Some(ca) = &tls.ca {
        c.arg("-CAfile").arg(ca);
    }
    if let Some(cert) = &tls.certificate {
        c.arg("-cert").arg(cert);
    }
    if let Some(key) = &tls.key {
        c.arg("-key").arg(key);
    }
    if let Some(p) = &tls.password {
        c.env(PASS_ENV, p).arg("-pass").arg(format!("env:{PASS_ENV}"));
    }
    c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

/// Sends `request` over a new TLS connection and returns the raw reply.
fn fetch(tls: &Tls, t: &Target, request: &str, vhost: Option<&str>, deadline: Instant) -> io::Result<Vec<u8>> {
    let mut child = command(tls, t, vhost).spawn().map_err(|e| fail(format!("cannot run {OPENSSL} s_client: {e}")))?;
    let result = exchange(&mut child, request, deadline);
    // Done, failed or out of time: the child goes (a no-op if it has exited).
    let _ = child.kill();
    let _ = child.wait();
    let mut stderr = String::new();
    if let Some(e) = child.stderr.take() {
        let _ = e.take(MAX_STDERR).read_to_string(&mut stderr);
    }
    match result {
        Ok(resp) if !resp.is_empty() => Ok(resp),
        Ok(_) => Err(fail(format!("TLS: no response ({})", reason(&stderr)))),
        Err(e) if e.kind() == io::ErrorKind::TimedOut => Err(io::Error::new(e.kind(), "TLS: timed out")),
        Err(e) => Err(fail(format!("TLS: {e} ({})", reason(&stderr)))),
    }
}

fn exchange(child: &mut Child, request: &str, deadline: Instant) -> io::Result<Vec<u8>> {
    if let Some(mut stdin) = child.stdin.take() {
        // The pipe holds the (small) request until s_client is connected. A failed write
        // means s_client has exited; its stderr says why.
        let _ = stdin.write_all(request.as_bytes());
    }
    let mut out = child.stdout.take().ok_or_else(|| fail("s_client without stdout"))?;
    probe::read_response(|buf| {
        wait_readable(&out, left(deadline)?)?;
        out.read(buf)
    })
}

/// Waits until `fd` is readable (data or EOF) for at most `within`.
fn wait_readable(fd: &impl AsRawFd, within: Duration) -> io::Result<()> {
    let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    let ms = within.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
    // SAFETY: poll(2) on one valid pollfd that outlives the call.
    match unsafe { libc::poll(&mut p, 1, ms) } {
        0 => Err(io::Error::new(io::ErrorKind::TimedOut, "timed out")),
        n if n < 0 => Err(io::Error::last_os_error()),
        _ => Ok(()),
    }
}

/// The useful line of s_client's stderr: the last one that is not certificate-verify
/// chatter (which does not fail the check).
fn reason(stderr: &str) -> String {
    let chatter = |l: &str| l.starts_with("depth=") || l.starts_with("verify ");
    let line = stderr.lines().map(str::trim).rfind(|l| !l.is_empty() && !chatter(l));
    line.unwrap_or("s_client said nothing").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn args(c: &Command) -> Vec<String> {
        c.get_args().map(|a| a.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn command_line() {
        let t = Target { addr: "10.0.0.1:443".parse().unwrap(), bind: None };
        let plain = command(&Tls::default(), &t, Some("www.example"));
        assert_eq!(args(&plain), ["s_client", "-quiet", "-connect", "10.0.0.1:443", "-noservername"]);

        let tls = Tls {
            enable_sni: true,
            sni_name: None,
            ca: Some("/etc/ca.pem".into()),
            certificate: Some("/etc/c.pem".into()),
            key: Some("/etc/k.pem".into()),
            password: Some("secret".into()),
        };
        let b: SocketAddr = "[2001:db8::2]:0".parse().unwrap();
        let t6 = Target { addr: "[2001:db8::1]:8443".parse().unwrap(), bind: Some(b) };
        let c = command(&tls, &t6, Some("www.example"));
        let a = args(&c);
        assert_eq!(
            a,
            [
                "s_client",
                "-quiet",
                "-connect",
                "[2001:db8::1]:8443",
                "-servername",
                "www.example",
                "-bind",
                "[2001:db8::2]:0",
                "-CAfile",
                "/etc/ca.pem",
                "-cert",
                "/etc/c.pem",
                "-key",
                "/etc/k.pem",
                "-pass",
                "env:RVS_SSL_KEY_PASSWORD"
            ]
        );
        assert!(!a.iter().any(|x| x.contains("secret")), "the pass phrase is not an argument");
        assert!(c.get_envs().any(|(k, v)| k == PASS_ENV && v == Some("secret".as_ref())));
        assert!(!a.iter().any(|x| x == "-verify_return_error"), "keepalived does not verify");
    }

    #[test]
    fn sni_choice() {
        let on = |name: Option<&str>| Tls { enable_sni: true, sni_name: name.map(Into::into), ..Tls::default() };
        assert_eq!(sni_name(&on(Some("a.example")), Some("b.example")), Some("a.example"));
        assert_eq!(sni_name(&on(None), Some("b.example")), Some("b.example"));
        assert_eq!(sni_name(&on(None), None), None);
        assert_eq!(sni_name(&on(None), Some("10.0.0.1")), None, "no address literal");
        assert_eq!(sni_name(&Tls::default(), Some("b.example")), None, "only with enable_sni");
    }

    #[test]
    fn failure_reason_skips_verify_chatter() {
        let e = "40C7:error:8000006F:system library:BIO_connect:Connection refused\nconnect:errno=111\n";
        assert_eq!(reason(e), "connect:errno=111");
        assert_eq!(reason("depth=0 CN = test\nverify error:num=18:self-signed certificate\n"), "s_client said nothing");
    }
}
