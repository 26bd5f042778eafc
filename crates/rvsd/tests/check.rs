//! `rvsd --check` (keepalived -t): every warning and error with file:line, exit 0 when the
//! file can be used and 3 when not, nothing touched (no socket, no interface).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("rvsd-check-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write(name: &str, text: &str) -> PathBuf {
    let p = dir().join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn rvsd(args: &[&str], socket: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rvsd")).args(args).env("RVS_SOCKET", socket).output().expect("run rvsd")
}

/// Runs a check; returns (exit code, stderr).
fn check(flag: &str, file: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let sock = dir().join("never.sock");
    let mut args = vec!["--check", flag, file.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = rvsd(&args, &sock);
    assert!(!sock.exists(), "a check opens no socket");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

const GOOD_KEEPALIVED: &str = "global_defs {
    router_id LB1
}
vrrp_instance VI_1 {
    state MASTER
}
virtual_server 10.0.0.100 80 {
    lvs_sched wrr
    lvs_method NAT
    protocol TCP
    real_server 192.168.1.11 8080 {
        weight 3
        TCP_CHECK {
            connect_timeout 2
        }
    }
}
";

#[test]
fn a_good_keepalived_file_exits_0_with_its_warnings() {
    let f = write("good.conf", GOOD_KEEPALIVED);
    // Any interface may be missing and no root is needed: a check reads the file only.
    let (code, err) = check("--keepalived", &f, &["-i", "rvs-nosuch0"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("good.conf:4: vrrp_instance: vrrp_instance block ignored"), "{err}");
    assert!(err.contains("good.conf: configuration OK: 1 service, 1 health check, 1 warning"), "{err}");
    assert!(!err.contains("error:"), "{err}");
}

#[test]
fn a_good_native_file_exits_0() {
    let f = write(
        "good.toml",
        "[[services]]\nprotocol = \"tcp\"\naddress = \"10.0.0.1:80\"\nscheduler = \"rr\"\n\
         [[services.real_servers]]\naddress = \"192.168.1.1:80\"\nmethod = \"dr\"\n",
    );
    let (code, err) = check("--config", &f, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("configuration OK: 1 service, 0 health checks, 0 warnings"), "{err}");
}

#[test]
fn every_error_of_a_keepalived_file_is_named_and_exit_is_3() {
    let f = write(
        "bad.conf",
        "virtual_server 10.0.0.1 80 {\n  lvs_sched nosuch\n  protocol TCP\n}\n\
         virtual_server 10.0.0.2 80 {\n  protocol TCP\n  real_server 192.168.1.2 80 {\n    TCP_CHECK {\n      connect_timeout abc\n    }\n  }\n}\n\
         virtual_server 10.0.0.3 80 {\n  protocol TCP\n  lvs_method XX\n}\n",
    );
    let (code, err) = check("--keepalived", &f, &[]);
    assert_eq!(code, Some(3), "{err}");
    for want in [
        "error: ", // the form
        "bad.conf:2: lvs_sched: unknown scheduler \"nosuch\"",
        "bad.conf:9: connect_timeout: \"abc\" is not a time in seconds",
        "bad.conf:15: lvs_method: unknown forwarding method \"XX\"",
        "bad.conf: configuration cannot be used: 3 errors",
    ] {
        assert!(err.contains(want), "missing {want:?} in\n{err}");
    }
}

#[test]
fn syntax_errors_name_their_line() {
    let f = write("brace.conf", "virtual_server 10.0.0.1 80 {\n  protocol TCP\n");
    let (code, err) = check("--keepalived", &f, &[]);
    assert_eq!(code, Some(3));
    assert!(err.contains("brace.conf:1: block is never closed"), "{err}");
    let f = write("syntax.toml", "[[services]\nprotocol = \"tcp\"\n");
    let (code, err) = check("--config", &f, &[]);
    assert_eq!(code, Some(3));
    assert!(err.contains("syntax.toml:1"), "{err}");
    let (code, err) = check("--config", &dir().join("absent.toml"), &[]);
    assert_eq!(code, Some(3));
    assert!(err.contains("absent.toml: "), "{err}");
}

#[test]
fn the_engines_checks_name_the_service_place() {
    // Parsed fine, refused by the engine: mixed address families on NAT, an unknown
    // persistence engine. Each names its service's file:line.
    let f = write(
        "engine.toml",
        "[[services]]\nprotocol = \"tcp\"\naddress = \"10.0.0.1:80\"\n\
         [[services.real_servers]]\naddress = \"[2001:db8::1]:80\"\nmethod = \"nat\"\n",
    );
    let (code, err) = check("--config", &f, &[]);
    assert_eq!(code, Some(3));
    assert!(err.contains("engine.toml:4: services[0].real_servers[0]: Different address family"), "{err}");
    let f = write(
        "pe.conf",
        "virtual_server 10.0.0.1 5060 {\n  protocol UDP\n  persistence_timeout 60\n  persistence_engine nosuch\n\
           real_server 192.168.1.1 5060 {\n  }\n}\n",
    );
    let (code, err) = check("--keepalived", &f, &[]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("pe.conf:1: virtual_server: unknown persistence engine \"nosuch\""), "{err}");
}

#[test]
fn conditional_lines_are_checked_with_the_config_id() {
    let f = write(
        "cond.conf",
        "virtual_server 10.0.0.1 80 {\n  protocol TCP\n  @lb1 lvs_sched rr\n  @lb2 lvs_sched nosuch\n}\n",
    );
    let (code, err) = check("--keepalived", &f, &["--config-id", "lb1"]);
    assert_eq!(code, Some(0), "{err}");
    let (code, err) = check("--keepalived", &f, &["--config-id", "lb2"]);
    assert_eq!(code, Some(3));
    assert!(err.contains("cond.conf:4: lvs_sched: unknown scheduler \"nosuch\""), "{err}");
}

#[test]
fn a_check_needs_no_root() {
    // As root, drop to nobody with setpriv (util-linux) and check the same file.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || !Path::new("/usr/bin/setpriv").exists() {
        eprintln!("skipped: needs root to drop privileges, and setpriv");
        return;
    }
    let f = write("nobody.conf", GOOD_KEEPALIVED);
    let out = Command::new("/usr/bin/setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", env!("CARGO_BIN_EXE_rvsd"), "-t", "--keepalived"])
        .arg(&f)
        .output()
        .expect("setpriv");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("configuration OK"), "{err}");
}

#[test]
fn every_bad_entry_of_a_native_file_is_named() {
    let f = write(
        "several.toml",
        "[[services]]\nprotocol = \"tcp\"\naddress = \"10.0.0.1:80\"\nscheduler = \"nosuch\"\n\n\
         [[services]]\nprotocol = \"tcp\"\naddress = \"10.0.0.2:80\"\n\
         [[services.real_servers]]\naddress = \"192.168.1.1:80\"\nmethod = \"nat\"\nweight = -1\n\n\
         [[services]]\nprotocol = \"tcp\"\naddress = \"10.0.0.3:80\"\nscheduler = \"rr\"\n\n\
         [[services]]\nprotocol = \"tcp\"\naddress = \"10.0.0.3:80\"\n",
    );
    let (code, err) = check("--config", &f, &[]);
    assert_eq!(code, Some(3), "{err}");
    for want in [
        "several.toml:4: services[0].scheduler: unknown scheduler \"nosuch\"",
        "several.toml:12: services[1].real_servers[0].weight",
        "several.toml:19: services[3]: duplicate service",
        "configuration cannot be used: 3 errors",
    ] {
        assert!(err.contains(want), "missing {want:?} in\n{err}");
    }
}

/// The real peer: Debian's keepalived (`keepalived -t`) and `rvsd --check` must find the bad
/// scheduler on the same conditional lines for each config id — in blocks, in an included
/// file, on the `include` line, and with the default id (the host name). Skipped without
/// keepalived (Debian package keepalived).
#[test]
fn conditional_lines_match_keepalived() {
    let keepalived = ["/usr/sbin/keepalived", "/sbin/keepalived"].into_iter().find(|p| Path::new(p).exists());
    let Some(keepalived) = keepalived else {
        eprintln!("skipped: keepalived not installed");
        return;
    };
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = host.trim().split('.').next().unwrap_or("").to_string();
    let d = dir().join("cond-peer");
    std::fs::create_dir_all(&d).unwrap();
    let vs = |n: u8, cond: &str| {
        format!(
            "virtual_server 10.0.0.{n} 80 {{\n  protocol TCP\n  {cond} lb_algo bad{n}\n  real_server 192.168.1.1 80 {{\n  }}\n}}\n"
        )
    };
    let main = [vs(1, "@main"), vs(2, "@^main"), vs(3, "@backup"), vs(4, &format!("@{host}")), vs(5, "@^backup")]
        .concat()
        + "@main include inc.conf\n";
    std::fs::write(d.join("inc.conf"), vs(6, "@^backup")).unwrap();
    let conf = d.join("keepalived.conf");
    std::fs::write(&conf, main).unwrap();

    // (file name, line) of every bad scheduler reported.
    let lines = |text: &str, marker: &str| -> std::collections::BTreeSet<(String, u32)> {
        text.lines()
            .filter(|l| l.contains(marker))
            .filter_map(|l| {
                // keepalived: "(keepalived.conf: Line 3) Invalid lvs_scheduler ..."
                // rvsd: "error: /dir/keepalived.conf:3: lvs_sched: unknown scheduler ..."
                let (file, line) = if let Some(rest) = l.strip_prefix('(') {
                    let (f, r) = rest.split_once(": Line ")?;
                    (f.to_string(), r.split(')').next()?.parse().ok()?)
                } else {
                    let rest = l.strip_prefix("error: ")?;
                    let mut parts = rest.splitn(3, ':');
                    (parts.next()?.to_string(), parts.next()?.parse().ok()?)
                };
                let name = Path::new(&file).file_name()?.to_string_lossy().into_owned();
                Some((name, line))
            })
            .collect()
    };
    for id in [Some("main"), Some("backup"), None] {
        let mut k = Command::new(keepalived);
        k.args(["-t", "-l", "-D", "-n", "-f"]).arg(&conf);
        let mut extra = Vec::new();
        if let Some(id) = id {
            k.args(["-i", id]);
            extra = vec!["--config-id", id];
        }
        let out = k.output().expect("keepalived -t");
        let theirs = lines(&String::from_utf8_lossy(&out.stderr), "Invalid lvs_scheduler");
        let (_, err) = check("--keepalived", &conf, &extra);
        let ours = lines(&err, "unknown scheduler");
        assert!(!theirs.is_empty(), "{id:?}: keepalived reported nothing: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(ours, theirs, "config id {id:?}\nrvsd: {err}");
    }
}

/// The default config id with a dotted host name: keepalived and rvsd both take the first
/// label (run in a new UTS namespace with the host name lb1.example.com; root and
/// util-linux's unshare needed, else skipped).
#[test]
fn the_default_config_id_is_the_first_label_as_keepalived() {
    let keepalived = ["/usr/sbin/keepalived", "/sbin/keepalived"].into_iter().find(|p| Path::new(p).exists());
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let (Some(keepalived), true, true) = (keepalived, root, Path::new("/usr/bin/unshare").exists()) else {
        eprintln!("skipped: needs root, unshare and keepalived");
        return;
    };
    let f = write(
        "host.conf",
        "virtual_server 10.0.0.1 80 {\n  protocol TCP\n  @lb1 lb_algo badfirst\n  @lb1.example.com lb_algo badfull\n\
           real_server 192.168.1.1 80 {\n  }\n}\n",
    );
    let script = format!(
        "hostname lb1.example.com && {keepalived} -t -l -D -n -f {f} 2>&1; {rvsd} --check --keepalived {f} 2>&1; true",
        f = f.display(),
        rvsd = env!("CARGO_BIN_EXE_rvsd")
    );
    let out = Command::new("/usr/bin/unshare").args(["--uts", "sh", "-c", &script]).output().expect("unshare");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Line 3) Invalid lvs_scheduler 'badfirst'"), "keepalived: {text}");
    assert!(text.contains("host.conf:3: lb_algo: unknown scheduler \"badfirst\""), "rvsd: {text}");
    assert!(!text.contains("badfull"), "neither takes the whole name: {text}");
}

#[test]
fn ssl_files_are_loaded_as_the_checker_loads_them() {
    let ca = write("not-a-ca.pem", "not a certificate\n");
    let conf = |ca: &Path| {
        format!(
            "SSL {{\n ca {}\n}}\nvirtual_server 10.0.0.1 443 {{\n lvs_sched rr\n lvs_method NAT\n protocol TCP\n\
             real_server 192.168.1.1 443 {{\n  SSL_GET {{\n   url {{\n    path /\n   }}\n  }}\n }}\n}}\n",
            ca.display()
        )
    };
    let f = write("bad-ca.conf", &conf(&ca));
    let (code, err) = check("--keepalived", &f, &[]);
    assert_eq!(code, Some(0), "a warning, as the file may be fixed before the daemon starts: {err}");
    assert!(err.contains(&format!("SSL ca {}: no usable CA certificate", ca.display())), "{err}");
    let f = write("no-ca.conf", &conf(&dir().join("nosuch.pem")));
    let (_, err) = check("--keepalived", &f, &[]);
    assert!(err.contains("nosuch.pem does not exist") && !err.contains("no usable"), "one warning per file: {err}");
}
