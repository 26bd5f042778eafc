//! The native configuration file (TOML). The schema is documented in the crate
//! README and in `examples/rvs.toml`; every error names the file, the line and the
//! field (`rvs.toml:12: services[0].scheduler: unknown scheduler "foo"`). Validation
//! applies ipvsadm's rules (ipvsadm-cli.md §4, §5) and fails instead of fixing.

mod node;
mod reader;

use crate::error::ConfigError;
use crate::inherit::Inherit;
use crate::model::*;
use crate::validate;
use control::api::{DaemonConfig, ForwardMethod, ServiceKey, SyncRole, TunnelCsum, TunnelType};
use reader::{R, Source, Tbl};
use std::net::{IpAddr, SocketAddr};

/// Parses and validates a native configuration. `file_name` is used in messages.
pub fn parse(text: &str, file_name: &str) -> Result<Config, ConfigError> {
    parse_inner(text, file_name, None)
}

/// `parse` that keeps going after an error in a `[[services]]`, `[[fwmark]]` or
/// `[[interfaces]]` entry, so one run names every such error (`rvsd --check`). The
/// configuration is returned only when there was none.
pub fn parse_all(text: &str, file_name: &str) -> (Option<Config>, Vec<ConfigError>) {
    let mut errors = Vec::new();
    match parse_inner(text, file_name, Some(&mut errors)) {
        Ok(c) if errors.is_empty() => (Some(c), errors),
        Ok(_) => (None, errors),
        Err(e) => {
            errors.push(e);
            (None, errors)
        }
    }
}

/// Keeps `r`'s error in `errors` when collecting (and gives `None`), else returns it.
fn keep<T>(r: Result<T, ConfigError>, errors: &mut Option<&mut Vec<ConfigError>>) -> Result<Option<T>, ConfigError> {
    match (r, errors) {
        (Ok(v), _) => Ok(Some(v)),
        (Err(e), Some(list)) => {
            list.push(e);
            Ok(None)
        }
        (Err(e), None) => Err(e),
    }
}

fn parse_inner(text: &str, file_name: &str, mut errors: Option<&mut Vec<ConfigError>>) -> Result<Config, ConfigError> {
    let src = Source::new(file_name, text);
    let root = node::parse(text).map_err(|(off, msg)| ConfigError::at(file_name, src.line(off), "", msg))?;
    let mut top = Tbl::new(&src, &root, String::new())?;
    let mut cfg = Config::default();

    for mut t in top.tables("interfaces")? {
        let one = (|| {
            let name = t.str("name")?.ok_or_else(|| t.err("missing field \"name\""))?;
            let mut addresses = Vec::new();
            for (i, a) in t.strings("addresses")?.iter().enumerate() {
                addresses
                    .push(a.parse().map_err(|_| t.err_at("addresses", format!("[{i}]: invalid IP address \"{a}\"")))?);
            }
            t.finish()?;
            Ok(Interface { name, addresses })
        })();
        if let Some(i) = keep(one, &mut errors)? {
            cfg.interfaces.push(i);
        }
    }
    if let Some(mut t) = top.table("limits")? {
        cfg.limits.max_connections = t.int("max_connections", 1, i64::MAX)?.map(|v| v as u64);
        t.finish()?;
    }
    if let Some(t) = top.table("timeouts")? {
        cfg.timeouts = timeouts(t)?;
    }
    if let Some(t) = top.table("sysctl")? {
        cfg.sysctl = sysctl(t)?;
    }
    for t in top.tables("sync_daemons")? {
        cfg.sync_daemons.push(sync_daemon(t)?);
    }
    cfg.flush_on_start = top.bool("flush")?.unwrap_or(false);
    let mut fwmark_lines = Vec::new();
    for t in top.tables("fwmark")? {
        let line = t.line();
        if let Some(r) = keep(fwmark_rule(t), &mut errors)? {
            fwmark_lines.push(line);
            cfg.fwmark_rules.push(r);
        }
    }
    for t in top.tables("services")? {
        let (line, path) = (t.line(), t.path.clone());
        let Some(vs) = keep(service(t), &mut errors)? else { continue };
        cfg.services.push(vs);
        if validate::duplicate_key(&cfg.services).is_some() {
            cfg.services.pop();
            keep::<()>(Err(ConfigError::at(file_name, line, &path, "duplicate service")), &mut errors)?;
        }
    }
    top.finish()?;
    for (i, r) in cfg.fwmark_rules.iter().enumerate() {
        let served = cfg.services.iter().any(|vs| {
            vs.keys.iter().any(
                |k| matches!(k, ServiceKey::Fwmark { mark, ipv6 } if *mark == r.mark && *ipv6 == r.daddr.is_ipv6()),
            )
        });
        if !served {
            let family = if r.daddr.is_ipv6() { "IPv6 " } else { "" };
            cfg.warnings.push(ConfigError::at(
                file_name,
                fwmark_lines.get(i).copied().unwrap_or(0),
                &format!("fwmark[{i}].mark"),
                format!("no {family}fwmark service with mark {}: the rule marks packets nothing serves", r.mark),
            ));
        }
    }
    Ok(cfg)
}

/// `ADDR/PREFIX` or `ADDR` (the whole address).
fn prefix(s: &str) -> Option<(IpAddr, u8)> {
    let (a, p) = match s.split_once('/') {
        Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
        None => (s.parse::<IpAddr>().ok()?, None),
    };
    let max = if a.is_ipv6() { 128 } else { 32 };
    let p = p.unwrap_or(max);
    (p <= max).then_some((a, p))
}

/// `[[fwmark]]`: `mark`, `daddr` (`ADDR/PREFIX`), optional `saddr`, `protocol` (`tcp`, `udp`,
/// `sctp`, `any`: the default) and `ports` (`"80"`, `"80-90"`; needs a protocol with ports).
fn fwmark_rule(mut t: Tbl) -> R<FwmarkRule> {
    let mark = t.u32("mark", 1, u32::MAX)?.ok_or_else(|| t.err("missing field \"mark\""))?;
    let d = t.str("daddr")?.ok_or_else(|| t.err("missing field \"daddr\" (ADDR/PREFIX)"))?;
    let (daddr, dprefix) =
        prefix(&d).ok_or_else(|| t.err_at("daddr", format!("\"{d}\" is not ADDR/PREFIX (e.g. 10.0.0.0/24)")))?;
    // The director treats the range as its own (ARP, steering): a very wide one would claim
    // most of the traffic it forwards, NAT replies included.
    let min = if daddr.is_ipv6() { 32 } else { 8 };
    if dprefix < min {
        return Err(t.err_at("daddr", format!("prefix /{dprefix} is too wide for a marked range (at least /{min})")));
    }
    let saddr = match t.str("saddr")? {
        None => None,
        Some(s) => {
            let p = prefix(&s).ok_or_else(|| t.err_at("saddr", format!("\"{s}\" is not ADDR/PREFIX")))?;
            if p.0.is_ipv6() != daddr.is_ipv6() {
                return Err(t.err_at("saddr", "saddr and daddr must be of the same address family"));
            }
            Some(p)
        }
    };
    let protocol = match t.str("protocol")?.as_deref() {
        None | Some("any") => 0,
        Some("tcp") => 6,
        Some("udp") => 17,
        Some("sctp") => 132,
        Some(p) => return Err(t.err_at("protocol", format!("unknown protocol \"{p}\" (tcp, udp, sctp or any)"))),
    };
    let ports = match t.get("ports") {
        None => (0, u16::MAX),
        Some(node::Node { value: node::Value::Int(_), .. }) => {
            if protocol == 0 {
                return Err(t.err_at("ports", "ports need protocol tcp, udp or sctp"));
            }
            let v = t.u32("ports", 1, 65535)?.unwrap_or(1) as u16;
            (v, v)
        }
        Some(_) => {
            let p = t.str("ports")?.unwrap_or_default();
            if protocol == 0 {
                return Err(t.err_at("ports", "ports need protocol tcp, udp or sctp"));
            }
            let bad = || t.err_at("ports", format!("\"{p}\" is not PORT or LOW-HIGH (1..65535)"));
            let (lo, hi) = match p.split_once('-') {
                Some((lo, hi)) => {
                    (lo.trim().parse::<u16>().map_err(|_| bad())?, hi.trim().parse::<u16>().map_err(|_| bad())?)
                }
                None => {
                    let v = p.trim().parse::<u16>().map_err(|_| bad())?;
                    (v, v)
                }
            };
            if lo == 0 || lo > hi {
                return Err(bad());
            }
            (lo, hi)
        }
    };
    t.finish()?;
    Ok(FwmarkRule { mark, daddr, dprefix, saddr, protocol, ports })
}

/// `[timeouts]`: tcp, tcpfin, udp like `--set`, plus `tcp_states` / `sctp_states`
/// tables keyed by the state names `-c` prints.
fn timeouts(mut t: Tbl) -> R<StateTimeouts> {
    let max = validate::MAX_TIMEOUT;
    let mut out = StateTimeouts::default();
    if let Some(v) = t.u32("tcp", 1, max)? {
        out.tcp.insert("ESTABLISHED".into(), v);
    }
    if let Some(v) = t.u32("tcpfin", 1, max)? {
        out.tcp.insert("FIN_WAIT".into(), v);
    }
    out.udp = t.u32("udp", 1, max)?;
    for (key, names, map) in [
        ("tcp_states", &control::api::TCP_STATE_NAMES[..], &mut out.tcp),
        ("sctp_states", &control::api::SCTP_STATE_NAMES[..], &mut out.sctp),
    ] {
        if let Some(mut st) = t.table(key)? {
            for (name, _) in st.rest() {
                let upper = name.to_ascii_uppercase().replace('_', "-");
                let Some(state) = names.iter().find(|n| n.replace('_', "-") == upper) else {
                    return Err(st.err_at(&name, format!("unknown state \"{name}\" (one of {})", names.join(" "))));
                };
                let v = st.reexamine_u32(&name, 1, max)?;
                map.insert((*state).to_owned(), v);
            }
            st.finish()?;
        }
    }
    t.finish()?;
    Ok(out)
}

/// `[sysctl]`: `drop_entry = 1`, `"net.ipv4.vs.amemthresh" = 512`, or a string for a value of
/// several numbers; names and ranges as `rvsadm --sysctl` checks them.
fn sysctl(mut t: Tbl) -> R<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (name, n) in t.rest() {
        let value = match &n.value {
            node::Value::Int(i) => i.to_string(),
            node::Value::Str(s) => s.clone(),
            other => {
                let msg = format!("expected a number or a string, got {}", other.type_name());
                return Err(t.src.err(&n.span, &t.field(&name), msg));
            }
        };
        let full = control::sysctl::check(&name, &value).map_err(|m| t.src.err(&n.span, &t.field(&name), m))?;
        out.push((full, value));
    }
    t.finish()?;
    Ok(out)
}

impl Tbl<'_, '_> {
    /// Reads an already-consumed key again as an integer (for free-form maps).
    fn reexamine_u32(&mut self, key: &str, min: u32, max: u32) -> R<u32> {
        self.u32(key, min, max)?.ok_or_else(|| self.err_at(key, "missing value"))
    }
}

fn sync_daemon(mut t: Tbl) -> R<DaemonConfig> {
    let role = match t.str("role")?.as_deref() {
        Some("master") => SyncRole::Master,
        Some("backup") => SyncRole::Backup,
        Some(r) => return Err(t.err_at("role", format!("unknown role \"{r}\" (master or backup)"))),
        None => return Err(t.err("missing field \"role\"")),
    };
    let mcast_ifn = t.str("interface")?.unwrap_or_else(|| "eth0".into());
    if mcast_ifn.len() > 15 {
        return Err(t.err_at("interface", "interface name longer than 15 characters"));
    }
    let d = DaemonConfig {
        role,
        mcast_ifn,
        syncid: t.u32("syncid", 0, 255)?.unwrap_or(0) as u8,
        sync_maxlen: t.u32("maxlen", 1, 65507)?.unwrap_or(0) as u16,
        mcast_group: t.ip("group")?,
        mcast_port: t.u32("port", 1, 65535)?.unwrap_or(0) as u16,
        mcast_ttl: t.u32("ttl", 1, 255)?.unwrap_or(0) as u8,
    };
    t.finish()?;
    Ok(d)
}

/// `ADDR[:PORT]`, `[V6]:PORT` or a bare IPv6 address (no port), as ipvsadm takes it.
fn addr_port(s: &str) -> Option<(IpAddr, Option<u16>)> {
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some((sa.ip(), Some(sa.port())));
    }
    s.parse::<IpAddr>().ok().map(|a| (a, None))
}

/// The inheritable checker settings given in a table.
fn inherit(t: &mut Tbl) -> R<Inherit> {
    Ok(Inherit {
        delay_loop: t.secs("delay_loop")?,
        retry: t.u32("retry", 0, 1_000_000)?,
        delay_before_retry: t.secs("delay_before_retry")?,
        connect_timeout: t.secs("connect_timeout")?,
        warmup: t.secs("warmup")?,
        alpha: t.bool("alpha")?,
        inhibit_on_failure: t.bool("inhibit_on_failure")?,
        virtualhost: t.str("virtualhost")?,
    })
}

fn service(mut t: Tbl) -> R<VirtualService> {
    let key = match (t.str("protocol")?, t.str("address")?, t.u32("fwmark", 1, u32::MAX)?) {
        (None, None, Some(mark)) => ServiceKey::Fwmark { mark, ipv6: t.bool("ipv6")?.unwrap_or(false) },
        (Some(_), _, Some(_)) => return Err(t.err_at("protocol", "a fwmark service has no protocol")),
        (_, Some(_), Some(_)) => return Err(t.err_at("address", "give either address or fwmark, not both")),
        (proto, Some(a), None) => {
            let Some((addr, port)) = addr_port(&a) else {
                return Err(t.err_at("address", format!("illegal virtual server address[:port] \"{a}\"")));
            };
            let port = port.unwrap_or(0);
            match proto.as_deref() {
                Some("tcp") => ServiceKey::Tcp { addr, port },
                Some("udp") => ServiceKey::Udp { addr, port },
                Some("sctp") => ServiceKey::Sctp { addr, port },
                Some(p) => return Err(t.err_at("protocol", format!("unknown protocol \"{p}\" (tcp, udp or sctp)"))),
                None => return Err(t.err("missing field \"protocol\" (tcp, udp or sctp)")),
            }
        }
        (_, None, None) => return Err(t.err("missing field \"address\" or \"fwmark\"")),
    };
    let name = control::ipvsadm::format::service_label(&key, true, &control::ipvsadm::resolve::NoResolver)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let mut vs = VirtualService::new(name, vec![key]);
    vs.place = crate::error::Place::new(t.src.file, t.line(), t.path.clone());
    if let Some(s) = t.str("scheduler")? {
        validate::check_scheduler(&s).map_err(|m| t.err_at("scheduler", m))?;
        vs.scheduler = s;
    }
    for f in t.strings("flags")? {
        validate::set_sched_flag(&mut vs.sched_flags, &f, &vs.scheduler).map_err(|m| t.err_at("flags", m))?;
    }
    match t.get("persistent") {
        None => {}
        Some(node::Node { value: node::Value::Bool(b), .. }) => vs.persistent = b.then_some(360),
        Some(_) => vs.persistent = t.u32("persistent", 1, validate::MAX_TIMEOUT)?,
    }
    match t.get("netmask") {
        None => {}
        Some(node::Node { value: node::Value::Int(_), .. }) => {
            vs.prefix_v6 = t.u32("netmask", 1, 128)?.unwrap_or(128);
            if !key.is_ipv6() {
                return Err(t.err_at("netmask", "a prefix length is only for IPv6 services; use a dotted mask"));
            }
        }
        Some(_) => {
            let m = t.str("netmask")?.unwrap_or_default();
            let mask: std::net::Ipv4Addr = m
                .parse()
                .map_err(|_| t.err_at("netmask", format!("illegal virtual server persistent mask \"{m}\"")))?;
            if key.is_ipv6() {
                return Err(t.err_at("netmask", "an IPv6 service takes a prefix length (1..128)"));
            }
            vs.netmask_v4 = u32::from(mask);
        }
    }
    if vs.persistent.is_none() && (vs.netmask_v4 != u32::MAX || vs.prefix_v6 != 128) {
        return Err(t.err_at("netmask", "a persistence netmask needs \"persistent\""));
    }
    vs.pe = t.str("pe")?;
    vs.ops = t.bool("one_packet")?.unwrap_or(false);
    if let Some(tt) = t.table("timeouts")? {
        vs.timeouts = timeouts(tt)?;
    }
    vs.quorum = t.u32("quorum", 0, u32::MAX)?.unwrap_or(1);
    vs.hysteresis = t.u32("hysteresis", 0, u32::MAX)?.unwrap_or(0);
    vs.quorum_up = t.str("quorum_up")?;
    vs.quorum_down = t.str("quorum_down")?;
    vs.omega = t.bool("omega")?.unwrap_or(false);
    validate::check_service(&vs, &key).map_err(|m| t.err(m))?;

    let defaults = inherit(&mut t)?;
    // Per-service checks are read once per real server (the inherited values differ).
    let mut shared_checks = t.tables("checks")?;

    if let Some(mut st) = t.table("sorry_server")? {
        let mut rs = real_server_base(&mut st)?;
        let inhibit = st.bool("inhibit")?.unwrap_or(false);
        rs.weight = st.u32("weight", 0, validate::MAX_WEIGHT)?.unwrap_or(1);
        validate::check_dest(&key, &rs).map_err(|m| st.err(m))?;
        st.finish()?;
        vs.sorry_server = Some(SorryServer { server: rs, inhibit });
    }

    let mut reals = t.tables("real_servers")?;
    for rt in reals.iter_mut() {
        let mut rs = real_server_base(rt)?;
        rs.weight = rt.u32("weight", 0, validate::MAX_WEIGHT)?.unwrap_or(1);
        rs.u_threshold = rt.u32("u_threshold", 0, i32::MAX as u32)?.unwrap_or(0);
        rs.l_threshold = rt.u32("l_threshold", 0, i32::MAX as u32)?.unwrap_or(0);
        rs.notify_up = rt.str("notify_up")?;
        rs.notify_down = rt.str("notify_down")?;
        let inh = defaults.overlay(&inherit(rt)?);
        rs.inhibit_on_failure = inh.inhibit_on_failure.unwrap_or(false);
        validate::check_dest(&key, &rs).map_err(|m| rt.err(m))?;
        let own = rt.tables("checks")?;
        if own.is_empty() {
            for c in shared_checks.iter_mut() {
                rs.checks.push(check(c, &inh)?);
            }
        } else {
            for mut c in own {
                rs.checks.push(check(&mut c, &inh)?);
                c.finish_ref()?;
            }
        }
        if vs.reals.iter().any(|o| o.addr == rs.addr && o.port_for(&key) == rs.port_for(&key)) {
            return Err(rt.err("duplicate real server"));
        }
        vs.reals.push(rs);
    }
    for rt in reals {
        rt.finish()?;
    }
    for c in shared_checks {
        c.finish()?;
    }
    t.finish()?;
    Ok(vs)
}

impl Tbl<'_, '_> {
    /// `finish` for a table that is still borrowed elsewhere: checks unknown keys.
    fn finish_ref(&mut self) -> R<()> {
        let unread = self.rest();
        match unread.first() {
            Some((k, n)) => Err(self.src.err(&n.span, &self.field(k), "unknown field")),
            None => Ok(()),
        }
    }
}

/// Address, method and tunnel of a real server or sorry server.
fn real_server_base(t: &mut Tbl) -> R<RealServer> {
    let a = t.str("address")?.ok_or_else(|| t.err("missing field \"address\""))?;
    let (addr, port) =
        addr_port(&a).ok_or_else(|| t.err_at("address", format!("illegal real server address[:port] \"{a}\"")))?;
    let method = match t.str("method")?.as_deref() {
        None | Some("dr" | "route" | "gatewaying") => ForwardMethod::Route,
        Some("nat" | "masq" | "masquerading") => ForwardMethod::Masq,
        Some("tun" | "tunnel" | "ipip") => ForwardMethod::Tunnel,
        Some(m) => return Err(t.err_at("method", format!("unknown forwarding method \"{m}\" (nat, dr or tun)"))),
    };
    let mut rs = RealServer::new(addr, port, method);
    if let Some(mut tt) = t.table("tunnel")? {
        rs.tun_type = match tt.str("type")?.as_deref() {
            None | Some("ipip") => TunnelType::Ipip,
            Some("gue") => TunnelType::Gue,
            Some("gre") => TunnelType::Gre,
            Some(x) => return Err(tt.err_at("type", format!("illegal tunnel type \"{x}\" (ipip, gue or gre)"))),
        };
        rs.tun_port = tt.u32("port", 1, 65535)?.unwrap_or(0) as u16;
        rs.tun_csum = match tt.str("csum")?.as_deref() {
            None | Some("nocsum") => TunnelCsum::NoCsum,
            Some("csum") => TunnelCsum::Csum,
            Some("remcsum") => TunnelCsum::RemCsum,
            Some(x) => return Err(tt.err_at("csum", format!("unknown checksum mode \"{x}\" (nocsum, csum, remcsum)"))),
        };
        tt.finish()?;
    }
    Ok(rs)
}

/// Inclusive status range `200`, `"301-302"`.
fn status_range(n: &node::Node) -> Option<(u16, u16)> {
    match &n.value {
        node::Value::Int(i) => u16::try_from(*i).ok().filter(|c| (100..=999).contains(c)).map(|c| (c, c)),
        node::Value::Str(s) => {
            let (a, b) = s.split_once('-').unwrap_or((s, s));
            let (a, b) = (a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?);
            (100 <= a && a <= b && b <= 999).then_some((a, b))
        }
        _ => None,
    }
}

/// Hex string to bytes.
pub(crate) fn hex_bytes(s: &str) -> Option<Vec<u8>> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// Hex pattern with `X` wildcard nibbles → (mask, value) pairs.
pub(crate) fn hex_pattern(s: &str) -> Option<Vec<(u8, u8)>> {
    let s: Vec<char> = s.chars().filter(|c| !c.is_whitespace()).collect();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let nib = |c: char| -> Option<(u8, u8)> {
        if c == 'x' || c == 'X' { Some((0, 0)) } else { c.to_digit(16).map(|d| (0xF, d as u8)) }
    };
    s.chunks(2)
        .map(|p| {
            let (hm, hv) = nib(p[0])?;
            let (lm, lv) = nib(p[1])?;
            Some(((hm << 4) | lm, (hv << 4) | lv))
        })
        .collect()
}

/// DNS query type names of DNS_CHECK.
pub(crate) fn dns_qtype(name: &str) -> Option<u16> {
    Some(match name.to_ascii_uppercase().as_str() {
        "A" => 1,
        "NS" => 2,
        "CNAME" => 5,
        "SOA" => 6,
        "MX" => 15,
        "TXT" => 16,
        "AAAA" => 28,
        _ => return None,
    })
}

fn url(t: &mut Tbl, path_required: bool) -> R<Option<UrlCheck>> {
    let Some(path) = t.str("path")? else {
        return if path_required { Err(t.err("missing field \"path\"")) } else { Ok(None) };
    };
    let mut status = Vec::new();
    let field = t.field("status");
    let src = t.src;
    for (i, n) in t.array("status")?.iter().enumerate() {
        status.push(status_range(n).ok_or_else(|| {
            src.err(&n.span, &format!("{field}[{i}]"), "expected a status code or a range like \"301-302\"")
        })?);
    }
    let digest = match t.str("digest")? {
        None => None,
        Some(d) => {
            let b = hex_bytes(&d).filter(|b| b.len() == 16);
            Some(b.and_then(|b| b.try_into().ok()).ok_or_else(|| t.err_at("digest", "expected 32 hex digits (MD5)"))?)
        }
    };
    let virtualhost = if path_required { t.str("virtualhost")? } else { None };
    Ok(Some(UrlCheck { path, status, digest, virtualhost }))
}

fn check(t: &mut Tbl, parent: &Inherit) -> R<Check> {
    let ty =
        t.str("type")?.ok_or_else(|| t.err("missing field \"type\" (tcp, http, ssl, misc, udp, ping, dns, smtp)"))?;
    let inh = parent.overlay(&inherit(t)?);
    let kind = match ty.as_str() {
        "tcp" => CheckKind::Tcp,
        "ping" => CheckKind::Ping,
        "http" | "ssl" => {
            let version = match t.str("http_protocol")?.as_deref() {
                None | Some("1.0") => HttpVersion::V10,
                Some("1.0C") => HttpVersion::V10Close,
                Some("1.1") => HttpVersion::V11,
                Some(v) => {
                    return Err(t.err_at("http_protocol", format!("unknown HTTP protocol \"{v}\" (1.0, 1.0C, 1.1)")));
                }
            };
            let mut urls = Vec::new();
            if let Some(u) = url(t, false)? {
                urls.push(u);
            }
            for mut ut in t.tables("urls")? {
                urls.extend(url(&mut ut, true)?);
                ut.finish()?;
            }
            if urls.is_empty() {
                return Err(t.err("an http check needs \"path\" or [[urls]]"));
            }
            CheckKind::Http(HttpCheck { urls, version, virtualhost: inh.virtualhost.clone() })
        }
        "misc" => {
            let path = t.str("command")?.ok_or_else(|| t.err("missing field \"command\""))?;
            CheckKind::Misc(MiscCheck {
                path,
                timeout: t.secs("timeout")?,
                dynamic: t.bool("dynamic")?.unwrap_or(false),
            })
        }
        "udp" => {
            let payload = match t.str("payload")? {
                None => None,
                Some(p) => Some(hex_bytes(&p).ok_or_else(|| t.err_at("payload", "expected hex bytes"))?),
            };
            let require_reply = match t.get("require_reply") {
                None => None,
                Some(node::Node { value: node::Value::Bool(b), .. }) => b.then(Vec::new),
                Some(_) => {
                    let p = t.str("require_reply")?.unwrap_or_default();
                    Some(
                        hex_pattern(&p)
                            .ok_or_else(|| t.err_at("require_reply", "expected a hex pattern (X = any nibble)"))?,
                    )
                }
            };
            let min_reply_length = t.u32("min_reply_length", 0, 65535)?.unwrap_or(0) as usize;
            let max_reply_length = t.u32("max_reply_length", 0, 65535)?.unwrap_or(255) as usize;
            if min_reply_length > max_reply_length {
                return Err(t.err_at("min_reply_length", "greater than max_reply_length"));
            }
            CheckKind::Udp(UdpCheck { payload, require_reply, min_reply_length, max_reply_length })
        }
        "dns" => {
            let q = t.str("query_type")?.unwrap_or_else(|| "SOA".into());
            let qtype = dns_qtype(&q).ok_or_else(|| t.err_at("query_type", format!("unknown query type \"{q}\"")))?;
            CheckKind::Dns(DnsCheck { qtype, name: t.str("name")?.unwrap_or_else(|| ".".into()) })
        }
        "smtp" => {
            CheckKind::Smtp { helo_name: t.str("helo_name")?.unwrap_or_else(|| "smtpchecker.keepalived.org".into()) }
        }
        other => {
            return Err(t.err_at(
                "type",
                format!("unknown check type \"{other}\" (tcp, http, ssl, misc, udp, ping, dns, smtp)"),
            ));
        }
    };
    let mut c = Check::new(kind);
    if ty == "ssl" {
        // SSL_GET: the http check over TLS (keepalived.md §6), with the SSL block's options.
        c.tls = Some(Tls {
            enable_sni: t.bool("enable_sni")?.unwrap_or(false),
            sni_name: t.str("sni_name")?,
            verify: t.bool("verify")?.unwrap_or(false),
            ca: t.str("ca")?,
            certificate: t.str("certificate")?,
            key: t.str("key")?,
            password: t.str("password")?,
        });
    }
    c.timing = inh.timing(&c.kind);
    c.alpha = inh.alpha.unwrap_or(false);
    c.connect_ip = t.ip("connect_ip")?;
    c.connect_port = t.u32("connect_port", 1, 65535)?.map(|p| p as u16);
    c.bindto = t.ip("bindto")?;
    c.bind_port = t.u32("bind_port", 1, 65535)?.map(|p| p as u16);
    Ok(c)
}

#[cfg(test)]
mod tests;
