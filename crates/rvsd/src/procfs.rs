//! The kernel's text views of IPVS, `/proc/net/ip_vs`, `ip_vs_conn`, `ip_vs_conn_sync` and
//! `ip_vs_stats`, for the tools that read them (node_exporter's ipvs collector, scripts,
//! `ipvsadm` builds without netlink). `rvsd --procfs-dir DIR` keeps `DIR/net/<name>`
//! current from a control-plane thread (`run`: once a second, each file written to a
//! temporary name and renamed over the old one, so a reader sees a whole file, old or new);
//! `GET /v1/procfs` serves the same text.
//!
//! The formats are the kernel's `seq_show` functions, byte for byte (ip_vs_ctl.c
//! `ip_vs_info_seq_show` and `ip_vs_stats_show`, ip_vs_conn.c `ip_vs_conn_seq_show` and
//! `ip_vs_conn_sync_seq_show`): IPv4 addresses and ports as upper-case hex in host order,
//! IPv6 addresses as `%pI6` (eight groups of four lower-case hex digits), the kernel's column
//! widths and its trailing blanks.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use control::api::{ConnView, Counters, ForwardMethod, Rates, ServiceKey, Snapshot};
use control::ops::ConnFilter;

use crate::admin::Admin;

/// The kernel's `HZ` that `/proc/net/ip_vs` shows persistence timeouts in: it prints
/// `svc->timeout`, which is kept in jiffies (Debian's kernels: `CONFIG_HZ_250`).
pub const PROC_HZ: u64 = 250;

/// `%pI6`: eight groups of four lower-case hex digits, no compression.
fn pi6(a: &std::net::Ipv6Addr) -> String {
    let s = a.segments();
    format!("{:04x}:{:04x}:{:04x}:{:04x}:{:04x}:{:04x}:{:04x}:{:04x}", s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7])
}

/// An address as the kernel's conn views print it: `%08X` (host order) or `%pI6`.
fn addr_hex(a: IpAddr) -> String {
    match a {
        IpAddr::V4(v4) => format!("{:08X}", u32::from(v4)),
        IpAddr::V6(v6) => pi6(&v6),
    }
}

/// `ip_vs_fwd_name`.
fn fwd_name(m: ForwardMethod) -> &'static str {
    match m {
        ForwardMethod::Local => "Local",
        ForwardMethod::Tunnel => "Tunnel",
        ForwardMethod::Route => "Route",
        ForwardMethod::Masq => "Masq",
    }
}

/// `ip_vs_proto_name`.
fn proto_name(p: u8) -> String {
    match p {
        0 => "IP".into(),
        6 => "TCP".into(),
        17 => "UDP".into(),
        132 => "SCTP".into(),
        50 => "ESP".into(),
        51 => "AH".into(),
        n => format!("IP_{n}"),
    }
}

/// `/proc/net/ip_vs` (`ip_vs_info_seq_show`): services in table order, each followed by
/// its real servers.
pub fn ip_vs(snap: &Snapshot) -> String {
    let mut o = String::with_capacity(256 + 128 * snap.services.len());
    let _ = writeln!(o, "IP Virtual Server version {} (size={})", snap.version, snap.conn_tab_size);
    o.push_str("Prot LocalAddress:Port Scheduler Flags\n");
    o.push_str("  -> RemoteAddress:Port Forward Weight ActiveConn InActConn\n");
    for s in &snap.services {
        let spec = &s.spec;
        let ops = if spec.ops { "ops " } else { "" };
        let (proto, addr, port) = match spec.key {
            ServiceKey::Tcp { addr, port } => ("TCP", addr, port),
            ServiceKey::Udp { addr, port } => ("UDP", addr, port),
            ServiceKey::Sctp { addr, port } => ("SCTP", addr, port),
            ServiceKey::Fwmark { mark, .. } => {
                let _ = write!(o, "FWM  {mark:08X} {} {ops}", spec.scheduler);
                ("", IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0)
            }
        };
        match addr {
            _ if proto.is_empty() => {}
            // The kernel's IPv6 line has no `ops` column.
            IpAddr::V6(a) => {
                let _ = write!(o, "{proto}  [{}]:{port:04X} {} ", pi6(&a), spec.scheduler);
            }
            IpAddr::V4(a) => {
                let _ = write!(o, "{proto}  {:08X}:{port:04X} {} {ops} ", u32::from(a), spec.scheduler);
            }
        }
        match spec.persistent {
            Some(t) => {
                let _ = writeln!(o, "persistent {} {:08X}", u64::from(t) * PROC_HZ, spec.netmask);
            }
            None => o.push('\n'),
        }
        for d in &s.dests {
            let a = match d.spec.addr {
                IpAddr::V4(v4) => format!("{:08X}", u32::from(v4)),
                IpAddr::V6(v6) => format!("[{}]", pi6(&v6)),
            };
            let _ = writeln!(
                o,
                "  -> {a}:{:04X}      {:<7} {:<6} {:<10} {:<10}",
                d.spec.port,
                fwd_name(d.spec.method),
                d.spec.weight as i32,
                d.active as i32,
                d.inactive as i32
            );
        }
    }
    o
}

/// `/proc/net/ip_vs_stats` (`ip_vs_stats_show`): the director's totals and rates in hex.
pub fn ip_vs_stats(t: &Counters, r: &Rates) -> String {
    let mut o = String::with_capacity(320);
    o.push_str("   Total Incoming Outgoing         Incoming         Outgoing\n");
    o.push_str("   Conns  Packets  Packets            Bytes            Bytes\n");
    let _ = writeln!(o, "{:8X} {:8X} {:8X} {:16X} {:16X}\n", t.conns, t.inpkts, t.outpkts, t.inbytes, t.outbytes);
    o.push_str(" Conns/s   Pkts/s   Pkts/s          Bytes/s          Bytes/s\n");
    let _ = writeln!(o, "{:8X} {:8X} {:8X} {:16X} {:16X}", r.cps, r.inpps, r.outpps, r.inbps, r.outbps);
    o
}

/// The kernel never lists one-packet entries (they are not hashed).
fn listed(conns: &[ConnView]) -> impl Iterator<Item = &ConnView> {
    conns.iter().filter(|c| !c.one_packet)
}

/// The columns both connection views share, up to the state.
fn conn_head(o: &mut String, c: &ConnView) {
    let _ = write!(
        o,
        "{:<3} {} {:04X} {} {:04X} {} {:04X} {:<11}",
        proto_name(c.proto),
        addr_hex(c.caddr),
        c.cport,
        addr_hex(c.vaddr),
        c.vport,
        addr_hex(c.daddr),
        c.dport,
        c.state
    );
}

/// `/proc/net/ip_vs_conn` (`ip_vs_conn_seq_show`), with the persistence engine's name and
/// data on the entries that have them (SIP templates: the Call-ID).
pub fn ip_vs_conn(conns: &[ConnView]) -> String {
    let mut o = String::with_capacity(96 + 96 * conns.len());
    o.push_str("Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData\n");
    for c in listed(conns) {
        conn_head(&mut o, c);
        let _ = write!(o, " {:>7}", c.expires_secs);
        if let (Some(name), Some(data)) = (&c.pe_name, &c.pe_data) {
            let _ = write!(o, " {name} {data}");
        }
        o.push('\n');
    }
    o
}

/// `/proc/net/ip_vs_conn_sync` (`ip_vs_conn_sync_seq_show`): Origin SYNC for the entries the
/// sync backup created, LOCAL for the others.
pub fn ip_vs_conn_sync(conns: &[ConnView]) -> String {
    let mut o = String::with_capacity(96 + 96 * conns.len());
    o.push_str("Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Origin Expires\n");
    for c in listed(conns) {
        conn_head(&mut o, c);
        let origin = if c.synced { "SYNC" } else { "LOCAL" };
        let _ = writeln!(o, " {:<6} {:>7}", origin, c.expires_secs);
    }
    o
}

/// The four views of the running daemon, in `FILES` order.
pub fn render(admin: &Admin) -> [(&'static str, String); 4] {
    let snap = admin.snapshot();
    let total = crate::convert::counters(admin.node.ipvs.total.read());
    let rates = crate::convert::rates(admin.rates.rates(&admin.node.ipvs.total));
    let conns = admin.connections_filtered(&ConnFilter::default()).map(|l| l.conns).unwrap_or_default();
    [
        ("ip_vs", ip_vs(&snap)),
        ("ip_vs_stats", ip_vs_stats(&total, &rates)),
        ("ip_vs_conn", ip_vs_conn(&conns)),
        ("ip_vs_conn_sync", ip_vs_conn_sync(&conns)),
    ]
}

/// Writes `DIR/net/<name>` for each view: a temporary file in the same directory, then a
/// rename over the old one, so readers never see a half-written file.
pub fn write_all(dir: &Path, views: &[(&str, String)]) -> std::io::Result<()> {
    let net = dir.join("net");
    std::fs::create_dir_all(&net)?;
    for (name, text) in views {
        let tmp: PathBuf = net.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, net.join(name))?;
    }
    Ok(())
}

/// How often the files are rewritten.
pub const REFRESH: Duration = Duration::from_secs(1);

/// The `--procfs-dir` thread: rewrites the files every `REFRESH` until `stop`. A write error
/// is logged once and retried on the next round.
pub fn run(admin: Arc<Admin>, dir: PathBuf, stop: Arc<AtomicBool>) {
    let mut next = Instant::now();
    let mut failing = false;
    while !stop.load(Ordering::Relaxed) {
        if Instant::now() >= next {
            // Keep the cadence, but never write back to back after a slow round.
            next = (next + REFRESH).max(Instant::now());
            match write_all(&dir, &render(&admin)) {
                Ok(()) if failing => {
                    tracing::info!("{}: procfs views written again", dir.display());
                    failing = false;
                }
                Ok(()) => {}
                Err(e) if !failing => {
                    tracing::warn!("{}: cannot write the procfs views: {e}", dir.display());
                    failing = true;
                }
                Err(_) => {}
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Removes the views: a stopped director has no IPVS table, and tools must not read stale
/// figures (the kernel's files go with its module). Not after a hot restart's hand-over,
/// where the new daemon keeps them.
pub fn remove(dir: &Path) {
    for name in ["ip_vs", "ip_vs_stats", "ip_vs_conn", "ip_vs_conn_sync"] {
        let _ = std::fs::remove_file(dir.join("net").join(name));
    }
}

/// `GET /v1/procfs`: the four views as one JSON object, keyed by file name.
pub fn route(admin: &Admin) -> (u16, Vec<u8>) {
    let map: serde_json::Map<String, serde_json::Value> =
        render(admin).into_iter().map(|(k, v)| (k.to_string(), serde_json::Value::String(v))).collect();
    (200, serde_json::to_vec(&map).unwrap_or_else(|_| b"{}".to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use control::api::{DestSpec, DestView, SchedFlags, ServiceSpec, ServiceView, Timeouts};

    fn service(key: ServiceKey, sched: &str, persistent: Option<u32>, netmask: u32, ops: bool) -> ServiceView {
        ServiceView {
            spec: ServiceSpec {
                key,
                scheduler: sched.into(),
                sched_flags: SchedFlags::default(),
                persistent,
                netmask,
                ops,
                pe: None,
            },
            stats: Counters::default(),
            rates: Rates::default(),
            dests: Vec::new(),
        }
    }

    fn dest(addr: &str, port: u16, method: ForwardMethod, weight: u32, active: u32, inactive: u32) -> DestView {
        DestView {
            spec: DestSpec {
                addr: addr.parse().unwrap(),
                port,
                method,
                weight,
                u_threshold: 0,
                l_threshold: 0,
                tun_type: Default::default(),
                tun_port: 0,
                tun_csum: Default::default(),
            },
            active,
            inactive,
            persistent: 0,
            stats: Counters::default(),
            rates: Rates::default(),
        }
    }

    /// The expected bytes are written out from the kernel's format strings by hand:
    /// `"%s  %08X:%04X %s %s "` + `"persistent %d %08X\n"` or `'\n'`, and
    /// `"  -> %08X:%04X      %-7s %-6d %-10d %-10d\n"`.
    #[test]
    fn ip_vs_is_the_kernels_info_view() {
        let mut web =
            service(ServiceKey::Tcp { addr: "10.0.0.100".parse().unwrap(), port: 80 }, "wlc", None, !0, false);
        web.dests.push(dest("192.168.1.11", 8080, ForwardMethod::Masq, 3, 12, 345));
        web.dests.push(dest("192.168.1.12", 8080, ForwardMethod::Route, 1, 0, 0));
        let mut dns = service(ServiceKey::Udp { addr: "10.0.0.100".parse().unwrap(), port: 53 }, "rr", None, !0, true);
        dns.dests.push(dest("192.168.1.13", 53, ForwardMethod::Tunnel, 0, 0, 7));
        let sticky = service(
            ServiceKey::Tcp { addr: "10.0.0.200".parse().unwrap(), port: 443 },
            "sh",
            Some(600),
            0xFFFF_FF00,
            false,
        );
        let mut fwm = service(ServiceKey::Fwmark { mark: 7, ipv6: false }, "lc", Some(300), !0, false);
        fwm.dests.push(dest("2001:db8::5", 0, ForwardMethod::Tunnel, 2, 1, 0));
        let plain_fwm = service(ServiceKey::Fwmark { mark: 0x10, ipv6: false }, "rr", None, !0, true);
        let mut v6 =
            service(ServiceKey::Tcp { addr: "2001:db8::100".parse().unwrap(), port: 80 }, "rr", None, !0, true);
        v6.dests.push(dest("2001:db8::11", 80, ForwardMethod::Masq, 1, 2, 3));
        let snap = Snapshot {
            version: "1.2.1".into(),
            conn_tab_size: 4096,
            services: vec![web, dns, sticky, fwm, plain_fwm, v6],
            timeouts: Timeouts { tcp: 900, tcpfin: 120, udp: 300 },
            daemons: Vec::new(),
        };
        let want = concat!(
            "IP Virtual Server version 1.2.1 (size=4096)\n",
            "Prot LocalAddress:Port Scheduler Flags\n",
            "  -> RemoteAddress:Port Forward Weight ActiveConn InActConn\n",
            "TCP  0A000064:0050 wlc  \n",
            "  -> C0A8010B:1F90      Masq    3      12         345       \n",
            "  -> C0A8010C:1F90      Route   1      0          0         \n",
            "UDP  0A000064:0035 rr ops  \n",
            "  -> C0A8010D:0035      Tunnel  0      0          7         \n",
            "TCP  0A0000C8:01BB sh  persistent 150000 FFFFFF00\n",
            "FWM  00000007 lc persistent 75000 FFFFFFFF\n",
            "  -> [2001:0db8:0000:0000:0000:0000:0000:0005]:0000      Tunnel  2      1          0         \n",
            "FWM  00000010 rr ops \n",
            "TCP  [2001:0db8:0000:0000:0000:0000:0000:0100]:0050 rr \n",
            "  -> [2001:0db8:0000:0000:0000:0000:0000:0011]:0050      Masq    1      2          3         \n",
        );
        assert_eq!(ip_vs(&snap), want);
    }

    /// `"%8LX %8LX %8LX %16LX %16LX\n\n"` then the rates with `"%8LX ... \n"`.
    #[test]
    fn ip_vs_stats_is_the_kernels_stats_view() {
        let t = Counters { conns: 0x1d, inpkts: 0x2bc, outpkts: 0x1f4, inbytes: 0x1_0000_0000, outbytes: 0xabcdef };
        let r = Rates { cps: 1, inpps: 0x10, outpps: 0, inbps: 0x400, outbps: 0xffff_ffff_ffff };
        let want = concat!(
            "   Total Incoming Outgoing         Incoming         Outgoing\n",
            "   Conns  Packets  Packets            Bytes            Bytes\n",
            "      1D      2BC      1F4        100000000           ABCDEF\n",
            "\n",
            " Conns/s   Pkts/s   Pkts/s          Bytes/s          Bytes/s\n",
            "       1       10        0              400     FFFFFFFFFFFF\n",
        );
        assert_eq!(ip_vs_stats(&t, &r), want);
    }

    fn conn(caddr: &str, cport: u16, vaddr: &str, vport: u16, daddr: &str, dport: u16, state: &str) -> ConnView {
        ConnView {
            proto: 6,
            caddr: caddr.parse().unwrap(),
            cport,
            vaddr: vaddr.parse().unwrap(),
            vport,
            daddr: daddr.parse().unwrap(),
            dport,
            state: state.into(),
            expires_secs: 897,
            template: false,
            one_packet: false,
            fwmark: 0,
            pe_name: None,
            pe_data: None,
            synced: false,
        }
    }

    /// `"%-3s %08X %04X %08X %04X %s %04X %-11s %7u%s\n"` (conn) and
    /// `"%-3s %08X %04X %08X %04X %s %04X %-11s %-6s %7u\n"` (conn_sync).
    #[test]
    fn ip_vs_conn_and_conn_sync_are_the_kernels_views() {
        let tcp = conn("10.0.0.2", 40000, "10.0.0.100", 80, "192.168.1.11", 8080, "ESTABLISHED");
        let mut udp = conn("10.0.0.2", 5353, "10.0.0.100", 53, "192.168.1.13", 53, "UDP");
        udp.proto = 17;
        udp.synced = true; // created by the sync backup
        udp.expires_secs = 5;
        let mut tpl = conn("10.0.0.2", 0, "0.0.0.7", 0, "2001:db8::5", 0, "ASSURED");
        (tpl.proto, tpl.template, tpl.expires_secs) = (0, true, 300);
        let mut sip = conn("10.0.0.3", 0, "10.0.0.100", 5060, "192.168.1.14", 5060, "NONE");
        (sip.proto, sip.template, sip.pe_name, sip.pe_data) =
            (17, true, Some("sip".into()), Some("a84b4c76e66710@pc33.example".into()));
        let mut v6 = conn("2001:db8::2", 40001, "2001:db8::100", 80, "2001:db8::11", 80, "SYN_RECV");
        v6.expires_secs = 1234567;
        let mut ops = udp.clone();
        ops.one_packet = true;
        let conns = [tcp, udp, tpl, sip, v6, ops];
        let want = "Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData\n\
TCP 0A000002 9C40 0A000064 0050 C0A8010B 1F90 ESTABLISHED     897\n\
UDP 0A000002 14E9 0A000064 0035 C0A8010D 0035 UDP               5\n\
IP  0A000002 0000 00000007 0000 2001:0db8:0000:0000:0000:0000:0000:0005 0000 ASSURED         300\n\
UDP 0A000003 0000 0A000064 13C4 C0A8010E 13C4 NONE            897 sip a84b4c76e66710@pc33.example\n\
TCP 2001:0db8:0000:0000:0000:0000:0000:0002 9C41 2001:0db8:0000:0000:0000:0000:0000:0100 0050 \
2001:0db8:0000:0000:0000:0000:0000:0011 0050 SYN_RECV    1234567\n";
        assert_eq!(ip_vs_conn(&conns), want);
        let want_sync = "Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Origin Expires\n\
TCP 0A000002 9C40 0A000064 0050 C0A8010B 1F90 ESTABLISHED LOCAL      897\n\
UDP 0A000002 14E9 0A000064 0035 C0A8010D 0035 UDP         SYNC         5\n\
IP  0A000002 0000 00000007 0000 2001:0db8:0000:0000:0000:0000:0000:0005 0000 ASSURED     LOCAL      300\n\
UDP 0A000003 0000 0A000064 13C4 C0A8010E 13C4 NONE        LOCAL      897\n\
TCP 2001:0db8:0000:0000:0000:0000:0000:0002 9C41 2001:0db8:0000:0000:0000:0000:0000:0100 0050 \
2001:0db8:0000:0000:0000:0000:0000:0011 0050 SYN_RECV    LOCAL  1234567\n";
        assert_eq!(ip_vs_conn_sync(&conns), want_sync);
    }

    #[test]
    fn files_are_replaced_whole() {
        let dir = std::env::temp_dir().join(format!("rvsd-procfs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        write_all(&dir, &[("ip_vs", "one\n".into())]).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("net/ip_vs")).unwrap(), "one\n");
        write_all(&dir, &[("ip_vs", "two\n".into())]).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("net/ip_vs")).unwrap(), "two\n");
        let names: Vec<String> = std::fs::read_dir(dir.join("net"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["ip_vs"], "no temporary file left behind");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
