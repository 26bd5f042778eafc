//! Argument parsing: every message and exit code of ipvsadm-cli.md §1, §4, §5.

use super::*;
use crate::ipvsadm::args::{Action, Failure, ListFormat, ListTarget, Parsed, parse};
use crate::ipvsadm::resolve::{NoResolver, Resolver};

fn argv(words: &[&str]) -> Vec<String> {
    std::iter::once("ipvsadm").chain(words.iter().copied()).map(String::from).collect()
}

fn run(words: &[&str], res: &dyn Resolver) -> Result<Parsed, Failure> {
    parse(&argv(words), false, res)
}

const TRYHELP: &str = "Try `ipvsadm -h' or 'ipvsadm --help' for more information.\n";

#[test]
fn error_table() {
    let cases: &[(&[&str], i32, &str)] = &[
        (&["-n", "-L"], 255, TRYHELP),
        (&["-x"], 255, TRYHELP),
        (&["bogus"], 255, TRYHELP),
        (&["--bogus"], 255, TRYHELP),
        (&["-A", "-t", "10.0.0.1:0"], 2, "Zero port specified for non-persistent service\n"),
        (&["-A", "-t", "10.0.0.1:80", "-s", "rr", "-b", "sh-port"], 2, "incompatible scheduler flag `sh-port'\n"),
        (&["-A", "-t", "10.0.0.1:80", "-b", "mh-port"], 2, "incompatible scheduler flag `mh-port'\n"),
        (&["-A", "-t", "10.0.0.1:80", "-b", "bogus"], 2, "invalid scheduler flag `bogus'\n"),
        (
            &["-a", "-t", "10.0.0.1:80", "-r", "10.1.1.1", "-m", "--tun-type", "gue"],
            2,
            "Tunnel options conflict with forward method\n",
        ),
        (
            &["-a", "-t", "10.0.0.1:80", "-r", "10.1.1.1", "-i", "--tun-type", "gue"],
            2,
            "You need to supply the 'tun-port' option for the 'gue' tunnel type\n",
        ),
        (
            &["-a", "-f", "1", "-r", "10.1.1.1", "-i", "--tun-port", "5"],
            2,
            "Illegal 'tun-port' option with the 'ipip' tunnel type\n",
        ),
        (
            &[
                "-a",
                "-f",
                "1",
                "-r",
                "10.1.1.1",
                "-i",
                "--tun-type",
                "gue",
                "--tun-port",
                "5",
                "--tun-csum",
                "--tun-remcsum",
            ],
            2,
            "The option 'tun-remcsum' conflicts with the 'tun-csum' option in the 'gue' tunnel type\n",
        ),
        (
            &["-a", "-f", "1", "-r", "10.1.1.1", "-i", "--tun-type", "gre", "--tun-remcsum"],
            2,
            "Illegal 'tun-remcsum' option with the 'gre' tunnel type\n",
        ),
        (&["-a", "-f", "1", "-r", "10.1.1.1", "-i", "--tun-type", "vxlan"], 2, "illegal tunnel type specified\n"),
        (&["-a", "-f", "1", "-r", "10.1.1.1", "-i", "--tun-port", "0"], 2, "illegal tunnel port specified\n"),
        (
            &["-a", "-t", "10.0.0.1:80", "-r", "[2001:db8::1]:80", "-m"],
            2,
            "Different address family is allowed only for tunneling servers\n",
        ),
        (&["-L", "-c", "--stats"], 2, "options conflicts in the list command\n"),
        (&["-L", "--daemon", "--rate"], 2, "options conflicts in the list command\n"),
        (&["-L", "--timeout", "--persistent-conn"], 2, "options conflicts in the list command\n"),
        (
            &["-L", "--timeout", "--daemon"],
            2,
            "The option 'daemon' conflicts with the 'timeout' option in the 'list' command\n",
        ),
        (
            &["-L", "-t", "10.0.0.1:80", "-c"],
            2,
            "The option 'service-address' conflicts with the 'connection' option in the 'list' command\n",
        ),
        (&["-L", "-L"], 2, "invalid option `-L'\n"),
        (&["-lL"], 2, "invalid option `-lL'\n"),
        (&["-A", "-t", "10.0.0.1:80", "--add-service"], 2, "invalid option `--add-service'\n"),
        (&["-L", "-h"], 2, "invalid option `-h'\n"),
        (&["-A", "-t", "10.0.0.1:80", "-s", "rr", "-s", "wrr"], 2, "multiple 'scheduler' options specified\n"),
        (&["-A", "-t", "10.0.0.1:80", "-f", "3"], 2, "multiple 'service-address' options specified\n"),
        (
            &["-a", "-t", "10.0.0.1:80", "-r", "10.1.1.1", "-m", "-g"],
            2,
            "multiple 'forwarding-method' options specified\n",
        ),
        (&["-L", "extra"], 2, "unexpected argument extra\n"),
        (&["-C", "x", "y"], 2, "unexpected argument x\n"),
        (&["--set", "1", "2"], 2, "--set option requires 3 timeout values\n"),
        (&["--set", "1", "2", "x"], 2, "invalid timeout value `x' specified\n"),
        (&["--set", "1", "2", "2678401"], 2, "invalid timeout value `2678401' specified\n"),
        (&["--set", "1", "2", "3", "4"], 2, "unexpected argument 4\n"),
        (&["-A", "-t", "80"], 2, "illegal virtual server address[:port] specified\n"),
        (&["-A", "-t", "[2001:db8::1]"], 2, "illegal virtual server address[:port] specified\n"),
        (&["-A", "-t", "10.0.0.1:http"], 2, "illegal virtual server address[:port] specified\n"),
        (&["-A", "-t", "10.0.0.1:65536"], 2, "illegal virtual server address[:port] specified\n"),
        (&["-A", "-f", "0"], 2, "invalid fwmark value `0' specified\n"),
        (&["-A", "-f", "4294967296"], 2, "invalid fwmark value `4294967296' specified\n"),
        (&["-A", "-6", "-f", "1"], 2, "-6 used before -f\n\n"),
        (&["-A", "-t", "10.0.0.1:80", "-p", "0"], 2, "invalid timeout value `0' specified\n"),
        (&["-A", "-t", "10.0.0.1:80", "-p", "2678401"], 2, "invalid timeout value `2678401' specified\n"),
        (&["-A", "-t", "10.0.0.1:80", "-p", "-M", "bad!"], 2, "illegal virtual server persistent mask specified\n"),
        (&["-A", "-t", "[2001:db8::1]:80", "-p", "-M", "129"], 2, "illegal ipv6 netmask specified\n"),
        (&["-A", "-t", "10.0.0.1:80", "-o"], 2, "One-Packet Scheduling is only for UDP virtual services\n"),
        (&["-a", "-t", "10.0.0.1:80", "-r", "10.1.1.1", "-w", "65536"], 2, "illegal weight specified\n"),
        (&["-a", "-t", "10.0.0.1:80", "-r", "10.1.1.1", "-w", "-1"], 2, "illegal weight specified\n"),
        (&["-a", "-t", "10.0.0.1:80", "-r", "10.1.1.1", "-x", "2147483648"], 2, "illegal u_threshold specified\n"),
        (&["-a", "-t", "10.0.0.1:80", "-r", "10.1.1.1", "-y", "abc"], 2, "illegal l_threshold specified\n"),
        (&["-a", "-t", "10.0.0.1:80", "-r", "80"], 2, "illegal real server address[:port] specified\n"),
        (&["-a", "-t", "10.0.0.1:80"], 2, "You need to supply the 'real-server' option for the 'add-server' command\n"),
        (&["-A"], 2, "You need to supply the 'service-address' option for the 'add-service' command\n"),
        (&["-D", "-t", "10.0.0.1:80", "-s", "rr"], 2, "Illegal 'scheduler' option with the 'delete-service' command\n"),
        (
            &["-E", "-t", "10.0.0.1:80", "-r", "1.1.1.1"],
            2,
            "Illegal 'real-server' option with the 'edit-service' command\n",
        ),
        (&["-C", "-n"], 2, "Illegal 'numeric' option with the 'flush' command\n"),
        (&["-S", "-c"], 2, "Illegal 'connection' option with the 'save' command\n"),
        (&["-Z", "-n"], 2, "Illegal 'numeric' option with the 'zero' command\n"),
        (&["-R", "-n"], 2, "Illegal 'numeric' option with the 'restore' command\n"),
        (&["--set", "1", "2", "3", "-n"], 2, "Illegal 'numeric' option with the 'set' command\n"),
        (
            &["-d", "-t", "10.0.0.1:80", "-r", "10.1.1.1", "-w", "2"],
            2,
            "Illegal 'weight' option with the 'delete-server' command\n",
        ),
        (&["--start-daemon", "slave"], 2, "illegal start-daemon parameter specified\n"),
        (&["--stop-daemon", "x"], 2, "illegal start_daemon specified\n"),
        (
            &["--stop-daemon", "master", "--mcast-interface", "eth0"],
            2,
            "Illegal 'mcast-interface' option with the 'stop-daemon' command\n",
        ),
        (&["--start-daemon", "master", "--syncid", "256"], 2, "illegal syncid specified\n"),
        (&["--start-daemon", "master", "--mcast-group", "10.0.0.1"], 2, "invalid IPv4 mcast-group `10.0.0.1'\n"),
        (&["--start-daemon", "master", "--mcast-group", "fe80::1"], 2, "invalid IPv6 mcast-group `fe80::1'\n"),
        (&["--start-daemon", "master", "--mcast-port", "0"], 2, "illegal mcast-port specified\n"),
        (&["--start-daemon", "master", "--mcast-ttl", "256"], 2, "illegal mcast-ttl specified\n"),
        (&["--start-daemon", "master", "--sync-maxlen", "65508"], 2, "illegal sync-maxlen specified\n"),
        (&["-L", "-w"], 255, "-w: missing argument\n"),
        (&["-L", "--bogus"], 255, "--bogus: unknown option\n"),
        (&["-L", "--numeric=1"], 255, "--numeric=1: option does not take an argument\n"),
    ];
    for (words, code, stderr) in cases {
        match run(words, &NoResolver) {
            Err(f) => assert_eq!((f.code, f.stderr.as_str()), (*code, *stderr), "for {words:?}"),
            Ok(p) => panic!("{words:?} parsed as {p:?}"),
        }
    }
}

fn action(words: &[&str]) -> Action {
    match run(words, &names()) {
        Ok(Parsed::Action(a)) => a,
        other => panic!("{words:?}: {other:?}"),
    }
}

fn cmd(words: &[&str]) -> Command {
    match action(words) {
        Action::Command(c) => c,
        other => panic!("{words:?}: {other:?}"),
    }
}

fn tcp(a: &str, port: u16) -> ServiceKey {
    ServiceKey::Tcp { addr: ip(a), port }
}

#[test]
fn service_commands_and_defaults() {
    let mut want = service(tcp("10.0.0.1", 80), "wlc").spec;
    assert_eq!(cmd(&["-A", "-t", "10.0.0.1:80"]), Command::AddService(want.clone()));
    // Host and service names (forward lookups) and long options with '='.
    assert_eq!(cmd(&["--add-service", "--tcp-service=10.0.0.1:www"]), Command::AddService(want.clone()));
    want.key = tcp("10.0.0.1", 0);
    want.persistent = Some(360);
    assert_eq!(cmd(&["-A", "-t", "10.0.0.1", "-p"]), Command::AddService(want.clone()));

    let mut sh = service(tcp("10.0.0.200", 443), "sh").spec;
    sh.sched_flags = SchedFlags { flag1: true, flag2: true, flag3: false };
    sh.persistent = Some(600);
    sh.netmask = 0xFFFF_FF00;
    let c = cmd(&[
        "-A",
        "-t",
        "10.0.0.200:443",
        "-b",
        "sh-fallback,sh-port",
        "-p",
        "600",
        "-M",
        "255.255.255.0",
        "-s",
        "sh",
    ]);
    assert_eq!(c, Command::AddService(sh.clone()));
    // -E replaces everything: omitted options take defaults.
    let mut e = service(tcp("10.0.0.200", 443), "wlc").spec;
    e.ops = false;
    assert_eq!(cmd(&["-E", "-t", "10.0.0.200:443"]), Command::EditService(e));

    let mut dns = service(ServiceKey::Udp { addr: ip("10.0.0.100"), port: 53 }, "rr").spec;
    dns.ops = true;
    assert_eq!(cmd(&["-A", "-u", "10.0.0.100:domain", "-s", "rr", "-o"]), Command::AddService(dns));

    let mut f6 = service(ServiceKey::Fwmark { mark: 1, ipv6: true }, "wlc").spec;
    f6.persistent = Some(360);
    f6.netmask = 64;
    assert_eq!(cmd(&["-A", "-f", "1", "-6", "-p", "-M", "64"]), Command::AddService(f6));

    let v6 = service(ServiceKey::Sctp { addr: ip("2001:db8::1"), port: 80 }, "wlc").spec;
    assert_eq!(v6.netmask, 128);
    assert_eq!(cmd(&["-A", "--sctp-service", "[2001:db8::1]:80"]), Command::AddService(v6));

    assert_eq!(cmd(&["-D", "-t", "10.0.0.1:80"]), Command::DeleteService(tcp("10.0.0.1", 80)));
    assert_eq!(cmd(&["-C"]), Command::Clear);
    assert_eq!(cmd(&["-Z"]), Command::Zero(None));
    assert_eq!(cmd(&["-Z", "-f", "7"]), Command::Zero(Some(ServiceKey::Fwmark { mark: 7, ipv6: false })));
    assert_eq!(cmd(&["--set", "900", "60", "0"]), Command::SetTimeouts(Timeouts { tcp: 900, tcpfin: 60, udp: 0 }));
}

#[test]
fn dest_commands_and_port_rules() {
    let d = |addr: &str, port: u16, m: ForwardMethod, w: u32| dest(addr, port, m, w).spec;
    // DR forces the service port.
    assert_eq!(
        cmd(&["-a", "-t", "10.0.0.200:443", "-r", "172.16.0.5:8080", "-g"]),
        Command::AddDest(tcp("10.0.0.200", 443), d("172.16.0.5", 443, ForwardMethod::Route, 1))
    );
    // NAT without a port inherits the service port; -w3 attached.
    assert_eq!(
        cmd(&["-a", "-u", "10.0.0.100:53", "-r", "192.168.1.2", "-m", "-w2"]),
        Command::AddDest(
            ServiceKey::Udp { addr: ip("10.0.0.100"), port: 53 },
            d("192.168.1.2", 53, ForwardMethod::Masq, 2)
        )
    );
    let mut gue = d("203.0.113.9", 0, ForwardMethod::Tunnel, 1);
    gue.tun_type = TunnelType::Gue;
    gue.tun_port = 6080;
    gue.tun_csum = TunnelCsum::Csum;
    assert_eq!(
        cmd(&["-a", "-f", "7", "-r", "203.0.113.9", "-i", "--tun-type", "gue", "--tun-port", "6080", "--tun-csum"]),
        Command::AddDest(ServiceKey::Fwmark { mark: 7, ipv6: false }, gue)
    );
    // Tunnel dests may change family.
    assert_eq!(
        cmd(&["-a", "-t", "10.0.0.1:80", "-r", "[2001:db8::9]:80", "-i"]),
        Command::AddDest(tcp("10.0.0.1", 80), d("2001:db8::9", 80, ForwardMethod::Tunnel, 1))
    );
    // -e without options: DR, weight 1, thresholds cleared.
    assert_eq!(
        cmd(&["-e", "-t", "10.0.0.1:80", "-r", "10.1.1.1:8080"]),
        Command::EditDest(tcp("10.0.0.1", 80), d("10.1.1.1", 80, ForwardMethod::Route, 1))
    );
    let mut thr = d("10.1.1.1", 8080, ForwardMethod::Masq, 3);
    thr.u_threshold = 100;
    thr.l_threshold = 50;
    assert_eq!(
        cmd(&["-a", "-t", "10.0.0.1:80", "-r", "10.1.1.1:http-alt", "-m", "--weight=3", "-x", "100", "-y", "50"]),
        Command::AddDest(tcp("10.0.0.1", 80), thr)
    );
    // -d keeps the given port (no DR forcing) and defaults to the service port.
    assert_eq!(
        cmd(&["-d", "-t", "10.0.0.1:80", "-r", "10.1.1.1"]),
        Command::DeleteDest(tcp("10.0.0.1", 80), ip("10.1.1.1"), 80)
    );
}

#[test]
fn listing_requests() {
    let numeric = ListFormat { numeric: true, ..Default::default() };
    assert_eq!(
        run(&[], &NoResolver),
        Ok(Parsed::Action(Action::List { target: ListTarget::All, format: ListFormat::default() }))
    );
    assert_eq!(action(&["-lnc"]), Action::List { target: ListTarget::Connections, format: numeric });
    assert_eq!(
        action(&["-Ln", "--stats", "--exact", "--sort"]),
        Action::List { target: ListTarget::All, format: ListFormat { stats: true, exact: true, ..numeric } }
    );
    assert_eq!(
        action(&["-L", "-t", "10.0.0.1:80"]),
        Action::List { target: ListTarget::Service(tcp("10.0.0.1", 80)), format: ListFormat::default() }
    );
    assert_eq!(
        action(&["-L", "--timeout"]),
        Action::List { target: ListTarget::Timeout, format: ListFormat::default() }
    );
    assert_eq!(action(&["-L", "--daemon"]), Action::List { target: ListTarget::Daemon, format: ListFormat::default() });
    assert_eq!(action(&["-S", "-n"]), Action::Save { numeric: true });
    assert_eq!(action(&["-R"]), Action::Restore);
    assert!(matches!(parse(&argv(&["-R"]), true, &NoResolver), Err(f) if f.code == 255 && f.stderr == TRYHELP));
}

#[test]
fn help_version_and_program_name() {
    match run(&["-h", "ignored", "--junk"], &NoResolver) {
        Ok(Parsed::Help(t)) => {
            assert!(t.starts_with(
                "ipvsadm v1.31 2019/12/24 (compiled with popt and IPVS v1.2.1)\nUsage:\n  ipvsadm -A|E virtual-service"
            ));
            assert!(t.contains("  ipvsadm --start-daemon {master|backup} [daemon-options]\n"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        run(&["-v"], &NoResolver),
        Ok(Parsed::Version("ipvsadm v1.31 2019/12/24 (compiled with popt and IPVS v1.2.1)\n".into()))
    );
    let argv = vec!["./rvsadm".to_string(), "-Q".to_string()];
    let f = parse(&argv, false, &NoResolver).expect_err("try-help");
    assert_eq!(f.stderr, "Try `./rvsadm -h' or './rvsadm --help' for more information.\n");
}

#[test]
fn start_and_stop_daemon() {
    assert_eq!(
        cmd(&["--start-daemon", "backup", "--mcast-interface", "eth1", "--syncid", "5", "--mcast-group", "ff02::1"]),
        Command::StartDaemon(DaemonConfig {
            role: SyncRole::Backup,
            mcast_ifn: "eth1".into(),
            syncid: 5,
            sync_maxlen: 0,
            mcast_group: Some(ip("ff02::1")),
            mcast_port: 0,
            mcast_ttl: 0,
        })
    );
    assert_eq!(
        cmd(&["--start-daemon=master"]),
        Command::StartDaemon(DaemonConfig {
            role: SyncRole::Master,
            mcast_ifn: "eth0".into(),
            syncid: 0,
            sync_maxlen: 0,
            mcast_group: None,
            mcast_port: 0,
            mcast_ttl: 0,
        })
    );
    assert_eq!(
        cmd(&["--stop-daemon", "backup", "--syncid", "5"]),
        Command::StopDaemon { role: SyncRole::Backup, syncid: 5 }
    );
}
