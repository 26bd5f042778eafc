//! Minimal HTTP/1.1 framing: the client side of the control API (`rvsadm`, one request per
//! connection; responses framed by `Content-Length`, chunked encoding or the end of the
//! stream) and the metrics listener's requests (framed by `Content-Length` only). The API
//! server itself is hyper (rvsd's server.rs).
//!
//! Why hand-rolled here: the client is blocking and tiny, and rvsadm stays free of an async
//! runtime.

use std::io::{self, BufRead, Read, Write};
use std::time::{Duration, Instant};

/// Largest request/status line plus headers accepted.
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest body accepted (a snapshot of a big table still fits comfortably). Responses;
/// a server takes much less in a request ([`MAX_REQUEST_BODY`]).
pub const MAX_BODY: usize = 64 * 1024 * 1024;
/// Largest request body a server should take (commands, reload and drain requests are a few
/// hundred bytes): checked against `Content-Length` before anything of the body is read.
pub const MAX_REQUEST_BODY: usize = 1024 * 1024;
/// Most header lines accepted.
pub const MAX_HEADERS: usize = 64;

/// Header list: lower-cased names, trimmed values, in order.
pub type Headers = Vec<(String, String)>;

/// One parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Header names lower-cased, values trimmed.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }
}

/// The start line and headers of a request, its body not read yet: a server checks
/// authentication and the announced length before taking the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: String,
    pub path: String,
    /// Header names lower-cased, values trimmed.
    pub headers: Headers,
    /// `Content-Length` (0 without one).
    pub content_length: usize,
}

impl RequestHead {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }
}

/// One parsed response (client side).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Why a message could not be read. `status()` is what a server should answer.
#[derive(Debug)]
pub enum HttpError {
    /// The peer closed the stream before sending anything (normal end of keep-alive).
    Closed,
    Io(io::Error),
    /// Head larger than `MAX_HEAD` or more than `MAX_HEADERS` lines.
    HeadTooLarge,
    /// Content-Length above the limit.
    BodyTooLarge(usize),
    /// Anything that is not HTTP/1.x as we speak it.
    Malformed(String),
    /// A feature we do not implement (chunked transfer encoding).
    Unsupported(String),
    /// The message did not arrive before its deadline (or the socket's read timeout).
    Timeout,
}

impl HttpError {
    /// Status code a server answers with (0 for `Closed`/`Io`: nothing to answer).
    pub fn status(&self) -> u16 {
        match self {
            HttpError::Closed | HttpError::Io(_) => 0,
            HttpError::HeadTooLarge => 431,
            HttpError::BodyTooLarge(_) => 413,
            HttpError::Malformed(_) => 400,
            HttpError::Unsupported(_) => 501,
            HttpError::Timeout => 408,
        }
    }
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::Closed => write!(f, "connection closed"),
            HttpError::Io(e) => write!(f, "{e}"),
            HttpError::HeadTooLarge => write!(f, "header section too large"),
            HttpError::BodyTooLarge(n) => write!(f, "body too large ({n} bytes)"),
            HttpError::Malformed(m) => write!(f, "malformed HTTP message: {m}"),
            HttpError::Unsupported(m) => write!(f, "unsupported: {m}"),
            HttpError::Timeout => write!(f, "timed out waiting for the peer"),
        }
    }
}

impl std::error::Error for HttpError {}

impl From<io::Error> for HttpError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => HttpError::Timeout,
            _ => HttpError::Io(e),
        }
    }
}

/// A stream whose read timeout can be set (Unix and TCP streams).
pub trait ReadTimeout: Read {
    fn set_read_timeout(&self, d: Option<Duration>) -> io::Result<()>;
}

impl ReadTimeout for &std::os::unix::net::UnixStream {
    fn set_read_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        std::os::unix::net::UnixStream::set_read_timeout(self, d)
    }
}

impl ReadTimeout for &std::net::TcpStream {
    fn set_read_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        std::net::TcpStream::set_read_timeout(self, d)
    }
}

/// Reads with one deadline for the whole message: before every read the stream's timeout is
/// set to the time left, so a peer trickling a byte at a time cannot hold the connection past
/// it (a per-read timeout alone restarts with every byte). Past the deadline reads fail with
/// `TimedOut` ([`HttpError::Timeout`]).
pub struct DeadlineReader<S> {
    stream: S,
    deadline: Instant,
}

impl<S: ReadTimeout> DeadlineReader<S> {
    pub fn new(stream: S, deadline: Instant) -> Self {
        DeadlineReader { stream, deadline }
    }
}

impl<S: ReadTimeout> Read for DeadlineReader<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"));
        }
        self.stream.set_read_timeout(Some(left))?;
        self.stream.read(buf)
    }
}

/// Reads one CRLF- (or LF-) terminated line, counting it against `budget`.
fn read_line<R: BufRead>(r: &mut R, budget: &mut usize) -> Result<Option<String>, HttpError> {
    let mut buf = Vec::new();
    loop {
        let avail = r.fill_buf()?;
        if avail.is_empty() {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(HttpError::Malformed("unexpected end of stream".into()))
            };
        }
        let (take, done) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (avail.len(), false),
        };
        if take > *budget {
            return Err(HttpError::HeadTooLarge);
        }
        *budget -= take;
        buf.extend_from_slice(&avail[..take]);
        r.consume(take);
        if done {
            break;
        }
    }
    while matches!(buf.last(), Some(b'\n' | b'\r')) {
        buf.pop();
    }
    String::from_utf8(buf).map(Some).map_err(|_| HttpError::Malformed("non-UTF-8 header".into()))
}

/// Reads the header lines after the start line; returns them with the announced body length
/// (`None`: no `Content-Length`). Chunked transfer encoding is refused (requests).
fn read_headers<R: BufRead>(r: &mut R, budget: &mut usize) -> Result<(Headers, Option<usize>), HttpError> {
    let (headers, len, chunked) = read_headers_te(r, budget)?;
    if chunked {
        return Err(HttpError::Unsupported("transfer-encoding chunked".into()));
    }
    Ok((headers, len))
}

/// [`read_headers`], also telling whether the body is chunked (any other transfer coding
/// is refused).
fn read_headers_te<R: BufRead>(r: &mut R, budget: &mut usize) -> Result<(Headers, Option<usize>, bool), HttpError> {
    let mut headers = Vec::new();
    loop {
        let line = read_line(r, budget)?.ok_or_else(|| HttpError::Malformed("end of stream in headers".into()))?;
        if line.is_empty() {
            break;
        }
        if headers.len() >= MAX_HEADERS {
            return Err(HttpError::HeadTooLarge);
        }
        let (name, value) =
            line.split_once(':').ok_or_else(|| HttpError::Malformed(format!("bad header line {line:?}")))?;
        let name = name.trim();
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(HttpError::Malformed(format!("bad header name {name:?}")));
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
    let find = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let chunked = match find("transfer-encoding") {
        Some(te) if te.eq_ignore_ascii_case("chunked") => true,
        Some(te) if te.eq_ignore_ascii_case("identity") => false,
        Some(te) => return Err(HttpError::Unsupported(format!("transfer-encoding {te}"))),
        None => false,
    };
    let len = match find("content-length") {
        Some(v) => Some(v.parse().map_err(|_| HttpError::Malformed(format!("bad content-length {v:?}")))?),
        None => None,
    };
    Ok((headers, len, chunked))
}

/// Largest response body the client takes: a streamed listing of millions of entries.
pub const MAX_RESPONSE_BODY: usize = 4 << 30;

/// Reads a chunked body (RFC 9112 §7.1) up to `max` bytes; a stream that ends before the
/// last chunk is an error (the server cut its answer short).
fn read_chunked<R: BufRead>(r: &mut R, max: usize) -> Result<Vec<u8>, HttpError> {
    let mut body = Vec::new();
    loop {
        let mut budget = 1024;
        let line = read_line(r, &mut budget)?.ok_or_else(|| HttpError::Malformed("answer cut short".into()))?;
        let size = line.split(';').next().unwrap_or("").trim();
        let n =
            usize::from_str_radix(size, 16).map_err(|_| HttpError::Malformed(format!("bad chunk size {size:?}")))?;
        if n == 0 {
            // Trailers, up to the empty line.
            let mut budget = MAX_HEAD;
            while read_line(r, &mut budget)?.is_some_and(|l| !l.is_empty()) {}
            return Ok(body);
        }
        if body.len() + n > max {
            return Err(HttpError::BodyTooLarge(body.len() + n));
        }
        let start = body.len();
        body.resize(start + n, 0);
        r.read_exact(&mut body[start..]).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                HttpError::Malformed("answer cut short".into())
            } else {
                HttpError::from(e)
            }
        })?;
        let mut budget = 2;
        match read_line(r, &mut budget)? {
            None => return Err(HttpError::Malformed("answer cut short".into())),
            Some(l) if !l.is_empty() => return Err(HttpError::Malformed("chunk not followed by CRLF".into())),
            Some(_) => {}
        }
    }
}

/// Reads a body of `len` bytes, refused (without reading it) above `max`.
fn read_exact_body<R: BufRead>(r: &mut R, len: usize, max: usize) -> Result<Vec<u8>, HttpError> {
    if len > max {
        return Err(HttpError::BodyTooLarge(len));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            HttpError::Malformed("body shorter than content-length".into())
        } else {
            HttpError::from(e)
        }
    })?;
    Ok(body)
}

/// Reads one request (bodies up to [`MAX_BODY`]). `Err(HttpError::Closed)` means the peer
/// closed cleanly. Servers use [`read_request_head`] and [`read_body`] instead.
pub fn read_request<R: BufRead>(r: &mut R) -> Result<Request, HttpError> {
    let head = read_request_head(r)?;
    let body = read_body(r, &head, MAX_BODY)?;
    Ok(Request { method: head.method, path: head.path, headers: head.headers, body })
}

/// Reads the body `head` announces; refused with [`HttpError::BodyTooLarge`] (413), before
/// any of it is read, when it is longer than `max`.
pub fn read_body<R: BufRead>(r: &mut R, head: &RequestHead, max: usize) -> Result<Vec<u8>, HttpError> {
    read_exact_body(r, head.content_length, max)
}

/// Reads the start line and headers of one request, not its body: the caller can refuse
/// (authentication, length) before reading it. `Err(HttpError::Closed)` means the peer
/// closed cleanly.
pub fn read_request_head<R: BufRead>(r: &mut R) -> Result<RequestHead, HttpError> {
    let mut budget = MAX_HEAD;
    // Tolerate stray empty lines before a request (RFC 9112 §2.2).
    let line = loop {
        match read_line(r, &mut budget)? {
            None => return Err(HttpError::Closed),
            Some(l) if l.is_empty() => continue,
            Some(l) => break l,
        }
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(path), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::Malformed(format!("bad request line {line:?}")));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(HttpError::Malformed(format!("bad version {version:?}")));
    }
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(HttpError::Malformed(format!("bad method {method:?}")));
    }
    if !path.starts_with('/') {
        return Err(HttpError::Malformed(format!("bad path {path:?}")));
    }
    let (headers, len) = read_headers(r, &mut budget)?;
    Ok(RequestHead { method: method.to_string(), path: path.to_string(), headers, content_length: len.unwrap_or(0) })
}

/// Reads one response (client side). Without Content-Length the body runs to EOF.
pub fn read_response<R: BufRead>(r: &mut R) -> Result<Response, HttpError> {
    let mut budget = MAX_HEAD;
    let line = read_line(r, &mut budget)?.ok_or(HttpError::Closed)?;
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let code = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(HttpError::Malformed(format!("bad status line {line:?}")));
    }
    let status: u16 = match code.parse() {
        Ok(s) if (100..1000).contains(&s) => s,
        _ => return Err(HttpError::Malformed(format!("bad status line {line:?}"))),
    };
    let (headers, len, chunked) = read_headers_te(r, &mut budget)?;
    let body = match len {
        _ if chunked => read_chunked(r, MAX_RESPONSE_BODY)?,
        Some(len) => read_exact_body(r, len, MAX_RESPONSE_BODY)?,
        None => {
            let mut body = Vec::new();
            io::Read::read_to_end(&mut io::Read::take(&mut *r, MAX_RESPONSE_BODY as u64 + 1), &mut body)?;
            if body.len() > MAX_RESPONSE_BODY {
                return Err(HttpError::BodyTooLarge(body.len()));
            }
            body
        }
    };
    Ok(Response { status, headers, body })
}

/// Standard reason phrase for the codes this API uses.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// `GET /v1/connections` response header (rvs): present, with the value `true`, when a
/// worker had more matching entries than it may return for one listing (100 000 per worker):
/// the listing is incomplete; narrow it with filters.
pub const TRUNCATED_HEADER: &str = "X-Rvs-Truncated";

/// Writes one complete response with a JSON (or other) body.
pub fn write_response<W: Write>(w: &mut W, status: u16, content_type: &str, body: &[u8]) -> io::Result<()> {
    write_response_with(w, status, content_type, &[], body)
}

/// [`write_response`] with extra header lines (name, value).
pub fn write_response_with<W: Write>(
    w: &mut W,
    status: u16,
    content_type: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\n", reason(status));
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    w.write_all(head.as_bytes())?;
    w.write_all(body)?;
    w.flush()
}

/// Writes one complete request (client side); `Connection: close` keeps it one-shot.
pub fn write_request<W: Write>(w: &mut W, method: &str, path: &str, body: Option<&[u8]>) -> io::Result<()> {
    write_request_with(w, method, path, &[], body)
}

/// [`write_request`] with extra header lines (name, value), e.g. `Authorization`.
pub fn write_request_with<W: Write>(
    w: &mut W,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> io::Result<()> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: rvsd\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(b) = body {
        head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", b.len()));
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes())?;
    if let Some(b) = body {
        w.write_all(b)?;
    }
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn parses_request_with_body() {
        let raw = b"POST /v1/command HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nabcdEXTRA";
        let mut c = Cursor::new(&raw[..]);
        let req = read_request(&mut c).expect("request");
        assert_eq!(req.method, "POST");
        assert_eq!(req.path, "/v1/command");
        assert_eq!(req.header("Host"), Some("x"));
        assert_eq!(req.body, b"abcd");
    }

    #[test]
    fn clean_close_and_garbage() {
        assert!(matches!(read_request(&mut Cursor::new(&b""[..])), Err(HttpError::Closed)));
        let e = read_request(&mut Cursor::new(&b"\x16\x03\x01garbage\r\n\r\n"[..])).unwrap_err();
        assert_eq!(e.status(), 400);
        let e = read_request(&mut Cursor::new(&b"GET / HTTP/1.1\r\nnocolon\r\n\r\n"[..])).unwrap_err();
        assert_eq!(e.status(), 400);
        let e = read_request(&mut Cursor::new(&b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc"[..])).unwrap_err();
        assert_eq!(e.status(), 400);
        let e =
            read_request(&mut Cursor::new(&b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"[..])).unwrap_err();
        assert_eq!(e.status(), 501);
    }

    #[test]
    fn limits() {
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', MAX_HEAD));
        big.extend_from_slice(b"\r\n\r\n");
        let e = read_request(&mut Cursor::new(&big[..])).unwrap_err();
        assert_eq!(e.status(), 431);
        let raw = format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", MAX_BODY + 1);
        let e = read_request(&mut Cursor::new(raw.as_bytes())).unwrap_err();
        assert_eq!(e.status(), 413);
    }

    #[test]
    fn the_head_comes_before_the_body_and_a_long_body_is_refused_unread() {
        let raw = b"POST /v1/command HTTP/1.1\r\nAuthorization: Bearer x\r\nContent-Length: 5000000\r\n\r\nabc";
        let mut c = Cursor::new(&raw[..]);
        let head = read_request_head(&mut c).expect("head");
        assert_eq!(head.header("authorization"), Some("Bearer x"));
        assert_eq!(head.content_length, 5_000_000);
        let e = read_body(&mut c, &head, MAX_REQUEST_BODY).unwrap_err();
        assert_eq!(e.status(), 413);
        assert_eq!(c.position() as usize, raw.len() - 3, "nothing of the body was read");
        let raw = b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
        let mut c = Cursor::new(&raw[..]);
        let head = read_request_head(&mut c).expect("head");
        assert_eq!(read_body(&mut c, &head, 3).expect("body"), b"abc");
    }

    #[test]
    fn a_trickling_peer_is_cut_at_the_deadline() {
        let (a, b) = std::os::unix::net::UnixStream::pair().expect("pair");
        let writer = std::thread::spawn(move || {
            // One byte every 50 ms: each read succeeds well within any per-read timeout.
            for byte in b"GET / HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
                if (&b).write_all(&[*byte]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let t0 = Instant::now();
        let mut r = io::BufReader::new(DeadlineReader::new(&a, t0 + Duration::from_millis(400)));
        let e = read_request_head(&mut r).unwrap_err();
        let took = t0.elapsed();
        assert!(matches!(e, HttpError::Timeout), "{e:?}");
        assert_eq!(e.status(), 408);
        assert!(took >= Duration::from_millis(390) && took < Duration::from_millis(1500), "{took:?}");
        drop(r);
        drop(a);
        writer.join().expect("writer");
    }

    #[test]
    fn a_chunked_answer_is_read_whole_and_one_cut_short_is_an_error() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n[\r\nA;x=y\r\n1,2,3,4,5,\r\n1\r\n]\r\n0\r\n\r\n";
        let resp = read_response(&mut Cursor::new(&raw[..])).expect("read");
        assert_eq!(resp.body, b"[1,2,3,4,5,]");
        let cut = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n[\r\n4\r\n1,2,";
        let e = read_response(&mut Cursor::new(&cut[..])).unwrap_err();
        assert!(e.to_string().contains("cut short"), "{e}");
        let cut = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n[\r\n";
        assert!(read_response(&mut Cursor::new(&cut[..])).is_err(), "no last chunk");
        // Requests stay Content-Length only.
        let e =
            read_request(&mut Cursor::new(&b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"[..])).unwrap_err();
        assert_eq!(e.status(), 501);
    }

    #[test]
    fn response_round_trip() {
        let mut out = Vec::new();
        write_response(&mut out, 404, "application/json", b"{\"a\":1}").expect("write");
        let resp = read_response(&mut Cursor::new(&out[..])).expect("read");
        assert_eq!(resp.status, 404);
        assert_eq!(resp.body, b"{\"a\":1}");
        let mut out = Vec::new();
        write_response_with(&mut out, 200, "application/json", &[(TRUNCATED_HEADER, "true")], b"[]").expect("write");
        let resp = read_response(&mut Cursor::new(&out[..])).expect("read");
        assert_eq!(resp.headers.iter().find(|(k, _)| k == "x-rvs-truncated").map(|(_, v)| v.as_str()), Some("true"));
        assert_eq!(resp.body, b"[]");
        let mut out = Vec::new();
        write_request(&mut out, "POST", "/v1/command", Some(b"{}")).expect("write");
        let req = read_request(&mut Cursor::new(&out[..])).expect("read");
        assert_eq!((req.method.as_str(), req.body.as_slice()), ("POST", &b"{}"[..]));
    }
}
