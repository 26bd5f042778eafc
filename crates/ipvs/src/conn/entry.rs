use std::net::IpAddr;
use std::sync::Arc;

use crate::dest::{Dest, ForwardMethod};

/// `IP_VS_CONN_F_*` (lvs-semantics.md §7).
pub struct ConnFlags;
impl ConnFlags {
    pub const FWD_MASK: u32 = 0x0007;
    pub const SYNC: u32 = 0x0020;
    pub const HASHED: u32 = 0x0040;
    pub const NOOUTPUT: u32 = 0x0080;
    pub const INACTIVE: u32 = 0x0100;
    pub const NO_CPORT: u32 = 0x0800;
    pub const TEMPLATE: u32 = 0x1000;
    pub const ONE_PACKET: u32 = 0x2000;
    /// rvs: opened by the SYN proxy; sequence numbers are shifted (synproxy.rs).
    pub const SYNPROXY: u32 = 0x0100_0000;
    /// rvs: the SYN proxy waits for the real server's SYN-ACK.
    pub const SYNPROXY_PENDING: u32 = 0x0200_0000;
    /// rvs-internal: the state changed since the entry was last synced (the kernel keeps
    /// `old_state` for this). Never sent.
    pub const SYNC_STATE_CHANGED: u32 = 0x4000_0000;
    /// Bits of rvs's own (SYN proxy, sync bookkeeping), masked off whatever leaves the
    /// engine: the kernel's flags end at 0x10000.
    pub const INTERNAL: u32 = 0xFF00_0000;
}

/// A connection entry (`struct ip_vs_conn`) — or a persistence template when TEMPLATE is set.
///
/// One cache line: an established packet touches its index slot and this line, nothing else of
/// the table. IPv4 addresses are kept inline; IPv6 (and mixed-family) entries keep theirs in the
/// table's side slab, so the addresses are read through the table: [`super::ConnTable::addrs`].
#[derive(Debug)]
#[repr(align(64))]
pub struct Conn {
    pub(crate) addrs: Addrs,
    pub cport: u16,
    pub vport: u16,
    pub dport: u16,
    pub protocol: u8,
    /// Protocol state (TCP/SCTP state index; UDP 0; templates NONE/ASSURED).
    pub state: u8,
    pub flags: u32,
    /// Idle timeout of the current state, seconds.
    pub timeout: u32,
    /// Expiry instant on the engine clock, milliseconds.
    pub expires: u64,
    pub dest: Option<Arc<Dest>>,
    /// Controlling entry (template), or `u32::MAX`.
    pub control: u32,
    /// Number of entries this one controls.
    pub n_control: u32,
    pub in_pkts: u32,
    pub fwmark: u32,
}

/// Where an entry's addresses are: inline when all three are IPv4, else in slot `slot` of the
/// table's side slab (bit i of `v4` set: address i is an IPv4 one, stored v4-mapped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Addrs {
    V4 { c: u32, v: u32, d: u32 },
    Wide { slot: u32, v4: u8 },
}

/// The three addresses of an entry: client, virtual, destination (real server).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnAddrs {
    pub caddr: IpAddr,
    pub vaddr: IpAddr,
    pub daddr: IpAddr,
}

impl Conn {
    /// An entry for [`super::ConnTable::insert`], which places its addresses: state 0, no
    /// dest, no controller, no timer yet.
    pub fn new(protocol: u8, cport: u16, vport: u16, dport: u16) -> Conn {
        Conn {
            addrs: Addrs::V4 { c: 0, v: 0, d: 0 },
            cport,
            vport,
            dport,
            protocol,
            state: 0,
            flags: 0,
            timeout: 0,
            expires: 0,
            dest: None,
            control: u32::MAX,
            n_control: 0,
            in_pkts: 0,
            fwmark: 0,
        }
    }
    /// Client, virtual and destination address of an all-IPv4 entry, as numbers.
    #[inline]
    pub fn v4_addrs(&self) -> Option<[u32; 3]> {
        match self.addrs {
            Addrs::V4 { c, v, d } => Some([c, v, d]),
            Addrs::Wide { .. } => None,
        }
    }

    #[inline]
    pub fn method(&self) -> ForwardMethod {
        ForwardMethod::from_u8((self.flags & ConnFlags::FWD_MASK) as u8).unwrap_or(ForwardMethod::Route)
    }
    #[inline]
    pub fn is_template(&self) -> bool {
        self.flags & ConnFlags::TEMPLATE != 0
    }
    #[inline]
    pub fn is_active(&self) -> bool {
        self.flags & ConnFlags::INACTIVE == 0
    }
    #[inline]
    pub fn has_control(&self) -> bool {
        self.control != u32::MAX
    }
}
