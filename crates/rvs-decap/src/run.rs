//! The receive loop: wait on the sockets and the stop signal, read a batch per
//! readable socket, decapsulate each datagram and write the inner packet into
//! the TUN device.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::decap::{DropReason, decapsulate};
use crate::signal;
use crate::socket::{Batch, Source};
use crate::stats::Counters;
use crate::tun::Tun;

/// Datagrams per `recvmmsg`.
pub const BATCH: usize = 32;
/// Buffer per datagram: any IPv4 datagram fits, so nothing is cut.
pub const BUF_SIZE: usize = 65536;
/// Batches read from one socket per wakeup before the others get a turn.
const BATCHES_PER_WAKEUP: usize = 8;

pub struct Loop<'a> {
    pub sources: &'a [Source],
    pub tun: &'a Tun,
    pub stop: &'a OwnedFd,
    /// `Some(period)`: print the counters that often (`-v`).
    pub report_every: Option<Duration>,
}

impl Loop<'_> {
    /// Runs until SIGTERM/SIGINT; returns the signal name.
    pub fn run(&self, counters: &mut Counters) -> io::Result<&'static str> {
        let mut batch = Batch::new(BATCH, BUF_SIZE);
        let mut pfds: Vec<libc::pollfd> = self
            .sources
            .iter()
            .map(|s| s.fd.as_raw_fd())
            .chain([self.stop.as_raw_fd()])
            .map(|fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 })
            .collect();
        let mut next_report = self.report_every.map(|p| Instant::now() + p);
        loop {
            let timeout = match next_report {
                Some(t) => t.saturating_duration_since(Instant::now()).as_millis().min(i32::MAX as u128) as i32,
                None => -1,
            };
            // SAFETY: `pfds` is a live array of `pfds.len()` pollfd entries.
            let rc = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout) };
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return Err(e);
            }
            for (i, src) in self.sources.iter().enumerate() {
                if pfds[i].revents != 0 {
                    self.drain(src, &mut batch, counters);
                }
            }
            if pfds[self.sources.len()].revents != 0
                && let Some(sig) = signal::read(self.stop)?
            {
                return Ok(signal::name(sig));
            }
            if let (Some(t), Some(period)) = (next_report, self.report_every)
                && Instant::now() >= t
            {
                eprintln!("rvs-decap: {counters}");
                next_report = Some(Instant::now() + period);
            }
        }
    }

    fn drain(&self, src: &Source, batch: &mut Batch, counters: &mut Counters) {
        for _ in 0..BATCHES_PER_WAKEUP {
            let n = match batch.recv(src.fd.as_raw_fd()) {
                Ok(n) => n,
                Err(e) => {
                    counters.receive_errors += 1;
                    if counters.receive_errors.is_power_of_two() {
                        eprintln!(
                            "rvs-decap: {} receive error: {e} ({} so far)",
                            src.encap.label(),
                            counters.receive_errors
                        );
                    }
                    return;
                }
            };
            for i in 0..n {
                let (buf, truncated) = batch.get_mut(i);
                counters.count_received(src.encap);
                let inner = if truncated { Err(DropReason::Truncated) } else { decapsulate(src.encap, buf) };
                match inner {
                    Ok(r) => match self.tun.write(&buf[r]) {
                        Ok(()) => counters.delivered += 1,
                        Err(e) => {
                            counters.write_errors += 1;
                            if counters.write_errors.is_power_of_two() {
                                eprintln!(
                                    "rvs-decap: write to {}: {e} ({} so far)",
                                    self.tun.name(),
                                    counters.write_errors
                                );
                            }
                        }
                    },
                    Err(reason) => counters.count_drop(reason),
                }
            }
            if n < batch.capacity() {
                return;
            }
        }
    }
}
