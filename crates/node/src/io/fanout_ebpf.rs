//! An eBPF fanout program (`PACKET_FANOUT_EBPF`) that looks the destination up in a BPF
//! hash map of VIPs, so adding or removing a VIP is one map update (O(1), nothing
//! re-attached) and the number of VIPs has no limit but the map's size.
//!
//! It computes the same member as the classic program of the daemon's steering (`steer.rs`:
//! to a VIP or a firewall-mark prefix, hash the source, or for an ICMP error the quoted
//! destination; otherwise hash the destination; non-IPv4 goes to member 0), with the same
//! mix, so both directions of a NAT connection reach one worker. The persistence mask, the
//! member count and the firewall-mark prefixes (few, rarely changed) are compiled in: a
//! change of those loads a new program. The bytecode is written here (no compiler, no
//! loader crate): a dozen instructions plus three per prefix, using the classic packet
//! loads (`LD_ABS` relative to `SKF_NET_OFF`) that socket-filter programs keep.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// The mix multiplier, as in the classic program.
const MIX_MUL: u32 = 0x045d_9f3b;
const SKF_NET_OFF: i32 = -0x100000;

/// Most VIPs the map holds (entries are allocated when inserted).
pub const MAP_ENTRIES: u32 = 1 << 22;

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_MAP_TYPE_HASH: u32 = 1;
const BPF_F_NO_PREALLOC: u32 = 1;
const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;

/// `bpf(2)` with a zeroed 128-byte `union bpf_attr` filled by `fill`; the attr as the
/// kernel left it comes back too.
fn bpf_attr(cmd: libc::c_long, fill: impl FnOnce(&mut [u8; 128])) -> io::Result<(i64, [u8; 128])> {
    let mut attr = [0u8; 128];
    fill(&mut attr);
    // SAFETY: `attr` is a valid, initialised buffer of the size passed; pointers written into
    // it by `fill` point at buffers the caller keeps alive for the call.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len() as libc::c_uint) };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok((rc, attr)) }
}

fn bpf(cmd: libc::c_long, fill: impl FnOnce(&mut [u8; 128])) -> io::Result<i64> {
    bpf_attr(cmd, fill).map(|(rc, _)| rc)
}

fn put32(a: &mut [u8], off: usize, v: u32) {
    a[off..off + 4].copy_from_slice(&v.to_ne_bytes());
}

fn put64(a: &mut [u8], off: usize, v: u64) {
    a[off..off + 8].copy_from_slice(&v.to_ne_bytes());
}

/// One eBPF instruction (`struct bpf_insn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    pub code: u8,
    /// dst in the low nibble, src in the high one.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

fn i(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn { code, regs: dst | (src << 4), off, imm }
}

// Opcodes (linux/bpf.h, linux/bpf_common.h).
const MOV64_X: u8 = 0xbf;
const MOV32_X: u8 = 0xbc;
const MOV64_K: u8 = 0xb7;
const ADD64_K: u8 = 0x07;
const AND32_K: u8 = 0x54;
const RSH32_K: u8 = 0x74;
const XOR32_X: u8 = 0xac;
const MUL32_K: u8 = 0x24;
const MOD32_K: u8 = 0x94;
const LDX_W: u8 = 0x61;
const STX_W: u8 = 0x63;
const LD_DW_IMM: u8 = 0x18;
const LD_ABS_W: u8 = 0x20;
const LD_ABS_B: u8 = 0x30;
const JA: u8 = 0x05;
const JNE64_K: u8 = 0x55;
const JEQ32_K: u8 = 0x16;
const JNE32_K: u8 = 0x56;
const CALL: u8 = 0x85;
const EXIT: u8 = 0x95;
const PSEUDO_MAP_FD: u8 = 1;
const FN_MAP_LOOKUP_ELEM: i32 = 1;
/// `offsetof(struct __sk_buff, protocol)`.
const SKB_PROTOCOL: i16 = 16;

/// The program for `workers` members: `map_fd` holds the VIPs (keys: IPv4 address as a
/// native-endian `u32` of its numeric value), `prefixes` are (network, mask) of the
/// firewall-mark rules, `client_mask` the widest persistence netmask.
pub fn program(map_fd: i32, client_mask: u32, prefixes: &[(u32, u32)], workers: u32) -> Vec<Insn> {
    let n = workers.max(1) as i32;
    let mut p = vec![
        i(MOV64_X, 6, 1, 0, 0),
        i(LDX_W, 0, 6, SKB_PROTOCOL, 0),
        i(JNE32_K, 0, 0, 0, i32::from(0x0800u16.to_be())), // → ret0 (patched)
        i(LD_ABS_W, 0, 0, 0, SKF_NET_OFF + 16),
        i(MOV64_X, 7, 0, 0, 0),
        i(STX_W, 10, 0, -4, 0),
        i(LD_DW_IMM, 1, PSEUDO_MAP_FD, 0, map_fd),
        i(0, 0, 0, 0, 0),
        i(MOV64_X, 2, 10, 0, 0),
        i(ADD64_K, 2, 0, 0, -4),
        i(CALL, 0, 0, 0, FN_MAP_LOOKUP_ELEM),
        i(JNE64_K, 0, 0, 0, 0), // found → vip (patched)
    ];
    let mut to_vip = vec![p.len() - 1];
    for &(net, mask) in prefixes {
        p.push(i(MOV32_X, 0, 7, 0, 0));
        p.push(i(AND32_K, 0, 0, 0, mask as i32));
        p.push(i(JEQ32_K, 0, 0, 0, net as i32));
        to_vip.push(p.len() - 1);
    }
    // Not a VIP: hash the destination.
    p.push(i(MOV32_X, 0, 7, 0, 0));
    let to_hash_a = p.len();
    p.push(i(JA, 0, 0, 0, 0));
    // To a VIP: an ICMP error (3, 4, 11) hashes the quoted destination, the rest the source.
    let vip = p.len();
    p.push(i(LD_ABS_B, 0, 0, 0, SKF_NET_OFF + 9));
    p.push(i(JNE32_K, 0, 0, 0, 1)); // → src
    let to_src = p.len() - 1;
    p.push(i(LD_ABS_B, 0, 0, 0, SKF_NET_OFF + 20));
    let mut to_quoted = Vec::new();
    for t in [3, 4, 11] {
        p.push(i(JEQ32_K, 0, 0, 0, t));
        to_quoted.push(p.len() - 1);
    }
    let src = p.len();
    p.push(i(LD_ABS_W, 0, 0, 0, SKF_NET_OFF + 12));
    let to_hash_b = p.len();
    p.push(i(JA, 0, 0, 0, 0));
    let quoted = p.len();
    p.push(i(LD_ABS_W, 0, 0, 0, SKF_NET_OFF + 20 + 8 + 16));
    let hash = p.len();
    p.extend([
        i(AND32_K, 0, 0, 0, client_mask as i32),
        i(MOV32_X, 1, 0, 0, 0),
        i(RSH32_K, 1, 0, 0, 16),
        i(XOR32_X, 0, 1, 0, 0),
        i(MUL32_K, 0, 0, 0, MIX_MUL as i32),
        i(MOV32_X, 1, 0, 0, 0),
        i(RSH32_K, 1, 0, 0, 16),
        i(XOR32_X, 0, 1, 0, 0),
        i(MOD32_K, 0, 0, 0, n),
        i(EXIT, 0, 0, 0, 0),
    ]);
    let ret0 = p.len();
    p.push(i(MOV64_K, 0, 0, 0, 0));
    p.push(i(EXIT, 0, 0, 0, 0));
    let mut jump = |from: usize, to: usize| p[from].off = (to as isize - from as isize - 1) as i16;
    jump(2, ret0);
    for f in to_vip {
        jump(f, vip);
    }
    jump(to_hash_a, hash);
    jump(to_src, src);
    for f in to_quoted {
        jump(f, quoted);
    }
    jump(to_hash_b, hash);
    p
}

/// The VIP map and the loaded program of an eBPF fanout group.
#[derive(Debug)]
pub struct VipMap {
    map: OwnedFd,
}

impl VipMap {
    /// Creates an empty map (fails where the kernel or the caller's rights do not allow BPF).
    pub fn new() -> io::Result<Self> {
        let fd = bpf(BPF_MAP_CREATE, |a| {
            put32(a, 0, BPF_MAP_TYPE_HASH);
            put32(a, 4, 4);
            put32(a, 8, 1);
            put32(a, 12, MAP_ENTRIES);
            put32(a, 16, BPF_F_NO_PREALLOC);
        })?;
        // SAFETY: the kernel returned a new file descriptor that nothing else owns.
        Ok(VipMap { map: unsafe { OwnedFd::from_raw_fd(fd as i32) } })
    }

    fn key(vip: u32) -> [u8; 4] {
        vip.to_ne_bytes()
    }

    pub fn insert(&self, vip: u32) -> io::Result<()> {
        let key = Self::key(vip);
        let value = [1u8];
        bpf(BPF_MAP_UPDATE_ELEM, |a| {
            put32(a, 0, self.map.as_raw_fd() as u32);
            put64(a, 8, key.as_ptr() as u64);
            put64(a, 16, value.as_ptr() as u64);
        })
        .map(|_| ())
    }

    pub fn remove(&self, vip: u32) -> io::Result<()> {
        let key = Self::key(vip);
        match bpf(BPF_MAP_DELETE_ELEM, |a| {
            put32(a, 0, self.map.as_raw_fd() as u32);
            put64(a, 8, key.as_ptr() as u64);
        }) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            r => r.map(|_| ()),
        }
    }

    /// Loads the program for this map; the verifier's log is in the error on refusal.
    pub fn load(&self, client_mask: u32, prefixes: &[(u32, u32)], workers: u32) -> io::Result<OwnedFd> {
        let prog = program(self.map.as_raw_fd(), client_mask, prefixes, workers);
        let license = b"GPL\0";
        let mut log = vec![0u8; 64 * 1024];
        let r = bpf(BPF_PROG_LOAD, |a| {
            put32(a, 0, BPF_PROG_TYPE_SOCKET_FILTER);
            put32(a, 4, prog.len() as u32);
            put64(a, 8, prog.as_ptr() as u64);
            put64(a, 16, license.as_ptr() as u64);
            put32(a, 24, 1);
            put32(a, 28, log.len() as u32);
            put64(a, 32, log.as_mut_ptr() as u64);
        });
        match r {
            // SAFETY: a new file descriptor that nothing else owns.
            Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) }),
            Err(e) => {
                let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                let text = String::from_utf8_lossy(&log[..end]);
                let tail: String = text.lines().rev().take(4).collect::<Vec<_>>().join(" / ");
                Err(io::Error::new(e.kind(), format!("eBPF fanout program refused: {e}: {tail}")))
            }
        }
    }
}

/// `setsockopt(PACKET_FANOUT_DATA)` with a program's fd on a socket of an eBPF group (any
/// member sets it for the whole group).
pub fn attach(sock: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> io::Result<()> {
    const SOL_PACKET: libc::c_int = 263;
    const PACKET_FANOUT_DATA: libc::c_int = 22;
    let fd: u32 = prog.as_raw_fd() as u32;
    // SAFETY: a valid u32 option value of the size given.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            SOL_PACKET,
            PACKET_FANOUT_DATA,
            &fd as *const u32 as *const libc::c_void,
            std::mem::size_of::<u32>() as libc::socklen_t,
        )
    };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Runs a loaded program once on `frame` (starting at its Ethernet header) and returns
/// its result (`BPF_PROG_TEST_RUN`; for tests).
pub fn test_run(prog: BorrowedFd<'_>, frame: &[u8]) -> io::Result<u32> {
    let mut out = vec![0u8; frame.len() + 256];
    let (_, attr) = bpf_attr(BPF_PROG_TEST_RUN, |a| {
        put32(a, 0, prog.as_raw_fd() as u32);
        put32(a, 8, frame.len() as u32);
        put32(a, 12, out.len() as u32);
        put64(a, 16, frame.as_ptr() as u64);
        put64(a, 24, out.as_mut_ptr() as u64);
        put32(a, 32, 1);
    })?;
    Ok(u32::from_ne_bytes([attr[4], attr[5], attr[6], attr[7]]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn mix(a: u32) -> u32 {
        let h = (a ^ (a >> 16)).wrapping_mul(MIX_MUL);
        h ^ (h >> 16)
    }

    fn ipv4(proto: u8, src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 28];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[14 + 9] = proto;
        f[14 + 12..14 + 16].copy_from_slice(&src);
        f[14 + 16..14 + 20].copy_from_slice(&dst);
        f
    }

    fn root() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    /// Loads the program in the kernel and runs frames through it (root only; skipped
    /// otherwise): VIPs found in the map are steered by client, others by destination, a
    /// VIP added after loading is steered without a new program.
    #[test]
    fn the_kernel_runs_the_program_as_the_classic_one_would() {
        if !root() {
            eprintln!("skipped: needs root (BPF)");
            return;
        }
        let map = VipMap::new().expect("map");
        let vip = u32::from_be_bytes([10, 0, 0, 100]);
        map.insert(vip).unwrap();
        let prefix = (u32::from_be_bytes([172, 16, 9, 0]), 0xffff_ff00);
        for workers in [1u32, 3, 4] {
            let prog = map.load(u32::MAX, &[prefix], workers).expect("load");
            let run = |f: &[u8]| test_run(prog.as_fd(), f).unwrap();
            for c in 0..40u8 {
                let client = [198, 51, 100, c];
                let want = mix(u32::from_be_bytes(client)) % workers;
                assert_eq!(run(&ipv4(6, client, [10, 0, 0, 100])), want, "to the VIP");
                assert_eq!(run(&ipv4(6, [192, 168, 1, 11], client)), want, "NAT reply");
                assert_eq!(run(&ipv4(17, client, [172, 16, 9, 7])), want, "to a fwmark prefix");
                // ICMP fragmentation needed from a router about VIP → client.
                let mut e = ipv4(1, [203, 0, 113, 1], [10, 0, 0, 100]);
                e[14 + 20] = 3;
                e[14 + 28 + 16..14 + 28 + 20].copy_from_slice(&client);
                assert_eq!(run(&e), want, "ICMP error about the client");
                let other = [10, 0, 0, 101];
                assert_eq!(run(&ipv4(6, client, other)), mix(u32::from_be_bytes(other)) % workers, "not a VIP");
            }
            let mut arp = ipv4(6, [1, 1, 1, 1], [10, 0, 0, 100]);
            arp[12..14].copy_from_slice(&[0x08, 0x06]);
            assert_eq!(run(&arp), 0);
        }
        // A VIP added to the map later is steered by client by the same program.
        let prog = map.load(u32::MAX, &[], 4).unwrap();
        let late = [10, 9, 9, 9];
        let client = [198, 51, 100, 77];
        let by_client = mix(u32::from_be_bytes(client)) % 4;
        let by_dst = mix(u32::from_be_bytes(late)) % 4;
        map.insert(u32::from_be_bytes(late)).unwrap();
        assert_eq!(test_run(prog.as_fd(), &ipv4(6, client, late)).unwrap(), by_client);
        map.remove(u32::from_be_bytes(late)).unwrap();
        assert_eq!(test_run(prog.as_fd(), &ipv4(6, client, late)).unwrap(), by_dst);
        map.remove(u32::from_be_bytes(late)).unwrap();
        // A /24 persistence mask keeps a client network together.
        let prog = map.load(0xffff_ff00, &[], 4).unwrap();
        let a = test_run(prog.as_fd(), &ipv4(6, [198, 51, 100, 1], [10, 0, 0, 100])).unwrap();
        let b = test_run(prog.as_fd(), &ipv4(6, [198, 51, 100, 200], [10, 0, 0, 100])).unwrap();
        assert_eq!(a, b);
        assert_eq!(a, mix(u32::from_be_bytes([198, 51, 100, 0])) % 4);
    }
}
