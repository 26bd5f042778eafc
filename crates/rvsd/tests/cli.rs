//! The binary's command line and start-up refusals (no privileges needed).

use std::process::Command;

fn rvsd(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rvsd")).args(args).env_remove("RVS_SOCKET").output().expect("run rvsd")
}

#[test]
fn bad_arguments_exit_2_naming_the_problem() {
    for (args, want) in [
        (&["--bogus"][..], "unknown option '--bogus'"),
        (&[][..], "no interface given"),
        (&["-i", "eth0", "--workers", "0"][..], "--workers: 0 is out of range"),
        (&["-i", "eth0", "--log", "loud"][..], "unknown level 'loud'"),
    ] {
        let out = rvsd(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

#[test]
fn help_and_version_exit_0() {
    let out = rvsd(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("--interface NAME"));
    let out = rvsd(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("rvsd "));
}

#[test]
fn a_missing_interface_is_refused_with_exit_1() {
    // Either check may come first depending on the host's ip_forward; both refuse with 1.
    let out = rvsd(&["-i", "rvs-nosuch0", "--socket", "/tmp/rvsd-cli-test-never.sock"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("interface rvs-nosuch0 does not exist") || err.contains("net.ipv4.ip_forward is"), "{err}");
    assert!(!std::path::Path::new("/tmp/rvsd-cli-test-never.sock").exists());
}

#[test]
fn a_bad_configuration_file_is_refused_at_start_with_file_line_and_field() {
    let dir = std::env::temp_dir().join(format!("rvsd-cli-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[[services]]\nprotocol = \"tcp\"\naddress = \"10.0.0.1:80\"\nweight = \"x\"\n").unwrap();
    let out = rvsd(&["--config", bad.to_str().unwrap(), "-i", "rvs-nosuch0"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:4: services[0].weight"), "{err}");

    let kbad = dir.join("keepalived.conf");
    std::fs::write(&kbad, "virtual_server 10.0.0.1 80 {\n  delay_loop abc\n}\n").unwrap();
    let out = rvsd(&["--keepalived", kbad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("keepalived.conf:2"), "{out:?}");

    // A good file without [[interfaces]] and no -i: nothing to serve.
    let good = dir.join("good.toml");
    std::fs::write(&good, "[[services]]\nprotocol = \"tcp\"\naddress = \"10.0.0.1:80\"\n").unwrap();
    let out = rvsd(&["--config", good.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no interface to serve"), "{out:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
