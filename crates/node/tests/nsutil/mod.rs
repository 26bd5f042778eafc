//! Network-namespace plumbing shared by the root tests against a real kernel
//! (`afpacket_ns.rs`, `netlink_ns.rs`): namespaces with unique names removed on drop (their
//! veths go with them), `ip` commands that must succeed, and running code inside a namespace.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// True (after a note) when `test` cannot run here; `needs` says what root is needed for.
pub fn skip_unless_root(test: &str, needs: &str) -> bool {
    if !is_root() {
        println!("note: {test} skipped: needs root ({needs})");
        return true;
    }
    false
}

/// A namespace name unique per process and call.
fn unique(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("rvs-t-{}-{tag}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(out.status.success(), "ip {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Owns namespaces; deleting them (in Drop, also when a test panics) removes the veth too.
pub struct Netns(pub Vec<String>);

impl Netns {
    pub fn add(&mut self, tag: &str) -> String {
        let name = unique(tag);
        ip(&["netns", "add", &name]);
        self.0.push(name.clone());
        name
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

/// Runs `f` on a fresh thread that has entered namespace `ns`. Sockets created there stay
/// in that namespace when handed back to the caller's thread.
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = File::open(format!("/var/run/netns/{ns}")).expect("open netns");
            // SAFETY: setns on a valid namespace fd; affects only this thread.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("netns thread panicked")
    })
}
