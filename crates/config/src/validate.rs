//! The checks ipvsadm (and the kernel behind it) applies to `-A` and `-a` lines
//! (ipvsadm-cli.md §4, §5), shared by both configuration front ends. Messages are
//! ipvsadm's where it has one.

use crate::model::{RealServer, VirtualService};
use control::api::{ForwardMethod, SchedFlags, ServiceKey, TunnelCsum, TunnelType};

/// The schedulers rvs implements (ipvsadm-cli.md §4 `-s`).
pub const SCHEDULERS: [&str; 14] =
    ["rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos"];

/// Largest persistence timeout and `--set` value: 31 days.
pub const MAX_TIMEOUT: u32 = 2_678_400;

/// Largest weight ipvsadm accepts.
pub const MAX_WEIGHT: u32 = 65_535;

pub fn check_scheduler(name: &str) -> Result<(), String> {
    if SCHEDULERS.contains(&name) { Ok(()) } else { Err(format!("unknown scheduler \"{name}\"")) }
}

/// Sets the scheduler flag `name` (`-b`) in `flags`, checked against the scheduler.
pub fn set_sched_flag(flags: &mut SchedFlags, name: &str, scheduler: &str) -> Result<(), String> {
    let (slot, only) = match name {
        "flag-1" => (1, None),
        "flag-2" => (2, None),
        "flag-3" => (3, None),
        "sh-fallback" => (1, Some("sh")),
        "sh-port" => (2, Some("sh")),
        "mh-fallback" => (1, Some("mh")),
        "mh-port" => (2, Some("mh")),
        _ => return Err(format!("invalid scheduler flag `{name}'")),
    };
    if only.is_some_and(|s| s != scheduler) {
        return Err(format!("incompatible scheduler flag `{name}'"));
    }
    match slot {
        1 => flags.flag1 = true,
        2 => flags.flag2 = true,
        _ => flags.flag3 = true,
    }
    Ok(())
}

/// `-A` checks (ipvsadm-cli.md §5 rule 1 and the kernel's ranges).
pub fn check_service(vs: &VirtualService, key: &ServiceKey) -> Result<(), String> {
    check_scheduler(&vs.scheduler)?;
    if let Some(p) = vs.persistent
        && !(1..=MAX_TIMEOUT).contains(&p)
    {
        return Err(format!("invalid persistence timeout {p} (1..{MAX_TIMEOUT})"));
    }
    if let Some((_, 0)) = key.addr_port()
        && vs.persistent.is_none()
    {
        return Err("Zero port specified for non-persistent service".into());
    }
    if vs.ops && matches!(key, ServiceKey::Tcp { .. } | ServiceKey::Sctp { .. }) {
        return Err("One-Packet Scheduling is only for UDP virtual services".into());
    }
    if key.is_ipv6() && !(1..=128).contains(&vs.prefix_v6) {
        return Err("illegal ipv6 netmask specified".into());
    }
    if let Some(pe) = &vs.pe
        && pe != "sip"
    {
        return Err(format!("unknown persistence engine \"{pe}\""));
    }
    Ok(())
}

/// `-a` checks (ipvsadm-cli.md §5 rule 2, kernel ERANGE checks).
pub fn check_dest(key: &ServiceKey, rs: &RealServer) -> Result<(), String> {
    if rs.addr.is_ipv6() != key.is_ipv6() && rs.method != ForwardMethod::Tunnel {
        return Err("Different address family is allowed only for tunneling servers".into());
    }
    if rs.weight > MAX_WEIGHT {
        return Err(format!("illegal weight specified ({} > {MAX_WEIGHT})", rs.weight));
    }
    if rs.u_threshold > i32::MAX as u32 {
        return Err("illegal u_threshold specified".into());
    }
    if rs.l_threshold > i32::MAX as u32 {
        return Err("illegal l_threshold specified".into());
    }
    if rs.u_threshold != 0 && rs.l_threshold > rs.u_threshold {
        return Err(format!(
            "l_threshold {} is greater than u_threshold {} (Numerical result out of range)",
            rs.l_threshold, rs.u_threshold
        ));
    }
    let tun_opts = rs.tun_type != TunnelType::Ipip || rs.tun_port != 0 || rs.tun_csum != TunnelCsum::NoCsum;
    if rs.method != ForwardMethod::Tunnel {
        return if tun_opts { Err("Tunnel options conflict with forward method".into()) } else { Ok(()) };
    }
    match rs.tun_type {
        TunnelType::Ipip if rs.tun_port != 0 => Err("Illegal 'tun-port' option with the 'ipip' tunnel type".into()),
        TunnelType::Ipip if rs.tun_csum != TunnelCsum::NoCsum => {
            Err("Illegal checksum option with the 'ipip' tunnel type".into())
        }
        TunnelType::Gue if rs.tun_port == 0 => {
            Err("You need to supply the 'tun-port' option for the 'gue' tunnel type".into())
        }
        TunnelType::Gre if rs.tun_port != 0 => Err("Illegal 'tun-port' option with the 'gre' tunnel type".into()),
        TunnelType::Gre if rs.tun_csum == TunnelCsum::RemCsum => {
            Err("Illegal 'tun-remcsum' option with the 'gre' tunnel type".into())
        }
        _ => Ok(()),
    }
}

/// keepalived's quorum fix-ups (keepalived.md §4 "Validation"): quorum at most the sum
/// of the weights, hysteresis below quorum. Returns messages for what was changed.
pub fn fix_quorum(vs: &mut VirtualService) -> Vec<String> {
    let mut notes = Vec::new();
    let total: u64 = vs.reals.iter().map(|r| u64::from(r.weight)).sum();
    if !vs.reals.is_empty() && u64::from(vs.quorum) > total {
        let q = u32::try_from(total).unwrap_or(u32::MAX);
        notes.push(format!("quorum {} is more than the total weight {total}; lowered to {q}", vs.quorum));
        vs.quorum = q;
    }
    if vs.hysteresis > 0 && vs.hysteresis >= vs.quorum {
        let h = vs.quorum.saturating_sub(1);
        notes.push(format!("hysteresis {} is not below quorum {}; set to {h}", vs.hysteresis, vs.quorum));
        vs.hysteresis = h;
    }
    notes
}

/// Duplicate IPVS services across the whole configuration.
pub fn duplicate_key(services: &[VirtualService]) -> Option<(usize, ServiceKey)> {
    let mut seen = std::collections::HashSet::new();
    for (i, vs) in services.iter().enumerate() {
        for k in &vs.keys {
            if !seen.insert(*k) {
                return Some((i, *k));
            }
        }
    }
    None
}
