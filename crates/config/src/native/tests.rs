use super::parse;
use crate::model::*;
use control::api::{Command, ServiceKey, Timeouts};
use std::time::Duration;

const EXAMPLE: &str = include_str!("../../examples/rvs.toml");

/// ipvsadm-cli.md §12 `ipvsadm -S -n`.
const SAVE_12: &str = "\
-A -t 10.0.0.100:80 -s wrr
-a -t 10.0.0.100:80 -r 192.168.1.2:8080 -m -w 1
-a -t 10.0.0.100:80 -r 192.168.1.11:8080 -m -w 3
-A -t 10.0.0.200:443 -s sh -p 600 -M 255.255.255.0 -b sh-fallback,sh-port
-a -t 10.0.0.200:443 -r 172.16.0.5:443 -g -w 1
-a -t 10.0.0.200:443 -r 172.16.0.6:443 -g -w 0
-A -u 10.0.0.100:53 -s rr -o
-a -u 10.0.0.100:53 -r 192.168.1.2:53 -m -w 2
-a -u 10.0.0.100:53 -r 192.168.1.11:53 -m -w 1
-A -f 7 -s mh -b mh-port
-a -f 7 -r 203.0.113.9:0 -i -w 1 --tun-type gue --tun-port 6080 --tun-csum
-a -f 7 -r 203.0.113.10:0 -i -w 1 --tun-type ipip
-a -f 7 -r 203.0.113.11:0 -i -w 1 --tun-type gre --tun-nocsum";

#[test]
fn example_file_is_the_worked_example_table() {
    let cfg = parse(EXAMPLE, "rvs.toml").unwrap();
    assert_eq!(cfg.save_lines().join("\n"), SAVE_12);
    assert!(cfg.warnings.is_empty());
}

#[test]
fn example_file_details() {
    let cfg = parse(EXAMPLE, "rvs.toml").unwrap();
    assert_eq!(cfg.interfaces[0].name, "eth0");
    assert_eq!(cfg.limits.max_connections, Some(1048576));
    assert_eq!(cfg.timeouts.set_command(), Some(Timeouts { tcp: 900, tcpfin: 60, udp: 300 }));
    assert_eq!(cfg.timeouts.tcp.get("SYN_RECV"), Some(&30));
    let web = &cfg.services[0];
    assert_eq!((web.quorum, web.hysteresis), (2, 1));
    assert_eq!(web.sorry_server.as_ref().map(|s| s.server.port), Some(Some(8080)));
    let http = &web.reals[0].checks[0];
    assert_eq!(http.timing.delay_loop, Duration::from_secs(6), "inherited from the service");
    assert_eq!(http.timing.retry, 2);
    assert_eq!(http.timing.warmup, Duration::from_secs(6), "warmup defaults to delay_loop");
    let CheckKind::Http(h) = &http.kind else { panic!("not http") };
    assert_eq!(h.urls[0].status, vec![(200, 200), (301, 302)]);
    assert_eq!(h.version, HttpVersion::V11);
    assert!(web.reals[1].inhibit_on_failure);
    assert_eq!((web.reals[1].u_threshold, web.reals[1].l_threshold), (100, 50));
    // Service-level checks are copied to each real server.
    let dns = &cfg.services[1];
    assert_eq!(dns.reals.len(), 2);
    assert!(dns.reals.iter().all(|r| matches!(&r.checks[..], [Check { kind: CheckKind::Dns(_), .. }])));
    assert_eq!(dns.reals[0].checks[0].timing.retry, 3, "DNS_CHECK retry default");
    assert_eq!(dns.timeouts.udp, Some(30));
    let misc = &cfg.services[2].reals[1].checks[0];
    assert_eq!(misc.timing.retry, 0, "MISC_CHECK retry default");
    assert!(matches!(&misc.kind, CheckKind::Misc(m) if m.dynamic && m.timeout == Some(Duration::from_secs(5))));
}

#[test]
fn to_commands_builds_the_table_in_order() {
    let cfg = parse(EXAMPLE, "rvs.toml").unwrap();
    let cmds = cfg.to_commands();
    assert_eq!(cmds[0], Command::SetTimeouts(Timeouts { tcp: 900, tcpfin: 60, udp: 300 }));
    let Command::AddService(s) = &cmds[1] else { panic!("{:?}", cmds[1]) };
    assert_eq!(s.scheduler, "wrr");
    let Command::AddDest(k, d) = &cmds[2] else { panic!() };
    assert!(matches!(k, ServiceKey::Tcp { port: 80, .. }));
    assert_eq!((d.port, d.weight), (8080, 3));
    let adds = cmds.iter().filter(|c| matches!(c, Command::AddService(_))).count();
    let dests = cmds.iter().filter(|c| matches!(c, Command::AddDest(..))).count();
    assert_eq!((adds, dests), (4, 9));
}

fn err(text: &str) -> String {
    parse(text, "rvs.toml").map(|_| ()).unwrap_err().to_string()
}

#[test]
fn errors_name_file_line_and_field() {
    let e = err("[[services]]\nprotocol = \"tcp\"\naddress = \"10.0.0.1:80\"\nscheduler = \"foo\"\n");
    assert_eq!(e, "rvs.toml:4: services[0].scheduler: unknown scheduler \"foo\"");
    let e = err("[limits]\nmax_conections = 5\n");
    assert_eq!(e, "rvs.toml:2: limits.max_conections: unknown field");
    let e = err("a = = 1\n");
    assert!(e.starts_with("rvs.toml:1: "), "{e}");
    let e = err(
        "[[services]]\nprotocol = \"tcp\"\naddress = \"10.0.0.1:80\"\n[[services.real_servers]]\naddress = \"10.1.1.1\"\nweight = 70000\n",
    );
    assert_eq!(e, "rvs.toml:6: services[0].real_servers[0].weight: 70000 is out of range 0..65535");
    let e = err(
        "[[services]]\nprotocol = \"tcp\"\naddress = \"10.0.0.1:80\"\n[[services.real_servers]]\naddress = \"10.1.1.1\"\n[[services.real_servers.checks]]\ntype = \"http\"\npath = \"/\"\nstatus = [\"abc\"]\n",
    );
    assert_eq!(
        e,
        "rvs.toml:9: services[0].real_servers[0].checks[0].status[0]: expected a status code or a range like \"301-302\""
    );
}

fn svc(extra: &str, rs: &str) -> String {
    format!("[[services]]\n{extra}\n[[services.real_servers]]\n{rs}\n")
}

#[test]
fn ipvsadm_validation_rules() {
    let e = err(&svc("protocol = \"tcp\"\naddress = \"10.0.0.1\"", "address = \"10.1.1.1\""));
    assert_eq!(e, "rvs.toml:1: services[0]: Zero port specified for non-persistent service");
    let ok =
        parse(&svc("protocol = \"tcp\"\naddress = \"10.0.0.1\"\npersistent = true", "address = \"10.1.1.1\""), "f");
    assert_eq!(ok.unwrap().save_lines()[0], "-A -t 10.0.0.1:0 -s wlc -p 360");
    let e = err(&svc("protocol = \"tcp\"\naddress = \"10.0.0.1:80\"\none_packet = true", "address = \"10.1.1.1\""));
    assert!(e.ends_with("One-Packet Scheduling is only for UDP virtual services"), "{e}");
    assert!(parse(&svc("fwmark = 3\none_packet = true", "address = \"10.1.1.1\""), "f").is_ok());
    let e = err(&svc("protocol = \"tcp\"\naddress = \"10.0.0.1:80\"\nscheduler = \"rr\"\nflags = [\"sh-port\"]", ""));
    assert!(e.ends_with("incompatible scheduler flag `sh-port'"), "{e}");
    let e = err(&svc(
        "protocol = \"tcp\"\naddress = \"10.0.0.1:80\"",
        "address = \"10.1.1.1\"\nu_threshold = 10\nl_threshold = 20",
    ));
    assert!(e.starts_with("rvs.toml:4: services[0].real_servers[0]: l_threshold 20 is greater"), "{e}");
    let e = err(&svc(
        "protocol = \"tcp\"\naddress = \"10.0.0.1:80\"",
        "address = \"10.1.1.1\"\nmethod = \"nat\"\ntunnel = { type = \"gue\", port = 1 }",
    ));
    assert!(e.ends_with("Tunnel options conflict with forward method"), "{e}");
    let e = err(&svc(
        "protocol = \"tcp\"\naddress = \"10.0.0.1:80\"",
        "address = \"10.1.1.1\"\nmethod = \"tun\"\ntunnel = { type = \"gue\" }",
    ));
    assert!(e.ends_with("You need to supply the 'tun-port' option for the 'gue' tunnel type"), "{e}");
    let e = err(&svc("protocol = \"tcp\"\naddress = \"10.0.0.1:80\"", "address = \"2001:db8::1\"\nmethod = \"nat\""));
    assert!(e.ends_with("Different address family is allowed only for tunneling servers"), "{e}");
    // A fwmark service has a family too (`-6` or not): found by the keepalived fuzz target,
    // whose saved `-a -f 7 -r [v6] -m` line ipvsadm refused.
    let e = err(&svc("fwmark = 7", "address = \"2001:db8::1\"\nmethod = \"nat\""));
    assert!(e.ends_with("Different address family is allowed only for tunneling servers"), "{e}");
    let e = err(&svc(
        "protocol = \"tcp\"\naddress = \"10.0.0.1:80\"",
        "address = \"10.1.1.1:81\"\n[[services.real_servers]]\naddress = \"10.1.1.1:82\"",
    ));
    assert!(e.ends_with("duplicate real server"), "DR ports are forced to 80: {e}");
    let e = err(
        "[[services]]\nprotocol = \"tcp\"\naddress = \"10.0.0.1:80\"\n[[services]]\nprotocol = \"tcp\"\naddress = \"10.0.0.1:80\"\n",
    );
    assert_eq!(e, "rvs.toml:4: services[1]: duplicate service");
}

#[test]
fn dr_port_is_forced_and_ipv6_prefix() {
    let text = "[[services]]\nprotocol = \"tcp\"\naddress = \"[2001:db8::1]:443\"\npersistent = 60\nnetmask = 64\n\
                [[services.real_servers]]\naddress = \"[2001:db8::10]:8443\"\n";
    let cfg = parse(text, "f").unwrap();
    assert_eq!(
        cfg.save_lines(),
        vec!["-A -t [2001:db8::1]:443 -s wlc -p 60 -M 64", "-a -t [2001:db8::1]:443 -r [2001:db8::10]:443 -g -w 1"]
    );
}

#[test]
fn alpha_and_inhibit_shape_the_startup_table() {
    let text = "[[services]]\nprotocol = \"tcp\"\naddress = \"10.0.0.1:80\"\nalpha = true\n\
                [[services.real_servers]]\naddress = \"10.1.1.1\"\n[[services.real_servers.checks]]\ntype = \"tcp\"\n\
                [[services.real_servers]]\naddress = \"10.1.1.2\"\ninhibit_on_failure = true\n[[services.real_servers.checks]]\ntype = \"tcp\"\n\
                [[services.real_servers]]\naddress = \"10.1.1.3\"\n";
    let cfg = parse(text, "f").unwrap();
    assert_eq!(
        cfg.save_lines(),
        vec![
            "-A -t 10.0.0.1:80 -s wlc",
            "-a -t 10.0.0.1:80 -r 10.1.1.2:80 -g -w 0",
            "-a -t 10.0.0.1:80 -r 10.1.1.3:80 -g -w 1",
        ]
    );
}

#[test]
fn fwmark_rules_are_parsed_and_checked() {
    let cfg = parse(EXAMPLE, "rvs.toml").unwrap();
    assert_eq!(
        cfg.fwmark_rules,
        [FwmarkRule {
            mark: 7,
            daddr: "10.0.0.128".parse().unwrap(),
            dprefix: 28,
            saddr: None,
            protocol: 6,
            ports: (8000, 8099),
        }]
    );
    let svc = "[[services]]\nfwmark = 1\n";
    let text = format!(
        "[[fwmark]]\nmark = 1\ndaddr = \"10.0.0.0/24\"\nsaddr = \"198.51.100.0/24\"\nprotocol = \"udp\"\nports = 53\n\
         [[fwmark]]\nmark = 1\ndaddr = \"10.0.1.7\"\n{svc}"
    );
    let cfg = parse(&text, "rvs.toml").unwrap();
    assert_eq!(cfg.fwmark_rules[0].saddr, Some(("198.51.100.0".parse().unwrap(), 24)));
    assert_eq!((cfg.fwmark_rules[0].protocol, cfg.fwmark_rules[0].ports), (17, (53, 53)));
    assert_eq!((cfg.fwmark_rules[1].dprefix, cfg.fwmark_rules[1].protocol), (32, 0));
    assert_eq!(cfg.fwmark_rules[1].ports, (0, 65535));
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);

    let rule = |body: &str| err(&format!("{svc}[[fwmark]]\nmark = 1\n{body}"));
    assert_eq!(
        rule("daddr = \"10.0.0.0/33\"\n"),
        "rvs.toml:5: fwmark[0].daddr: \"10.0.0.0/33\" is not ADDR/PREFIX (e.g. 10.0.0.0/24)"
    );
    assert_eq!(rule(""), "rvs.toml:3: fwmark[0]: missing field \"daddr\" (ADDR/PREFIX)");
    assert_eq!(
        rule("daddr = \"10.0.0.0/24\"\nports = \"80-90\"\n"),
        "rvs.toml:6: fwmark[0].ports: ports need protocol tcp, udp or sctp"
    );
    assert_eq!(
        rule("daddr = \"10.0.0.0/24\"\nprotocol = \"tcp\"\nports = \"90-80\"\n"),
        "rvs.toml:7: fwmark[0].ports: \"90-80\" is not PORT or LOW-HIGH (1..65535)"
    );
    assert_eq!(
        rule("daddr = \"10.0.0.0/24\"\nsaddr = \"2001:db8::/32\"\n"),
        "rvs.toml:6: fwmark[0].saddr: saddr and daddr must be of the same address family"
    );
    assert_eq!(
        rule("daddr = \"10.0.0.0/24\"\nprotocol = \"icmp\"\n"),
        "rvs.toml:6: fwmark[0].protocol: unknown protocol \"icmp\" (tcp, udp, sctp or any)"
    );
    assert_eq!(rule("daddr = \"10.0.0.0/24\"\nmask = 3\n"), "rvs.toml:6: fwmark[0].mask: unknown field");
    // A rule for a mark no service uses is accepted with a warning.
    let cfg = parse("[[fwmark]]\nmark = 9\ndaddr = \"10.0.0.0/24\"\n", "rvs.toml").unwrap();
    assert_eq!(
        cfg.warnings[0].to_string(),
        "rvs.toml:1: fwmark[0].mark: no fwmark service with mark 9: the rule marks packets nothing serves"
    );
}

#[test]
fn ssl_check_is_http_over_tls() {
    let base = "[[services]]\nprotocol = \"tcp\"\naddress = \"10.0.0.1:443\"\n[[services.real_servers]]\naddress = \"10.1.1.1\"\n[[services.real_servers.checks]]\n";
    let cfg = parse(&format!("{base}type = \"ssl\"\npath = \"/\"\nstatus = [200]\nenable_sni = true\nsni_name = \"www.example.com\"\nca = \"/etc/ssl/ca.pem\"\nverify = true\n"), "rvs.toml").unwrap();
    let c = &cfg.services[0].reals[0].checks[0];
    assert!(matches!(c.kind, CheckKind::Http(_)));
    let tls = c.tls.as_ref().expect("an ssl check runs over TLS");
    assert!(tls.enable_sni);
    assert_eq!(tls.sni_name.as_deref(), Some("www.example.com"));
    assert_eq!(tls.ca.as_deref(), Some("/etc/ssl/ca.pem"));
    assert!(tls.verify);
    // TLS options belong to ssl checks only.
    let e = err(&format!("{base}type = \"http\"\npath = \"/\"\nsni_name = \"x\"\n"));
    assert!(e.starts_with("rvs.toml:9: ") && e.contains("sni_name"), "{e}");
    let plain = parse(&format!("{base}type = \"http\"\npath = \"/\"\n"), "rvs.toml").unwrap();
    assert!(plain.services[0].reals[0].checks[0].tls.is_none());
}

#[test]
fn fwmark_range_may_not_be_too_wide() {
    let e = err("[[fwmark]]\nmark = 1\ndaddr = \"0.0.0.0/0\"\n");
    assert!(e.starts_with("rvs.toml:3: fwmark[0].daddr: prefix /0 is too wide"), "{e}");
}

#[test]
fn sysctl_table_takes_lvs_names_checked_with_their_ranges() {
    let cfg =
        parse("[sysctl]\ndrop_entry = 1\n\"net.ipv4.vs.amemthresh\" = 512\nstray_rst = \"0\"\n", "rvs.toml").unwrap();
    let want: Vec<(String, String)> =
        [("net.ipv4.vs.drop_entry", "1"), ("net.ipv4.vs.amemthresh", "512"), ("net.ipv4.vs.stray_rst", "0")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
    assert_eq!(cfg.sysctl, want);
    let e = err("[sysctl]\ndrop_entry = 1\ndrop_packet = 4\n");
    assert!(e.contains("rvs.toml:3") && e.contains("sysctl.drop_packet") && e.contains("out of range 0..3"), "{e}");
    let e = err("[sysctl]\nno_such = 1\n");
    assert!(e.contains("rvs.toml:2") && e.contains("unknown setting"), "{e}");
    let e = err("[sysctl]\nsloppy_tcp = true\n");
    assert!(e.contains("expected a number or a string"), "{e}");
}
