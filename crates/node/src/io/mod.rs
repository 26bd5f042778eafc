//! io backends: they move frames and know nothing of services (DESIGN.md "How a packet
//! travels"). A backend hands the worker batches of frames with headroom in front, so a
//! transmitter can prepend an outer header in place, and takes finished frames to send.
//!
//! - [`afpacket`]: AF_PACKET with a TPACKET_V3 memory-mapped RX ring and a TX ring, optional
//!   fanout to spread flows over one socket per worker.
//! - [`ifinfo`]: interface index, MAC and MTU by name (ioctl), for setting a backend up.
//!
//! Host setup for a director that reads its interface over AF_PACKET is described in
//! `io/README.md`: the VIP is *not* configured on the director's kernel, the kernel keeps
//! `ip_forward=0`, and frames flagged [`afpacket::RxFrame::csum_not_ready`] carry a partial
//! checksum that the node must complete before forwarding them.

pub mod afpacket;
pub mod fanout_ebpf;
pub mod ifinfo;

pub use afpacket::{AfPacket, FanoutMode, PktType, RingConfig, RingStats, RxFrame};
pub use ifinfo::{if_index, if_mac, if_mtu};
