//! Zero-copy packet views and Internet checksum math for rvs.
//!
//! Every protocol module follows the shape of smoltcp's `wire` module: a view
//! `XPacket<T: AsRef<[u8]>>` over a byte buffer, built with `new_unchecked` (no
//! checks, for buffers the caller already validated) or `new_checked` (returns
//! `Err` for any buffer the accessors could not read without panicking). Getters
//! need `T: AsRef<[u8]>`, setters `T: AsMut<[u8]>`. Byte offsets live in a private
//! `field` module per protocol.
//!
//! This is the forwarding hot path: accessors are `#[inline]`, nothing allocates,
//! and nothing reachable through `new_checked` panics on any input.

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod frame;
pub mod gre;
pub mod gue;
pub mod icmpv4;
pub mod icmpv6;
pub mod ip;
pub mod ipv4;
pub mod ipv6;
pub mod sctp;
pub mod tcp;
pub mod udp;

pub use arp::ArpPacket;
pub use ethernet::{EthernetFrame, MacAddr};
pub use frame::Frame;
pub use gre::GrePacket;
pub use gue::GuePacket;
pub use icmpv4::Icmpv4Packet;
pub use icmpv6::Icmpv6Packet;
pub use ipv4::Ipv4Packet;
pub use ipv6::Ipv6Packet;
pub use sctp::SctpPacket;
pub use tcp::TcpPacket;
pub use udp::UdpPacket;

/// Why a buffer could not be viewed as a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The buffer is shorter than the header, or than a length field says.
    Truncated,
    /// A field holds a value the view cannot work with (wrong version, a
    /// header length below the minimum, an unsupported ARP hardware type...).
    Malformed,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Truncated => f.write_str("truncated packet"),
            Error::Malformed => f.write_str("malformed packet"),
        }
    }
}

impl std::error::Error for Error {}

/// Result of the checked constructors and of [`Frame`] operations.
pub type Result<T> = core::result::Result<T, Error>;

/// Big-endian field access shared by the views. Callers guarantee the range
/// is inside the buffer (checked constructors establish it once).
#[inline(always)]
pub(crate) fn get_u16(buf: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([buf[at], buf[at + 1]])
}

#[inline(always)]
pub(crate) fn get_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

#[inline(always)]
pub(crate) fn set_u16(buf: &mut [u8], at: usize, v: u16) {
    buf[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline(always)]
pub(crate) fn set_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

#[inline(always)]
pub(crate) fn get_array<const N: usize>(buf: &[u8], at: usize) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&buf[at..at + N]);
    a
}

#[cfg(test)]
pub(crate) mod testutil;
