//! Every `-L` listing, byte for byte (ipvsadm-cli.md §7, §9.1–§9.7).

use super::args::{ListFormat, ListTarget};
use super::resolve::Resolver;
use super::sort;
use crate::api::{
    ConnView, DaemonView, DestView, ForwardMethod, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, ServiceKey, ServiceSpec,
    ServiceView, Snapshot, SyncRole, Timeouts, TunnelCsum, TunnelType,
};
use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr};

/// A number field of `--stats`/`--rate` (ipvsadm's `print_largenum`, §9.4).
pub fn largenum(i: u64, exact: bool) -> String {
    if exact {
        let s = i.to_string();
        return if s.len() <= 8 { format!("{s:>9}") } else { format!(" {s}") };
    }
    if i < 100_000_000 {
        format!("{i:>9}")
    } else if i < 1_000_000_000 {
        format!("{:>8}K", i / 1000)
    } else if i < 100_000_000_000 {
        format!("{:>8}M", i / 1_000_000)
    } else if i < 100_000_000_000_000 {
        format!("{:>8}G", i / 1_000_000_000)
    } else {
        format!("{:>8}T", i / 1_000_000_000_000)
    }
}

/// The `expire` column of `-c`: `%02d:%02d` of minutes and seconds.
pub fn expire(secs: u32) -> String {
    format!("{:02}:{:02}", secs / 60, secs % 60)
}

/// Protocol column of service lines.
fn proto_label(p: u8) -> &'static str {
    match p {
        IPPROTO_UDP => "UDP",
        IPPROTO_SCTP => "SCTP",
        _ => "TCP",
    }
}

/// Protocol name as the kernel's connection table prints it.
pub fn conn_proto_name(p: u8) -> String {
    match p {
        0 => "IP".into(),
        1 => "ICMP".into(),
        IPPROTO_TCP => "TCP".into(),
        IPPROTO_UDP => "UDP".into(),
        58 => "ICMPv6".into(),
        IPPROTO_SCTP => "SCTP".into(),
        n => format!("IP_{n}"),
    }
}

/// ipvsadm's `addrport_to_anyname`: `host:port`, IPv6 always bracketed; names
/// unless `numeric`.
pub fn addrport(addr: IpAddr, port: u16, proto: u8, numeric: bool, res: &dyn Resolver) -> String {
    let (host, port) = if numeric {
        (addr.to_string(), port.to_string())
    } else {
        (
            res.host_name(addr).unwrap_or_else(|| addr.to_string()),
            res.service_name(port, proto).unwrap_or_else(|| port.to_string()),
        )
    };
    if addr.is_ipv6() { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

/// Cuts `s` to at most `n` bytes on a char boundary (ipvsadm's `name[n] = '\0'`).
fn cut(mut s: String, n: usize) -> String {
    if s.len() > n {
        let mut i = n;
        while !s.is_char_boundary(i) {
            i -= 1;
        }
        s.truncate(i);
    }
    s
}

/// Comma list of the scheduler flags as ipvsadm names them for this scheduler.
pub fn sched_flags(spec: &ServiceSpec) -> String {
    let f = spec.sched_flags;
    let names: [&str; 3] = match spec.scheduler.as_str() {
        "sh" => ["sh-fallback", "sh-port", "flag-3"],
        "mh" => ["mh-fallback", "mh-port", "flag-3"],
        _ => ["flag-1", "flag-2", "flag-3"],
    };
    [f.flag1, f.flag2, f.flag3].iter().zip(names).filter(|(on, _)| **on).map(|(_, n)| n).collect::<Vec<_>>().join(",")
}

/// The dotted form of an IPv4 mask stored in host order.
pub fn mask_str(mask: u32) -> String {
    Ipv4Addr::from(mask).to_string()
}

/// Service label of listings (`TCP  10.0.0.100:80`, `FWM  7 IPv6`), cut to 33 for
/// IPv4 (§9.2, §7).
pub fn service_label(key: &ServiceKey, numeric: bool, res: &dyn Resolver) -> String {
    match key {
        ServiceKey::Fwmark { mark, ipv6 } => {
            if *ipv6 {
                format!("FWM  {mark} IPv6")
            } else {
                format!("FWM  {mark}")
            }
        }
        _ => {
            let (addr, port) = key.addr_port().unwrap_or((IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0));
            let name = addrport(addr, port, key.protocol(), numeric, res);
            let label = format!("{:<4} {}", proto_label(key.protocol()), name);
            if addr.is_ipv6() { label } else { cut(label, 33) }
        }
    }
}

/// The header line of whole-table listings.
pub fn header(snap: &Snapshot) -> String {
    format!("IP Virtual Server version {} (size={})\n", snap.version, snap.conn_tab_size)
}

/// The two title lines (§9.1); the first listing flag present wins.
pub fn title(f: &ListFormat) -> String {
    const P: &str = "Prot LocalAddress:Port";
    const R: &str = "  -> RemoteAddress:Port\n";
    if f.stats {
        format!("{P:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n{R}", "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes")
    } else if f.rate {
        format!("{P:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n{R}", "CPS", "InPPS", "OutPPS", "InBPS", "OutBPS")
    } else if f.thresholds {
        format!("{P:<33} {:<10} {:<10} {:<10} {:<10}\n{R}", "Uthreshold", "Lthreshold", "ActiveConn", "InActConn")
    } else if f.persistent_conn {
        format!("{P:<33} {:<9} {:<11} {:<10} {:<10}\n{R}", "Weight", "PersistConn", "ActiveConn", "InActConn")
    } else if f.tun_info {
        "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n".to_string()
    } else {
        "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n".to_string()
    }
}

fn method_name(m: ForwardMethod) -> &'static str {
    match m {
        ForwardMethod::Masq => "Masq",
        ForwardMethod::Route => "Route",
        ForwardMethod::Tunnel => "Tunnel",
        ForwardMethod::Local => "Local",
    }
}

fn csum_flag(c: TunnelCsum) -> &'static str {
    match c {
        TunnelCsum::NoCsum => "-c",
        TunnelCsum::Csum => "+c",
        TunnelCsum::RemCsum => "r+c",
    }
}

/// TunnelInfo column of `--tun-info`.
fn tun_info(d: &DestView) -> String {
    if d.spec.method != ForwardMethod::Tunnel {
        return "n/a".into();
    }
    match d.spec.tun_type {
        TunnelType::Ipip => "ipip".into(),
        TunnelType::Gue => format!("gue:{}:{}", d.spec.tun_port, csum_flag(d.spec.tun_csum)),
        TunnelType::Gre => format!("gre:{}", csum_flag(d.spec.tun_csum)),
    }
}

/// The service line and its dest lines (ipvsadm's `print_service_entry`, listing
/// forms). Dests are printed in the order given.
pub fn service_entry(out: &mut String, svc: &ServiceView, f: &ListFormat, res: &dyn Resolver) {
    let spec = &svc.spec;
    let label = service_label(&spec.key, f.numeric, res);
    let n5 = |out: &mut String, v: [u64; 5]| {
        for x in v {
            out.push_str(&largenum(x, f.exact));
        }
    };
    if f.stats {
        let _ = write!(out, "{label:<33}");
        let s = svc.stats;
        n5(out, [s.conns, s.inpkts, s.outpkts, s.inbytes, s.outbytes]);
    } else if f.rate {
        let _ = write!(out, "{label:<33}");
        let r = svc.rates;
        n5(out, [r.cps, r.inpps, r.outpps, r.inbps, r.outbps]);
    } else {
        let _ = write!(out, "{label} {}", spec.scheduler);
        if spec.sched_flags.any() {
            let _ = write!(out, " ({})", sched_flags(spec));
        }
        if let Some(t) = spec.persistent {
            let _ = write!(out, " persistent {t}");
            if spec.key.is_ipv6() {
                if spec.netmask != 128 {
                    let _ = write!(out, " mask {}", spec.netmask);
                }
            } else if spec.netmask != u32::MAX {
                let _ = write!(out, " mask {}", mask_str(spec.netmask));
            }
            if let Some(pe) = spec.pe.as_deref().filter(|p| !p.is_empty()) {
                let _ = write!(out, " pe {pe}");
            }
        }
        if spec.ops {
            out.push_str(" ops");
        }
    }
    out.push('\n');

    let proto = spec.key.protocol();
    for d in &svc.dests {
        let name = addrport(d.spec.addr, d.spec.port, proto, f.numeric, res);
        let name = if d.spec.addr.is_ipv6() { name } else { cut(name, 28) };
        if f.stats {
            let _ = write!(out, "  -> {name:<28}");
            let s = d.stats;
            n5(out, [s.conns, s.inpkts, s.outpkts, s.inbytes, s.outbytes]);
            out.push('\n');
        } else if f.rate {
            let r = d.rates;
            let _ = write!(out, "  -> {name:<28} {:>8} {:>8} {:>8}", r.cps, r.inpps, r.outpps);
            out.push_str(&largenum(r.inbps, f.exact));
            out.push_str(&largenum(r.outbps, f.exact));
            out.push('\n');
        } else if f.thresholds {
            let _ = writeln!(
                out,
                "  -> {name:<28} {:<10} {:<10} {:<10} {:<10}",
                d.spec.u_threshold, d.spec.l_threshold, d.active, d.inactive
            );
        } else if f.persistent_conn {
            let _ = writeln!(
                out,
                "  -> {name:<28} {:<9} {:<11} {:<10} {:<10}",
                d.spec.weight, d.persistent, d.active, d.inactive
            );
        } else if f.tun_info {
            let _ = writeln!(
                out,
                "  -> {name:<28} {:<7} {:<13} {:<6} {:<10} {:<10}",
                method_name(d.spec.method),
                tun_info(d),
                d.spec.weight,
                d.active,
                d.inactive
            );
        } else {
            let _ = writeln!(
                out,
                "  -> {name:<28} {:<7} {:<6} {:<10} {:<10}",
                method_name(d.spec.method),
                d.spec.weight,
                d.active,
                d.inactive
            );
        }
    }
}

/// `-L` of the whole table: header, title, services (sorted unless --nosort).
pub fn list_all(snap: &Snapshot, f: &ListFormat, res: &dyn Resolver) -> String {
    let mut out = header(snap);
    out.push_str(&title(f));
    for s in sort::sorted(&snap.services, f.nosort) {
        service_entry(&mut out, &s, f, res);
    }
    out
}

/// `-L -t VIP:PORT`: title and that service only; `None` when there is no such
/// service (ipvsadm prints `No such service` and exits 1).
pub fn list_service(snap: &Snapshot, key: &ServiceKey, f: &ListFormat, res: &dyn Resolver) -> Option<String> {
    let svc = snap.services.iter().find(|s| s.spec.key == *key)?;
    let mut svc = svc.clone();
    if !f.nosort {
        sort::msort(&mut svc.dests, &sort::cmp_dests);
    }
    let mut out = title(f);
    service_entry(&mut out, &svc, f, res);
    Some(out)
}

/// `-L -c` (§9.5): never sorted, one-packet entries skipped.
pub fn list_connections(conns: &[ConnView], f: &ListFormat, res: &dyn Resolver) -> String {
    let mut out = String::from("IPVS connection entries\n");
    if f.persistent_conn {
        let _ = writeln!(
            out,
            "pro expire {:<11} {:<18} {:<18} {:<18} {:<16} pe_data",
            "state", "source", "virtual", "destination", "pe name"
        );
    } else {
        let _ = writeln!(out, "pro expire {:<11} {:<18} {:<18} destination", "state", "source", "virtual");
    }
    for c in conns.iter().filter(|c| !c.one_packet) {
        let pname = conn_proto_name(c.proto);
        // Ports are resolved only for the protocols ipvsadm knows (never for "IP").
        let rp = match c.proto {
            IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP => c.proto,
            _ => 0,
        };
        let cname = addrport(c.caddr, c.cport, rp, f.numeric, res);
        let vname = addrport(c.vaddr, c.vport, rp, f.numeric, res);
        let dname = addrport(c.daddr, c.dport, rp, f.numeric, res);
        let exp = expire(c.expires_secs);
        match (&c.pe_name, f.persistent_conn) {
            (Some(pe), true) => {
                let _ = writeln!(
                    out,
                    "{pname:<3} {exp:<6} {:<11} {cname:<18} {vname:<18} {dname:<16} {pe:<18} {}",
                    c.state,
                    c.pe_data.as_deref().unwrap_or("")
                );
            }
            _ => {
                let _ = writeln!(out, "{pname:<3} {exp:<6} {:<11} {cname:<18} {vname:<18} {dname}", c.state);
            }
        }
    }
    out
}

/// `-L --timeout` (§9.6).
pub fn list_timeout(t: &Timeouts) -> String {
    format!("Timeout (tcp tcpfin udp): {} {} {}\n", t.tcp, t.tcpfin, t.udp)
}

/// `-L --daemon` (§9.7): master first, then backup.
pub fn list_daemons(daemons: &[DaemonView]) -> String {
    let mut out = String::new();
    for (role, name) in [(SyncRole::Master, "master"), (SyncRole::Backup, "backup")] {
        let Some(d) = daemons.iter().find(|d| d.role == role) else {
            continue;
        };
        let _ = write!(out, "{name} sync daemon (mcast={}, syncid={}", d.mcast_ifn, d.syncid);
        if d.sync_maxlen != 0 {
            let _ = write!(out, ", maxlen={}", d.sync_maxlen);
        }
        if let Some(g) = d.mcast_group {
            let _ = write!(out, ", group={g}");
        }
        if d.mcast_port != 0 {
            let _ = write!(out, ", port={}", d.mcast_port);
        }
        if d.mcast_ttl != 0 {
            let _ = write!(out, ", ttl={}", d.mcast_ttl);
        }
        out.push_str(")\n");
    }
    out
}

/// Listings that need only the snapshot (not `-c`). `Err` carries the stderr text
/// for exit status 1.
pub fn list(snap: &Snapshot, target: &ListTarget, f: &ListFormat, res: &dyn Resolver) -> Result<String, String> {
    match target {
        ListTarget::All => Ok(list_all(snap, f, res)),
        ListTarget::Service(k) => list_service(snap, k, f, res).ok_or_else(|| "No such service\n".to_string()),
        ListTarget::Timeout => Ok(list_timeout(&snap.timeouts)),
        ListTarget::Daemon => Ok(list_daemons(&snap.daemons)),
        ListTarget::Connections => Err("connections are listed from /v1/connections\n".into()),
    }
}
