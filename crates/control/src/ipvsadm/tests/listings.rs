//! Every listing of ipvsadm-cli.md §9 on fixed snapshots.

use super::*;
use crate::ipvsadm::args::{ListFormat, ListTarget};
use crate::ipvsadm::format::{self, expire, largenum};
use crate::ipvsadm::resolve::NoResolver;

fn fmt() -> ListFormat {
    ListFormat { numeric: true, ..Default::default() }
}

#[test]
fn default_numeric_listing() {
    let out = format::list_all(&worked_example(), &fmt(), &NoResolver);
    let want = bars(
        "IP Virtual Server version 1.2.1 (size=4096)|
        Prot LocalAddress:Port Scheduler Flags|
          -> RemoteAddress:Port           Forward Weight ActiveConn InActConn|
        TCP  10.0.0.100:80 wrr|
          -> 192.168.1.2:8080             Masq    1      14         2         |
          -> 192.168.1.11:8080            Masq    3      41         7         |
        TCP  10.0.0.200:443 sh (sh-fallback,sh-port) persistent 600 mask 255.255.255.0|
          -> 172.16.0.5:443               Route   1      2          1         |
          -> 172.16.0.6:443               Route   0      0          3         |
        UDP  10.0.0.100:53 rr ops|
          -> 192.168.1.2:53               Masq    2      0          0         |
          -> 192.168.1.11:53              Masq    1      0          0         |
        FWM  7 mh (mh-port)|
          -> 203.0.113.9:0                Tunnel  1      0          0         |
          -> 203.0.113.10:0               Tunnel  1      0          0         |
          -> 203.0.113.11:0               Tunnel  1      0          0         |",
    );
    assert_eq!(out, want);
}

#[test]
fn default_listing_with_names() {
    let f = ListFormat::default();
    let out = format::list_all(&worked_example(), &f, &names());
    let want = bars(
        "IP Virtual Server version 1.2.1 (size=4096)|
        Prot LocalAddress:Port Scheduler Flags|
          -> RemoteAddress:Port           Forward Weight ActiveConn InActConn|
        TCP  10.0.0.100:http wrr|
          -> 192.168.1.2:http-alt         Masq    1      14         2         |
          -> 192.168.1.11:http-alt        Masq    3      41         7         |
        TCP  10.0.0.200:https sh (sh-fallback,sh-port) persistent 600 mask 255.255.255.0|
          -> 172.16.0.5:https             Route   1      2          1         |
          -> 172.16.0.6:https             Route   0      0          3         |
        UDP  10.0.0.100:domain rr ops|
          -> 192.168.1.2:domain           Masq    2      0          0         |
          -> 192.168.1.11:domain          Masq    1      0          0         |
        FWM  7 mh (mh-port)|
          -> 203.0.113.9:0                Tunnel  1      0          0         |
          -> 203.0.113.10:0               Tunnel  1      0          0         |
          -> 203.0.113.11:0               Tunnel  1      0          0         |",
    );
    assert_eq!(out, want);
}

#[test]
fn long_names_are_cut_for_ipv4_only() {
    let mut s = service(ServiceKey::Tcp { addr: ip("10.9.9.9"), port: 80 }, "wrr");
    let mut d = dest("10.9.9.10", 8080, ForwardMethod::Masq, 1);
    (d.active, d.inactive) = (14, 2);
    s.dests = vec![d, dest("2001:db8::1", 8080, ForwardMethod::Masq, 1)];
    let mut out = String::new();
    format::service_entry(&mut out, &s, &ListFormat::default(), &names());
    let want = bars(
        "TCP  www.example-director.com:htt wrr|
          -> backend-1.internal.example.c Masq    1      14         2         |
          -> [2001:db8::1]:http-alt       Masq    1      0          0         |",
    );
    assert_eq!(out, want);

    let long = service(ServiceKey::Tcp { addr: ip("2001:db8:aaaa:bbbb:cccc:dddd:eeee:100"), port: 80 }, "rr");
    let mut out = String::new();
    format::service_entry(&mut out, &long, &fmt(), &NoResolver);
    assert_eq!(out, "TCP  [2001:db8:aaaa:bbbb:cccc:dddd:eeee:100]:80 rr\n");
}

#[test]
fn fwmark_ipv6_label_and_ipv6_mask() {
    let mut s = service(ServiceKey::Fwmark { mark: 9, ipv6: true }, "wlc");
    s.spec.persistent = Some(360);
    s.spec.netmask = 64;
    s.spec.pe = Some("sip".into());
    let mut out = String::new();
    format::service_entry(&mut out, &s, &fmt(), &NoResolver);
    assert_eq!(out, "FWM  9 IPv6 wlc persistent 360 mask 64 pe sip\n");
    // pe is printed only for persistent services; flag names depend on the scheduler.
    s.spec.persistent = None;
    s.spec.sched_flags = SchedFlags { flag1: true, flag2: false, flag3: true };
    let mut out = String::new();
    format::service_entry(&mut out, &s, &fmt(), &NoResolver);
    assert_eq!(out, "FWM  9 IPv6 wlc (flag-1,flag-3)\n");
}

#[test]
fn stats_listing_with_suffixes() {
    let f = ListFormat { stats: true, ..fmt() };
    let out = format::list_all(&worked_example(), &f, &NoResolver);
    let want = bars(
        "IP Virtual Server version 1.2.1 (size=4096)|
        Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes|
          -> RemoteAddress:Port|
        TCP  10.0.0.100:80                    1523    98765    87654  123456K    9876M|
          -> 192.168.1.2:8080                  381    24765    21954 31456789    2476M|
          -> 192.168.1.11:8080                1142    74000    65700 92000000    7400M|
        TCP  10.0.0.200:443                      0        0        0        0        0|
          -> 172.16.0.5:443                      0        0        0        0        0|
          -> 172.16.0.6:443                      0        0        0        0        0|
        UDP  10.0.0.100:53                       0        0        0        0        0|
          -> 192.168.1.2:53                      0        0        0        0        0|
          -> 192.168.1.11:53                     0        0        0        0        0|
        FWM  7                                   0        0        0        0        0|
          -> 203.0.113.9:0                       0        0        0        0        0|
          -> 203.0.113.10:0                      0        0        0        0        0|
          -> 203.0.113.11:0                      0        0        0        0        0|",
    );
    assert_eq!(out, want);
}

#[test]
fn stats_exact_one_service() {
    let f = ListFormat { stats: true, exact: true, ..fmt() };
    let key = ServiceKey::Tcp { addr: ip("10.0.0.100"), port: 80 };
    let out = format::list(&worked_example(), &ListTarget::Service(key), &f, &NoResolver);
    // A single service has no version line (§9.1).
    let want = bars(
        "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes|
          -> RemoteAddress:Port|
        TCP  10.0.0.100:80                    1523    98765    87654 123456789 9876543210|
          -> 192.168.1.2:8080                  381    24765    21954 31456789 2476543210|
          -> 192.168.1.11:8080                1142    74000    65700 92000000 7400000000|",
    );
    assert_eq!(out, Ok(want));
}

#[test]
fn missing_service_is_an_error() {
    let key = ServiceKey::Tcp { addr: ip("10.0.0.1"), port: 80 };
    let out = format::list(&worked_example(), &ListTarget::Service(key), &fmt(), &NoResolver);
    assert_eq!(out, Err("No such service\n".to_string()));
}

#[test]
fn rate_listing() {
    let f = ListFormat { rate: true, ..fmt() };
    let key = ServiceKey::Tcp { addr: ip("10.0.0.100"), port: 80 };
    let out = format::list(&worked_example(), &ListTarget::Service(key), &f, &NoResolver);
    let want = bars(
        "Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS|
          -> RemoteAddress:Port|
        TCP  10.0.0.100:80                      12      340      310    45000  1234567|
          -> 192.168.1.2:8080                    3       85       78    11250   308642|
          -> 192.168.1.11:8080                   9      255      232    33750   925925|",
    );
    assert_eq!(out, Ok(want));
}

#[test]
fn rate_quirk_dest_pps_never_abbreviated() {
    let mut s = service(ServiceKey::Tcp { addr: ip("10.0.0.1"), port: 80 }, "rr");
    s.rates = Rates { cps: 200_000_000, inpps: 0, outpps: 0, inbps: 5_000_000_000, outbps: 0 };
    let mut d = dest("10.1.1.1", 80, ForwardMethod::Route, 1);
    d.rates = Rates { cps: 123_456_789, inpps: 1, outpps: 2, inbps: 150_000_000, outbps: 0 };
    s.dests = vec![d];
    let mut out = String::new();
    format::service_entry(&mut out, &s, &ListFormat { rate: true, ..fmt() }, &NoResolver);
    let want = bars(
        "TCP  10.0.0.1:80                   200000K        0        0    5000M        0|
          -> 10.1.1.1:80                  123456789        1        2  150000K        0|",
    );
    assert_eq!(out, want);
    let mut out = String::new();
    format::service_entry(&mut out, &s, &ListFormat { rate: true, exact: true, ..fmt() }, &NoResolver);
    let want = bars(
        "TCP  10.0.0.1:80                  200000000        0        0 5000000000        0|
          -> 10.1.1.1:80                  123456789        1        2 150000000        0|",
    );
    assert_eq!(out, want);
}

#[test]
fn thresholds_listing() {
    let f = ListFormat { thresholds: true, ..fmt() };
    let out = format::list_all(&worked_example(), &f, &NoResolver);
    let want = bars(
        "IP Virtual Server version 1.2.1 (size=4096)|
        Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn |
          -> RemoteAddress:Port|
        TCP  10.0.0.100:80 wrr|
          -> 192.168.1.2:8080             100        50         14         2         |
          -> 192.168.1.11:8080            0          0          41         7         |
        TCP  10.0.0.200:443 sh (sh-fallback,sh-port) persistent 600 mask 255.255.255.0|
          -> 172.16.0.5:443               0          0          2          1         |
          -> 172.16.0.6:443               0          0          0          3         |
        UDP  10.0.0.100:53 rr ops|
          -> 192.168.1.2:53               0          0          0          0         |
          -> 192.168.1.11:53              0          0          0          0         |
        FWM  7 mh (mh-port)|
          -> 203.0.113.9:0                0          0          0          0         |
          -> 203.0.113.10:0               0          0          0          0         |
          -> 203.0.113.11:0               0          0          0          0         |",
    );
    assert_eq!(out, want);
}

#[test]
fn persistent_conn_listing() {
    let f = ListFormat { persistent_conn: true, ..fmt() };
    let out = format::list_all(&worked_example(), &f, &NoResolver);
    let want = bars(
        "IP Virtual Server version 1.2.1 (size=4096)|
        Prot LocalAddress:Port            Weight    PersistConn ActiveConn InActConn |
          -> RemoteAddress:Port|
        TCP  10.0.0.100:80 wrr|
          -> 192.168.1.2:8080             1         0           14         2         |
          -> 192.168.1.11:8080            3         0           41         7         |
        TCP  10.0.0.200:443 sh (sh-fallback,sh-port) persistent 600 mask 255.255.255.0|
          -> 172.16.0.5:443               1         1           2          1         |
          -> 172.16.0.6:443               0         0           0          3         |
        UDP  10.0.0.100:53 rr ops|
          -> 192.168.1.2:53               2         0           0          0         |
          -> 192.168.1.11:53              1         0           0          0         |
        FWM  7 mh (mh-port)|
          -> 203.0.113.9:0                1         0           0          0         |
          -> 203.0.113.10:0               1         0           0          0         |
          -> 203.0.113.11:0               1         0           0          0         |",
    );
    assert_eq!(out, want);
}

#[test]
fn tun_info_listing() {
    let f = ListFormat { tun_info: true, ..fmt() };
    let out = format::list_all(&worked_example(), &f, &NoResolver);
    let want = bars(
        "IP Virtual Server version 1.2.1 (size=4096)|
        Prot LocalAddress:Port Scheduler Flags|
          -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn|
        TCP  10.0.0.100:80 wrr|
          -> 192.168.1.2:8080             Masq    n/a           1      14         2         |
          -> 192.168.1.11:8080            Masq    n/a           3      41         7         |
        TCP  10.0.0.200:443 sh (sh-fallback,sh-port) persistent 600 mask 255.255.255.0|
          -> 172.16.0.5:443               Route   n/a           1      2          1         |
          -> 172.16.0.6:443               Route   n/a           0      0          3         |
        UDP  10.0.0.100:53 rr ops|
          -> 192.168.1.2:53               Masq    n/a           2      0          0         |
          -> 192.168.1.11:53              Masq    n/a           1      0          0         |
        FWM  7 mh (mh-port)|
          -> 203.0.113.9:0                Tunnel  gue:6080:+c   1      0          0         |
          -> 203.0.113.10:0               Tunnel  ipip          1      0          0         |
          -> 203.0.113.11:0               Tunnel  gre:-c        1      0          0         |",
    );
    assert_eq!(out, want);
}

#[test]
fn title_priority_stats_first() {
    // --stats wins over --thresholds when both are given (§9.1 order).
    let f = ListFormat { stats: true, thresholds: true, ..fmt() };
    let t = format::title(&f);
    assert!(t.starts_with("Prot LocalAddress:Port               Conns"));
}

#[test]
fn nosort_shows_kernel_order() {
    let f = ListFormat { nosort: true, ..fmt() };
    let out = format::list_all(&worked_example(), &f, &NoResolver);
    let want = bars(
        "IP Virtual Server version 1.2.1 (size=4096)|
        Prot LocalAddress:Port Scheduler Flags|
          -> RemoteAddress:Port           Forward Weight ActiveConn InActConn|
        FWM  7 mh (mh-port)|
          -> 203.0.113.11:0               Tunnel  1      0          0         |
          -> 203.0.113.10:0               Tunnel  1      0          0         |
          -> 203.0.113.9:0                Tunnel  1      0          0         |
        UDP  10.0.0.100:53 rr ops|
          -> 192.168.1.2:53               Masq    2      0          0         |
          -> 192.168.1.11:53              Masq    1      0          0         |
        TCP  10.0.0.200:443 sh (sh-fallback,sh-port) persistent 600 mask 255.255.255.0|
          -> 172.16.0.6:443               Route   0      0          3         |
          -> 172.16.0.5:443               Route   1      2          1         |
        TCP  10.0.0.100:80 wrr|
          -> 192.168.1.2:8080             Masq    1      14         2         |
          -> 192.168.1.11:8080            Masq    3      41         7         |",
    );
    assert_eq!(out, want);
}

#[test]
fn sorting_quirk_200_before_10() {
    let key = |a: &str| ServiceKey::Tcp { addr: ip(a), port: 80 };
    let mut a = service(key("10.0.0.1"), "rr");
    a.dests = vec![
        dest("10.1.1.1", 80, ForwardMethod::Route, 1),
        dest("200.1.1.1", 80, ForwardMethod::Route, 1),
        dest("10.1.1.1", 8, ForwardMethod::Route, 1),
    ];
    let snap = Snapshot {
        version: "1.2.1".into(),
        conn_tab_size: 4096,
        services: vec![
            a,
            service(key("200.0.0.1"), "rr"),
            service(ServiceKey::Udp { addr: ip("1.1.1.1"), port: 53 }, "rr"),
            service(ServiceKey::Tcp { addr: ip("2001:db8::1"), port: 80 }, "rr"),
            service(ServiceKey::Fwmark { mark: 1, ipv6: false }, "rr"),
        ],
        timeouts: Timeouts::default(),
        daemons: vec![],
    };
    let out = format::list_all(&snap, &fmt(), &NoResolver);
    let want = bars(
        "IP Virtual Server version 1.2.1 (size=4096)|
        Prot LocalAddress:Port Scheduler Flags|
          -> RemoteAddress:Port           Forward Weight ActiveConn InActConn|
        TCP  200.0.0.1:80 rr|
        TCP  10.0.0.1:80 rr|
          -> 200.1.1.1:80                 Route   1      0          0         |
          -> 10.1.1.1:8                   Route   1      0          0         |
          -> 10.1.1.1:80                  Route   1      0          0         |
        UDP  1.1.1.1:53 rr|
        TCP  [2001:db8::1]:80 rr|
        FWM  1 rr|",
    );
    assert_eq!(out, want);
}

#[test]
fn connection_listing() {
    let c = |proto: u8, exp: u32, state: &str, cl: (&str, u16), v: (&str, u16), d: (&str, u16)| ConnView {
        proto,
        caddr: ip(cl.0),
        cport: cl.1,
        vaddr: ip(v.0),
        vport: v.1,
        daddr: ip(d.0),
        dport: d.1,
        state: state.into(),
        expires_secs: exp,
        template: false,
        one_packet: false,
        fwmark: 0,
        pe_name: None,
        pe_data: None,
        synced: false,
    };
    let mut tpl = c(6, 585, "ASSURED", ("198.51.100.0", 0), ("10.0.0.200", 443), ("172.16.0.5", 443));
    tpl.template = true;
    let mut fwtpl = c(0, 359, "NONE", ("198.51.100.0", 0), ("0.0.0.7", 0), ("203.0.113.9", 0));
    fwtpl.template = true;
    let mut ops = c(17, 0, "UDP", ("198.51.100.1", 1), ("10.0.0.100", 53), ("192.168.1.2", 53));
    ops.one_packet = true;
    let conns = vec![
        c(6, 897, "ESTABLISHED", ("198.51.100.7", 40512), ("10.0.0.100", 80), ("192.168.1.11", 8080)),
        c(6, 58, "SYN_RECV", ("198.51.100.8", 40100), ("10.0.0.100", 80), ("192.168.1.2", 8080)),
        ops,
        c(6, 113, "TIME_WAIT", ("198.51.100.9", 39999), ("10.0.0.100", 80), ("192.168.1.11", 8080)),
        tpl,
        c(6, 899, "ESTABLISHED", ("198.51.100.23", 51000), ("10.0.0.200", 443), ("172.16.0.5", 443)),
        c(6, 47, "SYN_RECV", ("203.0.113.50", 33000), ("198.18.0.10", 443), ("203.0.113.9", 443)),
        fwtpl,
    ];
    let out = format::list_connections(&conns, &fmt(), &NoResolver);
    let want = bars(
        "IPVS connection entries|
        pro expire state       source             virtual            destination|
        TCP 14:57  ESTABLISHED 198.51.100.7:40512 10.0.0.100:80      192.168.1.11:8080|
        TCP 00:58  SYN_RECV    198.51.100.8:40100 10.0.0.100:80      192.168.1.2:8080|
        TCP 01:53  TIME_WAIT   198.51.100.9:39999 10.0.0.100:80      192.168.1.11:8080|
        TCP 09:45  ASSURED     198.51.100.0:0     10.0.0.200:443     172.16.0.5:443|
        TCP 14:59  ESTABLISHED 198.51.100.23:51000 10.0.0.200:443     172.16.0.5:443|
        TCP 00:47  SYN_RECV    203.0.113.50:33000 198.18.0.10:443    203.0.113.9:443|
        IP  05:59  NONE        198.51.100.0:0     0.0.0.7:0          203.0.113.9:0|",
    );
    assert_eq!(out, want);

    // Without -n, ports of known protocols get names, "IP" templates never do.
    let named = format::list_connections(&conns[4..5], &ListFormat::default(), &names());
    assert!(named.ends_with("TCP 09:45  ASSURED     198.51.100.0:0     10.0.0.200:https   172.16.0.5:https\n"));
    let named = format::list_connections(&conns[7..], &ListFormat::default(), &names());
    assert!(named.ends_with("IP  05:59  NONE        198.51.100.0:0     0.0.0.7:0          203.0.113.9:0\n"));
}

#[test]
fn connection_listing_with_pe_data() {
    let mut sip = ConnView {
        proto: 17,
        caddr: ip("198.51.100.7"),
        cport: 5060,
        vaddr: ip("10.0.0.100"),
        vport: 5060,
        daddr: ip("192.168.1.2"),
        dport: 5060,
        state: "UDP".into(),
        expires_secs: 299,
        template: false,
        one_packet: false,
        fwmark: 0,
        pe_name: Some("sip".into()),
        pe_data: Some("call-1@x".into()),
        synced: false,
    };
    let f = ListFormat { persistent_conn: true, ..fmt() };
    let plain = ConnView { pe_name: None, pe_data: None, ..sip.clone() };
    sip.expires_secs = 299;
    let out = format::list_connections(&[sip, plain], &f, &NoResolver);
    let want = bars(
        "IPVS connection entries|
        pro expire state       source             virtual            destination        pe name          pe_data|
        UDP 04:59  UDP         198.51.100.7:5060  10.0.0.100:5060    192.168.1.2:5060 sip                call-1@x|
        UDP 04:59  UDP         198.51.100.7:5060  10.0.0.100:5060    192.168.1.2:5060|",
    );
    assert_eq!(out, want);
}

#[test]
fn timeout_and_daemon_listings() {
    let mut snap = worked_example();
    let t = format::list(&snap, &ListTarget::Timeout, &fmt(), &NoResolver);
    assert_eq!(t, Ok("Timeout (tcp tcpfin udp): 900 60 300\n".to_string()));
    assert_eq!(format::list(&snap, &ListTarget::Daemon, &fmt(), &NoResolver), Ok(String::new()));
    snap.daemons = vec![
        DaemonConfig {
            role: SyncRole::Backup,
            mcast_ifn: "eth1".into(),
            syncid: 3,
            sync_maxlen: 0,
            mcast_group: None,
            mcast_port: 0,
            mcast_ttl: 0,
        },
        DaemonConfig {
            role: SyncRole::Master,
            mcast_ifn: "eth0".into(),
            syncid: 0,
            sync_maxlen: 1472,
            mcast_group: Some(ip("224.0.0.81")),
            mcast_port: 8848,
            mcast_ttl: 1,
        },
    ];
    let d = format::list(&snap, &ListTarget::Daemon, &fmt(), &NoResolver);
    assert_eq!(
        d,
        Ok("master sync daemon (mcast=eth0, syncid=0, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n\
            backup sync daemon (mcast=eth1, syncid=3)\n"
            .to_string())
    );
}

#[test]
fn largenum_vectors() {
    // test-vectors.md §10.
    let cases: &[(u64, bool, &str)] = &[
        (0, false, "        0"),
        (99_999_999, false, " 99999999"),
        (100_000_000, false, "  100000K"),
        (123_456_789, false, "  123456K"),
        (999_999_999, false, "  999999K"),
        (1_000_000_000, false, "    1000M"),
        (9_876_543_210, false, "    9876M"),
        (100_000_000_000, false, "     100G"),
        (100_000_000_000_000, false, "     100T"),
        (12_345_678, true, " 12345678"),
        (123_456_789, true, " 123456789"),
        (9_876_543_210, true, " 9876543210"),
    ];
    for &(v, exact, want) in cases {
        assert_eq!(largenum(v, exact), want, "value {v} exact {exact}");
    }
}

#[test]
fn expiry_vectors() {
    let cases: &[(u32, &str)] = &[
        (0, "00:00"),
        (59, "00:59"),
        (60, "01:00"),
        (900, "15:00"),
        (5999, "99:59"),
        (6000, "100:00"),
        (2_678_400, "44640:00"),
    ];
    for &(v, want) in cases {
        assert_eq!(expire(v), want);
    }
}

#[test]
fn state_names() {
    assert_eq!(state_name(IPPROTO_TCP, 3, false, false), "SYN_RECV");
    assert_eq!(state_name(IPPROTO_TCP, 11, false, false), "ERR!");
    assert_eq!(state_name(IPPROTO_UDP, 0, false, false), "UDP");
    assert_eq!(state_name(IPPROTO_SCTP, 4, false, false), "C-REPLIED");
    assert_eq!(state_name(IPPROTO_TCP, 1, true, true), "ASSURED");
    assert_eq!(state_name(0, 0, true, false), "NONE");
}
