//! A thread per connection within a connection cap: what the metrics listener (a scrape
//! every few seconds, no authentication) still uses. The API moved to hyper (`server.rs`),
//! which adds per-peer limits and authentication before a slot.

use std::io::{self, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use control::api::{ApiError, ErrorKind};
use control::http;

/// What a listener allows its connections.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// Connections served at once; one more is answered 503 and closed.
    pub max_conns: usize,
    /// For the whole request, head and body: a peer trickling bytes is cut there.
    pub deadline: Duration,
    /// Longest request body (checked against `Content-Length` before reading it).
    pub max_body: usize,
}

/// Frees a connection slot when the connection's thread ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Takes a slot of `used` if fewer than `max` are taken.
fn take_slot(used: &Arc<AtomicUsize>, max: usize) -> Option<Slot> {
    used.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)).ok()?;
    Some(Slot(used.clone()))
}

/// A stream served by [`accept_loop`].
pub trait Conn {
    fn set_nonblocking(&self, on: bool) -> io::Result<()>;
}

impl Conn for UnixStream {
    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        UnixStream::set_nonblocking(self, on)
    }
}

impl Conn for TcpStream {
    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        TcpStream::set_nonblocking(self, on)
    }
}

/// Accepts connections until the listener fails for good, one thread each and at most
/// `max_conns` at once: the excess is answered 503 from the accepting thread, without waiting
/// (non-blocking write of a few bytes), and closed.
pub fn accept_loop<S, I>(incoming: I, what: &str, max_conns: usize, serve_one: Arc<dyn Fn(S) + Send + Sync>)
where
    S: Conn + Send + 'static,
    for<'a> &'a S: Write,
    I: Iterator<Item = io::Result<S>>,
{
    let used = Arc::new(AtomicUsize::new(0));
    for conn in incoming {
        match conn {
            Ok(stream) => {
                let Some(slot) = take_slot(&used, max_conns) else {
                    tracing::debug!("{what}: {max_conns} connections open, refusing one more");
                    let err = ApiError::new(ErrorKind::Unavailable, "too many connections; try again later");
                    let body = serde_json::to_vec(&err).unwrap_or_default();
                    if stream.set_nonblocking(true).is_ok() {
                        let _ = http::write_response(&mut &stream, 503, "application/json", &body);
                    }
                    continue;
                };
                let f = serve_one.clone();
                let spawned = std::thread::Builder::new().name(what.into()).spawn(move || {
                    let _slot = slot;
                    f(stream)
                });
                if let Err(e) = spawned {
                    tracing::error!("{what}: cannot start a connection thread: {e}");
                }
            }
            Err(e) => {
                tracing::error!("{what}: accept: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}
