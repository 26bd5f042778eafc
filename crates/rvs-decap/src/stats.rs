//! Counters kept by the receive loop and printed at exit (and periodically
//! with `-v`) as `name=value` pairs, so scripts and tests can read them.

use std::fmt;

use crate::decap::{DropReason, Encap};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counters {
    /// Datagrams read, per encapsulation ([`Encap::index`]).
    pub received: [u64; 3],
    /// Inner packets written to the TUN device.
    pub delivered: u64,
    /// Drops per [`DropReason::index`].
    pub dropped: [u64; DropReason::COUNT],
    /// Writes to the TUN device that failed (packet lost after decapsulation).
    pub write_errors: u64,
    /// Socket reads that failed with something other than "no more data".
    pub receive_errors: u64,
}

impl Counters {
    /// Accounts for one datagram read from the socket for `encap`.
    pub fn count_received(&mut self, encap: Encap) {
        self.received[encap.index()] += 1;
    }

    pub fn count_drop(&mut self, reason: DropReason) {
        self.dropped[reason.index()] += 1;
    }

    pub fn total_received(&self) -> u64 {
        self.received.iter().sum()
    }

    pub fn total_dropped(&self) -> u64 {
        self.dropped.iter().sum()
    }

    pub fn drops(&self, reason: DropReason) -> u64 {
        self.dropped[reason.index()]
    }
}

/// One line: `received=N (ipip=.. gre=.. gue=..) delivered=N dropped=N (reason=..)
/// write_errors=N receive_errors=N`.
impl fmt::Display for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "received={} (", self.total_received())?;
        for (i, e) in Encap::ALL.iter().enumerate() {
            let sep = if i == 0 { "" } else { " " };
            write!(f, "{sep}{}={}", e.label(), self.received[e.index()])?;
        }
        write!(f, ") delivered={} dropped={} (", self.delivered, self.total_dropped())?;
        for (i, r) in DropReason::ALL.iter().enumerate() {
            let sep = if i == 0 { "" } else { " " };
            write!(f, "{sep}{}={}", r.label(), self.drops(*r))?;
        }
        write!(f, ") write_errors={} receive_errors={}", self.write_errors, self.receive_errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_lists_every_counter() {
        let mut c = Counters::default();
        c.count_received(Encap::Ipip);
        c.count_received(Encap::Gue);
        c.count_received(Encap::Ipip);
        c.delivered = 2;
        c.count_drop(DropReason::Truncated);
        assert_eq!((c.total_received(), c.total_dropped()), (3, 1));
        let s = c.to_string();
        assert!(
            s.starts_with("received=3 (ipip=2 gre=0 gue=1) delivered=2 dropped=1 (truncated=1 bad_version=0"),
            "{s}"
        );
        for r in DropReason::ALL {
            assert!(s.contains(&format!(" {}=", r.label())) || s.contains(&format!("({}=", r.label())), "{s}");
        }
        assert!(s.ends_with("write_errors=0 receive_errors=0"), "{s}");
    }
}
