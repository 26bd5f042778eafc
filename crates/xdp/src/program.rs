//! The XDP steering program (bpf/steer.bpf.c, compiled by build.rs): loading, attaching to
//! the served interfaces through BPF links (a killed rvsd detaches by itself), and its maps.
//!
//! One program object serves every interface; the AF_XDP socket map is split in blocks of
//! [`QUEUES_PER_IF`] slots, one block per interface (`rvs_if_base[ifindex]` + queue), since a
//! socket only receives frames of the device and queue it is bound to.

use std::collections::HashSet;
use std::fmt;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{HashMap, MapData, PerCpuArray, XskMap};
use aya::programs::{ProgramError, Xdp, XdpMode};
use aya::{Ebpf, include_bytes_aligned};

use crate::maps::{AddrKey, MapDiff, SteerMaps, SvcKey};

static OBJECT: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/steer.bpf.o"));

/// Socket-map slots per interface (queues 0..32 of each device).
pub const QUEUES_PER_IF: u32 = 32;
/// Interfaces one program serves (the socket map holds 256 slots).
pub const MAX_IFS: usize = 8;

/// How the program runs on an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// In the driver (`XDP_FLAGS_DRV_MODE`).
    Native,
    /// In the generic network stack (`XDP_FLAGS_SKB_MODE`): works everywhere, slower, and
    /// delivers GSO super-frames.
    Generic,
}

impl AttachMode {
    pub fn name(self) -> &'static str {
        match self {
            AttachMode::Native => "native",
            AttachMode::Generic => "generic",
        }
    }
}

/// Why the program could not be used.
#[derive(Debug)]
pub struct Error(pub String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// Program counters (per-CPU, summed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProgramStats {
    /// Frames redirected to an AF_XDP socket.
    pub steered: u64,
    /// Frames rvs owns that arrived on a queue without a socket: dropped.
    pub no_socket: u64,
    /// Frames passed to the kernel.
    pub passed: u64,
}

/// The loaded program, its maps and its attachments. Dropping it detaches the program.
pub struct Steering {
    bpf: Ebpf,
    vips: HashMap<MapData, SvcKey, u8>,
    vip_addrs: HashMap<MapData, AddrKey, u8>,
    reals: HashMap<MapData, SvcKey, u8>,
    locals: HashMap<MapData, AddrKey, u8>,
    prefixes: LpmTrie<MapData, [u8; 16], u8>,
    if_base: HashMap<MapData, u32, u32>,
    xsks: XskMap<MapData>,
    stats: PerCpuArray<MapData, u64>,
    /// What the maps hold now.
    current: SteerMaps,
    /// (ifindex, name, mode) in attach order; the position is the socket-map block.
    attached: Vec<(u32, String, AttachMode)>,
}

fn map_err(what: &str, e: impl fmt::Display) -> Error {
    Error(format!("XDP map {what}: {e}"))
}

fn attach_error(name: &str, mode: AttachMode, e: &ProgramError) -> String {
    let text = e.to_string();
    let errno = match e {
        ProgramError::SyscallError(s) => s.io_error.raw_os_error(),
        _ => None,
    };
    match errno {
        Some(libc::EBUSY) | Some(libc::EEXIST) => format!(
            "{name}: another XDP program is attached ({mode} mode): remove it first (ip link set dev {name} xdp off) or run with --io afpacket",
            mode = mode.name()
        ),
        Some(libc::ERANGE) => format!(
            "{name}: MTU too large for {} XDP (veth takes at most about 3500 bytes): lower the MTU or run with --io afpacket",
            mode.name()
        ),
        _ => format!("{name}: {} XDP attach: {text}", mode.name()),
    }
}

impl Steering {
    /// Loads the embedded program into the kernel (nothing is attached yet).
    pub fn load() -> Result<Self, Error> {
        let mut bpf = Ebpf::load(OBJECT).map_err(|e| Error(format!("loading the XDP steering program: {e}")))?;
        let prog: &mut Xdp = bpf
            .program_mut("rvs_steer")
            .ok_or_else(|| Error("rvs_steer missing from the object".into()))?
            .try_into()
            .map_err(|e| Error(format!("rvs_steer: {e}")))?;
        prog.load().map_err(|e| Error(format!("verifying the XDP steering program: {e}")))?;
        let mut take = |name: &str| bpf.take_map(name).ok_or_else(|| Error(format!("map {name} missing")));
        let vips = HashMap::try_from(take("rvs_vips")?).map_err(|e| map_err("rvs_vips", e))?;
        let vip_addrs = HashMap::try_from(take("rvs_vip_addrs")?).map_err(|e| map_err("rvs_vip_addrs", e))?;
        let reals = HashMap::try_from(take("rvs_reals")?).map_err(|e| map_err("rvs_reals", e))?;
        let locals = HashMap::try_from(take("rvs_locals")?).map_err(|e| map_err("rvs_locals", e))?;
        let prefixes = LpmTrie::try_from(take("rvs_prefixes")?).map_err(|e| map_err("rvs_prefixes", e))?;
        let if_base = HashMap::try_from(take("rvs_if_base")?).map_err(|e| map_err("rvs_if_base", e))?;
        let xsks = XskMap::try_from(take("rvs_xsks")?).map_err(|e| map_err("rvs_xsks", e))?;
        let stats = PerCpuArray::try_from(take("rvs_stats")?).map_err(|e| map_err("rvs_stats", e))?;
        Ok(Steering {
            bpf,
            vips,
            vip_addrs,
            reals,
            locals,
            prefixes,
            if_base,
            xsks,
            stats,
            current: SteerMaps::default(),
            attached: Vec::new(),
        })
    }

    /// Attaches to `name` through a BPF link: native mode first, generic if the driver has
    /// none (unless `native_only`). An XDP program already attached (EBUSY) and an MTU too
    /// large for XDP (ERANGE) give errors that say so.
    pub fn attach(&mut self, name: &str, native_only: bool) -> Result<AttachMode, Error> {
        self.try_attach(name, native_only).map_err(|(e, _)| e)
    }

    /// [`Steering::attach`], retried for up to `wait` while another program's link holds the
    /// interface (EBUSY/EEXIST): a hot restart attaches as soon as the old daemon's link goes.
    pub fn attach_waiting(&mut self, name: &str, native_only: bool, wait: Duration) -> Result<AttachMode, Error> {
        let t0 = Instant::now();
        loop {
            match self.try_attach(name, native_only) {
                Err((_, true)) if t0.elapsed() < wait => std::thread::sleep(Duration::from_millis(1)),
                r => return r.map_err(|(e, _)| e),
            }
        }
    }

    /// Attach; the error says whether another program held the interface.
    fn try_attach(&mut self, name: &str, native_only: bool) -> Result<AttachMode, (Error, bool)> {
        if self.attached.len() >= MAX_IFS {
            return Err((Error(format!("{name}: XDP steering serves at most {MAX_IFS} interfaces")), false));
        }
        let ifindex = crate::sys::if_index(name).map_err(|e| (Error(format!("{name}: {e}")), false))?;
        let block = self.attached.len() as u32 * QUEUES_PER_IF;
        self.if_base.insert(ifindex, block, 0).map_err(|e| (map_err("rvs_if_base", e), false))?;
        let prog: &mut Xdp = self
            .bpf
            .program_mut("rvs_steer")
            .ok_or_else(|| (Error("rvs_steer missing".into()), false))?
            .try_into()
            .map_err(|e| (Error(format!("rvs_steer: {e}")), false))?;
        let mode = match prog.attach_to_if_index(ifindex, XdpMode::Driver) {
            Ok(_) => AttachMode::Native,
            Err(e) => {
                let errno = match &e {
                    ProgramError::SyscallError(s) => s.io_error.raw_os_error(),
                    _ => None,
                };
                let busy = matches!(errno, Some(libc::EBUSY) | Some(libc::EEXIST));
                // EBUSY/ERANGE would fail the same in generic mode: report them as they are.
                if native_only || busy || errno == Some(libc::ERANGE) {
                    let _ = self.if_base.remove(&ifindex);
                    return Err((Error(attach_error(name, AttachMode::Native, &e)), busy));
                }
                match prog.attach_to_if_index(ifindex, XdpMode::Skb) {
                    Ok(_) => AttachMode::Generic,
                    Err(e2) => {
                        let _ = self.if_base.remove(&ifindex);
                        return Err((
                            Error(format!(
                                "{}; {}",
                                attach_error(name, AttachMode::Native, &e),
                                attach_error(name, AttachMode::Generic, &e2)
                            )),
                            false,
                        ));
                    }
                }
            }
        };
        self.attached.push((ifindex, name.to_string(), mode));
        Ok(mode)
    }

    /// The socket-map slot of (interface, queue), if the interface is attached.
    fn slot(&self, ifindex: u32, queue: u32) -> Option<u32> {
        if queue >= QUEUES_PER_IF {
            return None;
        }
        let k = self.attached.iter().position(|(i, _, _)| *i == ifindex)?;
        Some(k as u32 * QUEUES_PER_IF + queue)
    }

    /// Registers the AF_XDP socket bound to (ifindex, queue): frames rvs owns arriving there
    /// go to it.
    pub fn set_socket(&mut self, ifindex: u32, queue: u32, fd: &impl AsRawFd) -> Result<(), Error> {
        let slot = self
            .slot(ifindex, queue)
            .ok_or_else(|| Error(format!("no XDP slot for ifindex {ifindex} queue {queue}")))?;
        self.xsks.set(slot, fd.as_raw_fd(), 0).map_err(|e| map_err("rvs_xsks", e))
    }

    /// Unregisters the socket of (ifindex, queue): frames rvs owns there are dropped.
    pub fn clear_socket(&mut self, ifindex: u32, queue: u32) -> Result<(), Error> {
        let slot = self
            .slot(ifindex, queue)
            .ok_or_else(|| Error(format!("no XDP slot for ifindex {ifindex} queue {queue}")))?;
        self.xsks.unset(slot).map_err(|e| map_err("rvs_xsks", e))
    }

    /// Interfaces attached, with their mode.
    pub fn attached(&self) -> impl Iterator<Item = (u32, &str, AttachMode)> {
        self.attached.iter().map(|(i, n, m)| (*i, n.as_str(), *m))
    }

    /// Brings the maps to `want` by inserting what is new and removing what went (map
    /// updates only; the program stays attached). O(entries): for a full resynchronisation.
    pub fn sync(&mut self, want: &SteerMaps) -> Result<usize, Error> {
        let d = self.current.diff(want);
        self.apply(&d)
    }

    /// Inserts and removes the entries of `d` (map updates only). Every entry is tried; what
    /// the maps hold is noted entry by entry ([`Steering::current`]), so after an error a
    /// [`Steering::sync`] finishes the job. Returns how many entries changed, or the first error.
    pub fn apply(&mut self, d: &MapDiff) -> Result<usize, Error> {
        let mut n = 0;
        let mut first: Option<Error> = None;
        let mut note = |r: Result<(), Error>| match r {
            Ok(()) => n += 1,
            Err(e) => {
                first.get_or_insert(e);
            }
        };
        // Insertions first: a key moving between owners never leaves the maps.
        for k in &d.add.services {
            note(put(&mut self.vips, &mut self.current.services, k, "rvs_vips"));
        }
        for k in &d.add.vip_addrs {
            note(put(&mut self.vip_addrs, &mut self.current.vip_addrs, k, "rvs_vip_addrs"));
        }
        for k in &d.add.reals {
            note(put(&mut self.reals, &mut self.current.reals, k, "rvs_reals"));
        }
        for k in &d.add.locals {
            note(put(&mut self.locals, &mut self.current.locals, k, "rvs_locals"));
        }
        for p in &d.add.prefixes {
            let r =
                self.prefixes.insert(&Key::new(u32::from(p.1), p.0), 1u8, 0).map_err(|e| map_err("rvs_prefixes", e));
            if r.is_ok() {
                self.current.prefixes.insert(*p);
            }
            note(r);
        }
        // Removals: an entry gone already (ENOENT) is as good as removed.
        for k in &d.remove.services {
            drop_key(&mut self.vips, &mut self.current.services, k);
        }
        for k in &d.remove.vip_addrs {
            drop_key(&mut self.vip_addrs, &mut self.current.vip_addrs, k);
        }
        for k in &d.remove.reals {
            drop_key(&mut self.reals, &mut self.current.reals, k);
        }
        for k in &d.remove.locals {
            drop_key(&mut self.locals, &mut self.current.locals, k);
        }
        for p in &d.remove.prefixes {
            let _ = self.prefixes.remove(&Key::new(u32::from(p.1), p.0));
            self.current.prefixes.remove(p);
        }
        let n = n + d.remove.len_all();
        match first {
            Some(e) => Err(e),
            None => Ok(n),
        }
    }

    /// What the maps hold now.
    pub fn current(&self) -> &SteerMaps {
        &self.current
    }

    /// The program's counters, summed over CPUs.
    pub fn stats(&self) -> ProgramStats {
        let sum = |k: u32| self.stats.get(&k, 0).map(|v| v.iter().sum::<u64>()).unwrap_or(0);
        ProgramStats { steered: sum(0), no_socket: sum(1), passed: sum(2) }
    }
}

/// Inserts `k` into `map` and notes it in `have`.
fn put<K: aya::Pod + Eq + std::hash::Hash>(
    map: &mut HashMap<MapData, K, u8>,
    have: &mut HashSet<K>,
    k: &K,
    name: &str,
) -> Result<(), Error> {
    map.insert(k, 1u8, 0).map_err(|e| map_err(name, e))?;
    have.insert(*k);
    Ok(())
}

/// Removes `k` from `map` and from `have`.
fn drop_key<K: aya::Pod + Eq + std::hash::Hash>(map: &mut HashMap<MapData, K, u8>, have: &mut HashSet<K>, k: &K) {
    let _ = map.remove(k);
    have.remove(k);
}
