//! SSL_GET's transport (keepalived.md §6 "as HTTP_GET over TLS"), in process with rustls:
//! one TCP connection and TLS handshake per URL, every socket call bounded by what is left
//! of the attempt's connect_timeout. The verdict (status list, MD5 digest) is HTTP_GET's
//! (`probe::each_url`).
//!
//! Certificates: keepalived loads the `SSL { ca }` file but never asks OpenSSL to verify
//! the server (no `SSL_VERIFY_PEER` in its check_ssl.c), so a check asks whether the
//! service answers, not whether it is trusted; that is the default here too. `verify`
//! (an rvs extension) turns verification on: against `ca` when given, else the platform's
//! CA store, for the name the check would send as SNI, else the server's address.

use super::probe::{self, Target, fail, left};
use crate::model::{HttpCheck, Tls};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme, StreamOwned};
use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::net::{IpAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Environment variable carrying the key's pass phrase to `openssl pkey` (`-passin env:…`),
/// so that it does not show in the process list.
const PASS_ENV: &str = "RVS_SSL_KEY_PASSWORD";

thread_local! {
    /// The client configuration of this checker thread's check, built on its first
    /// attempt: files are read once per check, as keepalived reads them once per
    /// (re)load (a reload starts new checker threads). A failed build is not kept, so a
    /// missing file fails every attempt with its reason until it appears.
    static CLIENT: RefCell<Option<(Tls, Arc<ClientConfig>)>> = const { RefCell::new(None) };
}

/// One SSL_GET attempt: every URL over its own TLS connection.
pub(super) fn get(h: &HttpCheck, tls: &Tls, t: &Target, timeout: Duration) -> io::Result<()> {
    let config = client(tls)?;
    probe::each_url(h, t, timeout, |request, vhost, deadline| fetch(&config, tls, t, request, vhost, deadline))
}

fn client(tls: &Tls) -> io::Result<Arc<ClientConfig>> {
    CLIENT.with_borrow_mut(|slot| {
        if let Some((_, c)) = slot.as_ref().filter(|(k, _)| k == tls) {
            return Ok(c.clone());
        }
        let c = Arc::new(client_config(tls)?);
        *slot = Some((tls.clone(), c.clone()));
        Ok(c)
    })
}

/// ring's provider: the post-quantum key exchange it lacks (the reason rustls deprecates
/// it) protects long-lived secrets, not a health check's one request to a real server.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The TLS client of one check: TLS 1.2 and 1.3, the server verified only with `verify`,
/// the client certificate when `certificate` is given, SNI only with `enable_sni`.
pub fn client_config(tls: &Tls) -> io::Result<ClientConfig> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(format!("TLS: {e}")))?;
    let builder = if tls.verify {
        builder.with_root_certificates(roots(tls.ca.as_deref())?)
    } else {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
    };
    let mut config = match &tls.certificate {
        None => builder.with_no_client_auth(),
        Some(cert) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| fail(format!("SSL certificate {cert}: {e}")))?;
            // keepalived reads the key from `key`; a file holding both works without it.
            let key = private_key(tls.key.as_deref().unwrap_or(cert), tls.password.as_deref())?;
            builder.with_client_auth_cert(chain, key).map_err(|e| fail(format!("SSL certificate {cert}: {e}")))?
        }
    };
    config.enable_sni = tls.enable_sni;
    Ok(config)
}

/// Loads the files of an SSL_GET as its checker would (for `rvsd --check`), the `ca` file
/// too when not verifying, as keepalived refuses to start on a CA file it cannot load.
pub fn check_files(tls: &Tls) -> Result<(), String> {
    let t = Tls { verify: tls.verify || tls.ca.is_some(), ..tls.clone() };
    client_config(&t).map(drop).map_err(|e| e.to_string())
}

/// Trust anchors for `verify`: the `ca` file, else the platform's store
/// (`SSL_CERT_FILE` / `SSL_CERT_DIR` honoured, else the system bundle).
fn roots(ca: Option<&str>) -> io::Result<RootCertStore> {
    let mut store = RootCertStore::empty();
    let certs = match ca {
        Some(f) => CertificateDer::pem_file_iter(f)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| fail(format!("SSL ca {f}: {e}")))?,
        None => rustls_native_certs::load_native_certs().certs,
    };
    let (added, _ignored) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(fail(format!("SSL ca {}: no usable CA certificate", ca.unwrap_or("(platform store)"))));
    }
    Ok(store)
}

/// The client key (PEM). An encrypted key is decrypted once, when the check starts, by
/// `openssl pkey` (rustls reads only clear keys); the pass phrase goes through the
/// environment, never the command line.
fn private_key(path: &str, password: Option<&str>) -> io::Result<PrivateKeyDer<'static>> {
    let bad = |e: &dyn std::fmt::Display| fail(format!("SSL key {path}: {e}"));
    let mut pem = std::fs::read(path).map_err(|e| bad(&e))?;
    if pem.windows(9).any(|w| w == b"ENCRYPTED") {
        let Some(p) = password else { return Err(bad(&"encrypted, and the SSL block has no password")) };
        let out = Command::new("openssl")
            .args(["pkey", "-passin", &format!("env:{PASS_ENV}"), "-in", path])
            .env(PASS_ENV, p)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .map_err(|e| bad(&format_args!("cannot run openssl pkey to decrypt it: {e}")))?;
        if !out.status.success() {
            return Err(bad(&"cannot decrypt it with the password"));
        }
        pem = out.stdout;
    }
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| bad(&e))
}

/// keepalived's verifier: any certificate is accepted (the check is about the service
/// answering), but the handshake signatures are still checked with the certificate's key.
#[derive(Debug)]
struct AnyServer(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The server's name for this URL: `sni_name`, else the URL's or check's virtualhost,
/// when it is a DNS name (RFC 6066 §3: never an address literal); else the address. It is
/// sent as SNI only with `enable_sni`, and is what `verify` checks the certificate for.
pub fn server_name(tls: &Tls, vhost: Option<&str>, addr: IpAddr) -> ServerName<'static> {
    tls.sni_name
        .as_deref()
        .or(vhost)
        .filter(|n| !n.is_empty() && n.parse::<IpAddr>().is_err())
        .and_then(|n| ServerName::try_from(n.to_owned()).ok())
        .unwrap_or(ServerName::IpAddress(addr.into()))
}

/// A socket whose every read and write ends by `deadline`.
struct Deadlined {
    sock: TcpStream,
    deadline: Instant,
}

/// A socket timeout (EAGAIN) as the check's "timed out".
fn timed(e: io::Error) -> io::Error {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => io::Error::new(io::ErrorKind::TimedOut, "timed out"),
        _ => e,
    }
}

impl Read for Deadlined {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.sock.set_read_timeout(Some(left(self.deadline)?))?;
        self.sock.read(buf).map_err(timed)
    }
}

impl Write for Deadlined {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sock.set_write_timeout(Some(left(self.deadline)?))?;
        self.sock.write(buf).map_err(timed)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Sends `request` over a new TLS connection and returns the raw reply.
fn fetch(
    config: &Arc<ClientConfig>,
    tls: &Tls,
    t: &Target,
    request: &str,
    vhost: Option<&str>,
    deadline: Instant,
) -> io::Result<Vec<u8>> {
    let tag = |e: io::Error| match e.kind() {
        io::ErrorKind::TimedOut => io::Error::new(e.kind(), "TLS: timed out"),
        _ => fail(format!("TLS: {e}")),
    };
    let sock = super::sock::tcp_connect(t.addr, t.bind, left(deadline)?).map_err(tag)?;
    let conn = ClientConnection::new(config.clone(), server_name(tls, vhost, t.addr.ip()))
        .map_err(|e| fail(format!("TLS: {e}")))?;
    let mut s = StreamOwned::new(conn, Deadlined { sock, deadline });
    // The first write runs the handshake.
    s.write_all(request.as_bytes()).and_then(|()| s.flush()).map_err(tag)?;
    let resp = probe::read_response(|buf| match s.read(buf) {
        // A server that closes without close_notify (many do) has still answered.
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
        r => r,
    })
    .map_err(tag)?;
    // keepalived's tls_compliant: say goodbye properly; the verdict does not wait for it.
    s.conn.send_close_notify();
    let _ = s.conn.complete_io(&mut s.sock);
    if resp.is_empty() { Err(fail("TLS: no response")) } else { Ok(resp) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(tls: &Tls, vhost: Option<&str>) -> String {
        match server_name(tls, vhost, "10.0.0.1".parse().unwrap()) {
            ServerName::DnsName(d) => d.as_ref().to_owned(),
            ServerName::IpAddress(a) => format!("ip {:?}", IpAddr::from(a)),
            _ => "other".into(),
        }
    }

    #[test]
    fn server_name_choice() {
        let tls = |n: Option<&str>| Tls { enable_sni: true, sni_name: n.map(Into::into), ..Tls::default() };
        assert_eq!(name(&tls(Some("a.example")), Some("b.example")), "a.example");
        assert_eq!(name(&tls(None), Some("b.example")), "b.example");
        assert_eq!(name(&tls(None), None), "ip 10.0.0.1");
        assert_eq!(name(&tls(None), Some("10.0.0.2")), "ip 10.0.0.1", "no address literal as a name");
        assert_eq!(name(&tls(None), Some("not a name")), "ip 10.0.0.1", "an invalid DNS name is not sent");
    }

    #[test]
    fn sni_only_with_enable_sni() {
        assert!(client_config(&Tls { enable_sni: true, ..Tls::default() }).unwrap().enable_sni);
        assert!(!client_config(&Tls::default()).unwrap().enable_sni);
    }

    #[test]
    fn bad_files_are_clear_errors() {
        let e = client_config(&Tls { verify: true, ca: Some("/nonexistent/ca.pem".into()), ..Tls::default() });
        assert!(e.as_ref().is_err_and(|e| e.to_string().contains("SSL ca /nonexistent/ca.pem")), "{e:?}");
        let e = client_config(&Tls { certificate: Some("/nonexistent/c.pem".into()), ..Tls::default() });
        assert!(e.as_ref().is_err_and(|e| e.to_string().contains("SSL certificate /nonexistent/c.pem")), "{e:?}");
        // The CA file is only read when verifying, as keepalived never verifies.
        assert!(client_config(&Tls { ca: Some("/nonexistent/ca.pem".into()), ..Tls::default() }).is_ok());
    }
}
