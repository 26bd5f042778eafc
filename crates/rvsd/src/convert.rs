//! Conversions between the API types (`control::api`, what rvsadm speaks) and the engine's
//! (`ipvs`), and engine errors to API errors with the kinds rvsadm maps to ipvsadm's texts
//! (control/README.md "Errors").

use control::api::{self, ApiError, ErrorKind};
use ipvs::{AdminError, DestConfig, ServiceConfig, ServiceKey};

pub fn admin_error(e: AdminError) -> ApiError {
    let kind = match e {
        AdminError::ServiceExists => ErrorKind::ServiceExists,
        AdminError::SchedulerNotFound => ErrorKind::SchedulerNotFound,
        AdminError::NoSuchService => ErrorKind::NoSuchService,
        AdminError::ServiceNotDefined => ErrorKind::ServiceNotDefined,
        AdminError::DestExists => ErrorKind::DestExists,
        AdminError::NoSuchDest => ErrorKind::NoSuchDest,
        AdminError::Invalid(_) => ErrorKind::Invalid,
        AdminError::Range(_) => ErrorKind::Range,
    };
    ApiError::new(kind, e.to_string())
}

pub fn service_key(k: &api::ServiceKey) -> Result<ServiceKey, ApiError> {
    Ok(match *k {
        api::ServiceKey::Tcp { addr, port } => ServiceKey::tcp(addr, port),
        api::ServiceKey::Udp { addr, port } => ServiceKey::udp(addr, port),
        api::ServiceKey::Sctp { addr, port } => ServiceKey::Addr { protocol: api::IPPROTO_SCTP, addr, port },
        api::ServiceKey::Fwmark { mark, ipv6 } => ServiceKey::Fwmark { mark, ipv6 },
    })
}

pub fn api_key(k: &ServiceKey) -> api::ServiceKey {
    match *k {
        ServiceKey::Addr { protocol: api::IPPROTO_UDP, addr, port } => api::ServiceKey::Udp { addr, port },
        ServiceKey::Addr { protocol: api::IPPROTO_SCTP, addr, port } => api::ServiceKey::Sctp { addr, port },
        ServiceKey::Addr { addr, port, .. } => api::ServiceKey::Tcp { addr, port },
        ServiceKey::Fwmark { mark, ipv6 } => api::ServiceKey::Fwmark { mark, ipv6 },
    }
}

pub fn service_config(s: &api::ServiceSpec) -> Result<ServiceConfig, ApiError> {
    let pe = match s.pe.as_deref().filter(|p| !p.is_empty()) {
        None => None,
        // The kernel's ENOENT for an unknown persistence engine.
        Some(name) => Some(ipvs::PersistenceEngine::from_name(name).ok_or_else(|| {
            ApiError::new(ErrorKind::SchedulerNotFound, format!("persistence engine '{name}' not available"))
        })?),
    };
    let mut c = ServiceConfig::new(service_key(&s.key)?, &s.scheduler);
    c.pe = pe;
    c.sched_flags =
        ipvs::SchedFlags { flag1: s.sched_flags.flag1, flag2: s.sched_flags.flag2, flag3: s.sched_flags.flag3 };
    c.persistent = s.persistent;
    c.netmask = s.netmask;
    c.ops = s.ops;
    Ok(c)
}

pub fn service_spec(c: &ServiceConfig) -> api::ServiceSpec {
    api::ServiceSpec {
        key: api_key(&c.key),
        scheduler: c.scheduler.clone(),
        sched_flags: api::SchedFlags {
            flag1: c.sched_flags.flag1,
            flag2: c.sched_flags.flag2,
            flag3: c.sched_flags.flag3,
        },
        persistent: c.persistent,
        netmask: c.netmask,
        ops: c.ops,
        pe: c.pe.map(|p| p.name().to_string()),
    }
}

pub fn dest_config(d: &api::DestSpec) -> Result<DestConfig, ApiError> {
    // The kernel takes the weight as a signed int and refuses negatives with ERANGE.
    let weight = i32::try_from(d.weight).map_err(|_| admin_error(AdminError::Range("weight")))?;
    Ok(DestConfig {
        addr: d.addr,
        port: d.port,
        weight,
        method: match d.method {
            api::ForwardMethod::Masq => ipvs::ForwardMethod::Masq,
            api::ForwardMethod::Route => ipvs::ForwardMethod::Route,
            api::ForwardMethod::Tunnel => ipvs::ForwardMethod::Tunnel,
            api::ForwardMethod::Local => ipvs::ForwardMethod::Local,
        },
        u_threshold: d.u_threshold,
        l_threshold: d.l_threshold,
        tun_type: match d.tun_type {
            api::TunnelType::Ipip => ipvs::TunnelType::Ipip,
            api::TunnelType::Gue => ipvs::TunnelType::Gue,
            api::TunnelType::Gre => ipvs::TunnelType::Gre,
        },
        tun_port: d.tun_port,
        tun_csum: match d.tun_csum {
            api::TunnelCsum::NoCsum => ipvs::TunnelCsum::NoCsum,
            api::TunnelCsum::Csum => ipvs::TunnelCsum::Csum,
            api::TunnelCsum::RemCsum => ipvs::TunnelCsum::RemCsum,
        },
    })
}

pub fn dest_spec(d: &DestConfig) -> api::DestSpec {
    api::DestSpec {
        addr: d.addr,
        port: d.port,
        method: match d.method {
            ipvs::ForwardMethod::Masq => api::ForwardMethod::Masq,
            ipvs::ForwardMethod::Tunnel => api::ForwardMethod::Tunnel,
            ipvs::ForwardMethod::Local => api::ForwardMethod::Local,
            // Bypass is never configured; it shows as what it does (unchanged forwarding).
            ipvs::ForwardMethod::Route | ipvs::ForwardMethod::Bypass => api::ForwardMethod::Route,
        },
        weight: d.weight.max(0) as u32,
        u_threshold: d.u_threshold,
        l_threshold: d.l_threshold,
        tun_type: match d.tun_type {
            ipvs::TunnelType::Ipip => api::TunnelType::Ipip,
            ipvs::TunnelType::Gue => api::TunnelType::Gue,
            ipvs::TunnelType::Gre => api::TunnelType::Gre,
        },
        tun_port: d.tun_port,
        tun_csum: match d.tun_csum {
            ipvs::TunnelCsum::NoCsum => api::TunnelCsum::NoCsum,
            ipvs::TunnelCsum::Csum => api::TunnelCsum::Csum,
            ipvs::TunnelCsum::RemCsum => api::TunnelCsum::RemCsum,
        },
    }
}

pub fn counters(c: ipvs::Counters) -> api::Counters {
    api::Counters { conns: c.conns, inpkts: c.inpkts, outpkts: c.outpkts, inbytes: c.inbytes, outbytes: c.outbytes }
}

pub fn rates(r: ipvs::stats::Rates) -> api::Rates {
    api::Rates { cps: r.cps, inpps: r.inpps, outpps: r.outpps, inbps: r.inbps, outbps: r.outbps }
}

/// A connection entry as `-L -c` lists it; `now_ms` is the owning worker's clock. The
/// reference the listing's records (`listing.rs`) are tested against.
#[cfg(test)]
pub fn conn_view(c: &ipvs::conn::Conn, a: ipvs::conn::ConnAddrs, now_ms: u64) -> api::ConnView {
    let template = c.is_template();
    let (proto, vaddr) = if template && c.fwmark != 0 {
        // Templates of fwmark services: protocol IPPROTO_IP, the mark as the address.
        (api::IPPROTO_IP, std::net::IpAddr::V4(std::net::Ipv4Addr::from(c.fwmark)))
    } else {
        (c.protocol, a.vaddr)
    };
    api::ConnView {
        proto,
        caddr: a.caddr,
        cport: c.cport,
        vaddr,
        vport: c.vport,
        daddr: a.daddr,
        dport: c.dport,
        state: api::state_name(c.protocol, u16::from(c.state), template, c.state != 0).to_string(),
        expires_secs: (c.expires.saturating_sub(now_ms) / 1000).min(u32::MAX as u64) as u32,
        template,
        one_packet: c.flags & ipvs::conn::ConnFlags::ONE_PACKET != 0,
        fwmark: c.fwmark,
        pe_name: None,
        pe_data: None,
        synced: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        for k in [
            api::ServiceKey::Sctp { addr: "10.0.0.1".parse().unwrap(), port: 1 },
            api::ServiceKey::Tcp { addr: "10.0.0.1".parse().unwrap(), port: 80 },
            api::ServiceKey::Udp { addr: "2001:db8::1".parse().unwrap(), port: 53 },
            api::ServiceKey::Fwmark { mark: 7, ipv6: false },
        ] {
            assert_eq!(api_key(&service_key(&k).unwrap()), k);
        }
    }

    #[test]
    fn dest_specs_round_trip_and_big_weights_are_out_of_range() {
        let d = api::DestSpec {
            addr: "192.168.1.2".parse().unwrap(),
            port: 8080,
            method: api::ForwardMethod::Tunnel,
            weight: 3,
            u_threshold: 10,
            l_threshold: 5,
            tun_type: api::TunnelType::Gue,
            tun_port: 6080,
            tun_csum: api::TunnelCsum::RemCsum,
        };
        assert_eq!(dest_spec(&dest_config(&d).unwrap()), d);
        let big = api::DestSpec { weight: u32::MAX, ..d };
        assert_eq!(dest_config(&big).unwrap_err().kind, ErrorKind::Range);
    }

    #[test]
    fn admin_errors_keep_their_kind() {
        assert_eq!(admin_error(AdminError::ServiceNotDefined).kind, ErrorKind::ServiceNotDefined);
        assert_eq!(admin_error(AdminError::Invalid("x")).kind, ErrorKind::Invalid);
        assert_eq!(admin_error(AdminError::Range("weight")).kind, ErrorKind::Range);
        assert_eq!(admin_error(AdminError::DestExists).message, "Destination already exists");
    }
}
