//! `rvsadm top [--interval SECS] [--once]` (rvs extension): a live view of every service and
//! real server — estimated rates (connections/s, packets/s in and out, bytes/s in and out,
//! the daemon's 2 s estimator as `--rate` shows them) and active/inactive connections — redrawn
//! in place with ANSI clear-screen. `--once` prints one frame without escapes (scripts, tests).

use control::api::{ServiceKey, Snapshot};
use std::fmt::Write as _;

/// Compact numbers for narrow columns: exact below 100000, then K, M, G.
fn largenum(n: u64, _exact: bool) -> String {
    match n {
        0..100_000 => n.to_string(),
        100_000..100_000_000 => format!("{}K", n / 1000),
        100_000_000..100_000_000_000 => format!("{}M", n / 1_000_000),
        _ => format!("{}G", n / 1_000_000_000),
    }
}

/// Options of `top`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TopArgs {
    pub interval: f64,
    pub once: bool,
}

pub const USAGE: &str = "Usage: rvsadm top [--interval SECS] [--once]\n";

/// Parses the words after `top`.
pub fn parse(words: &[String]) -> Result<TopArgs, String> {
    let mut t = TopArgs { interval: 2.0, once: false };
    let mut it = words.iter();
    while let Some(w) = it.next() {
        let (name, inline) = match w.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
            _ => (w.as_str(), None),
        };
        match name {
            "--once" => t.once = true,
            "--interval" | "-i" => {
                let v = inline.or_else(|| it.next().cloned()).ok_or("--interval needs a value")?;
                t.interval = v
                    .parse()
                    .ok()
                    .filter(|x: &f64| *x >= 0.1 && *x <= 3600.0)
                    .ok_or(format!("--interval: '{v}' is not a number of seconds between 0.1 and 3600"))?;
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("top: unknown option '{other}'")),
        }
    }
    Ok(t)
}

fn label(k: &ServiceKey) -> String {
    match *k {
        ServiceKey::Tcp { addr, port } => format!("TCP  {}", std::net::SocketAddr::new(addr, port)),
        ServiceKey::Udp { addr, port } => format!("UDP  {}", std::net::SocketAddr::new(addr, port)),
        ServiceKey::Sctp { addr, port } => format!("SCTP {}", std::net::SocketAddr::new(addr, port)),
        ServiceKey::Fwmark { mark, ipv6: false } => format!("FWM  {mark}"),
        ServiceKey::Fwmark { mark, ipv6: true } => format!("FWM  {mark} IPv6"),
    }
}

/// One frame: a header, then per service a line of totals and a line per real server.
pub fn frame(snap: &Snapshot) -> String {
    let mut out = String::new();
    let conns: u32 = snap.services.iter().flat_map(|s| &s.dests).map(|d| d.active + d.inactive).sum();
    let _ = writeln!(out, "rvs top — {} services, {conns} connections on real servers", snap.services.len());
    let _ = writeln!(
        out,
        "{:<34} {:>7} {:>8} {:>8} {:>9} {:>9} {:>8} {:>8}",
        "Prot LocalAddress:Port / RemoteAddress:Port",
        "CPS",
        "InPPS",
        "OutPPS",
        "InBPS",
        "OutBPS",
        "ActConn",
        "InActConn"
    );
    for s in &snap.services {
        let (act, inact): (u32, u32) = s.dests.iter().fold((0, 0), |(a, i), d| (a + d.active, i + d.inactive));
        let r = &s.rates;
        let _ = writeln!(
            out,
            "{:<34} {:>7} {:>8} {:>8} {:>9} {:>9} {:>8} {:>8}",
            format!("{} {}", label(&s.spec.key), s.spec.scheduler),
            largenum(r.cps, false),
            largenum(r.inpps, false),
            largenum(r.outpps, false),
            largenum(r.inbps, false),
            largenum(r.outbps, false),
            act,
            inact
        );
        for d in &s.dests {
            let r = &d.rates;
            let _ = writeln!(
                out,
                "  -> {:<30} {:>7} {:>8} {:>8} {:>9} {:>9} {:>8} {:>8}",
                format!("{} w{}", std::net::SocketAddr::new(d.spec.addr, d.spec.port), d.spec.weight),
                largenum(r.cps, false),
                largenum(r.inpps, false),
                largenum(r.outpps, false),
                largenum(r.inbps, false),
                largenum(r.outbps, false),
                d.active,
                d.inactive
            );
        }
    }
    out
}

/// ANSI: cursor home, clear screen.
pub const CLEAR: &str = "\x1b[H\x1b[2J";

#[cfg(test)]
mod tests {
    use super::*;
    use control::api::{Counters, DestSpec, DestView, ForwardMethod, Rates, ServiceSpec, ServiceView, Timeouts};

    #[test]
    fn options() {
        let w = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(parse(&w(&[])), Ok(TopArgs { interval: 2.0, once: false }));
        assert_eq!(parse(&w(&["--once", "--interval", "0.5"])), Ok(TopArgs { interval: 0.5, once: true }));
        assert_eq!(parse(&w(&["--interval=3"])).unwrap().interval, 3.0);
        assert!(parse(&w(&["--interval", "0"])).unwrap_err().contains("between"));
        assert!(parse(&w(&["--interval"])).is_err());
        assert!(parse(&w(&["--bogus"])).unwrap_err().contains("unknown option"));
    }

    #[test]
    fn a_frame_shows_rates_and_connection_counts() {
        let dest = DestView {
            spec: DestSpec {
                addr: "192.168.1.11".parse().unwrap(),
                port: 8080,
                method: ForwardMethod::Masq,
                weight: 3,
                u_threshold: 0,
                l_threshold: 0,
                tun_type: Default::default(),
                tun_port: 0,
                tun_csum: Default::default(),
            },
            active: 4,
            inactive: 2,
            persistent: 0,
            stats: Counters::default(),
            rates: Rates { cps: 5, inpps: 120, outpps: 110, inbps: 2_500_000, outbps: 80_000 },
        };
        let snap = Snapshot {
            version: "1.2.1".into(),
            conn_tab_size: 4096,
            timeouts: Timeouts::default(),
            daemons: vec![],
            services: vec![ServiceView {
                spec: ServiceSpec {
                    key: ServiceKey::Tcp { addr: "10.0.0.100".parse().unwrap(), port: 80 },
                    scheduler: "wrr".into(),
                    sched_flags: Default::default(),
                    persistent: None,
                    netmask: u32::MAX,
                    ops: false,
                    pe: None,
                },
                stats: Counters::default(),
                rates: Rates { cps: 5, inpps: 120, outpps: 110, inbps: 2_500_000, outbps: 80_000 },
                dests: vec![dest],
            }],
        };
        let f = frame(&snap);
        let lines: Vec<&str> = f.lines().collect();
        assert_eq!(lines.len(), 4, "{f}");
        assert!(lines[0].contains("1 services, 6 connections"), "{f}");
        assert!(lines[2].starts_with("TCP  10.0.0.100:80 wrr"), "{f}");
        let cols: Vec<&str> = lines[3].split_whitespace().collect();
        assert_eq!(cols, ["->", "192.168.1.11:8080", "w3", "5", "120", "110", "2500K", "80000", "4", "2"], "{f}");
        assert!(!f.contains('\x1b'));
    }
}
