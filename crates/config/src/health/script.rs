//! Running operator scripts: MISC_CHECK programs (with a timeout, killed after it)
//! and notify/quorum scripts (fire and forget, reaped by a thread). All run through
//! `/bin/sh -c`, as keepalived's command strings can carry arguments.

use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

fn shell(cmd: &str) -> Command {
    let mut c = Command::new("/bin/sh");
    c.arg("-c").arg(cmd).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    c
}

/// Runs `cmd` and waits at most `timeout`. `None` when it could not start or was
/// killed for running too long.
pub fn run_with_timeout(cmd: &str, timeout: Duration) -> Option<ExitStatus> {
    let mut child: Child = shell(cmd).spawn().ok()?;
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Some(st),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// Starts `cmd` without waiting for it; a thread reaps it.
pub fn spawn_detached(cmd: &str) {
    if let Ok(mut child) = shell(cmd).spawn() {
        std::thread::spawn(move || {
            let _ = child.wait();
        });
    }
}
