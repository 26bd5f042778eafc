//! `-S` / `--save` (ipvsadm-cli.md §9.8): the table as ipvsadm command lines that
//! `-R` reads back. Thresholds, timeouts, daemons and counters are not saved.

use super::format::{addrport, mask_str, sched_flags};
use super::resolve::Resolver;
use super::sort;
use crate::api::{ForwardMethod, ServiceKey, Snapshot, TunnelCsum, TunnelType};
use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr};

/// The service argument as a rule: `-t ADDR:PORT`, `-u …`, `--sctp-service …`,
/// `-f MARK` or `-f MARK -6`. Never truncated.
pub fn service_rule(key: &ServiceKey, numeric: bool, res: &dyn Resolver) -> String {
    match key {
        ServiceKey::Fwmark { mark, ipv6: true } => format!("-f {mark} -6"),
        ServiceKey::Fwmark { mark, ipv6: false } => format!("-f {mark}"),
        _ => {
            let opt = match key {
                ServiceKey::Udp { .. } => "-u",
                ServiceKey::Sctp { .. } => "--sctp-service",
                _ => "-t",
            };
            let (a, p) = key.addr_port().unwrap_or((IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0));
            format!("{opt} {}", addrport(a, p, key.protocol(), numeric, res))
        }
    }
}

fn csum_opt(c: TunnelCsum) -> &'static str {
    match c {
        TunnelCsum::NoCsum => "--tun-nocsum",
        TunnelCsum::Csum => "--tun-csum",
        TunnelCsum::RemCsum => "--tun-remcsum",
    }
}

/// The whole `-S` output, services and dests sorted as the listings are.
pub fn save(snap: &Snapshot, numeric: bool, res: &dyn Resolver) -> String {
    let mut out = String::new();
    for svc in sort::sorted(&snap.services, false) {
        let spec = &svc.spec;
        let name = service_rule(&spec.key, numeric, res);
        let _ = write!(out, "-A {name} -s {}", spec.scheduler);
        if let Some(t) = spec.persistent {
            let _ = write!(out, " -p {t}");
            if spec.key.is_ipv6() {
                if spec.netmask != 128 {
                    let _ = write!(out, " -M {}", spec.netmask);
                }
            } else if spec.netmask != u32::MAX {
                let _ = write!(out, " -M {}", mask_str(spec.netmask));
            }
        }
        if let Some(pe) = spec.pe.as_deref().filter(|p| !p.is_empty()) {
            let _ = write!(out, " --pe {pe}");
        }
        if spec.ops {
            out.push_str(" -o");
        }
        if spec.sched_flags.any() {
            let _ = write!(out, " -b {}", sched_flags(spec));
        }
        out.push('\n');
        for d in &svc.dests {
            let dname = addrport(d.spec.addr, d.spec.port, spec.key.protocol(), numeric, res);
            let method = match d.spec.method {
                ForwardMethod::Masq => "-m",
                ForwardMethod::Tunnel => "-i",
                ForwardMethod::Route | ForwardMethod::Local => "-g",
            };
            let _ = write!(out, "-a {name} -r {dname} {method} -w {}", d.spec.weight);
            if d.spec.method == ForwardMethod::Tunnel {
                match d.spec.tun_type {
                    TunnelType::Ipip => out.push_str(" --tun-type ipip"),
                    TunnelType::Gue => {
                        let _ =
                            write!(out, " --tun-type gue --tun-port {} {}", d.spec.tun_port, csum_opt(d.spec.tun_csum));
                    }
                    TunnelType::Gre => {
                        let _ = write!(out, " --tun-type gre {}", csum_opt(d.spec.tun_csum));
                    }
                }
            }
            out.push('\n');
        }
    }
    out
}
