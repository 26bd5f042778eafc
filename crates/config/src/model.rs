//! The configuration model shared by the native TOML file and the keepalived.conf
//! import: the IPVS table (services and real servers) plus what the health checkers
//! need to keep it up to date.

use crate::error::Warning;
use control::api::{
    DaemonConfig, DestSpec, ForwardMethod, SchedFlags, ServiceKey, ServiceSpec, TunnelCsum, TunnelType,
};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

/// A whole configuration. `warnings` lists what was accepted but changed or ignored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    /// Interfaces the data plane runs on (native file only).
    pub interfaces: Vec<Interface>,
    pub limits: Limits,
    /// Global timeouts (`--set`, and any TCP/SCTP state).
    pub timeouts: StateTimeouts,
    /// Connection-sync daemons to start (`--start-daemon`, keepalived `lvs_sync_daemon`).
    pub sync_daemons: Vec<DaemonConfig>,
    /// Sync daemons bound to a VRRP instance (keepalived `lvs_sync_daemon IFACE VI_1`): rvsd
    /// runs each as master while the instance is MASTER, as backup otherwise.
    pub instance_daemons: Vec<InstanceDaemon>,
    /// Clear the table before installing this one (keepalived `lvs_flush`).
    pub flush_on_start: bool,
    pub services: Vec<VirtualService>,
    /// Firewall-mark classifier rules (native `[[fwmark]]`), first match wins: how packets get
    /// the marks `-f` services select (what `iptables -t mangle -j MARK` does for kernel IPVS).
    pub fwmark_rules: Vec<FwmarkRule>,
    /// The keepalived file's `vrrp_instance` blocks: keepalived runs them, rvsd follows the
    /// VIPs they put on the interfaces (`--vip-follow auto`).
    pub vrrp_instances: Vec<VrrpInstance>,
    /// Run-time settings (native `[sysctl]`): full `net.ipv4.vs.` name and value, checked
    /// against the setting's range. A reload sets these and leaves the others as they are.
    pub sysctl: Vec<(String, String)>,
    pub warnings: Vec<Warning>,
}

/// A keepalived `vrrp_instance`, as far as rvsd needs it: its name and the addresses of its
/// `virtual_ipaddress` block, which keepalived puts on the interfaces while it is MASTER.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VrrpInstance {
    pub name: String,
    pub vips: Vec<IpAddr>,
    /// `virtual_router_id`: the syncid of a sync daemon bound to the instance without `id`.
    pub vrid: Option<u8>,
}

/// A sync daemon that follows VRRP instance `instance` (its `role` is ignored): master while
/// the instance's addresses are on this director, backup otherwise, as keepalived switches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceDaemon {
    pub instance: String,
    pub daemon: DaemonConfig,
}

impl Config {
    /// The `vrrp_instance` named `name`.
    pub fn vrrp_instance(&self, name: &str) -> Option<&VrrpInstance> {
        self.vrrp_instances.iter().find(|i| i.name == name)
    }
}

/// One classifier rule: packets to `daddr/dprefix` (optionally from `saddr`), of `protocol`
/// (0 = any) and to a destination port in `ports`, get `mark`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FwmarkRule {
    pub mark: u32,
    pub daddr: IpAddr,
    pub dprefix: u8,
    pub saddr: Option<(IpAddr, u8)>,
    /// IP protocol number (6, 17, 132), 0 for any.
    pub protocol: u8,
    /// Inclusive destination port range; (0, 65535) = any.
    pub ports: (u16, u16),
}

/// An interface of the director and the addresses (VIPs) rvs answers for on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub addresses: Vec<IpAddr>,
}

/// Table limits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// Maximum number of connection entries (None = the daemon's default).
    pub max_connections: Option<u64>,
}

/// Protocol timeouts in seconds. `tcp` and `sctp` map state names as `-c` prints them
/// (`ESTABLISHED`, `FIN_WAIT`, `C-SENT`, …) to seconds; `udp` is the one UDP state.
/// ipvsadm's `--set tcp tcpfin udp` are `tcp["ESTABLISHED"]`, `tcp["FIN_WAIT"]`, `udp`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateTimeouts {
    pub tcp: BTreeMap<String, u32>,
    pub sctp: BTreeMap<String, u32>,
    pub udp: Option<u32>,
}

impl StateTimeouts {
    pub fn is_empty(&self) -> bool {
        self.tcp.is_empty() && self.sctp.is_empty() && self.udp.is_none()
    }

    /// The `--set` command for these timeouts (0 = unchanged), if any of the three is set.
    pub fn set_command(&self) -> Option<control::api::Timeouts> {
        let t = control::api::Timeouts {
            tcp: self.tcp.get("ESTABLISHED").copied().unwrap_or(0),
            tcpfin: self.tcp.get("FIN_WAIT").copied().unwrap_or(0),
            udp: self.udp.unwrap_or(0),
        };
        (t.tcp != 0 || t.tcpfin != 0 || t.udp != 0).then_some(t)
    }
}

/// A virtual service: one or more IPVS services (several for a keepalived
/// `virtual_server group`) sharing one set of real servers and one set of checks.
#[derive(Debug, Clone, PartialEq)]
pub struct VirtualService {
    /// Label for logs and metrics (`TCP 10.0.0.100:80`, `FWM 7`, `group WEB`).
    pub name: String,
    pub keys: Vec<ServiceKey>,
    pub scheduler: String,
    pub sched_flags: SchedFlags,
    /// Persistence timeout in seconds (`-p`).
    pub persistent: Option<u32>,
    /// IPv4 persistence mask, host order (`-M`); 0xFFFFFFFF = /32.
    pub netmask_v4: u32,
    /// IPv6 persistence prefix length; 128 = none.
    pub prefix_v6: u32,
    pub ops: bool,
    pub pe: Option<String>,
    /// Per-service timeouts (applied by the daemon on top of the global ones).
    pub timeouts: StateTimeouts,
    pub reals: Vec<RealServer>,
    pub sorry_server: Option<SorryServer>,
    /// Minimum live weight (keepalived `quorum`, default 1).
    pub quorum: u32,
    pub hysteresis: u32,
    pub quorum_up: Option<String>,
    pub quorum_down: Option<String>,
    /// Run quorum_down / notify_down scripts at shutdown.
    pub omega: bool,
    /// Where it is defined, so checks made later (by the engine, `rvsd --check`) can name
    /// the file and line.
    pub place: crate::error::Place,
}

impl VirtualService {
    /// A service with ipvsadm's defaults (wlc, not persistent, quorum 1).
    pub fn new(name: impl Into<String>, keys: Vec<ServiceKey>) -> Self {
        VirtualService {
            name: name.into(),
            keys,
            scheduler: "wlc".into(),
            sched_flags: SchedFlags::default(),
            persistent: None,
            netmask_v4: u32::MAX,
            prefix_v6: 128,
            ops: false,
            pe: None,
            timeouts: StateTimeouts::default(),
            reals: Vec::new(),
            sorry_server: None,
            quorum: 1,
            hysteresis: 0,
            quorum_up: None,
            quorum_down: None,
            place: crate::error::Place::default(),
            omega: false,
        }
    }

    /// The `-A` parameters of the IPVS service `key`.
    pub fn spec(&self, key: &ServiceKey) -> ServiceSpec {
        ServiceSpec {
            key: *key,
            scheduler: self.scheduler.clone(),
            sched_flags: self.sched_flags,
            persistent: self.persistent,
            netmask: if key.is_ipv6() { self.prefix_v6 } else { self.netmask_v4 },
            ops: self.ops,
            pe: self.pe.clone(),
        }
    }
}

/// The sorry server: installed (weight 1) while the quorum is lost.
#[derive(Debug, Clone, PartialEq)]
pub struct SorryServer {
    pub server: RealServer,
    /// `sorry_server_inhibit`: kept in the table with weight 0 while not in use.
    pub inhibit: bool,
}

/// A real server (IPVS destination) and its checks.
#[derive(Debug, Clone, PartialEq)]
pub struct RealServer {
    pub addr: IpAddr,
    /// `None`: the service port (ipvsadm `-r ADDR` without a port).
    pub port: Option<u16>,
    pub method: ForwardMethod,
    pub weight: u32,
    pub u_threshold: u32,
    pub l_threshold: u32,
    pub tun_type: TunnelType,
    pub tun_port: u16,
    pub tun_csum: TunnelCsum,
    /// On failure set weight 0 instead of removing the destination.
    pub inhibit_on_failure: bool,
    pub notify_up: Option<String>,
    pub notify_down: Option<String>,
    /// All must pass for the server to be up; none = always up.
    pub checks: Vec<Check>,
}

impl RealServer {
    pub fn new(addr: IpAddr, port: Option<u16>, method: ForwardMethod) -> Self {
        RealServer {
            addr,
            port,
            method,
            weight: 1,
            u_threshold: 0,
            l_threshold: 0,
            tun_type: TunnelType::Ipip,
            tun_port: 0,
            tun_csum: TunnelCsum::NoCsum,
            inhibit_on_failure: false,
            notify_up: None,
            notify_down: None,
            checks: Vec::new(),
        }
    }

    /// The effective port for service `key` (ipvsadm-cli.md §5 rule 2: DR/TUN dests of
    /// address services take the service port; a missing port is the service port).
    pub fn port_for(&self, key: &ServiceKey) -> u16 {
        match key.addr_port() {
            Some((_, sport)) if matches!(self.method, ForwardMethod::Route | ForwardMethod::Tunnel) => sport,
            Some((_, sport)) => self.port.unwrap_or(sport),
            None => self.port.unwrap_or(0),
        }
    }

    /// The `-a` parameters of this server in service `key`, with `weight`.
    pub fn dest_for(&self, key: &ServiceKey, weight: u32) -> DestSpec {
        DestSpec {
            addr: self.addr,
            port: self.port_for(key),
            method: self.method,
            weight,
            u_threshold: self.u_threshold,
            l_threshold: self.l_threshold,
            tun_type: self.tun_type,
            tun_port: self.tun_port,
            tun_csum: self.tun_csum,
        }
    }

    /// True when the server starts down (some check has `alpha`).
    pub fn starts_down(&self) -> bool {
        self.checks.iter().any(|c| c.alpha)
    }
}

/// Timing of a checker (keepalived.md §4, §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Interval between check rounds.
    pub delay_loop: Duration,
    /// Extra attempts before declaring failure.
    pub retry: u32,
    pub delay_before_retry: Duration,
    /// Connect and I/O timeout of one attempt.
    pub connect_timeout: Duration,
    /// Random initial delay in [0, warmup].
    pub warmup: Duration,
}

impl Default for Timing {
    /// keepalived's defaults for TCP_CHECK.
    fn default() -> Self {
        Timing {
            delay_loop: Duration::from_secs(60),
            retry: 1,
            delay_before_retry: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(5),
            warmup: Duration::from_secs(60),
        }
    }
}

/// One health check of a real server.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub kind: CheckKind,
    pub timing: Timing,
    /// Address to probe (default: the real server's).
    pub connect_ip: Option<IpAddr>,
    /// Port to probe (default: the real server's effective port).
    pub connect_port: Option<u16>,
    /// Source address of the probes.
    pub bindto: Option<IpAddr>,
    pub bind_port: Option<u16>,
    /// Start down until the first success.
    pub alpha: bool,
    /// SSL_GET: the `Http` check runs over TLS (keepalived models SSL_GET as HTTP_GET
    /// with another transport, keepalived.md §6).
    pub tls: Option<Tls>,
}

impl Check {
    pub fn new(kind: CheckKind) -> Self {
        Check {
            kind,
            timing: Timing::default(),
            connect_ip: None,
            connect_port: None,
            bindto: None,
            bind_port: None,
            alpha: false,
            tls: None,
        }
    }
}

/// What a check does.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckKind {
    /// TCP connect within connect_timeout.
    Tcp,
    Http(HttpCheck),
    Misc(MiscCheck),
    Udp(UdpCheck),
    /// ICMP echo.
    Ping,
    /// DNS query over UDP; passes on a reply with the same id, QR = 1 and RCODE = 0.
    Dns(DnsCheck),
    /// SMTP greeting 220, HELO → 250, QUIT.
    Smtp {
        helo_name: String,
    },
}

/// HTTP version line and `Connection: close` use (keepalived `http_protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HttpVersion {
    /// `1.0`: HTTP/1.0 without Connection: close.
    #[default]
    V10,
    /// `1.0C`: HTTP/1.0 with Connection: close.
    V10Close,
    /// `1.1`: HTTP/1.1 with Connection: close.
    V11,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCheck {
    pub urls: Vec<UrlCheck>,
    pub version: HttpVersion,
    /// Default Host header (else `ip:port`).
    pub virtualhost: Option<String>,
}

/// TLS client settings of an SSL_GET (keepalived.md §6): the check's `enable_sni` /
/// `sni_name`, and the global `SSL { password ca certificate key }` block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tls {
    /// Send SNI: `sni_name`, else the URL's virtualhost, else the check's.
    pub enable_sni: bool,
    pub sni_name: Option<String>,
    /// Verify the server's certificate (an rvs extension; keepalived never does, even
    /// with `ca`): against `ca` if given, else the platform's CA store.
    pub verify: bool,
    /// CA file (PEM), the trust anchors of `verify`.
    pub ca: Option<String>,
    /// Client certificate and key (PEM) presented to the server.
    pub certificate: Option<String>,
    pub key: Option<String>,
    /// Pass phrase of the key.
    pub password: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlCheck {
    pub path: String,
    /// Inclusive status ranges; empty = 200..=299.
    pub status: Vec<(u16, u16)>,
    /// MD5 of the body.
    pub digest: Option<[u8; 16]>,
    pub virtualhost: Option<String>,
}

impl UrlCheck {
    pub fn status_ok(&self, code: u16) -> bool {
        if self.status.is_empty() {
            (200..=299).contains(&code)
        } else {
            self.status.iter().any(|&(lo, hi)| (lo..=hi).contains(&code))
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MiscCheck {
    /// Command line, run with `/bin/sh -c`.
    pub path: String,
    /// Killed after this (default: delay_loop).
    pub timeout: Option<Duration>,
    /// Exit 2..255 sets the weight to status − 2.
    pub dynamic: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpCheck {
    /// Datagram to send (random 16 bytes if absent).
    pub payload: Option<Vec<u8>>,
    /// A reply is required, and its first bytes must match (mask, value) pairs
    /// (`X` nibbles of the keepalived hex pattern are mask 0).
    pub require_reply: Option<Vec<(u8, u8)>>,
    pub min_reply_length: usize,
    pub max_reply_length: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsCheck {
    /// Query type number (A = 1, SOA = 6, …).
    pub qtype: u16,
    pub name: String,
}
