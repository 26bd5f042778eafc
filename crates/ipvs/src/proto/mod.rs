//! Protocol handlers: one file per protocol, each with its states, names and timeouts.

pub mod sctp;
pub mod tcp;
pub mod udp;

/// "No event": the packet leaves the entry's state alone (an SCTP packet without a chunk).
pub const NO_EVENT: u8 = 0xff;

/// The event byte the state machines take: TCP flags, or an SCTP [`sctp::Event`].
#[inline]
pub fn event_of(protocol: u8, l4: &[u8]) -> u8 {
    match protocol {
        6 => l4.get(13).copied().unwrap_or(0),
        132 => l4.get(12..).and_then(sctp::event).map_or(NO_EVENT, |e| e as u8),
        _ => 0,
    }
}

/// Which transition table applies to a packet (lvs-semantics.md §11).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Client → VIP on an entry that has seen output (or is NAT).
    Input,
    /// Real server → client.
    Output,
    /// Client → VIP while NOOUTPUT (DR/TUN).
    InputOnly,
}

/// Per-state timeouts in seconds, global or per service (an rvs extension, §21.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp: [u32; tcp::STATES],
    pub udp: u32,
    pub sctp: [u32; sctp::STATES],
}

impl Default for Timeouts {
    /// The seed's defaults: SYN 60, ESTABLISHED 900, FIN 60, UDP 300; the rest as the kernel.
    fn default() -> Self {
        Timeouts { tcp: tcp::DEFAULT_TIMEOUTS, udp: udp::DEFAULT_TIMEOUT, sctp: sctp::DEFAULT_TIMEOUTS }
    }
}

impl Timeouts {
    /// `ipvsadm --set tcp tcpfin udp`; 0 leaves a value unchanged.
    pub fn set(&mut self, tcp_est: u32, tcp_fin: u32, udp: u32) {
        if tcp_est != 0 {
            self.tcp[tcp::ESTABLISHED as usize] = tcp_est;
        }
        if tcp_fin != 0 {
            self.tcp[tcp::FIN_WAIT as usize] = tcp_fin;
        }
        if udp != 0 {
            self.udp = udp;
        }
    }

    /// (tcp, tcpfin, udp) as `ipvsadm -L --timeout` prints them.
    pub fn triple(&self) -> (u32, u32, u32) {
        (self.tcp[tcp::ESTABLISHED as usize], self.tcp[tcp::FIN_WAIT as usize], self.udp)
    }
}
