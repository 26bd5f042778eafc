//! One attempt of each checker (keepalived.md §6, "probe and success rule"). Every
//! attempt is bounded by the check's connect_timeout (MISC_CHECK: misc_timeout).

use super::md5::Md5;
use super::{script, sock};
use crate::model::*;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Where to probe and from where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddr,
    pub bind: Option<SocketAddr>,
}

impl Target {
    /// The target of `check` on real server `rs` whose effective port is `port`.
    pub fn of(check: &Check, rs: &RealServer, port: u16) -> Self {
        let ip = check.connect_ip.unwrap_or(rs.addr);
        let addr = SocketAddr::new(ip, check.connect_port.unwrap_or(port));
        let bind = match (check.bindto, check.bind_port) {
            (None, None) => None,
            (a, p) => Some(SocketAddr::new(a.unwrap_or(sock::any_of(&ip, 0).ip()), p.unwrap_or(0))),
        };
        Target { addr, bind }
    }
}

/// The result of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Passed; `Some(w)` sets the weight (MISC_CHECK misc_dynamic).
    Up(Option<u32>),
    /// Failed, with the reason for the event log.
    Down(String),
}

impl Outcome {
    pub fn is_up(&self) -> bool {
        matches!(self, Outcome::Up(_))
    }
}

/// A small random number (payloads, DNS ids, warmup); not for security.
pub fn random_u64() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(Instant::now())
}

/// Runs one attempt of `check` against `t`. `weight` is the configured weight
/// (misc_dynamic exit 0 restores it).
pub fn probe(check: &Check, t: &Target, weight: u32) -> Outcome {
    let timeout = check.timing.connect_timeout;
    let r = match &check.kind {
        CheckKind::Tcp => sock::tcp_connect(t.addr, t.bind, timeout).map(|_| None),
        CheckKind::Http(h) => match &check.tls {
            None => http(h, t, timeout).map(|_| None),
            Some(tls) => super::tls::get(h, tls, t, timeout).map(|_| None),
        },
        CheckKind::Misc(m) => return misc(m, check.timing.delay_loop, weight),
        CheckKind::Udp(u) => udp(u, t, timeout).map(|_| None),
        CheckKind::Ping => ping(t, timeout).map(|_| None),
        CheckKind::Dns(d) => dns(d, t, timeout).map(|_| None),
        CheckKind::Smtp { helo_name } => smtp(helo_name, t, timeout).map(|_| None),
    };
    match r {
        Ok(w) => Outcome::Up(w),
        Err(e) => Outcome::Down(e.to_string()),
    }
}

pub(super) fn fail(msg: impl Into<String>) -> io::Error {
    io::Error::other(msg.into())
}

/// Time left before `deadline`, or a timeout error.
pub(super) fn left(deadline: Instant) -> io::Result<Duration> {
    let d = deadline.saturating_duration_since(Instant::now());
    if d.is_zero() { Err(io::Error::new(io::ErrorKind::TimedOut, "timed out")) } else { Ok(d) }
}

/// `Host:` value without a virtualhost: `ip:port`, IPv6 bracketed.
pub(super) fn host_header(a: &SocketAddr) -> String {
    match a.ip() {
        IpAddr::V4(v4) => format!("{v4}:{}", a.port()),
        IpAddr::V6(v6) => format!("[{v6}]:{}", a.port()),
    }
}

/// The request keepalived sends (keepalived.md §6 HTTP_GET).
pub fn http_request(path: &str, version: HttpVersion, host: &str) -> String {
    let (v, close) = match version {
        HttpVersion::V10 => ("1.0", false),
        HttpVersion::V10Close => ("1.0", true),
        HttpVersion::V11 => ("1.1", true),
    };
    let close = if close { "Connection: close\r\n" } else { "" };
    format!("GET {path} HTTP/{v}\r\nUser-Agent: KeepAliveClient\r\n{close}Host: {host}\r\n\r\n")
}

/// Largest response read (head and body).
const MAX_RESPONSE: usize = 16 << 20;

fn http(h: &HttpCheck, t: &Target, timeout: Duration) -> io::Result<()> {
    each_url(h, t, timeout, |request, _vhost, deadline| {
        let mut s = sock::tcp_connect(t.addr, t.bind, left(deadline)?)?;
        s.set_write_timeout(Some(left(deadline)?))?;
        s.write_all(request.as_bytes())?;
        read_response(|buf| {
            s.set_read_timeout(Some(left(deadline)?))?;
            s.read(buf)
        })
    })
}

/// HTTP_GET and SSL_GET (keepalived.md §6): every URL on its own connection, within
/// `timeout` each. `fetch(request, virtualhost, deadline)` sends the request over the
/// check's transport and returns the raw response; the verdict (status list, MD5
/// digest) is the same for both.
pub(super) fn each_url(
    h: &HttpCheck,
    t: &Target,
    timeout: Duration,
    mut fetch: impl FnMut(&str, Option<&str>, Instant) -> io::Result<Vec<u8>>,
) -> io::Result<()> {
    for url in &h.urls {
        let deadline = Instant::now() + timeout;
        let vhost = url.virtualhost.as_deref().or(h.virtualhost.as_deref());
        let host = vhost.map_or_else(|| host_header(&t.addr), str::to_owned);
        let resp = fetch(&http_request(&url.path, h.version, &host), vhost, deadline)?;
        judge(url, &resp)?;
    }
    Ok(())
}

/// Reads a response with `read` (which enforces the deadline) until its Content-Length
/// is complete or EOF.
pub(super) fn read_response(mut read: impl FnMut(&mut [u8]) -> io::Result<usize>) -> io::Result<Vec<u8>> {
    let mut resp = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match read(&mut buf) {
            Ok(0) => return Ok(resp),
            Ok(n) => {
                resp.extend_from_slice(&buf[..n]);
                if resp.len() > MAX_RESPONSE {
                    return Err(fail("response too large"));
                }
                if response_complete(&resp) {
                    return Ok(resp);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The verdict on one URL's response: status in the list, body digest if one is set.
fn judge(url: &UrlCheck, resp: &[u8]) -> io::Result<()> {
    let (code, body) = parse_response(resp).ok_or_else(|| fail("malformed HTTP response"))?;
    if !url.status_ok(code) {
        return Err(fail(format!("{}: status {code}", url.path)));
    }
    if let Some(want) = url.digest {
        let mut m = Md5::default();
        m.update(&body);
        let got = m.finish();
        if got != want {
            return Err(fail(format!("{}: digest {} differs", url.path, super::md5::hex(&got))));
        }
    }
    Ok(())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Header value (case-insensitive name) from the response head.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// True once a Content-Length body is complete (otherwise read to EOF).
fn response_complete(resp: &[u8]) -> bool {
    let Some(end) = find(resp, b"\r\n\r\n") else { return false };
    let head = String::from_utf8_lossy(&resp[..end]);
    match header(&head, "content-length").and_then(|v| v.parse::<usize>().ok()) {
        Some(len) => resp.len() >= end + 4 + len,
        None => false,
    }
}

/// Status code and body (chunked bodies decoded).
pub fn parse_response(resp: &[u8]) -> Option<(u16, Vec<u8>)> {
    let end = find(resp, b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&resp[..end]);
    let status_line = head.lines().next()?;
    let mut parts = status_line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    let code: u16 = parts.next()?.parse().ok()?;
    let mut body = resp[end + 4..].to_vec();
    if header(&head, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        body = dechunk(&body)?;
    } else if let Some(len) = header(&head, "content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.truncate(len);
    }
    Some((code, body))
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = find(b, b"\r\n")?;
        let size_str = std::str::from_utf8(&b[..eol]).ok()?;
        let size = usize::from_str_radix(size_str.split(';').next()?.trim(), 16).ok()?;
        b = &b[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

fn misc(m: &MiscCheck, delay_loop: Duration, weight: u32) -> Outcome {
    let timeout = m.timeout.unwrap_or(delay_loop);
    match script::run_with_timeout(&m.path, timeout) {
        None => Outcome::Down(format!("{}: timed out or could not run", m.path)),
        Some(st) => match st.code() {
            Some(0) => Outcome::Up(m.dynamic.then_some(weight)),
            Some(c @ 2..=255) if m.dynamic => Outcome::Up(Some(c as u32 - 2)),
            Some(c) => Outcome::Down(format!("{}: exit status {c}", m.path)),
            None => Outcome::Down(format!("{}: killed by a signal", m.path)),
        },
    }
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        out.extend_from_slice(&random_u64().to_le_bytes());
    }
    out.truncate(n);
    out
}

/// UDP_CHECK: an ICMP error (ECONNREFUSED and friends on the connected socket) fails;
/// otherwise a reply or silence passes, unless `require_reply` asks for a reply.
fn udp(u: &UdpCheck, t: &Target, timeout: Duration) -> io::Result<()> {
    let s = sock::udp_connect(t.addr, t.bind, timeout)?;
    let payload = u.payload.clone().unwrap_or_else(|| random_bytes(16));
    s.send(&payload)?;
    let mut buf = vec![0u8; 65536];
    match s.recv(&mut buf) {
        Ok(n) => match &u.require_reply {
            None => Ok(()),
            Some(pat) => {
                let r = &buf[..n];
                if n < u.min_reply_length || n > u.max_reply_length {
                    return Err(fail(format!(
                        "reply length {n} outside {}..{}",
                        u.min_reply_length, u.max_reply_length
                    )));
                }
                let ok = pat.len() <= n && pat.iter().zip(r).all(|((m, v), b)| b & m == *v);
                if ok { Ok(()) } else { Err(fail("reply does not match")) }
            }
        },
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
            if u.require_reply.is_some() { Err(fail("no reply")) } else { Ok(()) }
        }
        Err(e) => Err(e),
    }
}

/// RFC 1071 checksum.
fn checksum(b: &[u8]) -> u16 {
    let mut sum: u32 = b.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// PING_CHECK: one ICMP echo request, success on the matching echo reply.
fn ping(t: &Target, timeout: Duration) -> io::Result<()> {
    let ip = t.addr.ip();
    let (s, raw) = sock::icmp_socket(&ip)?;
    s.connect(SocketAddr::new(ip, 0))?;
    let id = random_u64() as u16;
    let seq = (random_u64() >> 16) as u16;
    let (req_type, reply_type) = if ip.is_ipv4() { (8u8, 0u8) } else { (128u8, 129u8) };
    let mut pkt = vec![req_type, 0, 0, 0];
    pkt.extend_from_slice(&id.to_be_bytes());
    pkt.extend_from_slice(&seq.to_be_bytes());
    pkt.extend_from_slice(b"rvs-health-check");
    if ip.is_ipv4() {
        let c = checksum(&pkt);
        pkt[2..4].copy_from_slice(&c.to_be_bytes());
    }
    s.send(&pkt)?;
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 2048];
    loop {
        s.set_read_timeout(Some(left(deadline)?))?;
        let n = s.recv(&mut buf)?;
        let mut icmp = &buf[..n];
        if raw && ip.is_ipv4() {
            let ihl = usize::from(icmp.first().map_or(0, |b| b & 0x0f)) * 4;
            icmp = icmp.get(ihl..).unwrap_or(&[]);
        }
        // Datagram ICMP sockets rewrite the id; the sequence number identifies the reply.
        if icmp.len() >= 8
            && icmp[0] == reply_type
            && icmp[6..8] == seq.to_be_bytes()
            && (!raw || icmp[4..6] == id.to_be_bytes())
        {
            return Ok(());
        }
    }
}

/// DNS_CHECK: a query with RD; passes on a reply with our id, QR = 1, RCODE = 0.
fn dns(d: &DnsCheck, t: &Target, timeout: Duration) -> io::Result<()> {
    let s = sock::udp_connect(t.addr, t.bind, timeout)?;
    let id = random_u64() as u16;
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in d.name.split('.').filter(|l| !l.is_empty()) {
        let l = label.as_bytes();
        if l.len() > 63 {
            return Err(fail("DNS label longer than 63"));
        }
        q.push(l.len() as u8);
        q.extend_from_slice(l);
    }
    q.push(0);
    q.extend_from_slice(&d.qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    s.send(&q)?;
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    loop {
        s.set_read_timeout(Some(left(deadline)?))?;
        let n = s.recv(&mut buf)?;
        if n >= 12 && buf[0..2] == id.to_be_bytes() {
            let (qr, rcode) = (buf[2] & 0x80 != 0, buf[3] & 0x0f);
            return if qr && rcode == 0 { Ok(()) } else { Err(fail(format!("DNS rcode {rcode}"))) };
        }
    }
}

/// Reads one SMTP reply (multi-line aware) and returns its code.
fn smtp_reply(s: &mut std::net::TcpStream, deadline: Instant) -> io::Result<u16> {
    let mut data = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        s.set_read_timeout(Some(left(deadline)?))?;
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Err(fail("connection closed"));
        }
        data.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&data);
        if let Some(last) = text.split("\r\n").filter(|l| l.len() >= 4).find(|l| l.as_bytes()[3] == b' ') {
            return last[..3].parse().map_err(|_| fail("malformed SMTP reply"));
        }
        if data.len() > 65536 {
            return Err(fail("SMTP reply too long"));
        }
    }
}

fn smtp(helo: &str, t: &Target, timeout: Duration) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut s = sock::tcp_connect(t.addr, t.bind, timeout)?;
    if smtp_reply(&mut s, deadline)? != 220 {
        return Err(fail("no 220 greeting"));
    }
    s.set_write_timeout(Some(left(deadline)?))?;
    s.write_all(format!("HELO {helo}\r\n").as_bytes())?;
    if smtp_reply(&mut s, deadline)? != 250 {
        return Err(fail("HELO not accepted"));
    }
    let _ = s.write_all(b"QUIT\r\n");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_format() {
        assert_eq!(
            http_request("/h", HttpVersion::V10, "10.0.0.1:80"),
            "GET /h HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\nHost: 10.0.0.1:80\r\n\r\n"
        );
        assert_eq!(
            http_request("/", HttpVersion::V11, "x"),
            "GET / HTTP/1.1\r\nUser-Agent: KeepAliveClient\r\nConnection: close\r\nHost: x\r\n\r\n"
        );
        let v6: SocketAddr = "[2001:db8::1]:8080".parse().unwrap();
        assert_eq!(host_header(&v6), "[2001:db8::1]:8080");
    }

    #[test]
    fn responses() {
        assert_eq!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA"), Some((200, b"ok".to_vec())));
        assert_eq!(
            parse_response(b"HTTP/1.1 503 X\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n1;x=y\r\nc\r\n0\r\n\r\n"),
            Some((503, b"abc".to_vec()))
        );
        assert_eq!(parse_response(b"SSH-2.0\r\n\r\n"), None);
        assert_eq!(parse_response(b"HTTP/1.0 200"), None);
        assert!(response_complete(b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n"));
        assert!(!response_complete(b"HTTP/1.0 200 OK\r\n\r\nbody"));
    }

    #[test]
    fn icmp_checksum() {
        // Echo request, id 0x1234 seq 1, no payload: checksum over 08 00 00 00 12 34 00 01.
        assert_eq!(checksum(&[8, 0, 0, 0, 0x12, 0x34, 0, 1]), !(0x0800u16 + 0x1234 + 1));
    }
}
