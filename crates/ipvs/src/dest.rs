//! A real server ("dest") of a virtual service.
//!
//! A `Dest` is shared between the control plane, every worker and every connection bound to it,
//! so everything that changes after creation (weight, thresholds, method, counters, flags) is an
//! atomic: an `-e` edit takes effect in place, without a new snapshot and without locks
//! (reference/lvs-semantics.md §7, §15).

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering::Relaxed};

use crate::stats::Stats;

/// How packets of a connection reach the real server (`IP_VS_CONN_F_FWD_MASK`, §7, §16).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ForwardMethod {
    /// NAT (`-m`): destination rewritten in, source rewritten on replies.
    Masq = 0,
    /// The real server is the director itself.
    Local = 1,
    /// IP-in-IP (or GUE/GRE) encapsulation (`-i`).
    Tunnel = 2,
    /// Direct routing (`-g`): only the MAC changes.
    Route = 3,
    /// cache_bypass: forwarded unchanged to the original destination.
    Bypass = 4,
}

impl ForwardMethod {
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::Masq,
            1 => Self::Local,
            2 => Self::Tunnel,
            3 => Self::Route,
            4 => Self::Bypass,
            _ => return None,
        })
    }
}

/// Tunnel encapsulation of a `Tunnel` dest (`--tun-type`; §7: IPIP 0, GUE 1, GRE 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum TunnelType {
    #[default]
    Ipip = 0,
    Gue = 1,
    Gre = 2,
}

/// Tunnel checksum option (§7: NOCSUM 0, CSUM 1, REMCSUM 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum TunnelCsum {
    #[default]
    NoCsum = 0,
    Csum = 1,
    RemCsum = 2,
}

/// The parameters of a dest that `ipvsadm -a/-e` sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DestConfig {
    pub addr: IpAddr,
    pub port: u16,
    pub weight: i32,
    pub method: ForwardMethod,
    pub u_threshold: u32,
    pub l_threshold: u32,
    pub tun_type: TunnelType,
    pub tun_port: u16,
    pub tun_csum: TunnelCsum,
}

impl DestConfig {
    /// A dest with ipvsadm's defaults: DR, weight 1, no thresholds, IPIP.
    pub fn new(addr: IpAddr, port: u16) -> Self {
        DestConfig {
            addr,
            port,
            weight: 1,
            method: ForwardMethod::Route,
            u_threshold: 0,
            l_threshold: 0,
            tun_type: TunnelType::Ipip,
            tun_port: 0,
            tun_csum: TunnelCsum::NoCsum,
        }
    }
    pub fn method(mut self, m: ForwardMethod) -> Self {
        self.method = m;
        self
    }
    pub fn weight(mut self, w: i32) -> Self {
        self.weight = w;
        self
    }
    pub fn thresholds(mut self, upper: u32, lower: u32) -> Self {
        self.u_threshold = upper;
        self.l_threshold = lower;
        self
    }
}

/// `IP_VS_DEST_F_AVAILABLE`: the dest is in its service, not in the trash.
pub const DEST_F_AVAILABLE: u32 = 0x1;
/// `IP_VS_DEST_F_OVERLOAD`: upper threshold reached; schedulers skip it.
pub const DEST_F_OVERLOAD: u32 = 0x2;
/// rvs: the dest is draining (removed, but keeps its live connections until a deadline).
pub const DEST_F_DRAINING: u32 = 0x4;

/// A real server. Its address and port never change; everything else is atomic.
#[derive(Debug)]
pub struct Dest {
    pub addr: IpAddr,
    pub port: u16,
    weight: AtomicI32,
    /// Last non-zero weight (mh keeps slots for a dest set to weight 0, §15).
    last_weight: AtomicI32,
    /// method | tun_type << 8 | tun_csum << 16 | tun_port << 32
    method_word: AtomicU64,
    u_threshold: AtomicU32,
    l_threshold: AtomicU32,
    flags: AtomicU32,
    activeconns: AtomicU32,
    inactconns: AtomicU32,
    persistconns: AtomicU32,
    pub stats: Stats,
    /// The stats of the service this dest belongs to (counted with the dest's, per packet).
    pub svc_stats: Arc<Stats>,
    /// The service's own timeouts, when it overrides the global ones (read on state changes).
    pub svc_timeouts: SvcTimeouts,
}

/// Per-service timeouts shared by a service and its dests (`None` = the global ones).
pub type SvcTimeouts = Arc<arc_swap::ArcSwapOption<crate::proto::Timeouts>>;

impl Dest {
    pub fn new(cfg: &DestConfig) -> Self {
        Self::for_service(cfg, Arc::new(Stats::default()))
    }

    /// A dest of a service whose counters are `svc_stats`.
    pub fn for_service(cfg: &DestConfig, svc_stats: Arc<Stats>) -> Self {
        Self::in_service(cfg, svc_stats, SvcTimeouts::default())
    }

    /// A dest of a service with its counters and timeout overrides.
    pub fn in_service(cfg: &DestConfig, svc_stats: Arc<Stats>, svc_timeouts: SvcTimeouts) -> Self {
        let d = Dest {
            addr: cfg.addr,
            port: cfg.port,
            weight: AtomicI32::new(0),
            last_weight: AtomicI32::new(0),
            method_word: AtomicU64::new(0),
            u_threshold: AtomicU32::new(0),
            l_threshold: AtomicU32::new(0),
            flags: AtomicU32::new(DEST_F_AVAILABLE),
            activeconns: AtomicU32::new(0),
            inactconns: AtomicU32::new(0),
            persistconns: AtomicU32::new(0),
            stats: Stats::default(),
            svc_stats,
            svc_timeouts,
        };
        d.apply(cfg);
        d
    }

    /// Apply an `-e` edit in place (§15: an edit clears OVERLOAD when the new upper threshold
    /// is 0 or higher than before).
    pub fn apply(&self, cfg: &DestConfig) {
        let old_u = self.u_threshold.load(Relaxed);
        self.weight.store(cfg.weight, Relaxed);
        if cfg.weight > 0 {
            self.last_weight.store(cfg.weight, Relaxed);
        }
        let word =
            cfg.method as u64 | (cfg.tun_type as u64) << 8 | (cfg.tun_csum as u64) << 16 | (cfg.tun_port as u64) << 32;
        self.method_word.store(word, Relaxed);
        self.u_threshold.store(cfg.u_threshold, Relaxed);
        self.l_threshold.store(cfg.l_threshold, Relaxed);
        if cfg.u_threshold == 0 || cfg.u_threshold > old_u {
            self.flags.fetch_and(!DEST_F_OVERLOAD, Relaxed);
        }
    }

    pub fn config(&self) -> DestConfig {
        let (tun_type, tun_csum, tun_port) = self.tunnel();
        DestConfig {
            addr: self.addr,
            port: self.port,
            weight: self.weight(),
            method: self.method(),
            u_threshold: self.u_threshold(),
            l_threshold: self.l_threshold(),
            tun_type,
            tun_port,
            tun_csum,
        }
    }

    #[inline]
    pub fn weight(&self) -> i32 {
        self.weight.load(Relaxed)
    }
    #[inline]
    pub fn last_weight(&self) -> i32 {
        self.last_weight.load(Relaxed)
    }
    /// Tunnel type, checksum option and port (GUE), read per tunnelled packet.
    #[inline]
    pub fn tunnel(&self) -> (TunnelType, TunnelCsum, u16) {
        let w = self.method_word.load(Relaxed);
        let t = match (w >> 8) as u8 {
            1 => TunnelType::Gue,
            2 => TunnelType::Gre,
            _ => TunnelType::Ipip,
        };
        let c = match (w >> 16) as u8 {
            1 => TunnelCsum::Csum,
            2 => TunnelCsum::RemCsum,
            _ => TunnelCsum::NoCsum,
        };
        (t, c, (w >> 32) as u16)
    }

    #[inline]
    pub fn method(&self) -> ForwardMethod {
        ForwardMethod::from_u8(self.method_word.load(Relaxed) as u8).unwrap_or(ForwardMethod::Route)
    }
    #[inline]
    pub fn u_threshold(&self) -> u32 {
        self.u_threshold.load(Relaxed)
    }
    #[inline]
    pub fn l_threshold(&self) -> u32 {
        self.l_threshold.load(Relaxed)
    }
    #[inline]
    pub fn flags(&self) -> u32 {
        self.flags.load(Relaxed)
    }
    #[inline]
    pub fn is_available(&self) -> bool {
        self.flags() & DEST_F_AVAILABLE != 0
    }
    #[inline]
    pub fn is_overloaded(&self) -> bool {
        self.flags() & DEST_F_OVERLOAD != 0
    }
    pub fn set_available(&self, on: bool) {
        if on {
            self.flags.fetch_or(DEST_F_AVAILABLE, Relaxed);
        } else {
            self.flags.fetch_and(!DEST_F_AVAILABLE, Relaxed);
        }
    }
    #[inline]
    pub fn is_draining(&self) -> bool {
        self.flags() & DEST_F_DRAINING != 0
    }

    /// Usable for a new connection: in its service, not draining (templates check this).
    #[inline]
    pub fn takes_new(&self) -> bool {
        self.flags() & (DEST_F_AVAILABLE | DEST_F_DRAINING) == DEST_F_AVAILABLE
    }

    pub fn set_draining(&self, on: bool) {
        if on {
            self.flags.fetch_or(DEST_F_DRAINING, Relaxed);
        } else {
            self.flags.fetch_and(!DEST_F_DRAINING, Relaxed);
        }
    }
    /// Test helper and scheduler input: force the OVERLOAD flag.
    pub fn set_overloaded(&self, on: bool) {
        if on {
            self.flags.fetch_or(DEST_F_OVERLOAD, Relaxed);
        } else {
            self.flags.fetch_and(!DEST_F_OVERLOAD, Relaxed);
        }
    }
    #[inline]
    pub fn activeconns(&self) -> u32 {
        self.activeconns.load(Relaxed)
    }
    #[inline]
    pub fn inactconns(&self) -> u32 {
        self.inactconns.load(Relaxed)
    }
    #[inline]
    pub fn persistconns(&self) -> u32 {
        self.persistconns.load(Relaxed)
    }

    /// `(activeconns << 8) + inactconns`, the load measure of lc/wlc and friends (§15).
    #[inline]
    pub fn overhead(&self) -> u64 {
        ((self.activeconns() as u64) << 8) + self.inactconns() as u64
    }

    /// Bind a new connection entry (starts INACTIVE, or counts as a template).
    /// Sets OVERLOAD when the upper threshold is reached (§15).
    pub fn bind(&self, template: bool) {
        if template {
            self.persistconns.fetch_add(1, Relaxed);
        } else {
            self.inactconns.fetch_add(1, Relaxed);
        }
        let u = self.u_threshold();
        if u != 0 && self.activeconns() + self.inactconns() >= u {
            self.flags.fetch_or(DEST_F_OVERLOAD, Relaxed);
        }
    }

    /// Unbind an expired entry; re-evaluates OVERLOAD (§15).
    pub fn unbind(&self, template: bool, active: bool) {
        if template {
            self.persistconns.fetch_sub(1, Relaxed);
        } else if active {
            self.activeconns.fetch_sub(1, Relaxed);
        } else {
            self.inactconns.fetch_sub(1, Relaxed);
        }
        let total = self.activeconns() + self.inactconns();
        let (l, u) = (self.l_threshold(), self.u_threshold());
        let clear = if l != 0 {
            total < l
        } else if u != 0 {
            (total as u64) * 4 < (u as u64) * 3
        } else {
            true
        };
        if clear {
            self.flags.fetch_and(!DEST_F_OVERLOAD, Relaxed);
        }
    }

    /// Move a connection between InActConn and ActiveConn on a state change.
    pub fn set_active(&self, active: bool) {
        if active {
            self.inactconns.fetch_sub(1, Relaxed);
            self.activeconns.fetch_add(1, Relaxed);
        } else {
            self.activeconns.fetch_sub(1, Relaxed);
            self.inactconns.fetch_add(1, Relaxed);
        }
    }

    /// Test helper: set the counters a scheduler reads.
    pub fn set_conns(&self, active: u32, inactive: u32) {
        self.activeconns.store(active, Relaxed);
        self.inactconns.store(inactive, Relaxed);
    }
}
