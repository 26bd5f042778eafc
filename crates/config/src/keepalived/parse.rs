//! From keepalived statements to the configuration model (keepalived.md §2–§6).

use super::lexer::Stmt;
use crate::error::{ConfigError, Warning};
use crate::inherit::Inherit;
use crate::model::*;
use crate::native::{dns_qtype, hex_bytes, hex_pattern};
use crate::validate;
use control::api::{DaemonConfig, ForwardMethod, SchedFlags, ServiceKey, SyncRole, TunnelCsum, TunnelType};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

type R<T> = Result<T, ConfigError>;

/// Top-level blocks that belong to VRRP or other parts keepalived runs; ignored with
/// one warning per block.
const OTHER_BLOCKS: &[&str] = &[
    "vrrp_instance",
    "vrrp_sync_group",
    "vrrp_script",
    "vrrp_track_process",
    "static_ipaddress",
    "static_routes",
    "static_rules",
    "track_file",
    "bfd_instance",
    "linkbeat_interfaces",
    "garp_group",
];

/// global_defs keys that do not concern LVS: accepted silently.
const IGNORED_GLOBALS: &[&str] = &[
    "router_id",
    "notification_email",
    "notification_email_from",
    "smtp_server",
    "smtp_connect_timeout",
    "smtp_helo_name",
    "enable_script_security",
    "script_user",
    "max_auto_priority",
    "dynamic_interfaces",
    "checker_log_all_failures",
    "checker_priority",
    "checker_no_swap",
    "checker_cpu_affinity",
    "checker_rt_priority",
    "checker_rlimit_rttime",
    "checker_process_name",
];

/// A parsed `lvs_method`: method plus tunnel options.
#[derive(Debug, Clone, Copy)]
struct Method {
    method: ForwardMethod,
    tun_type: TunnelType,
    tun_port: u16,
    tun_csum: TunnelCsum,
}

#[derive(Default)]
pub struct Importer {
    cfg: Config,
    groups: HashMap<String, Vec<GroupEntry>>,
    /// The global `SSL { }` block: the TLS client settings of every SSL_GET.
    ssl: Tls,
    /// Errors kept instead of stopping at the first (`collecting`, for `rvsd --check`):
    /// each top-level block that fails is left out and the next one read.
    pub errors: Vec<ConfigError>,
    pub collecting: bool,
}

#[derive(Debug, Clone)]
enum GroupEntry {
    Addrs(Vec<IpAddr>, Option<u16>),
    Fwmark(u32, bool),
}

fn err(s: &Stmt, msg: impl Into<String>) -> ConfigError {
    ConfigError::at(&s.file, s.line, s.keyword(), msg)
}

fn arg(s: &Stmt, i: usize) -> R<&str> {
    s.args().get(i).map(String::as_str).ok_or_else(|| err(s, "missing value"))
}

fn num<T: TryFrom<u64>>(s: &Stmt, i: usize, min: u64, max: u64) -> R<T> {
    let w = arg(s, i)?;
    let v: u64 = w.parse().map_err(|_| err(s, format!("\"{w}\" is not a number")))?;
    if !(min..=max).contains(&v) {
        return Err(err(s, format!("{v} is out of range {min}..{max}")));
    }
    T::try_from(v).map_err(|_| err(s, "value out of range"))
}

/// `<TIMER>`: seconds, fractional allowed.
fn timer(s: &Stmt) -> R<Duration> {
    let w = arg(s, 0)?;
    match w.parse::<f64>() {
        Ok(v) if (0.0..=86400.0).contains(&v) => Ok(Duration::from_secs_f64(v)),
        _ => Err(err(s, format!("\"{w}\" is not a time in seconds (0..86400)"))),
    }
}

/// `<BOOL>`; the keyword alone means true.
fn boolean(s: &Stmt) -> R<bool> {
    match s.args().first().map(|w| w.to_ascii_lowercase()).as_deref() {
        None | Some("on" | "true" | "yes") => Ok(true),
        Some("off" | "false" | "no") => Ok(false),
        Some(w) => Err(err(s, format!("\"{w}\" is not a boolean (on|off|true|false|yes|no)"))),
    }
}

fn ip(s: &Stmt, w: &str) -> R<IpAddr> {
    w.parse().map_err(|_| err(s, format!("\"{w}\" is not an IP address")))
}

fn port(s: &Stmt, w: &str) -> R<u16> {
    w.parse().map_err(|_| err(s, format!("\"{w}\" is not a port")))
}

/// A script path: all the words, joined (keepalived takes the rest of the line).
fn script(s: &Stmt) -> R<String> {
    if s.args().is_empty() {
        return Err(err(s, "missing script"));
    }
    Ok(s.args().join(" "))
}

impl Importer {
    fn warn(&mut self, s: &Stmt, msg: impl Into<String>) {
        self.cfg.warnings.push(err(s, msg));
    }

    fn warn_w(&mut self, w: Warning) {
        self.cfg.warnings.push(w);
    }

    /// Keeps `e` when collecting errors, else stops with it.
    fn keep(&mut self, r: R<()>) -> R<()> {
        match r {
            Err(e) if self.collecting => {
                self.errors.push(e);
                Ok(())
            }
            r => r,
        }
    }

    /// `run`, handing the kept errors to `errors` (the configuration's warnings stay in it).
    pub fn run_collecting(mut self, stmts: &[Stmt], errors: &mut Vec<ConfigError>) -> R<Config> {
        self.collecting = true;
        let mut kept = Vec::new();
        let r = self.run_keeping(stmts, &mut kept);
        errors.append(&mut kept);
        r
    }

    pub fn run(self, stmts: &[Stmt]) -> R<Config> {
        self.run_keeping(stmts, &mut Vec::new())
    }

    fn run_keeping(mut self, stmts: &[Stmt], kept: &mut Vec<ConfigError>) -> R<Config> {
        let r = self.run_all(stmts);
        kept.append(&mut self.errors);
        r.map(|()| self.cfg)
    }

    fn run_all(&mut self, stmts: &[Stmt]) -> R<()> {
        for s in stmts.iter().filter(|s| s.keyword() == "virtual_server_group") {
            let r = self.group(s);
            self.keep(r)?;
        }
        // lvs_sync_daemon names an instance that may come later in the file.
        for s in stmts.iter().filter(|s| s.keyword() == "vrrp_instance") {
            self.vrrp_instance(s);
        }
        // The SSL block applies to every SSL_GET, wherever it stands in the file.
        for s in stmts.iter().filter(|s| s.keyword() == "SSL") {
            let r = self.ssl_block(s);
            self.keep(r)?;
        }
        for s in stmts {
            match s.keyword() {
                "global_defs" => {
                    let r = self.global_defs(s);
                    self.keep(r)?
                }
                "virtual_server_group" | "SSL" => {}
                "virtual_server" => {
                    let r = self.virtual_server(s);
                    self.keep(r)?
                }
                // keepalived --vrrp runs it; rvsd follows the VIPs it sets (--vip-follow).
                "vrrp_instance" => {
                    self.warn(s, "vrrp_instance block ignored (rvs runs the LVS part of keepalived only)")
                }
                k if OTHER_BLOCKS.contains(&k) => {
                    self.warn(s, format!("{k} block ignored (rvs runs the LVS part of keepalived only)"))
                }
                k => self.warn(s, format!("unsupported keyword \"{k}\" ignored")),
            }
        }
        if let Some((i, k)) = validate::duplicate_key(&self.cfg.services) {
            let e =
                ConfigError::at("", 0, "virtual_server", format!("service {k:?} defined twice (virtual server {i})"));
            self.keep(Err(e))?;
        }
        Ok(())
    }

    fn global_defs(&mut self, g: &Stmt) -> R<()> {
        for s in g.block.as_deref().unwrap_or(&[]) {
            match s.keyword() {
                "lvs_timeouts" => {
                    let a = s.args();
                    let mut i = 0;
                    while i < a.len() {
                        let v: u32 = num(s, i + 1, 0, u64::from(validate::MAX_TIMEOUT))?;
                        match a[i].as_str() {
                            "tcp" => self.cfg.timeouts.tcp.insert("ESTABLISHED".into(), v),
                            "tcpfin" => self.cfg.timeouts.tcp.insert("FIN_WAIT".into(), v),
                            "udp" => self.cfg.timeouts.udp.replace(v),
                            w => return Err(err(s, format!("unknown timeout \"{w}\" (tcp, tcpfin, udp)"))),
                        };
                        i += 2;
                    }
                    // 0 leaves a timeout unchanged, as with --set.
                    self.cfg.timeouts.tcp.retain(|_, v| *v != 0);
                    self.cfg.timeouts.udp = self.cfg.timeouts.udp.filter(|v| *v != 0);
                }
                "lvs_sync_daemon" => self.sync_daemon(s)?,
                "lvs_flush" => self.cfg.flush_on_start = true,
                "lvs_flush_on_stop" => {
                    self.warn(s, "lvs_flush_on_stop is not supported: the table stays when the checkers stop")
                }
                k if IGNORED_GLOBALS.contains(&k) || k.starts_with("vrrp_") || k.starts_with("snmp_") => {}
                k => self.warn(s, format!("unsupported global_defs keyword \"{k}\" ignored")),
            }
        }
        Ok(())
    }

    /// `SSL { password P; ca FILE; certificate FILE; key FILE }` (keepalived.md §6 SSL_GET):
    /// the files are read by each SSL_GET checker when it starts (`health/tls.rs`).
    fn ssl_block(&mut self, b: &Stmt) -> R<()> {
        for s in b.block.as_deref().unwrap_or(&[]) {
            let v = || arg(s, 0).map(str::to_owned);
            match s.keyword() {
                "password" => self.ssl.password = Some(v()?),
                "ca" => self.ssl.ca = Some(v()?),
                "certificate" => self.ssl.certificate = Some(v()?),
                "key" => self.ssl.key = Some(v()?),
                // rvs extension: every SSL_GET verifies the server (keepalived never does).
                "verify" => self.ssl.verify = boolean(s)?,
                k => self.warn(s, format!("unsupported SSL keyword \"{k}\" ignored")),
            }
        }
        Ok(())
    }

    /// `lvs_sync_daemon IFACE [[inst] VRRP_INSTANCE] [id N] [maxlen N] [port N] [ttl N] [group ADDR]`.
    fn sync_daemon(&mut self, s: &Stmt) -> R<()> {
        let ifn = arg(s, 0)?.to_owned();
        if ifn.len() > 15 {
            return Err(err(s, "interface name longer than 15 characters"));
        }
        let mut d = DaemonConfig {
            role: SyncRole::Master,
            mcast_ifn: ifn,
            syncid: 0,
            sync_maxlen: 0,
            mcast_group: None,
            mcast_port: 0,
            mcast_ttl: 0,
        };
        let (a, mut i, mut inst, mut id_given) = (s.args(), 1, None, false);
        while i < a.len() {
            match a[i].as_str() {
                "id" => {
                    d.syncid = num(s, i + 1, 0, 255)?;
                    id_given = true;
                }
                "maxlen" => d.sync_maxlen = num(s, i + 1, 1, 65507)?,
                "port" => d.mcast_port = num(s, i + 1, 1, 65535)?,
                "ttl" => d.mcast_ttl = num(s, i + 1, 1, 255)?,
                "group" => d.mcast_group = Some(ip(s, arg(s, i + 1)?)?),
                "inst" => inst = Some(arg(s, i + 1)?.to_owned()),
                w => {
                    inst = Some(w.to_owned());
                    i += 1;
                    continue;
                }
            }
            i += 2;
        }
        // keepalived --vrrp acts on this line itself (it drives the kernel's daemons) and
        // Debian's 2.2.7 crashes without ip_vs.
        const KEEP_OUT: &str = "keepalived --vrrp acts on this line itself and crashes without the kernel's ip_vs: keep it out of the file keepalived reads";
        let Some(inst) = inst else {
            // No instance to follow: both roles at once, each director sends what it forwards.
            self.cfg.sync_daemons.push(d.clone());
            d.role = SyncRole::Backup;
            self.cfg.sync_daemons.push(d);
            return Ok(());
        };
        // As keepalived: without `id`, the syncid is the instance's virtual_router_id.
        if !id_given && let Some(vrid) = self.cfg.vrrp_instance(&inst).and_then(|i| i.vrid) {
            d.syncid = vrid;
        }
        match self.cfg.vrrp_instance(&inst).map(|i| i.vips.is_empty()) {
            // As keepalived: an instance it cannot find clears the sync daemon.
            None => self.warn(
                s,
                format!("no vrrp_instance {inst} in the file: no sync daemon started (keepalived clears lvs_sync_daemon too)"),
            ),
            // Nothing on the interfaces tells its state: both roles at once, as without one.
            Some(true) => {
                self.warn(
                    s,
                    format!(
                        "vrrp_instance {inst} has no virtual_ipaddress, so its state cannot be followed: sync daemons run as master and backup at once; {KEEP_OUT}"
                    ),
                );
                self.cfg.sync_daemons.push(d.clone());
                d.role = SyncRole::Backup;
                self.cfg.sync_daemons.push(d);
            }
            Some(false) => {
                self.warn(
                    s,
                    format!(
                        "the sync daemon follows vrrp_instance {inst} (master while its virtual_ipaddress is on this director, backup otherwise; with --vip-follow always: both at once); {KEEP_OUT}"
                    ),
                );
                d.role = SyncRole::Backup;
                self.cfg.instance_daemons.push(InstanceDaemon { instance: inst, daemon: d });
            }
        }
        Ok(())
    }

    /// `vrrp_instance NAME { ... virtual_router_id N ... virtual_ipaddress { ADDR[/LEN] [dev IF
    /// ...] ... } ... }`: the name, the id and the addresses (keepalived runs the rest). A word that is no address is
    /// skipped with a warning, as keepalived skips it.
    fn vrrp_instance(&mut self, b: &Stmt) {
        let name = b.args().first().cloned().unwrap_or_default();
        let mut vips = Vec::new();
        let blocks = b.block.as_deref().unwrap_or(&[]).iter().filter(|s| s.keyword() == "virtual_ipaddress");
        for s in blocks.flat_map(|v| v.block.as_deref().unwrap_or(&[])) {
            let w = s.keyword();
            let addr = w.split_once('/').map_or(w, |(a, _)| a);
            match addr.parse::<IpAddr>() {
                Ok(a) if !vips.contains(&a) => vips.push(a),
                Ok(_) => {}
                Err(_) => self.warn(s, format!("\"{w}\" in virtual_ipaddress of {name} is not an address; ignored")),
            }
        }
        let vrid = b
            .block
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .find(|s| s.keyword() == "virtual_router_id")
            .and_then(|s| s.args().first()?.parse::<u8>().ok());
        self.cfg.vrrp_instances.push(VrrpInstance { name, vips, vrid });
    }

    fn group(&mut self, g: &Stmt) -> R<()> {
        let name = arg(g, 0)?.to_owned();
        let mut entries = Vec::new();
        for s in g.block.as_deref().unwrap_or(&[]) {
            if s.keyword() == "fwmark" {
                let mark = num(s, 0, 1, u64::from(u32::MAX))?;
                let v6 = match s.args().get(1).map(String::as_str) {
                    None | Some("inet") => false,
                    Some("inet6") => true,
                    Some(w) => return Err(err(s, format!("unknown family \"{w}\" (inet or inet6)"))),
                };
                entries.push(GroupEntry::Fwmark(mark, v6));
                continue;
            }
            let addrs = expand_range(s.keyword()).ok_or_else(|| {
                err(s, format!("\"{}\" is not an address, range (a.b.c.d-e, a-b) or CIDR", s.keyword()))
            })?;
            let p = match s.args().first() {
                Some(w) => Some(port(s, w)?),
                None => None,
            };
            entries.push(GroupEntry::Addrs(addrs, p));
        }
        self.groups.insert(name, entries);
        Ok(())
    }

    fn method(&mut self, s: &Stmt) -> R<Method> {
        let method = match arg(s, 0)?.to_ascii_uppercase().as_str() {
            "NAT" => ForwardMethod::Masq,
            "DR" => ForwardMethod::Route,
            "TUN" => ForwardMethod::Tunnel,
            w => return Err(err(s, format!("unknown forwarding method \"{w}\" (NAT, DR or TUN)"))),
        };
        let mut m = Method { method, tun_type: TunnelType::Ipip, tun_port: 0, tun_csum: TunnelCsum::NoCsum };
        let (a, mut i) = (s.args(), 1);
        while i < a.len() {
            match a[i].as_str() {
                "type" => {
                    m.tun_type = match arg(s, i + 1)? {
                        "ipip" => TunnelType::Ipip,
                        "gue" => TunnelType::Gue,
                        "gre" => TunnelType::Gre,
                        w => return Err(err(s, format!("unknown tunnel type \"{w}\" (ipip, gue, gre)"))),
                    };
                    i += 1;
                }
                "port" => {
                    m.tun_port = num(s, i + 1, 1, 65535)?;
                    i += 1;
                }
                "nocsum" => m.tun_csum = TunnelCsum::NoCsum,
                "csum" => m.tun_csum = TunnelCsum::Csum,
                "remcsum" => m.tun_csum = TunnelCsum::RemCsum,
                w => return Err(err(s, format!("unknown lvs_method option \"{w}\""))),
            }
            i += 1;
        }
        if method != ForwardMethod::Tunnel && a.len() > 1 {
            return Err(err(s, "tunnel options are only for TUN"));
        }
        Ok(m)
    }

    /// The inheritable keywords; true if `s` was one.
    fn inheritable(&mut self, s: &Stmt, inh: &mut Inherit) -> R<bool> {
        match s.keyword() {
            "delay_loop" => inh.delay_loop = Some(timer(s)?),
            "connect_timeout" => inh.connect_timeout = Some(timer(s)?),
            "delay_before_retry" => inh.delay_before_retry = Some(timer(s)?),
            "warmup" => inh.warmup = Some(timer(s)?),
            "retry" | "nb_get_retry" => inh.retry = Some(num(s, 0, 0, 1_000_000)?),
            "alpha" => inh.alpha = Some(boolean(s)?),
            "inhibit_on_failure" => inh.inhibit_on_failure = Some(boolean(s)?),
            "virtualhost" => inh.virtualhost = Some(arg(s, 0)?.to_owned()),
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn virtual_server(&mut self, v: &Stmt) -> R<()> {
        enum Header {
            Addr(IpAddr, Option<u16>),
            Fwmark(u32),
            Group(String),
        }
        let header = match arg(v, 0)? {
            "fwmark" => Header::Fwmark(num(v, 1, 1, u64::from(u32::MAX))?),
            "group" => Header::Group(arg(v, 1)?.to_owned()),
            w => Header::Addr(ip(v, w)?, v.args().get(1).map(|p| port(v, p)).transpose()?),
        };
        let body = v.block.as_deref().unwrap_or(&[]);
        let mut vs = VirtualService::new(v.args().join(" "), Vec::new());
        vs.place = crate::error::Place::new(&v.file, v.line, "virtual_server");
        let mut inh = Inherit::default();
        let (mut proto, mut sched, mut method) = (None, None, None);
        let (mut flag_stmts, mut ops, mut v6) = (Vec::new(), None, false);
        let (mut granularity, mut default_weight) = (None, 1u32);
        let (mut sorry, mut sorry_method, mut sorry_inhibit) = (None, None, false);
        for s in body {
            if self.inheritable(s, &mut inh)? {
                continue;
            }
            match s.keyword() {
                "real_server" => {}
                "lvs_sched" | "lb_algo" => sched = Some((arg(s, 0)?.to_owned(), s)),
                "flag-1" | "flag-2" | "flag-3" | "sh-port" | "sh-fallback" | "mh-port" | "mh-fallback" => {
                    flag_stmts.push(s)
                }
                "hashed" => self.warn(s, "hashed (historic service flag) is ignored"),
                "ops" => ops = Some(s),
                "lvs_method" | "lb_kind" => method = Some(self.method(s)?),
                "persistence_timeout" => {
                    vs.persistent = Some(match s.args().first() {
                        None => 360,
                        Some(_) => num(s, 0, 1, u64::from(validate::MAX_TIMEOUT))?,
                    })
                }
                "persistence_granularity" => granularity = Some((arg(s, 0)?.to_owned(), s)),
                "persistence_engine" => vs.pe = Some(arg(s, 0)?.to_owned()),
                "protocol" => proto = Some((arg(s, 0)?.to_ascii_uppercase(), s)),
                "ip_family" => {
                    v6 = match arg(s, 0)? {
                        "inet" => false,
                        "inet6" => true,
                        w => return Err(err(s, format!("unknown family \"{w}\" (inet or inet6)"))),
                    }
                }
                "omega" => vs.omega = boolean(s)?,
                "quorum" => vs.quorum = num(s, 0, 1, u64::from(u32::MAX))?,
                "hysteresis" => vs.hysteresis = num(s, 0, 0, u64::from(u32::MAX))?,
                "quorum_up" => vs.quorum_up = Some(script(s)?),
                "quorum_down" => vs.quorum_down = Some(script(s)?),
                "weight" => default_weight = num(s, 0, 0, u64::from(validate::MAX_WEIGHT))?,
                "sorry_server" => {
                    let a = ip(s, arg(s, 0)?)?;
                    let p = s.args().get(1).map(|w| port(s, w)).transpose()?;
                    sorry = Some((a, p, s));
                }
                "sorry_server_inhibit" => sorry_inhibit = boolean(s)?,
                "sorry_server_lvs_method" => sorry_method = Some(self.method(s)?),
                "ha_suspend" => self.warn(s, "ha_suspend is not supported: checkers always run"),
                "smtp_alert" => self.warn(s, "smtp_alert is not supported (no e-mail notifications)"),
                "snmp_name" => {}
                k if is_checker(k) => self.warn(s, format!("{k} outside a real_server is ignored")),
                k => self.warn(s, format!("unsupported virtual_server keyword \"{k}\" ignored")),
            }
        }

        // Scheduler and flags.
        match sched {
            Some((name, s)) => {
                validate::check_scheduler(&name).map_err(|m| err(s, m))?;
                vs.scheduler = name;
            }
            None => self.warn(v, "no scheduler set, setting default wlc"),
        }
        for s in flag_stmts {
            let mut f = SchedFlags::default();
            match validate::set_sched_flag(&mut f, s.keyword(), &vs.scheduler) {
                Ok(()) => {
                    vs.sched_flags.flag1 |= f.flag1;
                    vs.sched_flags.flag2 |= f.flag2;
                    vs.sched_flags.flag3 |= f.flag3;
                }
                Err(m) => self.warn(s, format!("{m} ignored")),
            }
        }
        let method = match method {
            Some(m) => m,
            None => {
                self.warn(v, "no forwarding method set, setting default NAT");
                Method {
                    method: ForwardMethod::Masq,
                    tun_type: TunnelType::Ipip,
                    tun_port: 0,
                    tun_csum: TunnelCsum::NoCsum,
                }
            }
        };

        // Keys.
        let is_fwmark = matches!(header, Header::Fwmark(_));
        let protocol = match (&proto, is_fwmark) {
            (Some((_, s)), true) => {
                self.warn(s, "protocol is ignored for a fwmark service");
                "TCP".to_owned()
            }
            (Some((p, s)), false) => {
                if !matches!(p.as_str(), "TCP" | "UDP" | "SCTP") {
                    return Err(err(s, format!("unknown protocol \"{p}\" (TCP, UDP or SCTP)")));
                }
                p.clone()
            }
            (None, true) => "TCP".to_owned(),
            (None, false) => {
                self.warn(v, "no protocol set - defaulting to UDP");
                "UDP".to_owned()
            }
        };
        let mk = |addr: IpAddr, port: u16| match protocol.as_str() {
            "TCP" => ServiceKey::Tcp { addr, port },
            "SCTP" => ServiceKey::Sctp { addr, port },
            _ => ServiceKey::Udp { addr, port },
        };
        match &header {
            Header::Addr(a, p) => vs.keys.push(mk(*a, p.unwrap_or(0))),
            Header::Fwmark(m) => vs.keys.push(ServiceKey::Fwmark { mark: *m, ipv6: v6 }),
            Header::Group(name) => {
                let Some(entries) = self.groups.get(name) else {
                    return Err(err(v, format!("virtual_server_group \"{name}\" is not defined")));
                };
                for e in entries {
                    match e {
                        GroupEntry::Addrs(addrs, p) => vs.keys.extend(addrs.iter().map(|a| mk(*a, p.unwrap_or(0)))),
                        GroupEntry::Fwmark(m, fv6) => vs.keys.push(ServiceKey::Fwmark { mark: *m, ipv6: *fv6 || v6 }),
                    }
                }
                vs.name = format!("group {name}");
            }
        }
        if vs.keys.is_empty() {
            return Err(err(v, "virtual server without any service"));
        }
        vs.name = match &header {
            Header::Group(_) => vs.name.clone(),
            _ => control::ipvsadm::format::service_label(&vs.keys[0], true, &control::ipvsadm::resolve::NoResolver)
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
        };

        // Persistence.
        if let Some((g, s)) = granularity {
            if vs.keys[0].is_ipv6() {
                vs.prefix_v6 = g
                    .parse()
                    .ok()
                    .filter(|p| (1..=128).contains(p))
                    .ok_or_else(|| err(s, format!("\"{g}\" is not an IPv6 prefix length (1..128)")))?;
            } else {
                let m: Ipv4Addr = g.parse().map_err(|_| err(s, format!("\"{g}\" is not a netmask")))?;
                vs.netmask_v4 = u32::from(m);
            }
            if vs.persistent.is_none() {
                vs.persistent = Some(360);
            }
        }
        if vs.persistent.is_none() && vs.keys.iter().any(|k| matches!(k.addr_port(), Some((_, 0)))) {
            self.warn(v, "port 0 on a non-persistent service: persistence 360 set");
            vs.persistent = Some(360);
        }
        if let Some(s) = ops {
            if vs.keys.iter().any(|k| matches!(k, ServiceKey::Tcp { .. } | ServiceKey::Sctp { .. })) {
                self.warn(s, "ops is only for UDP services: cleared");
            } else {
                vs.ops = true;
            }
        }
        for k in vs.keys.clone() {
            validate::check_service(&vs, &k).map_err(|m| err(v, m))?;
        }

        // Real servers.
        for s in body.iter().filter(|s| s.keyword() == "real_server") {
            let Some(rs) = self.real_server(s, &vs, method, default_weight, &inh)? else { continue };
            let key0 = vs.keys[0];
            if vs.reals.iter().any(|o| o.addr == rs.addr && o.port_for(&key0) == rs.port_for(&key0)) {
                self.warn(s, "duplicate real server removed");
                continue;
            }
            vs.reals.push(rs);
        }
        if let Some((addr, p, s)) = sorry {
            let m = sorry_method.unwrap_or(method);
            let mut rs = self.fix_port(s, &vs, addr, p, m.method);
            apply_method(&mut rs, m);
            rs.weight = 1;
            for k in &vs.keys {
                validate::check_dest(k, &rs).map_err(|e| err(s, e))?;
            }
            vs.sorry_server = Some(SorryServer { server: rs, inhibit: sorry_inhibit });
        }
        if let Some(k) = vs.keys.iter().find(|k| self.cfg.services.iter().any(|o| o.keys.contains(k))) {
            return Err(err(v, format!("service {k:?} is already defined by another virtual_server")));
        }
        for note in validate::fix_quorum(&mut vs) {
            self.warn(v, note);
        }
        self.cfg.services.push(vs);
        Ok(())
    }

    /// keepalived's port fix-ups (keepalived.md §4): missing → VS port; DR/TUN port ≠
    /// VS port → VS port; fwmark service with a non-NAT port → cleared.
    fn fix_port(
        &mut self,
        s: &Stmt,
        vs: &VirtualService,
        addr: IpAddr,
        p: Option<u16>,
        m: ForwardMethod,
    ) -> RealServer {
        let mut port = p;
        let direct = matches!(m, ForwardMethod::Route | ForwardMethod::Tunnel);
        match vs.keys[0].addr_port() {
            Some((_, vport)) if direct && p.is_some_and(|p| p != vport) => {
                self.warn(s, format!("port of a DR/TUN real server reset to the virtual server port {vport}"));
                port = None;
            }
            None if direct && p.is_some_and(|p| p != 0) => {
                self.warn(s, "port of a DR/TUN real server of a fwmark service cleared");
                port = None;
            }
            _ => {}
        }
        RealServer::new(addr, port, m)
    }

    fn real_server(
        &mut self,
        s: &Stmt,
        vs: &VirtualService,
        vs_method: Method,
        default_weight: u32,
        vs_inh: &Inherit,
    ) -> R<Option<RealServer>> {
        let addr = ip(s, arg(s, 0)?)?;
        let p = s.args().get(1).map(|w| port(s, w)).transpose()?;
        let body = s.block.as_deref().unwrap_or(&[]);
        let mut inh = Inherit::default();
        let mut method = vs_method;
        let mut rs = RealServer::new(addr, None, vs_method.method);
        rs.weight = default_weight;
        for c in body {
            if self.inheritable(c, &mut inh)? {
                continue;
            }
            match c.keyword() {
                "weight" => rs.weight = num(c, 0, 0, u64::from(validate::MAX_WEIGHT))?,
                "lvs_method" | "lb_kind" => method = self.method(c)?,
                "uthreshold" => rs.u_threshold = num(c, 0, 0, i32::MAX as u64)?,
                "lthreshold" => rs.l_threshold = num(c, 0, 0, i32::MAX as u64)?,
                "notify_up" => rs.notify_up = Some(script(c)?),
                "notify_down" => rs.notify_down = Some(script(c)?),
                "smtp_alert" => self.warn(c, "smtp_alert is not supported (no e-mail notifications)"),
                "snmp_name" => {}
                k if is_checker(k) => {}
                k => self.warn(c, format!("unsupported real_server keyword \"{k}\" ignored")),
            }
        }
        let inh = vs_inh.overlay(&inh);
        let fixed = self.fix_port(s, vs, addr, p, method.method);
        rs.port = fixed.port;
        apply_method(&mut rs, method);
        rs.inhibit_on_failure = inh.inhibit_on_failure.unwrap_or(false);
        for k in &vs.keys {
            if let Err(m) = validate::check_dest(k, &rs) {
                self.warn(s, format!("{m}: real server ignored"));
                return Ok(None);
            }
        }
        for c in body.iter().filter(|c| is_checker(c.keyword())) {
            let checks = self.checker(c, &inh)?;
            rs.checks.extend(checks);
        }
        Ok(Some(rs))
    }

    /// One checker block: usually one check; an SMTP_CHECK with `host { }` blocks gives one
    /// per host (see `smtp_hosts`).
    fn checker(&mut self, c: &Stmt, parent: &Inherit) -> R<Vec<Check>> {
        let mut hosts = SmtpHosts::default();
        let Some(check) = self.checker_one(c, parent, &mut hosts)? else { return Ok(Vec::new()) };
        if hosts.hosts.is_empty() {
            return Ok(vec![check]);
        }
        self.warn(
            c,
            "the SMTP_CHECK host block is deprecated (keepalived: define additional checkers); each host is checked",
        );
        Ok(smtp_hosts(check, hosts))
    }

    /// A `host { }` block of SMTP_CHECK: its connection options over `at_open`, the
    /// SMTP_CHECK's own as they stood when the block opened (keepalived copies them then).
    fn smtp_host(&mut self, h: &Stmt, at_open: ConnOpts) -> R<ConnOpts> {
        let mut o = at_open;
        for s in h.block.as_deref().unwrap_or(&[]) {
            match s.keyword() {
                "connect_ip" => o.connect_ip = Some(ip(s, arg(s, 0)?)?),
                "connect_port" => o.connect_port = Some(num(s, 0, 1, 65535)?),
                "bindto" => o.bindto = Some(ip(s, arg(s, 0)?)?),
                "bind_port" => o.bind_port = Some(num(s, 0, 1, 65535)?),
                "connect_timeout" => o.connect_timeout = Some(timer(s)?),
                k => self.warn(s, format!("unsupported SMTP_CHECK host keyword \"{k}\" ignored")),
            }
        }
        Ok(o)
    }

    fn checker_one(&mut self, c: &Stmt, parent: &Inherit, hosts: &mut SmtpHosts) -> R<Option<Check>> {
        let kw = c.keyword();
        match kw {
            "FILE_CHECK" | "BFD_CHECK" => {
                self.warn(c, format!("{kw} is not supported; checker ignored"));
                return Ok(None);
            }
            _ => {}
        }
        let body = c.block.as_deref().unwrap_or(&[]);
        let mut inh = Inherit::default();
        let mut check = Check::new(CheckKind::Tcp);
        let mut http = HttpCheck { urls: Vec::new(), version: HttpVersion::V10, virtualhost: None };
        let mut misc = MiscCheck { path: String::new(), timeout: None, dynamic: false };
        let mut udp = UdpCheck { payload: None, require_reply: None, min_reply_length: 0, max_reply_length: 255 };
        let mut dns = DnsCheck { qtype: 6, name: ".".into() };
        let mut helo = "smtpchecker.keepalived.org".to_owned();
        let (mut enable_sni, mut sni_name, mut verify) = (None, None, None);
        for s in body {
            if self.inheritable(s, &mut inh)? {
                continue;
            }
            match (kw, s.keyword()) {
                (k, "connect_ip") if k != "MISC_CHECK" => check.connect_ip = Some(ip(s, arg(s, 0)?)?),
                (k, "connect_port") if k != "MISC_CHECK" => check.connect_port = Some(num(s, 0, 1, 65535)?),
                (k, "bindto") if k != "MISC_CHECK" => check.bindto = Some(ip(s, arg(s, 0)?)?),
                (k, "bind_port") if k != "MISC_CHECK" => check.bind_port = Some(num(s, 0, 1, 65535)?),
                (_, "log_all_failures") => {}
                ("HTTP_GET" | "SSL_GET", "http_protocol") => {
                    http.version = match arg(s, 0)? {
                        "1.0" => HttpVersion::V10,
                        "1.0C" | "1.0c" => HttpVersion::V10Close,
                        "1.1" => HttpVersion::V11,
                        w => return Err(err(s, format!("unknown http_protocol \"{w}\" (1.0, 1.0C, 1.1)"))),
                    }
                }
                ("HTTP_GET" | "SSL_GET", "fast_recovery") => {}
                ("HTTP_GET" | "SSL_GET", "url") => {
                    if let Some(u) = self.url(s)? {
                        http.urls.push(u);
                    }
                }
                ("SSL_GET", "enable_sni") => enable_sni = Some(boolean(s)?),
                ("SSL_GET", "sni_name") => sni_name = Some(arg(s, 0)?.to_owned()),
                // rvs extension: verify the server's certificate (keepalived never does).
                ("SSL_GET", "verify") => verify = Some(boolean(s)?),
                // rvs always ends with close_notify.
                ("SSL_GET", "tls_compliant") => {}
                ("MISC_CHECK", "misc_path") => misc.path = script(s)?,
                ("MISC_CHECK", "misc_timeout") => misc.timeout = Some(timer(s)?),
                ("MISC_CHECK", "misc_dynamic") => misc.dynamic = boolean(s)?,
                ("MISC_CHECK", "user") => self.warn(s, "user is not supported: the script runs as the checker's user"),
                ("UDP_CHECK", "payload") => {
                    udp.payload = Some(hex_bytes(arg(s, 0)?).ok_or_else(|| err(s, "payload must be hex bytes"))?)
                }
                ("UDP_CHECK", "require_reply") => {
                    udp.require_reply = Some(match s.args().first() {
                        None => Vec::new(),
                        Some(p) => hex_pattern(p).ok_or_else(|| err(s, "require_reply must be a hex pattern"))?,
                    })
                }
                ("UDP_CHECK", "min_reply_length") => udp.min_reply_length = num(s, 0, 0, 65535)?,
                ("UDP_CHECK", "max_reply_length") => udp.max_reply_length = num(s, 0, 0, 65535)?,
                ("DNS_CHECK", "type") => {
                    let t = arg(s, 0)?;
                    dns.qtype = dns_qtype(t).ok_or_else(|| err(s, format!("unknown DNS type \"{t}\"")))?;
                }
                ("DNS_CHECK", "name") => dns.name = arg(s, 0)?.to_owned(),
                ("SMTP_CHECK", "helo_name") => helo = arg(s, 0)?.to_owned(),
                ("SMTP_CHECK", "host") => {
                    let at_open = ConnOpts {
                        connect_ip: check.connect_ip,
                        connect_port: check.connect_port,
                        bindto: check.bindto,
                        bind_port: check.bind_port,
                        connect_timeout: inh.connect_timeout,
                    };
                    let h = self.smtp_host(s, at_open)?;
                    hosts.hosts.push(h);
                }
                (_, k) => self.warn(s, format!("unsupported {kw} keyword \"{k}\" ignored")),
            }
        }
        hosts.own_timeout = inh.connect_timeout.is_some();
        let inh = parent.overlay(&inh);
        check.kind = match kw {
            "TCP_CHECK" => CheckKind::Tcp,
            "PING_CHECK" => CheckKind::Ping,
            "HTTP_GET" | "SSL_GET" => {
                if http.urls.is_empty() {
                    self.warn(c, format!("{kw} without url: checker ignored"));
                    return Ok(None);
                }
                http.virtualhost = inh.virtualhost.clone();
                if kw == "SSL_GET" {
                    // `sni_name` alone asks for SNI too.
                    let enable_sni = enable_sni.unwrap_or(sni_name.is_some());
                    let verify = verify.unwrap_or(self.ssl.verify);
                    check.tls = Some(Tls { enable_sni, sni_name, verify, ..self.ssl.clone() });
                }
                CheckKind::Http(http)
            }
            "MISC_CHECK" => {
                if misc.path.is_empty() {
                    self.warn(c, "MISC_CHECK without misc_path: checker ignored");
                    return Ok(None);
                }
                CheckKind::Misc(misc)
            }
            "UDP_CHECK" => CheckKind::Udp(udp),
            "DNS_CHECK" => CheckKind::Dns(dns),
            "SMTP_CHECK" => CheckKind::Smtp { helo_name: helo },
            _ => return Ok(None),
        };
        check.timing = inh.timing(&check.kind);
        check.alpha = inh.alpha.unwrap_or(false);
        Ok(Some(check))
    }

    fn url(&mut self, u: &Stmt) -> R<Option<UrlCheck>> {
        let mut url = UrlCheck { path: String::new(), status: Vec::new(), digest: None, virtualhost: None };
        for s in u.block.as_deref().unwrap_or(&[]) {
            match s.keyword() {
                "path" => url.path = arg(s, 0)?.to_owned(),
                "digest" => {
                    let d = hex_bytes(arg(s, 0)?).and_then(|b| <[u8; 16]>::try_from(b).ok());
                    url.digest = Some(d.ok_or_else(|| err(s, "digest must be 32 hex digits"))?);
                }
                "status_code" => {
                    for w in s.args() {
                        let (a, b) = w.split_once('-').unwrap_or((w, w));
                        match (a.parse::<u16>(), b.parse::<u16>()) {
                            (Ok(a), Ok(b)) if (100..=999).contains(&a) && a <= b && b <= 999 => url.status.push((a, b)),
                            _ => return Err(err(s, format!("\"{w}\" is not a status code or range"))),
                        }
                    }
                }
                "virtualhost" => url.virtualhost = Some(arg(s, 0)?.to_owned()),
                k => self.warn(s, format!("unsupported url keyword \"{k}\" ignored")),
            }
        }
        if url.path.is_empty() {
            self.warn_w(err(u, "url without path ignored"));
            return Ok(None);
        }
        Ok(Some(url))
    }
}

fn apply_method(rs: &mut RealServer, m: Method) {
    rs.method = m.method;
    rs.tun_type = m.tun_type;
    rs.tun_port = m.tun_port;
    rs.tun_csum = m.tun_csum;
}

fn is_checker(k: &str) -> bool {
    matches!(
        k,
        "TCP_CHECK"
            | "HTTP_GET"
            | "SSL_GET"
            | "MISC_CHECK"
            | "UDP_CHECK"
            | "PING_CHECK"
            | "DNS_CHECK"
            | "SMTP_CHECK"
            | "FILE_CHECK"
            | "BFD_CHECK"
    )
}

/// Group entry addresses: `a.b.c.d`, `a.b.c.d-e` (last octet/group), `a-b` (full
/// addresses), `a/len` (CIDR). At most 65536 addresses.
fn expand_range(w: &str) -> Option<Vec<IpAddr>> {
    const MAX: u128 = 65536;
    let span = |lo: IpAddr, hi: IpAddr| -> Option<Vec<IpAddr>> {
        match (lo, hi) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let (a, b) = (u32::from(a), u32::from(b));
                (a <= b && u128::from(b - a) < MAX).then(|| (a..=b).map(|x| IpAddr::V4(Ipv4Addr::from(x))).collect())
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let (a, b) = (u128::from(a), u128::from(b));
                (a <= b && b - a < MAX).then(|| (a..=b).map(|x| IpAddr::V6(Ipv6Addr::from(x))).collect())
            }
            _ => None,
        }
    };
    if let Some((a, len)) = w.split_once('/') {
        let a: IpAddr = a.parse().ok()?;
        let len: u32 = len.parse().ok()?;
        return match a {
            IpAddr::V4(v4) if len <= 32 => {
                let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                let lo = u32::from(v4) & mask;
                span(IpAddr::V4(Ipv4Addr::from(lo)), IpAddr::V4(Ipv4Addr::from(lo | !mask)))
            }
            IpAddr::V6(v6) if len <= 128 => {
                let mask = if len == 0 { 0 } else { u128::MAX << (128 - len) };
                let lo = u128::from(v6) & mask;
                span(IpAddr::V6(Ipv6Addr::from(lo)), IpAddr::V6(Ipv6Addr::from(lo | !mask)))
            }
            _ => None,
        };
    }
    if let Some((a, b)) = w.split_once('-') {
        let lo: IpAddr = a.parse().ok()?;
        if let Ok(hi) = b.parse::<IpAddr>() {
            return span(lo, hi);
        }
        return match lo {
            IpAddr::V4(v4) => {
                let last: u8 = b.parse().ok()?;
                let mut o = v4.octets();
                o[3] = last;
                span(lo, IpAddr::V4(Ipv4Addr::from(o)))
            }
            IpAddr::V6(v6) => {
                let last = u16::from_str_radix(b, 16).ok()?;
                let mut s = v6.segments();
                s[7] = last;
                span(lo, IpAddr::V6(Ipv6Addr::from(s)))
            }
        };
    }
    w.parse().ok().map(|a| vec![a])
}

#[cfg(test)]
#[test]
fn ranges() {
    let v = |s: &str| expand_range(s).map(|v| v.iter().map(|a| a.to_string()).collect::<Vec<_>>());
    assert_eq!(v("10.0.0.101-103").unwrap(), ["10.0.0.101", "10.0.0.102", "10.0.0.103"]);
    assert_eq!(v("10.0.1.255-10.0.2.1").unwrap(), ["10.0.1.255", "10.0.2.0", "10.0.2.1"]);
    assert_eq!(v("10.0.3.8/30").unwrap(), ["10.0.3.8", "10.0.3.9", "10.0.3.10", "10.0.3.11"]);
    assert_eq!(v("2001:db8::1-2").unwrap(), ["2001:db8::1", "2001:db8::2"]);
    assert_eq!(v("10.0.0.5-3"), None);
    assert_eq!(v("10.0.0.0/8"), None, "too many");
    assert_eq!(v("nonsense"), None);
}

/// The `host { }` blocks of an SMTP_CHECK, and whether the SMTP_CHECK set its own
/// connect_timeout (a connection option of its own, as its connect_ip and the others).
#[derive(Default)]
struct SmtpHosts {
    hosts: Vec<ConnOpts>,
    own_timeout: bool,
}

/// The connection options of one SMTP_CHECK target (keepalived's `conn_opts_t`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct ConnOpts {
    connect_ip: Option<IpAddr>,
    connect_port: Option<u16>,
    bindto: Option<IpAddr>,
    bind_port: Option<u16>,
    connect_timeout: Option<Duration>,
}

/// SMTP_CHECK with `host { }` blocks, as keepalived 2 reads it (check_smtp.c): each host
/// becomes a checker of its own, sharing the SMTP_CHECK's HELO name, retries and delays, so
/// the real server is up only when every host answers. The SMTP_CHECK's own target (the
/// real server, or its `connect_ip`/`connect_port`) is checked as well when the block set
/// connection options of its own, else the hosts replace it.
fn smtp_hosts(check: Check, hosts: SmtpHosts) -> Vec<Check> {
    let own = check.connect_ip.is_some()
        || check.connect_port.is_some()
        || check.bindto.is_some()
        || check.bind_port.is_some()
        || hosts.own_timeout;
    let mut out = Vec::with_capacity(hosts.hosts.len() + 1);
    for h in hosts.hosts {
        let mut c = check.clone();
        (c.connect_ip, c.connect_port, c.bindto, c.bind_port) = (h.connect_ip, h.connect_port, h.bindto, h.bind_port);
        if let Some(t) = h.connect_timeout {
            c.timing.connect_timeout = t;
        }
        out.push(c);
    }
    if own {
        out.insert(0, check);
    }
    out
}
