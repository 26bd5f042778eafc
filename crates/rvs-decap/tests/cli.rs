//! Exit statuses of the binary for setup failures that need no namespace:
//! bad arguments (2), missing interface (1), missing privileges (1).

use std::os::unix::process::CommandExt;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_rvs-decap");

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run rvs-decap")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn bad_arguments_exit_2_with_a_message() {
    for (args, needle) in [
        (&[][..], "missing -i IFACE"),
        (&["-i", "eth0", "--gue-port", "99999"][..], "invalid GUE port"),
        (&["-i", "eth0", "--frobnicate"][..], "unknown argument '--frobnicate'"),
        (&["-i"][..], "needs a value"),
    ] {
        let o = run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("--help"), "{args:?}: hint missing");
    }
    let o = run(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("usage: rvs-decap -i IFACE"));
}

#[test]
fn missing_interface_exits_1() {
    let o = run(&["-i", "rvsdc-nosuch0"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("no such interface 'rvsdc-nosuch0'"), "{}", stderr(&o));
}

#[test]
fn missing_privileges_exit_1() {
    let mut cmd = Command::new(BIN);
    cmd.args(["-i", "lo", "--tun", "rvsdc-priv0"]);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        // As root, run the child as nobody to take the capabilities away.
        cmd.uid(65534).gid(65534);
    }
    let o = cmd.output().expect("run rvs-decap");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("needs CAP_NET_RAW (run as root)"), "{}", stderr(&o));
}
