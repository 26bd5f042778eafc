//! io backends: they move frames and know nothing of services (DESIGN.md "How a packet
//! travels"). A backend hands the worker batches of frames with headroom in front, so a
//! transmitter can prepend an outer header in place, and takes finished frames to send.
//!
//! - [`afpacket`]: AF_PACKET with a TPACKET_V3 memory-mapped RX ring and a TX ring, optional
//!   fanout to spread flows over one socket per worker.
//! - [`afpacket_worker`]: the worker loop over AF_PACKET sockets; [`fanout`]: the classic BPF
//!   program that spreads flows over the workers' sockets; [`gso`]: cutting GSO super-packets
//!   read from the ring.
//! - [`ifinfo`]: interface index, MAC and MTU by name (ioctl), for setting a backend up.
//! - The AF_XDP backend lives in `crates/xdp` (its kernel program needs clang to build); both
//!   workers implement [`IoWorker`], so the daemon only starts them.
//!
//! Host setup for a director that reads its interface over AF_PACKET is described in
//! `io/README.md`: the VIP is *not* configured on the director's kernel, the kernel keeps
//! `ip_forward=0`, and frames flagged [`afpacket::RxFrame::csum_not_ready`] carry a partial
//! checksum that the node must complete before forwarding them.

pub mod afpacket;
pub mod afpacket_worker;
pub mod fanout;
pub mod fanout_ebpf;
pub mod gso;
pub mod ifinfo;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use crate::{Node, WorkerCtx};

/// Per-turn work the daemon gives a worker with its context (connection listings, table
/// sizes): the worker stays free of the daemon's types.
pub type Housekeeping = Box<dyn FnMut(&mut WorkerCtx) + Send>;

/// One worker of an I/O backend: it owns its sockets and moves frames between them and the
/// node until `stop` is set. AF_PACKET ([`afpacket_worker::WorkerSetup`]) and AF_XDP
/// (`xdp::worker::XdpWorker`) implement it.
pub trait IoWorker: Send {
    /// The backend's name (`afpacket`, `xdp`).
    fn backend(&self) -> &'static str;
    /// The worker id: its slot in the per-worker counters and tables.
    fn id(&self) -> usize;
    /// Throws away what the sockets received before the worker ran (a hot restart: those
    /// frames were the old daemon's to handle).
    fn discard_received(&mut self);
    /// Runs the worker loop until `stop` is set.
    fn run(self: Box<Self>, node: Arc<Node>, clock: Instant, stop: Arc<AtomicBool>, housekeeping: Housekeeping);
}

pub use afpacket::{AfPacket, FanoutMode, PktType, RingConfig, RingStats, RxFrame};
pub use ifinfo::{if_index, if_mac, if_mtu};
