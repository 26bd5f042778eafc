//! Types spoken between `rvsadm` (and any other client) and the daemon `rvsd`.
//!
//! They carry exactly what every ipvsadm listing needs (ipvsadm-cli.md §9), so a
//! client never has to ask twice. All JSON uses serde's default, externally tagged
//! enum representation; see `crates/control/README.md` for examples.
//!
//! Ordering contract: `Snapshot::services` is in the daemon's *kernel order* (hash
//! bucket order) and each `ServiceView::dests` is newest first, like the kernel's
//! lists. Clients sort (ipvsadm-cli.md §8) themselves, so `--nosort` can show the
//! raw order.

use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// IP protocol numbers used on the wire of this API (IANA).
pub const IPPROTO_IP: u8 = 0;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_SCTP: u8 = 132;

/// How a virtual service is identified (ipvsadm `-t`, `-u`, `--sctp-service`, `-f`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum ServiceKey {
    Tcp {
        addr: IpAddr,
        port: u16,
    },
    Udp {
        addr: IpAddr,
        port: u16,
    },
    Sctp {
        addr: IpAddr,
        port: u16,
    },
    /// Firewall-mark service; `ipv6` is ipvsadm's `-6`.
    Fwmark {
        mark: u32,
        ipv6: bool,
    },
}

impl ServiceKey {
    /// Protocol number as the kernel stores it. ipvsadm stores TCP for fwmark
    /// services ("a sane value, even though it is not used").
    pub fn protocol(&self) -> u8 {
        match self {
            ServiceKey::Tcp { .. } | ServiceKey::Fwmark { .. } => IPPROTO_TCP,
            ServiceKey::Udp { .. } => IPPROTO_UDP,
            ServiceKey::Sctp { .. } => IPPROTO_SCTP,
        }
    }

    /// True when the service is IPv6 (address family of the VIP, or `-6`).
    pub fn is_ipv6(&self) -> bool {
        match self {
            ServiceKey::Tcp { addr, .. } | ServiceKey::Udp { addr, .. } | ServiceKey::Sctp { addr, .. } => {
                addr.is_ipv6()
            }
            ServiceKey::Fwmark { ipv6, .. } => *ipv6,
        }
    }

    /// The fwmark, 0 for address/port services (the sort key of ipvsadm-cli.md §8).
    pub fn fwmark(&self) -> u32 {
        match self {
            ServiceKey::Fwmark { mark, .. } => *mark,
            _ => 0,
        }
    }

    /// Virtual address and port; `None` for fwmark services.
    pub fn addr_port(&self) -> Option<(IpAddr, u16)> {
        match self {
            ServiceKey::Tcp { addr, port } | ServiceKey::Udp { addr, port } | ServiceKey::Sctp { addr, port } => {
                Some((*addr, *port))
            }
            ServiceKey::Fwmark { .. } => None,
        }
    }
}

/// Scheduler flags (`-b`): SCHED1..3 of lvs-semantics.md §7. For `sh` flag1/flag2 are
/// sh-fallback/sh-port, for `mh` mh-fallback/mh-port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedFlags {
    pub flag1: bool,
    pub flag2: bool,
    pub flag3: bool,
}

impl SchedFlags {
    pub fn any(&self) -> bool {
        self.flag1 || self.flag2 || self.flag3
    }
}

/// Everything `-A`/`-E` sets. `-E` replaces all of it (ipvsadm-cli.md §5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    pub key: ServiceKey,
    /// Scheduler name (`wlc` when `-s` was not given).
    pub scheduler: String,
    #[serde(default)]
    pub sched_flags: SchedFlags,
    /// Persistence timeout in seconds; `None` = not persistent.
    #[serde(default)]
    pub persistent: Option<u32>,
    /// IPv4: the persistence mask in host byte order (0xFFFFFFFF = /32).
    /// IPv6: the prefix length (128 by default).
    pub netmask: u32,
    /// One-packet scheduling (`-o`).
    #[serde(default)]
    pub ops: bool,
    /// Persistence engine name (`--pe`, only "sip" exists).
    #[serde(default)]
    pub pe: Option<String>,
}

/// Forwarding method as ipvsadm names it (`Masq`, `Route`, `Tunnel`; `Local` is the
/// LOCALNODE method only old kernels report).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ForwardMethod {
    Masq,
    Route,
    Tunnel,
    Local,
}

/// Encapsulation of a `Tunnel` dest (`--tun-type`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TunnelType {
    #[default]
    Ipip,
    Gue,
    Gre,
}

/// Tunnel checksum mode (`--tun-nocsum|--tun-csum|--tun-remcsum`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TunnelCsum {
    #[default]
    NoCsum,
    Csum,
    RemCsum,
}

/// Everything `-a`/`-e` sets. `port` is already the *effective* port: for DR and TUN
/// dests of non-fwmark services ipvsadm replaces it with the service port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestSpec {
    pub addr: IpAddr,
    pub port: u16,
    pub method: ForwardMethod,
    pub weight: u32,
    #[serde(default)]
    pub u_threshold: u32,
    #[serde(default)]
    pub l_threshold: u32,
    #[serde(default)]
    pub tun_type: TunnelType,
    /// GUE destination port (0 when unused).
    #[serde(default)]
    pub tun_port: u16,
    #[serde(default)]
    pub tun_csum: TunnelCsum,
}

/// Traffic counters (64-bit, like the kernel's stats64).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub conns: u64,
    pub inpkts: u64,
    pub outpkts: u64,
    pub inbytes: u64,
    pub outbytes: u64,
}

/// Estimated rates, per second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rates {
    pub cps: u64,
    pub inpps: u64,
    pub outpps: u64,
    pub inbps: u64,
    pub outbps: u64,
}

/// A dest as listed: its configuration plus its live numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestView {
    pub spec: DestSpec,
    /// ActiveConn.
    pub active: u32,
    /// InActConn.
    pub inactive: u32,
    /// PersistConn (templates pointing at this dest).
    #[serde(default)]
    pub persistent: u32,
    #[serde(default)]
    pub stats: Counters,
    #[serde(default)]
    pub rates: Rates,
}

/// A service as listed; `dests` newest first (kernel order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceView {
    pub spec: ServiceSpec,
    #[serde(default)]
    pub stats: Counters,
    #[serde(default)]
    pub rates: Rates,
    #[serde(default)]
    pub dests: Vec<DestView>,
}

/// Global timeouts in seconds (`--set`, `-L --timeout`). In `SetTimeouts` a 0 means
/// "leave unchanged".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    pub tcp: u32,
    pub tcpfin: u32,
    pub udp: u32,
}

/// Role of a connection-sync daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SyncRole {
    Master,
    Backup,
}

/// An interface name as the kernel takes it: at most 15 bytes, no '/', ':' or white space;
/// rvs also asks for printable ASCII, so that the API schema's character limits are byte
/// limits (docs/api/openapi.json: `maxLength` and `pattern` say the same).
fn if_name<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    if s.len() > 15 {
        return Err(serde::de::Error::custom(format!("interface name {s:?} is longer than 15 bytes")));
    }
    if !s.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b'/' && b != b':') {
        return Err(serde::de::Error::custom(format!(
            "interface name {s:?} must be printable ASCII without '/', ':' or white space"
        )));
    }
    Ok(s)
}

/// Parameters of `--start-daemon` (ipvsadm-cli.md §4). Zero / `None` = kernel default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    pub role: SyncRole,
    /// Multicast interface (`eth0` when not given, at most 15 characters: IFNAMSIZ). Longer
    /// names are refused when the request is read, so a `Batch` cannot carry one either.
    #[serde(deserialize_with = "if_name")]
    pub mcast_ifn: String,
    pub syncid: u8,
    #[serde(default)]
    pub sync_maxlen: u16,
    #[serde(default)]
    pub mcast_group: Option<IpAddr>,
    #[serde(default)]
    pub mcast_port: u16,
    #[serde(default)]
    pub mcast_ttl: u8,
}

/// A running sync daemon as `-L --daemon` shows it (same fields as its config, with
/// the values the daemon actually uses).
pub type DaemonView = DaemonConfig;

/// Everything the listings of the service table need (`GET /v1/snapshot`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Version shown in the header line, e.g. "1.2.1".
    pub version: String,
    /// Number of connection hash buckets (the `size=` of the header line).
    pub conn_tab_size: u32,
    /// Services in kernel (hash-bucket) order.
    pub services: Vec<ServiceView>,
    pub timeouts: Timeouts,
    /// Running sync daemons (any order; listings print master first).
    #[serde(default)]
    pub daemons: Vec<DaemonView>,
}

/// One connection entry as `-L -c` shows it (`GET /v1/connections`), in hash order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnView {
    /// Protocol number: 6, 17, 132, or 0 (IPPROTO_IP) for fwmark templates.
    pub proto: u8,
    pub caddr: IpAddr,
    pub cport: u16,
    /// For templates of fwmark services, the mark as an IPv4 address (kernel style).
    pub vaddr: IpAddr,
    pub vport: u16,
    pub daddr: IpAddr,
    pub dport: u16,
    /// State name exactly as `-c` prints it (see `state_name`).
    pub state: String,
    /// Whole seconds left until expiry, rounded down.
    pub expires_secs: u32,
    #[serde(default)]
    pub template: bool,
    /// One-packet entries are never listed; the client filters them.
    #[serde(default)]
    pub one_packet: bool,
    #[serde(default)]
    pub fwmark: u32,
    #[serde(default)]
    pub pe_name: Option<String>,
    #[serde(default)]
    pub pe_data: Option<String>,
    /// Created by the sync backup (`IP_VS_CONN_F_SYNC`): `ip_vs_conn_sync`'s Origin SYNC.
    #[serde(default)]
    pub synced: bool,
}

/// Configuration changes (`POST /v1/command`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Command {
    AddService(ServiceSpec),
    EditService(ServiceSpec),
    DeleteService(ServiceKey),
    /// `-C`: delete all services.
    Clear,
    AddDest(ServiceKey, DestSpec),
    EditDest(ServiceKey, DestSpec),
    DeleteDest(ServiceKey, IpAddr, u16),
    /// `-Z`: one service, or all services plus the totals.
    Zero(Option<ServiceKey>),
    SetTimeouts(Timeouts),
    StartDaemon(DaemonConfig),
    StopDaemon {
        role: SyncRole,
        syncid: u8,
    },
    /// rvs extension: several commands applied in order, as one publish of the table
    /// (`rvsadm -R`, up to [`MAX_BATCH`] commands); each succeeds or fails on its own, as if
    /// sent alone. Answered with [`Reply::Batch`]. A batch inside a batch is refused.
    Batch(Vec<Command>),
}

/// The most commands one [`Command::Batch`] holds.
pub const MAX_BATCH: usize = 10_000;

/// Successful answer to a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    Done,
    /// One result per command of a [`Command::Batch`], in order (`None`: done).
    Batch(Vec<Option<ApiError>>),
}

/// Error classes, one per errno that ipvsadm distinguishes (ipvsadm-cli.md §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorKind {
    /// EEXIST on add-service.
    ServiceExists,
    /// ENOENT on add/edit-service: unknown scheduler or persistence engine.
    SchedulerNotFound,
    /// ESRCH on service commands and listings.
    NoSuchService,
    /// ESRCH on dest commands.
    ServiceNotDefined,
    /// EEXIST on add-server.
    DestExists,
    /// ENOENT on edit/delete-server.
    NoSuchDest,
    /// EEXIST on start-daemon.
    DaemonRunning,
    /// ESRCH on stop-daemon.
    NoDaemon,
    /// EPERM.
    PermissionDenied,
    /// EINVAL (bad value the daemon refuses, e.g. a non-unicast dest).
    Invalid,
    /// ERANGE (weight < 0, l_threshold > u_threshold).
    Range,
    /// ENOPROTOOPT.
    ProtocolNotAvailable,
    /// ENOMEM.
    NoMemory,
    /// EOPNOTSUPP.
    NotSupported,
    /// EAFNOSUPPORT.
    AfNotSupported,
    /// The request itself could not be understood (bad JSON, unknown query parameter).
    BadRequest,
    /// Anything else; `message` says what.
    Internal,
    /// No or a wrong bearer token on the TCP listener (401).
    Unauthorized,
    /// No such endpoint (404).
    NotFound,
    /// The endpoint exists, not with this method (405, with `Allow`).
    MethodNotAllowed,
    /// The request did not arrive in time (408).
    Timeout,
    /// The request body is larger than the server takes (413).
    TooLarge,
    /// The server has no room for the request now: too many connections (503).
    Unavailable,
    /// The request conflicts with the daemon's state, e.g. a reload without a configuration
    /// file (409).
    Conflict,
}

impl ErrorKind {
    /// HTTP status the daemon should answer with for this kind.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::ServiceExists | ErrorKind::DestExists | ErrorKind::DaemonRunning => 409,
            ErrorKind::SchedulerNotFound
            | ErrorKind::NoSuchService
            | ErrorKind::ServiceNotDefined
            | ErrorKind::NoSuchDest
            | ErrorKind::NoDaemon => 404,
            ErrorKind::PermissionDenied => 403,
            // Malformed (400) apart from understood but refused (422).
            ErrorKind::BadRequest => 400,
            ErrorKind::Invalid | ErrorKind::Range => 422,
            ErrorKind::ProtocolNotAvailable | ErrorKind::NotSupported | ErrorKind::AfNotSupported => 501,
            ErrorKind::NoMemory | ErrorKind::Internal => 500,
            ErrorKind::Unauthorized => 401,
            ErrorKind::NotFound => 404,
            ErrorKind::MethodNotAllowed => 405,
            ErrorKind::Timeout => 408,
            ErrorKind::TooLarge => 413,
            ErrorKind::Unavailable => 503,
            ErrorKind::Conflict => 409,
        }
    }
}

/// Error body of a 4xx/5xx answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError { kind, message: message.into() }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

impl std::error::Error for ApiError {}

/// TCP state names printed by `-c`, indexed by state number (lvs-semantics.md §11): the
/// engine's own table.
pub const TCP_STATE_NAMES: [&str; 11] = ipvs::proto::tcp::NAMES;

/// SCTP state names printed by `-c` (lvs-semantics.md §13): the engine's own table.
pub const SCTP_STATE_NAMES: [&str; 14] = ipvs::proto::sctp::NAMES;

/// Every state name a listing can show (and `GET /v1/connections?state=` takes): TCP's,
/// SCTP's, `UDP`, and `ASSURED` for templates.
pub fn state_names() -> impl Iterator<Item = &'static str> {
    TCP_STATE_NAMES.into_iter().chain(SCTP_STATE_NAMES).chain(["UDP", "ASSURED"])
}

/// The name `-c` prints for a connection state, so the daemon fills
/// `ConnView::state` the way the kernel would (ipvsadm-cli.md §9.5). Templates print
/// `NONE` or `ASSURED`; out-of-range states print `ERR!`.
pub fn state_name(proto: u8, state: u16, template: bool, assured: bool) -> &'static str {
    if template {
        return if assured { "ASSURED" } else { "NONE" };
    }
    let table: &[&'static str] = match proto {
        IPPROTO_TCP => &TCP_STATE_NAMES,
        IPPROTO_UDP => &["UDP"],
        IPPROTO_SCTP => &SCTP_STATE_NAMES,
        _ => &[],
    };
    table.get(usize::from(state)).copied().unwrap_or("ERR!")
}

#[cfg(test)]
mod strict_tests {
    use super::*;

    /// A misspelt field is an error naming it, not a silently different service.
    #[test]
    fn unknown_request_fields_are_refused() {
        let spec = ServiceSpec {
            key: ServiceKey::Tcp { addr: "10.0.0.1".parse().unwrap(), port: 80 },
            scheduler: "wlc".into(),
            sched_flags: SchedFlags::default(),
            persistent: None,
            netmask: u32::MAX,
            ops: false,
            pe: None,
        };
        let good = serde_json::to_value(Command::AddService(spec.clone())).unwrap();
        let back: Command = serde_json::from_value(good.clone()).unwrap();
        assert_eq!(back, Command::AddService(spec));
        let mut bad = good;
        bad["AddService"]["persistance"] = serde_json::json!(300);
        let err = serde_json::from_value::<Command>(bad).unwrap_err().to_string();
        assert!(err.contains("persistance"), "{err}");
    }
}

#[cfg(test)]
mod if_name_tests {
    use super::*;

    #[test]
    fn a_sync_interface_name_over_15_bytes_is_refused_when_read() {
        let body = |ifn: &str| {
            format!(
                r#"{{"StartDaemon":{{"role":"Master","mcast_ifn":"{ifn}","syncid":0,"sync_maxlen":0,"mcast_group":null,"mcast_port":0,"mcast_ttl":0}}}}"#
            )
        };
        assert!(serde_json::from_str::<Command>(&body("eth0")).is_ok());
        assert!(serde_json::from_str::<Command>(&body("a23456789012345")).is_ok());
        let e = serde_json::from_str::<Command>(&body("a234567890123456")).unwrap_err();
        assert!(e.to_string().contains("longer than 15 bytes"), "{e}");
        // Four characters, twelve bytes: the schema's maxLength counts characters, so rvs
        // takes ASCII only and the two limits agree.
        let e = serde_json::from_str::<Command>(&body("\u{85dd4}T\u{e2}b")).unwrap_err();
        assert!(e.to_string().contains("printable ASCII"), "{e}");
        for bad in ["a/b", "a:b", "a b"] {
            assert!(serde_json::from_str::<Command>(&body(bad)).is_err(), "{bad}");
        }
    }
}
