//! AF_PACKET socket with a TPACKET_V3 memory-mapped RX ring and a TX ring.
//!
//! Why this shape (kernel `Documentation/networking/packet_mmap.rst`):
//! - **RX, TPACKET_V3**: the kernel fills variable-sized frames into blocks and hands a whole
//!   block over at once (when full, or after the retire timeout). [`AfPacket::rx_batch`] walks
//!   every handed-over block without a system call per packet; [`AfPacket::poll_rx`] sleeps in
//!   `poll(2)` only when no block is ready.
//! - **Headroom**: `PACKET_RESERVE` leaves free bytes in front of every received frame, so a
//!   transmitter (IPIP, GUE) prepends its outer header in place.
//! - **TX ring**: with TPACKET_V3 the TX ring is a ring of fixed frames, each a
//!   `tpacket3_hdr` followed by the packet at `TPACKET_ALIGN(sizeof(tpacket3_hdr))`
//!   (`tpacket_parse_header` in `net/packet/af_packet.c`). [`AfPacket::tx_push`] fills slots,
//!   [`AfPacket::tx_flush`] sends everything pending with one `send(fd, NULL, 0, MSG_DONTWAIT)`.
//! - **`PACKET_IGNORE_OUTGOING`**: our own transmissions (and the kernel's) do not come back
//!   on the RX ring (DESIGN.md "Traps"). A fanout group receives through its own hook, so it
//!   also gets `PACKET_FANOUT_FLAG_IGNORE_OUTGOING` (without it, measured here: the kernel's
//!   ICMP errors showed up in the group).
//! - **`PACKET_LOSS`**: a TX frame the kernel rejects (e.g. longer than the MTU) is skipped
//!   instead of blocking the ring forever in `TP_STATUS_WRONG_FORMAT`.
//! - **Fanout**: several sockets (one per worker) join a group; `Hash` uses the kernel's
//!   *symmetric* flow hash, so both directions of a flow land on the same socket.
//!
//! All `unsafe` lives in this file: the syscalls, and access to the shared ring memory. The
//! ring protocol is: the owner of a block/slot is named by its status word; we read it with
//! acquire ordering before touching the data and write it with release ordering after.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use super::ifinfo::if_index;

// Kernel ABI constants (include/uapi/linux/if_packet.h), kept here so the ring layout is
// spelled out in one place.
const SOL_PACKET: libc::c_int = 263;
const PACKET_RX_RING: libc::c_int = 5;
const PACKET_STATISTICS: libc::c_int = 6;
const PACKET_VERSION: libc::c_int = 10;
const PACKET_RESERVE: libc::c_int = 12;
const PACKET_TX_RING: libc::c_int = 13;
const PACKET_LOSS: libc::c_int = 14;
const PACKET_FANOUT: libc::c_int = 18;
const PACKET_QDISC_BYPASS: libc::c_int = 20;
const PACKET_FANOUT_DATA: libc::c_int = 22;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const PACKET_FANOUT_FLAG_IGNORE_OUTGOING: u32 = 0x4000;
const TPACKET_V3: libc::c_int = 2;
const ETH_P_ALL: u16 = 0x0003;

const TP_STATUS_KERNEL: u32 = 0;
const TP_STATUS_USER: u32 = 1 << 0;
const TP_STATUS_CSUMNOTREADY: u32 = 1 << 3;
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;
const TP_STATUS_CSUM_VALID: u32 = 1 << 7;
const TP_STATUS_SEND_REQUEST: u32 = 1 << 0;
const TP_STATUS_SENDING: u32 = 1 << 1;

/// `struct tpacket_block_desc`: version, offset_to_priv, then `tpacket_hdr_v1` (8-aligned).
mod block {
    pub const STATUS: usize = 8;
    pub const NUM_PKTS: usize = 12;
    pub const OFFSET_TO_FIRST_PKT: usize = 16;
    pub const BLK_LEN: usize = 20;
}

/// `struct tpacket3_hdr`.
mod frame {
    pub const NEXT_OFFSET: usize = 0;
    pub const SNAPLEN: usize = 12;
    pub const LEN: usize = 16;
    pub const STATUS: usize = 20;
    pub const MAC: usize = 24;
    pub const RXHASH: usize = 28;
    pub const VLAN_TCI: usize = 32;
    pub const VLAN_TPID: usize = 36;
    /// `TPACKET_ALIGN(sizeof(struct tpacket3_hdr))`: where the `sockaddr_ll` follows on RX
    /// and where the packet starts in a TX slot.
    pub const HDR_ALIGNED: usize = 48;
    /// `struct sockaddr_ll` offsets, relative to `HDR_ALIGNED`.
    pub const SLL_IFINDEX: usize = 4;
    pub const SLL_PKTTYPE: usize = 10;
    pub const SLL_SIZE: usize = 20;
    /// First byte after the `sockaddr_ll`: what precedes it is not ours to hand out.
    pub const DATA_MIN: usize = HDR_ALIGNED + SLL_SIZE;
}

/// How the kernel spreads packets over the sockets of one fanout group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FanoutMode {
    /// Symmetric flow hash: both directions of a flow reach the same socket.
    Hash,
    /// Round robin per packet (breaks flow affinity; for stateless use only).
    LoadBalance,
    /// The CPU the packet was received on.
    Cpu,
    /// The device's receive queue (`skb_get_rx_queue`), to pair sockets with RSS queues.
    QueueMapping,
    /// A classic BPF program chooses the socket: see [`AfPacket::attach_fanout_cbpf`].
    Cbpf,
    /// An eBPF program chooses the socket (`super::fanout_ebpf`).
    Ebpf,
}

impl FanoutMode {
    fn kernel_value(self) -> u32 {
        match self {
            FanoutMode::Hash => 0,
            FanoutMode::LoadBalance => 1,
            FanoutMode::Cpu => 2,
            FanoutMode::QueueMapping => 5,
            FanoutMode::Cbpf => 6,
            FanoutMode::Ebpf => 7,
        }
    }
}

/// Ring geometry and socket options. Memory is `rx_block_size * rx_block_count +
/// tx_block_size * tx_block_count` per socket (8 MiB + 2 MiB by default).
#[derive(Clone, Debug)]
pub struct RingConfig {
    /// Bytes per RX block; a multiple of the page size (a power of two is cheapest). A block
    /// must hold the largest packet the interface can deliver, which on veth with GSO/GRO is
    /// up to 64 KiB plus headers: larger packets are truncated (see [`RxFrame::truncated`]).
    pub rx_block_size: u32,
    pub rx_block_count: u32,
    /// Nominal frame size the kernel checks the geometry against (TPACKET_V3 frames are
    /// variable-sized); a multiple of 16.
    pub rx_frame_size: u32,
    /// A partly filled block is handed over after this many milliseconds: the latency bound
    /// at low packet rates (a NAT round trip crosses the director twice). 1 ms is the
    /// smallest the kernel takes; measured with wrk in the lab, 2 ms gave a 2 ms p50 floor.
    pub retire_timeout_ms: u32,
    /// Bytes per TX slot, including the 48-byte header in front of the packet; a multiple of
    /// 16. Frames longer than `tx_frame_size - 48` are refused by [`AfPacket::tx_push`]:
    /// size it for the interface MTU with [`RingConfig::with_tx_mtu`].
    pub tx_frame_size: u32,
    /// Bytes per TX block (a multiple of the page size); slots never cross blocks.
    pub tx_block_size: u32,
    pub tx_block_count: u32,
    /// Free bytes in front of every received frame (`PACKET_RESERVE`).
    pub headroom: u32,
    /// Join fanout group `id` with this mode (after bind). `PACKET_FANOUT_FLAG_DEFRAG` stays
    /// off: fragments are the node's business.
    pub fanout: Option<(u16, FanoutMode)>,
    /// `PACKET_QDISC_BYPASS`: transmit straight to the driver, skipping the qdisc layer
    /// (faster; loses qdisc shaping and its back-pressure).
    pub qdisc_bypass: bool,
}

impl Default for RingConfig {
    fn default() -> Self {
        RingConfig {
            rx_block_size: 128 * 1024,
            rx_block_count: 64,
            rx_frame_size: 2048,
            retire_timeout_ms: 1,
            tx_frame_size: 2048,
            tx_block_size: 64 * 1024,
            tx_block_count: 32,
            headroom: 128,
            fanout: None,
            qdisc_bypass: false,
        }
    }
}

/// TX slot bytes that are not the packet: the slot header in front.
const TX_SLOT_OVERHEAD: u32 = frame::HDR_ALIGNED as u32;
/// TX slots a ring aims for (the default geometry has 1024), and the memory it may take
/// for them at most (a jumbo MTU gets fewer slots rather than a huge ring).
const TX_SLOTS_WANTED: u32 = 1024;
const TX_RING_MAX_BYTES: u32 = 16 * 1024 * 1024;

impl RingConfig {
    /// The TX ring sized for an interface MTU: a slot holds an Ethernet frame of `mtu` IP
    /// bytes plus the Ethernet header, a VLAN tag and the slot header (`mtu + 14 + 4 + 48`,
    /// rounded up to 16; never below the default 2048), a block holds at least one slot (a
    /// multiple of `page`, at least the default 64 KiB), and there are enough blocks for
    /// [`TX_SLOTS_WANTED`] slots within [`TX_RING_MAX_BYTES`] (at least one block). Without
    /// this a jumbo frame does not fit a slot and cannot be sent at all.
    pub fn with_tx_mtu(mut self, mtu: u32, page: u32) -> RingConfig {
        let page = page.max(1);
        let slot = (mtu.saturating_add(14 + 4) + TX_SLOT_OVERHEAD).next_multiple_of(16).max(2048);
        let block = slot.next_multiple_of(page).max((64 * 1024u32).next_multiple_of(page));
        let per_block = block / slot;
        let wanted = TX_SLOTS_WANTED.div_ceil(per_block);
        let affordable = (TX_RING_MAX_BYTES / block).max(1);
        self.tx_frame_size = slot;
        self.tx_block_size = block;
        self.tx_block_count = wanted.min(affordable).max(1);
        self
    }
}

/// The page size (ring blocks are multiples of it).
pub fn page_size_bytes() -> u32 {
    u32::try_from(page_size()).unwrap_or(4096)
}

/// `sll_pkttype` of a received frame: to whom the frame was addressed at layer 2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PktType {
    Host,
    Broadcast,
    Multicast,
    OtherHost,
    Outgoing,
    Other(u8),
}

impl PktType {
    fn from_raw(v: u8) -> PktType {
        match v {
            0 => PktType::Host,
            1 => PktType::Broadcast,
            2 => PktType::Multicast,
            3 => PktType::OtherHost,
            4 => PktType::Outgoing,
            other => PktType::Other(other),
        }
    }
}

/// One received frame, borrowed from the RX ring until the callback returns.
///
/// `buf[start..start + len]` is the frame from its Ethernet header; `buf[..start]` is free
/// headroom (at least `RingConfig::headroom` bytes) the caller may overwrite to prepend
/// headers in place.
#[derive(Debug)]
pub struct RxFrame<'a> {
    pub buf: &'a mut [u8],
    pub start: usize,
    /// Captured bytes (`tp_snaplen`).
    pub len: usize,
    /// Length of the packet as it was received (`tp_len`); larger than `len` when the ring
    /// truncated it.
    pub wire_len: usize,
    /// `TP_STATUS_CSUMNOTREADY`: the packet carries a *partial* checksum (the sender left it
    /// to offload, e.g. from a veth peer). Forwarded as is, a receiver drops it: the node must
    /// complete the L4 checksum.
    pub csum_not_ready: bool,
    /// `TP_STATUS_CSUM_VALID`: the device verified the L4 checksum.
    pub csum_valid: bool,
    /// VLAN TCI stripped by the device (the tag is then not in `buf`).
    pub vlan_tci: Option<u16>,
    /// TPID of that tag (0x8100, 0x88a8), when the kernel reports it.
    pub vlan_tpid: Option<u16>,
    pub pkt_type: PktType,
    pub ifindex: u32,
    /// The kernel's flow hash of the packet (0 if none was computed).
    pub rxhash: u32,
}

impl RxFrame<'_> {
    /// The captured frame bytes, from the Ethernet header.
    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }

    /// True if the capture is shorter than the packet: the caller must drop it.
    pub fn truncated(&self) -> bool {
        self.len < self.wire_len
    }
}

impl<'a> RxFrame<'a> {
    /// The frame as a [`wire::Frame`] with the ring's headroom in front, for the packet
    /// path. Flags (`csum_not_ready`, ...) must be read before: this consumes the `RxFrame`.
    pub fn into_frame(self) -> wire::Result<wire::Frame<'a>> {
        wire::Frame::new(self.buf, self.start, self.len)
    }
}

/// Counters of the socket since the previous call (`PACKET_STATISTICS` resets them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingStats {
    pub packets: u32,
    /// Packets dropped because no block was free.
    pub drops: u32,
    /// Times the ring was full (all blocks with user space).
    pub freeze_q_cnt: u32,
}

/// An AF_PACKET socket bound to one interface, with mapped RX and TX rings.
pub struct AfPacket {
    fd: OwnedFd,
    /// Start of the mapping: RX blocks, then TX blocks.
    map: NonNull<u8>,
    map_len: usize,
    ifindex: u32,
    rx_block_size: usize,
    rx_block_count: usize,
    /// Next RX block to look at.
    rx_next: usize,
    /// Offset of the TX ring inside the mapping.
    tx_offset: usize,
    tx_block_size: usize,
    tx_frame_size: usize,
    tx_frames_per_block: usize,
    tx_frame_count: usize,
    /// Next TX slot to fill.
    tx_next: usize,
    /// Slots filled since the last successful flush.
    tx_pending: usize,
    /// `send` wake-ups made since [`AfPacket::take_kicks`] last read them.
    kicks: u64,
}

// SAFETY: the mapping is owned by this value alone (nothing else holds pointers into it), so
// moving it to another thread is sound. It is not `Sync`: rx/tx take `&mut self`.
unsafe impl Send for AfPacket {}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

fn setsockopt<T>(fd: RawFd, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` points to a live `T` of exactly the length passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            SOL_PACKET,
            name,
            value as *const T as *const libc::c_void,
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `struct tpacket_req3`.
#[repr(C)]
struct TpacketReq3 {
    block_size: u32,
    block_nr: u32,
    frame_size: u32,
    frame_nr: u32,
    retire_blk_tov: u32,
    sizeof_priv: u32,
    feature_req_word: u32,
}

fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(p).ok().filter(|&p| p > 0).unwrap_or(4096)
}

fn check_config(cfg: &RingConfig) -> io::Result<()> {
    let page = page_size();
    for (what, v) in [("rx_block_size", cfg.rx_block_size), ("tx_block_size", cfg.tx_block_size)] {
        if v == 0 || !(v as usize).is_multiple_of(page) {
            return Err(invalid(format!("{what} {v} is not a multiple of the page size {page}")));
        }
    }
    for (what, v, block) in [
        ("rx_frame_size", cfg.rx_frame_size, cfg.rx_block_size),
        ("tx_frame_size", cfg.tx_frame_size, cfg.tx_block_size),
    ] {
        if !v.is_multiple_of(16) || v as usize <= frame::DATA_MIN + cfg.headroom as usize || v > block {
            return Err(invalid(format!(
                "{what} {v}: must be a multiple of 16, above header+headroom, within a block"
            )));
        }
    }
    if cfg.rx_block_count == 0 || cfg.tx_block_count == 0 {
        return Err(invalid("block counts must be non-zero".into()));
    }
    if cfg.headroom > 4096 {
        return Err(invalid(format!("headroom {} is too large", cfg.headroom)));
    }
    Ok(())
}

impl AfPacket {
    /// Opens a socket on `ifname` in the calling thread's network namespace, sets up both
    /// rings and binds. Packets are only delivered after the rings exist: the socket is
    /// created with protocol 0 (receives nothing) and bound to `ETH_P_ALL` last.
    pub fn open(ifname: &str, cfg: &RingConfig) -> io::Result<AfPacket> {
        check_config(cfg)?;
        let ifindex = if_index(ifname)?;

        // SAFETY: plain socket(2); the result is checked.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let s = fd.as_raw_fd();

        setsockopt(s, PACKET_VERSION, &TPACKET_V3)?;
        setsockopt(s, PACKET_RESERVE, &(cfg.headroom as libc::c_int))?;
        setsockopt(s, PACKET_LOSS, &(1 as libc::c_int))?;
        setsockopt(s, PACKET_IGNORE_OUTGOING, &(1 as libc::c_int))?;
        if cfg.qdisc_bypass {
            setsockopt(s, PACKET_QDISC_BYPASS, &(1 as libc::c_int))?;
        }

        let rx_frames_per_block = cfg.rx_block_size / cfg.rx_frame_size;
        let rx_req = TpacketReq3 {
            block_size: cfg.rx_block_size,
            block_nr: cfg.rx_block_count,
            frame_size: cfg.rx_frame_size,
            frame_nr: rx_frames_per_block
                .checked_mul(cfg.rx_block_count)
                .ok_or_else(|| invalid("rx ring too large".into()))?,
            retire_blk_tov: cfg.retire_timeout_ms,
            sizeof_priv: 0,
            feature_req_word: 0,
        };
        setsockopt(s, PACKET_RX_RING, &rx_req)?;

        let tx_frames_per_block = cfg.tx_block_size / cfg.tx_frame_size;
        let tx_frame_nr =
            tx_frames_per_block.checked_mul(cfg.tx_block_count).ok_or_else(|| invalid("tx ring too large".into()))?;
        // V3 TX rings take no retire timeout, private area or feature word (kernel -EINVAL).
        let tx_req = TpacketReq3 {
            block_size: cfg.tx_block_size,
            block_nr: cfg.tx_block_count,
            frame_size: cfg.tx_frame_size,
            frame_nr: tx_frame_nr,
            retire_blk_tov: 0,
            sizeof_priv: 0,
            feature_req_word: 0,
        };
        setsockopt(s, PACKET_TX_RING, &tx_req)?;

        let rx_len = cfg.rx_block_size as usize * cfg.rx_block_count as usize;
        let tx_len = cfg.tx_block_size as usize * cfg.tx_block_count as usize;
        let map_len = rx_len + tx_len;
        // SAFETY: mapping the socket's rings (RX then TX, contiguous, as the kernel lays
        // them out); the result is checked and unmapped in Drop.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                s,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let map = NonNull::new(ptr as *mut u8).ok_or_else(|| io::Error::other("mmap gave NULL"))?;

        // From here on Drop unmaps, whatever fails next.
        let sock = AfPacket {
            fd,
            map,
            map_len,
            ifindex,
            rx_block_size: cfg.rx_block_size as usize,
            rx_block_count: cfg.rx_block_count as usize,
            rx_next: 0,
            tx_offset: rx_len,
            tx_block_size: cfg.tx_block_size as usize,
            tx_frame_size: cfg.tx_frame_size as usize,
            tx_frames_per_block: tx_frames_per_block as usize,
            tx_frame_count: tx_frame_nr as usize,
            tx_next: 0,
            tx_pending: 0,
            kicks: 0,
        };

        // SAFETY: all-zero is a valid sockaddr_ll.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_ALL.to_be();
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: `sll` is a valid sockaddr_ll of the length passed.
        let rc = unsafe {
            libc::bind(
                s,
                &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }

        // Fanout needs a bound (running) socket. A group receives through its own hook, for
        // which the socket's PACKET_IGNORE_OUTGOING does not count: the group needs the flag
        // too, or outgoing frames (the kernel's ICMP errors, other sockets' TX) come back.
        if let Some((id, mode)) = cfg.fanout {
            let flags = PACKET_FANOUT_FLAG_IGNORE_OUTGOING;
            let arg: u32 = u32::from(id) | ((mode.kernel_value() | flags) << 16);
            setsockopt(s, PACKET_FANOUT, &arg)?;
        }
        Ok(sock)
    }

    /// Index of the interface the socket is bound to.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Installs the classic BPF program of a `FanoutMode::Cbpf` group: it returns, per
    /// packet, the index of the group member to deliver to (modulo the member count).
    pub fn attach_fanout_cbpf(&self, prog: &[libc::sock_filter]) -> io::Result<()> {
        let len = u16::try_from(prog.len())
            .ok()
            .filter(|&l| l > 0)
            .ok_or_else(|| invalid(format!("bad BPF program length {}", prog.len())))?;
        let fprog = libc::sock_fprog {
            len,
            // The kernel copies the program; it never writes through this pointer.
            filter: prog.as_ptr() as *mut libc::sock_filter,
        };
        setsockopt(self.fd.as_raw_fd(), PACKET_FANOUT_DATA, &fprog)
    }

    /// Reads and resets the socket's packet and drop counters.
    pub fn stats(&self) -> io::Result<RingStats> {
        let mut raw = [0u32; 3];
        let mut len = std::mem::size_of_val(&raw) as libc::socklen_t;
        // SAFETY: `raw` has room for `struct tpacket_stats_v3` (three u32) and `len` says so.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                SOL_PACKET,
                PACKET_STATISTICS,
                raw.as_mut_ptr() as *mut libc::c_void,
                &mut len,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(RingStats { packets: raw[0], drops: raw[1], freeze_q_cnt: raw[2] })
    }

    /// Status word of RX block `i`, shared with the kernel.
    fn rx_block_status(&self, i: usize) -> &AtomicU32 {
        debug_assert!(i < self.rx_block_count);
        // SAFETY: block `i` lies inside the mapping; the status word is 4-byte aligned
        // (blocks are page aligned, offset 8) and only ever accessed atomically by us.
        unsafe { AtomicU32::from_ptr(self.map.as_ptr().add(i * self.rx_block_size + block::STATUS) as *mut u32) }
    }

    /// Is the next RX block ours (ready to walk)?
    pub fn rx_ready(&self) -> bool {
        self.rx_block_status(self.rx_next).load(Ordering::Acquire) & TP_STATUS_USER != 0
    }

    /// Number of RX blocks (one lap of [`AfPacket::rx_blocks`]).
    pub fn rx_block_count(&self) -> usize {
        self.rx_block_count
    }

    /// Waits up to `timeout_ms` (-1: forever) for a block, unless one is ready already.
    /// Returns whether a block is ready; an interrupted wait returns `Ok(false)`.
    pub fn poll_rx(&self, timeout_ms: i32) -> io::Result<bool> {
        if self.rx_ready() {
            return Ok(true);
        }
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN | libc::POLLRDNORM | libc::POLLERR,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(false);
            }
            return Err(e);
        }
        Ok(self.rx_ready())
    }

    /// Hands every frame of every ready block to `f`, then returns the blocks to the kernel.
    /// Returns the number of frames delivered. Never blocks; malformed block contents end
    /// the walk of that block instead of being trusted.
    pub fn rx_batch(&mut self, f: impl FnMut(RxFrame<'_>)) -> usize {
        // At most one lap, so a busy kernel cannot keep us here forever.
        self.rx_blocks(self.rx_block_count, f)
    }

    /// [`AfPacket::rx_batch`] for at most `max_blocks` ready blocks: a caller that forwards
    /// transmits between blocks, so a lap of RX blocks never has to fit the TX ring at once.
    pub fn rx_blocks(&mut self, max_blocks: usize, mut f: impl FnMut(RxFrame<'_>)) -> usize {
        let mut delivered = 0;
        for _ in 0..max_blocks.min(self.rx_block_count) {
            let status = self.rx_block_status(self.rx_next);
            if status.load(Ordering::Acquire) & TP_STATUS_USER == 0 {
                break;
            }
            let base = self.rx_next * self.rx_block_size;
            {
                // SAFETY: the block is inside the mapping and, while its status says
                // TP_STATUS_USER (acquire-loaded above), the kernel does not touch it: it is
                // ours exclusively until we store TP_STATUS_KERNEL below, after this slice is
                // gone.
                let blk = unsafe { std::slice::from_raw_parts_mut(self.map.as_ptr().add(base), self.rx_block_size) };
                delivered += walk_block(blk, &mut f);
            }
            self.rx_block_status(self.rx_next).store(TP_STATUS_KERNEL, Ordering::Release);
            self.rx_next = (self.rx_next + 1) % self.rx_block_count;
        }
        delivered
    }

    /// Largest frame [`AfPacket::tx_push`] accepts.
    pub fn tx_max_frame(&self) -> usize {
        self.tx_frame_size - frame::HDR_ALIGNED
    }

    /// Status word and slot start of TX slot `i`.
    fn tx_slot(&self, i: usize) -> (&AtomicU32, *mut u8) {
        debug_assert!(i < self.tx_frame_count);
        let off = self.tx_offset
            + (i / self.tx_frames_per_block) * self.tx_block_size
            + (i % self.tx_frames_per_block) * self.tx_frame_size;
        // SAFETY: slot `i` lies inside the TX part of the mapping (slots never cross blocks);
        // slots are 16-byte aligned, so the status word at offset 20 is 4-byte aligned.
        unsafe {
            let p = self.map.as_ptr().add(off);
            (AtomicU32::from_ptr(p.add(frame::STATUS) as *mut u32), p)
        }
    }

    /// Copies `data` (a complete Ethernet frame) into the next free TX slot. Returns false,
    /// and copies nothing, when the ring is full or the frame does not fit a slot: the caller
    /// counts a drop. Nothing is sent before [`AfPacket::tx_flush`].
    pub fn tx_push(&mut self, data: &[u8]) -> bool {
        if data.is_empty() || data.len() > self.tx_max_frame() {
            return false;
        }
        let (status, slot) = self.tx_slot(self.tx_next);
        if status.load(Ordering::Acquire) & (TP_STATUS_SEND_REQUEST | TP_STATUS_SENDING) != 0 {
            return false;
        }
        let len = (data.len() as u32).to_ne_bytes();
        // SAFETY: the slot is available (acquire-loaded above), so the kernel does not read
        // it until we publish TP_STATUS_SEND_REQUEST with release ordering below. The header
        // fields and the packet area lie inside the slot (`data.len() <= tx_max_frame`).
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), slot.add(frame::HDR_ALIGNED), data.len());
            // tp_next_offset must be 0 (no variable-size TX slots); tp_len is what is sent.
            std::ptr::write_bytes(slot.add(frame::NEXT_OFFSET), 0, 4);
            std::ptr::copy_nonoverlapping(len.as_ptr(), slot.add(frame::SNAPLEN), 4);
            std::ptr::copy_nonoverlapping(len.as_ptr(), slot.add(frame::LEN), 4);
        }
        status.store(TP_STATUS_SEND_REQUEST, Ordering::Release);
        self.tx_next = (self.tx_next + 1) % self.tx_frame_count;
        self.tx_pending += 1;
        true
    }

    /// Is the next TX slot free, i.e. would [`AfPacket::tx_push`] of a fitting frame succeed?
    pub fn tx_slot_free(&self) -> bool {
        let (status, _) = self.tx_slot(self.tx_next);
        status.load(Ordering::Acquire) & (TP_STATUS_SEND_REQUEST | TP_STATUS_SENDING) == 0
    }

    /// Waits up to `timeout_ms` for the next TX slot to be given back by the kernel (TX
    /// completion: the device is done with the frame), flushing pending frames first. Returns
    /// whether the slot is free. Uses `poll(POLLOUT)`, which for a TX ring reports the slot at
    /// the kernel's head; a spurious wake-up just returns `false` early.
    pub fn tx_wait(&mut self, timeout_ms: i32) -> io::Result<bool> {
        self.tx_flush()?;
        if self.tx_slot_free() {
            return Ok(true);
        }
        let mut pfd = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLOUT, revents: 0 };
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        Ok(self.tx_slot_free())
    }

    /// Number of frames pushed and not yet flushed.
    pub fn tx_pending(&self) -> usize {
        self.tx_pending
    }

    /// Asks the kernel to send every pushed frame: one `send(fd, NULL, 0, MSG_DONTWAIT)`.
    /// Slots become free again once the device has taken them. A transient refusal
    /// (`EAGAIN`, `ENOBUFS`, `EINTR`) leaves the frames queued for the next flush and is not an
    /// error.
    /// The transmit wake-ups made since the last call (the worker's `tx_kicks` counter).
    pub fn take_kicks(&mut self) -> u64 {
        std::mem::take(&mut self.kicks)
    }

    pub fn tx_flush(&mut self) -> io::Result<()> {
        if self.tx_pending == 0 {
            return Ok(());
        }
        self.kicks += 1;
        // SAFETY: send(2) with no buffer: the kernel reads the TX ring it owns a mapping of.
        let rc = unsafe { libc::send(self.fd.as_raw_fd(), std::ptr::null(), 0, libc::MSG_DONTWAIT) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::ENOBUFS) | Some(libc::EINTR) => Ok(()),
                _ => Err(e),
            };
        }
        // The kernel stops at the first frame it cannot take (socket send buffer full while a
        // qdisc or the device holds earlier ones) and still reports success for the others:
        // while the last frame pushed is still a send request, the next flush must send again.
        let last = (self.tx_next + self.tx_frame_count - 1) % self.tx_frame_count;
        let (status, _) = self.tx_slot(last);
        if status.load(Ordering::Acquire) & TP_STATUS_SEND_REQUEST == 0 {
            self.tx_pending = 0;
        }
        Ok(())
    }
}

impl AsRawFd for AfPacket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl Drop for AfPacket {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `open` mapped; no borrow of it can outlive `self`.
        // The descriptor is closed afterwards by OwnedFd.
        unsafe {
            libc::munmap(self.map.as_ptr() as *mut libc::c_void, self.map_len);
        }
    }
}

fn rd_u16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(off..off + 2)?.try_into().ok()?))
}

fn rd_u32(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

/// Walks the frames of one retired block, checking every offset against the block.
/// Returns how many frames were handed to `f`.
fn walk_block(blk: &mut [u8], f: &mut impl FnMut(RxFrame<'_>)) -> usize {
    let (Some(num), Some(first), Some(blk_len)) =
        (rd_u32(blk, block::NUM_PKTS), rd_u32(blk, block::OFFSET_TO_FIRST_PKT), rd_u32(blk, block::BLK_LEN))
    else {
        return 0;
    };
    let end = (blk_len as usize).min(blk.len());
    let mut off = first as usize;
    let mut delivered = 0;
    for _ in 0..num {
        let Some(fr) = parse_frame(blk, off, end) else {
            break;
        };
        let next = fr.next;
        let slice = &mut blk[off + frame::DATA_MIN..off + fr.data_end];
        f(RxFrame {
            buf: slice,
            start: fr.mac - frame::DATA_MIN,
            len: fr.snaplen,
            wire_len: fr.wire_len,
            csum_not_ready: fr.status & TP_STATUS_CSUMNOTREADY != 0,
            csum_valid: fr.status & TP_STATUS_CSUM_VALID != 0,
            vlan_tci: fr.vlan_tci,
            vlan_tpid: fr.vlan_tpid,
            pkt_type: fr.pkt_type,
            ifindex: fr.ifindex,
            rxhash: fr.rxhash,
        });
        delivered += 1;
        if next == 0 {
            break;
        }
        off += next;
    }
    delivered
}

/// The checked header of one frame at `off` of a block whose used part ends at `end`.
struct FrameHdr {
    next: usize,
    mac: usize,
    snaplen: usize,
    wire_len: usize,
    /// End of the captured data, relative to the frame header.
    data_end: usize,
    status: u32,
    vlan_tci: Option<u16>,
    vlan_tpid: Option<u16>,
    pkt_type: PktType,
    ifindex: u32,
    rxhash: u32,
}

fn parse_frame(blk: &[u8], off: usize, end: usize) -> Option<FrameHdr> {
    if off.checked_add(frame::DATA_MIN)? > end {
        return None;
    }
    let h = &blk[off..end];
    let next = rd_u32(h, frame::NEXT_OFFSET)? as usize;
    let snaplen = rd_u32(h, frame::SNAPLEN)? as usize;
    let wire_len = rd_u32(h, frame::LEN)? as usize;
    let status = rd_u32(h, frame::STATUS)?;
    let mac = rd_u16(h, frame::MAC)? as usize;
    let data_end = mac.checked_add(snaplen)?;
    if mac < frame::DATA_MIN || data_end > h.len() {
        return None;
    }
    let sll = frame::HDR_ALIGNED;
    let vlan_valid = status & TP_STATUS_VLAN_VALID != 0;
    Some(FrameHdr {
        next,
        mac,
        snaplen,
        wire_len,
        data_end,
        status,
        vlan_tci: vlan_valid.then(|| rd_u32(h, frame::VLAN_TCI).map(|v| v as u16)).flatten(),
        vlan_tpid: (vlan_valid && status & TP_STATUS_VLAN_TPID_VALID != 0)
            .then(|| rd_u16(h, frame::VLAN_TPID))
            .flatten(),
        pkt_type: PktType::from_raw(*h.get(sll + frame::SLL_PKTTYPE)?),
        ifindex: rd_u32(h, sll + frame::SLL_IFINDEX)?,
        rxhash: rd_u32(h, frame::RXHASH)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a block like the kernel does: descriptor, then frames with `tp_mac` leaving
    /// `headroom` free bytes after the sockaddr_ll.
    fn build_block(frames: &[(&[u8], u32, u8)], headroom: usize) -> Vec<u8> {
        let mut blk = vec![0u8; 4096];
        let first = 48usize;
        let mut off = first;
        let mut offsets = vec![];
        for (i, (data, status, pkttype)) in frames.iter().enumerate() {
            let mac = frame::DATA_MIN + headroom;
            let total = (mac + data.len()).next_multiple_of(16);
            let next = if i + 1 == frames.len() { 0 } else { total };
            blk[off..off + 4].copy_from_slice(&(next as u32).to_ne_bytes());
            blk[off + 12..off + 16].copy_from_slice(&(data.len() as u32).to_ne_bytes());
            blk[off + 16..off + 20].copy_from_slice(&(data.len() as u32 + 5).to_ne_bytes());
            blk[off + 20..off + 24].copy_from_slice(&status.to_ne_bytes());
            blk[off + 24..off + 26].copy_from_slice(&(mac as u16).to_ne_bytes());
            blk[off + 32..off + 36].copy_from_slice(&7u32.to_ne_bytes());
            blk[off + 48 + 4..off + 48 + 8].copy_from_slice(&3u32.to_ne_bytes());
            blk[off + 48 + 10] = *pkttype;
            blk[off + mac..off + mac + data.len()].copy_from_slice(data);
            offsets.push(off);
            off += total;
        }
        blk[block::NUM_PKTS..block::NUM_PKTS + 4].copy_from_slice(&(frames.len() as u32).to_ne_bytes());
        blk[block::OFFSET_TO_FIRST_PKT..block::OFFSET_TO_FIRST_PKT + 4].copy_from_slice(&(first as u32).to_ne_bytes());
        blk[block::BLK_LEN..block::BLK_LEN + 4].copy_from_slice(&(off as u32).to_ne_bytes());
        blk
    }

    #[test]
    fn walks_frames_with_headroom_and_flags() {
        let a = [1u8, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
        let b = [0xaau8; 60];
        let mut blk = build_block(
            &[
                (&a, TP_STATUS_USER | TP_STATUS_CSUMNOTREADY, 0),
                (&b, TP_STATUS_USER | TP_STATUS_CSUM_VALID | TP_STATUS_VLAN_VALID, 4),
            ],
            128,
        );
        let mut seen = vec![];
        let n = walk_block(&mut blk, &mut |fr: RxFrame<'_>| {
            assert!(fr.start >= 128);
            assert!(fr.truncated(), "tp_len was set 5 above snaplen");
            // Headroom is writable.
            fr.buf[fr.start - 1] = 0xee;
            let copy = fr.data().to_vec();
            seen.push((fr.data().to_vec(), fr.csum_not_ready, fr.csum_valid, fr.vlan_tci, fr.pkt_type, fr.ifindex));
            let wf = fr.into_frame().expect("frame fits its buffer");
            assert_eq!(wf.data(), &copy[..]);
            assert!(wf.headroom() >= 128);
        });
        assert_eq!(n, 2);
        assert_eq!(seen[0], (a.to_vec(), true, false, None, PktType::Host, 3));
        assert_eq!(seen[1], (b.to_vec(), false, true, Some(7), PktType::Outgoing, 3));
    }

    #[test]
    fn corrupt_offsets_stop_the_walk() {
        let a = [1u8; 20];
        let clean = build_block(&[(&a, TP_STATUS_USER, 0), (&a, TP_STATUS_USER, 0)], 16);

        // A tp_mac pointing past the block.
        let mut blk = clean.clone();
        blk[48 + 24..48 + 26].copy_from_slice(&4000u16.to_ne_bytes());
        assert_eq!(walk_block(&mut blk, &mut |_| panic!("corrupt frame delivered")), 0);

        // A snaplen larger than the block.
        let mut blk = clean.clone();
        blk[48 + 12..48 + 16].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert_eq!(walk_block(&mut blk, &mut |_| {}), 0);

        // tp_next_offset jumping out of the block: the first frame still counts.
        let mut blk = clean.clone();
        blk[48..52].copy_from_slice(&0x7fff_fff0u32.to_ne_bytes());
        assert_eq!(walk_block(&mut blk, &mut |_| {}), 1);

        // num_pkts lying high: the walk ends at the last frame (next == 0).
        let mut blk = clean.clone();
        blk[block::NUM_PKTS..block::NUM_PKTS + 4].copy_from_slice(&1000u32.to_ne_bytes());
        assert_eq!(walk_block(&mut blk, &mut |_| {}), 2);

        // An offset_to_first_pkt beyond the used length.
        let mut blk = clean;
        blk[block::OFFSET_TO_FIRST_PKT..block::OFFSET_TO_FIRST_PKT + 4].copy_from_slice(&9000u32.to_ne_bytes());
        assert_eq!(walk_block(&mut blk, &mut |_| {}), 0);
    }

    #[test]
    fn config_is_checked() {
        let ok = RingConfig::default();
        assert!(check_config(&ok).is_ok());
        let bad = RingConfig { rx_block_size: 1000, ..ok.clone() };
        assert!(check_config(&bad).is_err());
        let bad = RingConfig { tx_frame_size: 100, ..ok.clone() };
        assert!(check_config(&bad).is_err());
        let bad = RingConfig { rx_block_count: 0, ..ok };
        assert!(check_config(&bad).is_err());
    }

    #[test]
    fn the_tx_ring_is_sized_for_the_mtu() {
        let page = 4096;
        // Standard MTU: the default geometry's slot, 1024 slots.
        let c = RingConfig::default().with_tx_mtu(1500, page);
        assert_eq!((c.tx_frame_size, c.tx_block_size), (2048, 64 * 1024));
        assert_eq!(c.tx_block_count * (c.tx_block_size / c.tx_frame_size), 1024);
        assert!(check_config(&c).is_ok());
        // Jumbo: a 9000-byte packet with Ethernet header and VLAN tag fits a slot.
        let c = RingConfig::default().with_tx_mtu(9000, page);
        assert_eq!(c.tx_frame_size, (9000u32 + 14 + 4 + 48).next_multiple_of(16));
        assert!(c.tx_frame_size as usize - frame::HDR_ALIGNED >= 9000 + 18);
        assert!(c.tx_block_size.is_multiple_of(page) && c.tx_block_size >= c.tx_frame_size);
        let slots = c.tx_block_count * (c.tx_block_size / c.tx_frame_size);
        assert!(slots >= 1024, "{slots} slots");
        assert!(c.tx_block_size * c.tx_block_count <= TX_RING_MAX_BYTES);
        assert!(check_config(&c).is_ok());
        // The largest MTU: one slot per block, at least one block, within the memory bound.
        let c = RingConfig::default().with_tx_mtu(65535, page);
        assert!(c.tx_frame_size as usize - frame::HDR_ALIGNED >= 65535 + 18);
        assert!(c.tx_block_size >= c.tx_frame_size && c.tx_block_size.is_multiple_of(page));
        assert!(c.tx_block_count >= 1 && c.tx_block_size * c.tx_block_count <= TX_RING_MAX_BYTES);
        assert!(check_config(&c).is_ok());
        // Odd page sizes still give whole pages.
        let c = RingConfig::default().with_tx_mtu(9000, 16384);
        assert!(c.tx_block_size.is_multiple_of(16384));
    }

    #[test]
    fn open_fails_cleanly_on_missing_interface() {
        let e = AfPacket::open("rvs-no-such-if", &RingConfig::default()).err();
        assert!(e.is_some());
    }
}
