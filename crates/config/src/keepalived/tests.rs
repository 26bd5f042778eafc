//! The sample configurations of keepalived.md §8 (copied verbatim) and the
//! `ipvsadm -S -n` tables keepalived would install, written by hand from the reference.

use super::{Loader, import_str, import_with};
use crate::model::*;
use control::api::{Command, DaemonConfig, SyncRole, Timeouts};
use std::path::{Path, PathBuf};
use std::time::Duration;

const EXAMPLE_A: &str = r#"global_defs {
    router_id LVS_A
    lvs_timeouts tcp 900 tcpfin 60 udp 300
}

virtual_server 10.0.0.100 80 {
    delay_loop 6
    lvs_sched wlc
    lvs_method NAT
    protocol TCP
    quorum 2
    hysteresis 1
    sorry_server 192.168.1.250 8080

    real_server 192.168.1.11 8080 {
        weight 3
        HTTP_GET {
            url {
                path /healthz
                status_code 200
            }
            connect_timeout 3
            retry 2
            delay_before_retry 2
        }
    }
    real_server 192.168.1.12 8080 {
        weight 1
        uthreshold 100
        lthreshold 50
        inhibit_on_failure
        TCP_CHECK {
            connect_timeout 2
        }
    }
}
"#;

const EXAMPLE_B: &str = r#"virtual_server 10.0.0.200 443 {
    lvs_sched sh
    sh-port
    sh-fallback
    lvs_method DR
    protocol TCP
    persistence_timeout 600
    persistence_granularity 255.255.255.0
    real_server 172.16.0.5 443 {
        TCP_CHECK {
            connect_timeout 3
        }
    }
    real_server 172.16.0.6 {
        weight 2
        MISC_CHECK {
            misc_path "/usr/local/bin/check_app 172.16.0.6"
            misc_timeout 5
            misc_dynamic
        }
    }
}

virtual_server fwmark 7 {
    lvs_sched mh
    mh-port
    lvs_method TUN type gue port 6080 csum
    real_server 203.0.113.9 {
        PING_CHECK {
            retry 2
        }
    }
    real_server 203.0.113.10 {
        UDP_CHECK {
            connect_port 53
            connect_timeout 4
        }
    }
}
"#;

const EXAMPLE_C: &str = r#"global_defs {
    lvs_sync_daemon eth1 VI_1 id 51    # VI_1: a vrrp_instance defined elsewhere
}

virtual_server_group DNS {
    10.0.0.53 53
    10.0.0.54-55 53
}

virtual_server group DNS {
    lvs_sched rr
    ops
    protocol UDP
    delay_loop 10
    real_server 192.168.2.21 53 {
        DNS_CHECK {
            type A
            name health.example.
        }
    }
    real_server 192.168.2.22 53 {
        DNS_CHECK {
            type A
            name health.example.
        }
    }
}
"#;

fn lines(cfg: &Config) -> String {
    cfg.save_lines().join("\n")
}

fn warned(cfg: &Config, needle: &str) -> bool {
    cfg.warnings.iter().any(|w| w.to_string().contains(needle))
}

#[test]
fn example_a_nat_web_farm() {
    let cfg = import_str(EXAMPLE_A, "keepalived.conf").unwrap();
    assert_eq!(
        lines(&cfg),
        "-A -t 10.0.0.100:80 -s wlc\n\
         -a -t 10.0.0.100:80 -r 192.168.1.11:8080 -m -w 3\n\
         -a -t 10.0.0.100:80 -r 192.168.1.12:8080 -m -w 1"
    );
    assert_eq!(cfg.timeouts.set_command(), Some(Timeouts { tcp: 900, tcpfin: 60, udp: 300 }));
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    let vs = &cfg.services[0];
    assert_eq!((vs.quorum, vs.hysteresis), (2, 1));
    let sorry = vs.sorry_server.as_ref().unwrap();
    assert_eq!(
        (sorry.server.addr.to_string(), sorry.server.port, sorry.server.weight),
        ("192.168.1.250".into(), Some(8080), 1)
    );
    let (r11, r12) = (&vs.reals[0], &vs.reals[1]);
    let http = &r11.checks[0];
    assert_eq!(http.timing.delay_loop, Duration::from_secs(6), "inherited from the virtual server");
    assert_eq!((http.timing.connect_timeout, http.timing.retry), (Duration::from_secs(3), 2));
    assert_eq!(http.timing.delay_before_retry, Duration::from_secs(2));
    let CheckKind::Http(h) = &http.kind else { panic!("HTTP_GET") };
    assert_eq!((h.urls[0].path.as_str(), h.urls[0].status.clone()), ("/healthz", vec![(200, 200)]));
    assert!(r12.inhibit_on_failure);
    assert_eq!((r12.u_threshold, r12.l_threshold), (100, 50));
    assert_eq!(r12.checks[0].kind, CheckKind::Tcp);
    assert_eq!(r12.checks[0].timing.delay_before_retry, Duration::from_secs(1), "TCP_CHECK default");
    assert_eq!(r12.checks[0].timing.warmup, Duration::from_secs(6), "warmup = delay_loop");
}

#[test]
fn example_a_failures_as_keepalived_applies_them() {
    // The transitions of §8 A through the table logic the checkers use.
    let cfg = import_str(EXAMPLE_A, "keepalived.conf").unwrap();
    let vs = &cfg.services[0];
    let key = vs.keys[0];
    let mut st = crate::ServiceState::initial(vs);
    let before = st.dests(vs, &key);
    st.alive[1] = false; // .12 fails
    assert_eq!(st.update_quorum(vs), None, "W = 3 >= 2 - 1");
    let after = st.dests(vs, &key);
    let cmds = crate::table::diff(&key, &before, &after);
    assert!(
        matches!(&cmds[..], [Command::EditDest(_, d)] if d.port == 8080 && d.weight == 0 && d.addr.to_string() == "192.168.1.12")
    );
    st.alive[0] = false; // .11 fails too
    assert_eq!(st.update_quorum(vs), Some(false));
    let last = st.dests(vs, &key);
    let cmds = crate::table::diff(&key, &after, &last);
    assert_eq!(cmds.len(), 2, "{cmds:?}");
    assert!(matches!(&cmds[0], Command::DeleteDest(_, a, 8080) if a.to_string() == "192.168.1.11"));
    assert!(
        matches!(&cmds[1], Command::AddDest(_, d) if d.addr.to_string() == "192.168.1.250" && d.weight == 1 && d.port == 8080)
    );
}

#[test]
fn example_b_dr_misc_and_fwmark_tun() {
    let cfg = import_str(EXAMPLE_B, "keepalived.conf").unwrap();
    assert_eq!(
        lines(&cfg),
        "-A -t 10.0.0.200:443 -s sh -p 600 -M 255.255.255.0 -b sh-fallback,sh-port\n\
         -a -t 10.0.0.200:443 -r 172.16.0.5:443 -g -w 1\n\
         -a -t 10.0.0.200:443 -r 172.16.0.6:443 -g -w 2\n\
         -A -f 7 -s mh -b mh-port\n\
         -a -f 7 -r 203.0.113.9:0 -i -w 1 --tun-type gue --tun-port 6080 --tun-csum\n\
         -a -f 7 -r 203.0.113.10:0 -i -w 1 --tun-type gue --tun-port 6080 --tun-csum"
    );
    let misc = &cfg.services[0].reals[1].checks[0];
    assert!(matches!(&misc.kind, CheckKind::Misc(m)
        if m.dynamic && m.path == "/usr/local/bin/check_app 172.16.0.6" && m.timeout == Some(Duration::from_secs(5))));
    assert_eq!(misc.timing.retry, 0, "MISC_CHECK retry default");
    let fw = &cfg.services[1];
    assert_eq!(fw.reals[0].checks[0].kind, CheckKind::Ping);
    assert_eq!(fw.reals[0].checks[0].timing.retry, 2);
    assert_eq!(fw.reals[1].checks[0].connect_port, Some(53));
    assert!(!warned(&cfg, "protocol"), "no protocol warning for fwmark");
}

#[test]
fn example_c_group_ops_and_sync() {
    let cfg = import_str(EXAMPLE_C, "keepalived.conf").unwrap();
    let mut want = String::new();
    for vip in ["10.0.0.53", "10.0.0.54", "10.0.0.55"] {
        want += &format!("-A -u {vip}:53 -s rr -o\n");
        want += &format!("-a -u {vip}:53 -r 192.168.2.21:53 -m -w 1\n");
        want += &format!("-a -u {vip}:53 -r 192.168.2.22:53 -m -w 1\n");
    }
    assert_eq!(lines(&cfg), want.trim_end());
    assert!(warned(&cfg, "no forwarding method set, setting default NAT"));
    let vs = &cfg.services[0];
    assert_eq!(vs.keys.len(), 3);
    assert!(matches!(&vs.reals[0].checks[0].kind, CheckKind::Dns(d) if d.qtype == 1 && d.name == "health.example."));
    assert_eq!(vs.reals[0].checks[0].timing.retry, 3);
    assert_eq!(vs.reals[0].checks[0].timing.delay_before_retry, Duration::from_secs(10), "DNS: = delay_loop");
    // VI_1 is not in this file: keepalived clears lvs_sync_daemon then, and so does rvs.
    assert!(cfg.sync_daemons.is_empty() && cfg.instance_daemons.is_empty());
    assert!(!cfg.to_commands().iter().any(|c| matches!(c, Command::StartDaemon(_))));
    assert!(warned(
        &cfg,
        "keepalived.conf:2: lvs_sync_daemon: no vrrp_instance VI_1 in the file: no sync daemon started"
    ));
}

fn daemon(role: SyncRole, ifn: &str, syncid: u8) -> DaemonConfig {
    DaemonConfig { role, mcast_ifn: ifn.into(), syncid, sync_maxlen: 0, mcast_group: None, mcast_port: 0, mcast_ttl: 0 }
}

const VI_1: &str = "vrrp_instance VI_1 {\n state BACKUP\n interface eth0\n virtual_router_id 77\n\
                    virtual_ipaddress {\n  10.77.0.100/32 dev eth0\n  2001:db8::100/64\n  10.77.0.101\n }\n\
                    virtual_ipaddress_excluded {\n  10.77.0.200\n }\n}\n";

#[test]
fn a_sync_daemon_bound_to_an_instance_follows_it() {
    let text = format!("global_defs {{\n lvs_sync_daemon eth0 VI_1 id 9\n}}\n{VI_1}");
    let cfg = import_str(&text, "k.conf").unwrap();
    let vips: Vec<std::net::IpAddr> =
        ["10.77.0.100", "2001:db8::100", "10.77.0.101"].iter().map(|a| a.parse().unwrap()).collect();
    assert_eq!(cfg.vrrp_instances, [VrrpInstance { name: "VI_1".into(), vips, vrid: Some(77) }]);
    assert!(cfg.sync_daemons.is_empty(), "no daemon runs regardless of the instance");
    assert_eq!(
        cfg.instance_daemons,
        [InstanceDaemon { instance: "VI_1".into(), daemon: daemon(SyncRole::Backup, "eth0", 9) }]
    );
    assert!(warned(&cfg, "k.conf:2: lvs_sync_daemon: the sync daemon follows vrrp_instance VI_1"));
    assert!(warned(&cfg, "keep it out of the file keepalived reads"), "{:?}", cfg.warnings);
    assert!(!warned(&cfg, "instead of following"));
    // The `inst` form, the instance before global_defs, options after it.
    let text = format!("{VI_1}global_defs {{\n lvs_sync_daemon eth1 inst VI_1 id 3 maxlen 1200 port 9000\n}}\n");
    let cfg = import_str(&text, "k.conf").unwrap();
    let d = &cfg.instance_daemons[0];
    assert_eq!((d.instance.as_str(), d.daemon.mcast_ifn.as_str()), ("VI_1", "eth1"));
    assert_eq!((d.daemon.syncid, d.daemon.sync_maxlen, d.daemon.mcast_port), (3, 1200, 9000));
    // Without `id` the syncid is the instance's virtual_router_id, as keepalived takes it.
    let text = format!("global_defs {{\n lvs_sync_daemon eth0 VI_1\n}}\n{VI_1}");
    let cfg = import_str(&text, "k.conf").unwrap();
    assert_eq!(cfg.instance_daemons[0].daemon.syncid, 77);
}

#[test]
fn a_sync_daemon_without_a_followable_instance() {
    // No instance named: both roles at once, as before.
    let cfg = import_str("global_defs {\n lvs_sync_daemon eth0 id 9\n}\n", "k.conf").unwrap();
    assert_eq!(cfg.sync_daemons, [daemon(SyncRole::Master, "eth0", 9), daemon(SyncRole::Backup, "eth0", 9)]);
    assert!(cfg.instance_daemons.is_empty());
    // An unknown instance: no daemon (keepalived clears the line), and it says so.
    let text = format!("global_defs {{\n lvs_sync_daemon eth0 VI_2 id 9\n}}\n{VI_1}");
    let cfg = import_str(&text, "k.conf").unwrap();
    assert!(cfg.sync_daemons.is_empty() && cfg.instance_daemons.is_empty());
    assert!(warned(&cfg, "k.conf:2: lvs_sync_daemon: no vrrp_instance VI_2 in the file"), "{:?}", cfg.warnings);
    // An instance without addresses cannot be followed: both roles, said so.
    let text =
        "global_defs {\n lvs_sync_daemon eth0 VI_3\n}\nvrrp_instance VI_3 {\n virtual_ipaddress {\n  eth0\n }\n}\n";
    let cfg = import_str(text, "k.conf").unwrap();
    assert_eq!(cfg.sync_daemons.len(), 2);
    assert!(warned(&cfg, "vrrp_instance VI_3 has no virtual_ipaddress"), "{:?}", cfg.warnings);
    assert!(warned(&cfg, "k.conf:6: eth0: \"eth0\" in virtual_ipaddress of VI_3 is not an address; ignored"));
}

#[test]
fn keepalived_defaults_and_fixes_are_warned() {
    let text = "virtual_server 10.0.0.1 0 {\n  ops\n  real_server 10.1.1.1 8080 {\n  }\n}\n\
                virtual_server 10.0.0.2 80 {\n  protocol TCP\n  lvs_method DR\n  ops\n  real_server 10.1.1.2 8080 {\n  }\n  real_server 10.1.1.2 80 {\n  }\n}\n";
    let cfg = import_str(text, "k.conf").unwrap();
    assert_eq!(
        lines(&cfg),
        "-A -t 10.0.0.2:80 -s wlc\n\
         -a -t 10.0.0.2:80 -r 10.1.1.2:80 -g -w 1\n\
         -A -u 10.0.0.1:0 -s wlc -p 360 -o\n\
         -a -u 10.0.0.1:0 -r 10.1.1.1:8080 -m -w 1"
    );
    let w: Vec<String> = cfg.warnings.iter().map(|w| w.to_string()).collect();
    for needle in [
        "k.conf:1: virtual_server: no scheduler set, setting default wlc",
        "k.conf:1: virtual_server: no forwarding method set, setting default NAT",
        "k.conf:1: virtual_server: no protocol set - defaulting to UDP",
        "k.conf:1: virtual_server: port 0 on a non-persistent service: persistence 360 set",
        "k.conf:9: ops: ops is only for UDP services: cleared",
        "k.conf:10: real_server: port of a DR/TUN real server reset to the virtual server port 80",
        "k.conf:12: real_server: duplicate real server removed",
    ] {
        assert!(w.iter().any(|x| x == needle), "missing {needle:?} in {w:#?}");
    }
}

#[test]
fn alpha_inhibit_sorry_and_quorum_at_startup() {
    let text = "virtual_server 10.0.0.1 80 {\n protocol TCP\n lb_algo rr\n lb_kind NAT\n alpha\n quorum 5\n hysteresis 9\n\
                sorry_server 10.9.9.9 8080\n\
                real_server 10.1.1.1 80 {\n  weight 2\n  TCP_CHECK {\n  }\n }\n\
                real_server 10.1.1.2 80 {\n  inhibit_on_failure\n  TCP_CHECK {\n  }\n }\n}\n";
    let cfg = import_str(text, "k.conf").unwrap();
    // alpha: both start down; the inhibited one stays with weight 0; the quorum is lost
    // at once (W = 0) so the sorry server is in.
    assert_eq!(
        lines(&cfg),
        "-A -t 10.0.0.1:80 -s rr\n\
         -a -t 10.0.0.1:80 -r 10.1.1.2:80 -m -w 0\n\
         -a -t 10.0.0.1:80 -r 10.9.9.9:8080 -m -w 1"
    );
    let vs = &cfg.services[0];
    assert_eq!((vs.quorum, vs.hysteresis), (3, 2), "quorum lowered to the total weight, hysteresis below it");
    assert!(warned(&cfg, "quorum 5 is more than the total weight 3"));
}

#[test]
fn unsupported_things_are_warnings_with_lines() {
    let text = "global_defs {\n router_id X\n lvs_flush\n foo_bar 1\n}\n\
                vrrp_instance VI_1 {\n state MASTER\n virtual_ipaddress {\n  10.0.0.1\n }\n}\n\
                virtual_server fwmark 3 {\n protocol TCP\n lb_algo wrr\n lb_kind DR\n ha_suspend\n\
                real_server 10.1.1.1 {\n  SSL_GET {\n   url {\n    path /\n   }\n  }\n  FILE_CHECK {\n  }\n  HTTP_GET {\n   url {\n    path /x\n    regex ok\n   }\n  }\n }\n}\n";
    let cfg = import_str(text, "k.conf").unwrap();
    assert_eq!(
        cfg.vrrp_instances,
        [VrrpInstance { name: "VI_1".into(), vips: vec!["10.0.0.1".parse().unwrap()], vrid: None }],
        "remembered for --vip-follow auto"
    );
    let w: Vec<String> = cfg.warnings.iter().map(|w| w.to_string()).collect();
    for needle in [
        "k.conf:4: foo_bar: unsupported global_defs keyword \"foo_bar\" ignored",
        "k.conf:6: vrrp_instance: vrrp_instance block ignored (rvs runs the LVS part of keepalived only)",
        "k.conf:13: protocol: protocol is ignored for a fwmark service",
        "k.conf:16: ha_suspend: ha_suspend is not supported: checkers always run",
        "k.conf:23: FILE_CHECK: FILE_CHECK is not supported; checker ignored",
        "k.conf:28: regex: unsupported url keyword \"regex\" ignored",
    ] {
        assert!(w.iter().any(|x| x == needle), "missing {needle:?} in {w:#?}");
    }
    assert_eq!(w.len(), 6, "one warning per VRRP block, nothing for router_id: {w:#?}");
    assert!(cfg.flush_on_start);
    assert_eq!(cfg.to_commands()[0], Command::Clear);
    let checks = &cfg.services[0].reals[0].checks;
    assert_eq!(checks.len(), 2, "SSL_GET and HTTP_GET remain, FILE_CHECK is dropped");
    assert!(checks[0].tls.is_some() && checks[1].tls.is_none());
}

#[test]
fn bad_values_are_errors_with_lines() {
    let e = import_str("virtual_server 10.0.0.1 80 {\n delay_loop abc\n}\n", "k.conf").unwrap_err();
    assert_eq!(e.to_string(), "k.conf:2: delay_loop: \"abc\" is not a time in seconds (0..86400)");
    let e = import_str("virtual_server 10.0.0.1 80 {\n lvs_sched foo\n}\n", "k.conf").unwrap_err();
    assert_eq!(e.to_string(), "k.conf:2: lvs_sched: unknown scheduler \"foo\"");
    let e = import_str("virtual_server group NOPE {\n}\n", "k.conf").unwrap_err();
    assert_eq!(e.to_string(), "k.conf:1: virtual_server: virtual_server_group \"NOPE\" is not defined");
}

#[test]
fn include_relative_to_the_including_file() {
    let files: Vec<(PathBuf, String)> = vec![
        ("/etc/keepalived/keepalived.conf".into(), "include services/*.conf\n".into()),
        ("/etc/keepalived/services/web.conf".into(), EXAMPLE_A.into()),
    ];
    let names: Vec<PathBuf> = files.iter().map(|f| f.0.clone()).collect();
    let loader = Loader {
        read: Box::new(move |p| {
            files.iter().find(|f| f.0 == p).map(|f| f.1.clone()).ok_or_else(|| std::io::Error::other("missing"))
        }),
        list: Box::new(move |d| {
            Ok(names
                .iter()
                .filter(|n| n.parent() == Some(d))
                .map(|n| n.file_name().unwrap_or_default().to_string_lossy().into_owned())
                .collect())
        }),
        warnings: Vec::new(),
        config_id: None,
    };
    let cfg = import_with(loader, Path::new("/etc/keepalived/keepalived.conf")).unwrap();
    assert_eq!(cfg.save_lines().len(), 3);
}

#[test]
fn a_service_defined_twice_is_an_error() {
    let text = "virtual_server 10.0.0.1 80 {\n protocol TCP\n}\nvirtual_server 10.0.0.1 80 {\n protocol TCP\n}\n";
    let e = import_str(text, "k.conf").unwrap_err().to_string();
    assert!(e.starts_with("k.conf:4: virtual_server: service"), "{e}");
}

#[test]
fn ssl_get_is_http_get_over_tls_with_the_global_ssl_block() {
    // The SSL block may follow the virtual servers; it applies to every SSL_GET.
    let text = "virtual_server 10.0.0.1 443 {\n lvs_method NAT\n protocol TCP\n virtualhost www.example\n lvs_sched rr\n\
                real_server 10.1.1.1 8443 {\n  SSL_GET {\n   url {\n    path /health\n    status_code 200 301-302\n   }\n\
                   http_protocol 1.1\n   enable_sni\n   tls_compliant\n   connect_timeout 2\n  }\n }\n\
                real_server 10.1.1.2 8443 {\n  SSL_GET {\n   url {\n    path /\n   }\n   sni_name api.example\n   verify\n  }\n }\n\
                real_server 10.1.1.3 8443 {\n  SSL_GET {\n  }\n }\n}\n\
                SSL {\n password pw\n ca /etc/rvs/ca.pem\n certificate /etc/rvs/c.pem\n key /etc/rvs/k.pem\n cipher X\n}\n";
    let cfg = import_str(text, "k.conf").unwrap();
    let w: Vec<String> = cfg.warnings.iter().map(|w| w.to_string()).collect();
    assert!(w.contains(&"k.conf:28: SSL_GET: SSL_GET without url: checker ignored".to_string()), "{w:#?}");
    assert!(w.contains(&"k.conf:37: cipher: unsupported SSL keyword \"cipher\" ignored".to_string()), "{w:#?}");
    assert_eq!(w.len(), 2, "{w:#?}");
    let reals = &cfg.services[0].reals;
    let c = &reals[0].checks[0];
    let CheckKind::Http(h) = &c.kind else { panic!("SSL_GET is an HTTP check") };
    assert_eq!((h.urls[0].path.as_str(), &h.urls[0].status[..]), ("/health", &[(200, 200), (301, 302)][..]));
    assert_eq!((h.version, h.virtualhost.as_deref()), (HttpVersion::V11, Some("www.example")));
    assert_eq!(c.timing.connect_timeout, Duration::from_secs(2));
    assert_eq!(c.timing.delay_before_retry, Duration::from_secs(3), "HTTP_GET/SSL_GET default");
    let tls = c.tls.as_ref().expect("over TLS");
    let global = |t: &Tls| {
        (t.password.as_deref(), t.ca.as_deref(), t.certificate.as_deref(), t.key.as_deref())
            == (Some("pw"), Some("/etc/rvs/ca.pem"), Some("/etc/rvs/c.pem"), Some("/etc/rvs/k.pem"))
    };
    assert!(tls.enable_sni && tls.sni_name.is_none() && global(tls), "{tls:?}");
    assert!(!tls.verify, "keepalived never verifies, even with a ca");
    let tls2 = reals[1].checks[0].tls.as_ref().expect("over TLS");
    assert!(tls2.enable_sni && tls2.sni_name.as_deref() == Some("api.example") && global(tls2), "{tls2:?}");
    assert!(tls2.verify, "the rvs extension `verify`");
    assert!(reals[2].checks.is_empty());
}

/// A loader over in-memory files, with `config_id` for the conditional lines.
fn mem_loader(files: &[(&str, &str)], config_id: Option<&str>) -> Loader {
    let files: Vec<(PathBuf, String)> = files.iter().map(|(p, t)| (PathBuf::from(p), t.to_string())).collect();
    Loader {
        read: Box::new(move |p| {
            files.iter().find(|f| f.0 == p).map(|f| f.1.clone()).ok_or_else(|| std::io::Error::other("missing"))
        }),
        list: Box::new(|_| Ok(Vec::new())),
        warnings: Vec::new(),
        config_id: config_id.map(str::to_owned),
    }
}

/// One file for two directors, as keepalived.conf(5) "Conditional configuration" shows:
/// the scheduler, a real server, a whole included file and a block header differ per id.
const PER_ID: &str = "virtual_server 10.0.0.1 80 {
    protocol TCP
    @main lvs_sched rr
    @^main lvs_sched wrr
    @backup
    real_server 192.168.1.1 80 {
        @main weight 3
    }
    @^backup real_server 192.168.1.2 80 {
    @^backup }
}
@main include main-only.conf
@^main virtual_server 10.0.0.3 80 {
@^main     protocol UDP
@^main }
";
const MAIN_ONLY: &str = "virtual_server 10.0.0.2 80 {\n    @main protocol TCP\n    @^main protocol UDP\n}\n";

fn per_id(id: Option<&str>) -> Config {
    let files = [("/k/keepalived.conf", PER_ID), ("/k/main-only.conf", MAIN_ONLY)];
    import_with(mem_loader(&files, id), Path::new("/k/keepalived.conf")).unwrap()
}

#[test]
fn conditional_lines_follow_the_config_id() {
    assert_eq!(
        per_id(Some("main")).save_lines(),
        [
            "-A -t 10.0.0.1:80 -s rr",
            "-a -t 10.0.0.1:80 -r 192.168.1.1:80 -m -w 3",
            "-a -t 10.0.0.1:80 -r 192.168.1.2:80 -m -w 1",
            "-A -t 10.0.0.2:80 -s wlc",
        ]
    );
    assert_eq!(
        per_id(Some("backup")).save_lines(),
        ["-A -t 10.0.0.1:80 -s wrr", "-a -t 10.0.0.1:80 -r 192.168.1.1:80 -m -w 1", "-A -u 10.0.0.3:80 -s wlc"]
    );
    // No id: every `@ID` line is dropped, every `@^ID` line kept (keepalived without -i and
    // without a host name).
    assert_eq!(
        per_id(None).save_lines(),
        [
            "-A -t 10.0.0.1:80 -s wrr",
            "-a -t 10.0.0.1:80 -r 192.168.1.1:80 -m -w 1",
            "-a -t 10.0.0.1:80 -r 192.168.1.2:80 -m -w 1",
            "-A -u 10.0.0.3:80 -s wlc",
        ]
    );
}

#[test]
fn conditional_line_forms() {
    use super::conditional;
    assert_eq!(conditional("  @a  weight 2", Some("a")), Some("weight 2"));
    assert_eq!(conditional("@a\tweight 2", Some("ab")), None, "the whole word must match");
    assert_eq!(conditional("@ab weight 2", Some("a")), None);
    assert_eq!(conditional("@^a weight 2", Some("a")), None);
    assert_eq!(conditional("@^a weight 2", Some("b")), Some("weight 2"));
    assert_eq!(conditional("@^a weight 2", None), Some("weight 2"));
    assert_eq!(conditional("@a weight 2", None), None);
    assert_eq!(conditional("@a", Some("a")), None, "nothing after the id: dropped");
    assert_eq!(conditional("weight @a", Some("b")), Some("weight @a"), "only at the start of a line");
    // The line number of what follows is kept.
    let cfg = import_with(
        mem_loader(
            &[("/k.conf", "virtual_server 10.0.0.1 80 {\n@x lvs_sched nosuch\n@y lvs_sched nosuch\n}\n")],
            Some("y"),
        ),
        Path::new("/k.conf"),
    )
    .unwrap_err();
    assert_eq!(cfg.to_string(), "/k.conf:3: lvs_sched: unknown scheduler \"nosuch\"");
}

#[test]
fn the_default_config_id_is_the_host_names_first_label() {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let first = host.trim().split('.').next().unwrap_or("").to_string();
    assert_eq!(super::default_config_id().unwrap_or_default(), first);
    assert_eq!(Loader::default().config_id, super::default_config_id());
}

#[test]
fn a_check_reports_every_error_and_warning() {
    let text = "virtual_server 10.0.0.1 80 {\n lvs_sched nosuch\n}\n\
                vrrp_instance VI {\n}\n\
                virtual_server 10.0.0.2 80 {\n delay_loop abc\n}\n\
                virtual_server 10.0.0.3 80 {\n protocol TCP\n lvs_sched rr\n}\n";
    let c = super::check_with(mem_loader(&[("/k.conf", text)], None), Path::new("/k.conf"));
    let errors: Vec<String> = c.errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        errors,
        [
            "/k.conf:2: lvs_sched: unknown scheduler \"nosuch\"",
            "/k.conf:7: delay_loop: \"abc\" is not a time in seconds (0..86400)"
        ]
    );
    assert!(c.warnings.iter().any(|w| w.to_string().starts_with("/k.conf:4: vrrp_instance")), "{:?}", c.warnings);
    assert!(c.config.is_none(), "no configuration when there is an error");
    let good = super::check_with(
        mem_loader(&[("/k.conf", "virtual_server 10.0.0.3 80 {\n protocol TCP\n lvs_sched rr\n}\n")], None),
        Path::new("/k.conf"),
    );
    assert!(good.errors.is_empty() && good.config.is_some(), "{good:?}");
    let broken = super::check_with(mem_loader(&[("/k.conf", "a {\n")], None), Path::new("/k.conf"));
    assert_eq!(broken.errors[0].to_string(), "/k.conf:1: block is never closed ('}' missing)");
}
