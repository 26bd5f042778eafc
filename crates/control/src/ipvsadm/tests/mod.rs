//! Tests of the ipvsadm layer. Expected texts are written out by hand from the
//! formats of ipvsadm-cli.md (§9, §12), never produced by this crate's formatter.

mod args_table;
mod listings;
mod save_restore;

use super::resolve::{TableResolver, parse_hosts, parse_services};
use crate::api::*;
use std::net::IpAddr;

/// Lines written with a `|` marking the end of each line (as in the reference, so
/// trailing blanks are visible) turned into the real text. Lines after the first
/// carry 8 blanks of source indentation, which are removed.
pub fn bars(s: &str) -> String {
    let mut out = String::new();
    for (i, line) in s.lines().enumerate() {
        let line = if i == 0 { line } else { line.strip_prefix("        ").unwrap_or(line) };
        out.push_str(line.strip_suffix('|').unwrap_or(line));
        out.push('\n');
    }
    out
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

pub fn dest(addr: &str, port: u16, method: ForwardMethod, weight: u32) -> DestView {
    DestView {
        spec: DestSpec {
            addr: ip(addr),
            port,
            method,
            weight,
            u_threshold: 0,
            l_threshold: 0,
            tun_type: TunnelType::Ipip,
            tun_port: 0,
            tun_csum: TunnelCsum::NoCsum,
        },
        active: 0,
        inactive: 0,
        persistent: 0,
        stats: Counters::default(),
        rates: Rates::default(),
    }
}

pub fn service(key: ServiceKey, sched: &str) -> ServiceView {
    ServiceView {
        spec: ServiceSpec {
            key,
            scheduler: sched.into(),
            sched_flags: SchedFlags::default(),
            persistent: None,
            netmask: if key.is_ipv6() { 128 } else { u32::MAX },
            ops: false,
            pe: None,
        },
        stats: Counters::default(),
        rates: Rates::default(),
        dests: Vec::new(),
    }
}

/// The configuration of ipvsadm-cli.md §12, in kernel order: services in an
/// arbitrary bucket order, dests newest first.
pub fn worked_example() -> Snapshot {
    use ForwardMethod::*;
    let mut web = service(ServiceKey::Tcp { addr: ip("10.0.0.100"), port: 80 }, "wrr");
    let mut d2 = dest("192.168.1.2", 8080, Masq, 1);
    d2.spec.u_threshold = 100;
    d2.spec.l_threshold = 50;
    (d2.active, d2.inactive) = (14, 2);
    d2.stats = Counters { conns: 381, inpkts: 24765, outpkts: 21954, inbytes: 31456789, outbytes: 2476543210 };
    d2.rates = Rates { cps: 3, inpps: 85, outpps: 78, inbps: 11250, outbps: 308642 };
    let mut d11 = dest("192.168.1.11", 8080, Masq, 3);
    (d11.active, d11.inactive) = (41, 7);
    d11.stats = Counters { conns: 1142, inpkts: 74000, outpkts: 65700, inbytes: 92000000, outbytes: 7400000000 };
    d11.rates = Rates { cps: 9, inpps: 255, outpps: 232, inbps: 33750, outbps: 925925 };
    web.dests = vec![d2, d11];
    web.stats = Counters { conns: 1523, inpkts: 98765, outpkts: 87654, inbytes: 123456789, outbytes: 9876543210 };
    web.rates = Rates { cps: 12, inpps: 340, outpps: 310, inbps: 45000, outbps: 1234567 };

    let mut dns = service(ServiceKey::Udp { addr: ip("10.0.0.100"), port: 53 }, "rr");
    dns.spec.ops = true;
    dns.dests = vec![dest("192.168.1.2", 53, Masq, 2), dest("192.168.1.11", 53, Masq, 1)];

    let mut tls = service(ServiceKey::Tcp { addr: ip("10.0.0.200"), port: 443 }, "sh");
    tls.spec.sched_flags = SchedFlags { flag1: true, flag2: true, flag3: false };
    tls.spec.persistent = Some(600);
    tls.spec.netmask = 0xFFFF_FF00;
    let mut d5 = dest("172.16.0.5", 443, Route, 1);
    (d5.active, d5.inactive, d5.persistent) = (2, 1, 1);
    let mut d6 = dest("172.16.0.6", 443, Route, 0);
    d6.inactive = 3;
    tls.dests = vec![d6, d5];

    let mut fwm = service(ServiceKey::Fwmark { mark: 7, ipv6: false }, "mh");
    fwm.spec.sched_flags = SchedFlags { flag1: false, flag2: true, flag3: false };
    let mut t9 = dest("203.0.113.9", 0, Tunnel, 1);
    t9.spec.tun_type = TunnelType::Gue;
    t9.spec.tun_port = 6080;
    t9.spec.tun_csum = TunnelCsum::Csum;
    let t10 = dest("203.0.113.10", 0, Tunnel, 1);
    let mut t11 = dest("203.0.113.11", 0, Tunnel, 1);
    t11.spec.tun_type = TunnelType::Gre;
    fwm.dests = vec![t11, t10, t9];

    Snapshot {
        version: "1.2.1".into(),
        conn_tab_size: 4096,
        services: vec![fwm, dns, tls, web],
        timeouts: Timeouts { tcp: 900, tcpfin: 60, udp: 300 },
        daemons: Vec::new(),
    }
}

/// A fixed services/hosts database (Debian-like names), no DNS.
pub fn names() -> TableResolver {
    TableResolver {
        services: parse_services(
            "http 80/tcp www\nhttp 80/udp\nhttps 443/tcp\ndomain 53/tcp\ndomain 53/udp\n\
             http-alt 8080/tcp webcache\nsip 5060/udp\n",
        ),
        hosts: parse_hosts("10.9.9.9 www.example-director.com\n10.9.9.10 backend-1.internal.example.com\n"),
        use_system_dns: false,
    }
}
