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
}

/// A connection entry (`struct ip_vs_conn`) — or a persistence template when TEMPLATE is set.
/// Kept small: the table's memory per connection is this plus 16 bytes of index.
#[derive(Debug)]
pub struct Conn {
    pub caddr: IpAddr,
    pub vaddr: IpAddr,
    pub daddr: IpAddr,
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

impl Conn {
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
