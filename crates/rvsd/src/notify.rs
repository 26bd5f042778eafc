//! systemd's service notification protocol (sd_notify(3)) without libsystemd: one datagram
//! per state change to the Unix socket named by `$NOTIFY_SOCKET` (a path, or an abstract name
//! written `@name`). Outside systemd (no variable) every call is a no-op.
//!
//! rvsd sends `READY=1` once the data path is attached, the configuration is active and the
//! API serves; `RELOADING=1` / `READY=1` around a SIGHUP reload; `STOPPING=1` on the way out.
//! With `WatchdogSec=` a thread sends `WATCHDOG=1` only after every packet worker has
//! answered a probe, so a stuck worker gets the daemon restarted rather than a silent outage.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

/// The notification socket, opened once from the environment.
pub struct Notifier {
    sock: UnixDatagram,
    addr: SocketAddr,
}

impl Notifier {
    /// From the value of `$NOTIFY_SOCKET`: an absolute path or `@abstract-name`.
    pub fn new(target: &str) -> io::Result<Notifier> {
        let addr = match target.strip_prefix('@') {
            Some(name) => SocketAddr::from_abstract_name(name.as_bytes())?,
            None if target.starts_with('/') => SocketAddr::from_pathname(target)?,
            None => return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a path or @name")),
        };
        Ok(Notifier { sock: UnixDatagram::unbound()?, addr })
    }

    /// Sends one message (newline-separated `KEY=value` lines).
    pub fn send(&self, msg: &str) -> io::Result<()> {
        self.sock.send_to_addr(msg.as_bytes(), &self.addr).map(|_| ())
    }
}

fn notifier() -> Option<&'static Notifier> {
    static N: OnceLock<Option<Notifier>> = OnceLock::new();
    N.get_or_init(|| {
        let target = std::env::var("NOTIFY_SOCKET").ok().filter(|t| !t.is_empty())?;
        Notifier::new(&target).map_err(|e| tracing::warn!("NOTIFY_SOCKET {target}: {e}")).ok()
    })
    .as_ref()
}

/// Best effort: a lost notification is logged, never fatal (systemd's own timeouts apply).
pub fn send(msg: &str) {
    if let Some(n) = notifier()
        && let Err(e) = n.send(msg)
    {
        tracing::warn!("sd_notify {msg:?}: {e}");
    }
}

/// The watchdog interval systemd asks for: `$WATCHDOG_USEC`, if `$WATCHDOG_PID` is unset or
/// names this process.
pub fn watchdog_interval(usec: Option<&str>, pid: Option<&str>) -> Option<Duration> {
    if let Some(p) = pid
        && p.parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    let us: u64 = usec?.parse().ok().filter(|&u| u > 0)?;
    Some(Duration::from_micros(us))
}

/// Signals readiness and, when systemd wants a watchdog, starts the thread that pings it
/// every half interval for as long as `alive` says the daemon works.
pub fn ready<F>(stop: Arc<AtomicBool>, alive: F) -> io::Result<()>
where
    F: Fn() -> Result<(), String> + Send + 'static,
{
    send(&format!("READY=1\nSTATUS=serving\nMAINPID={}", std::process::id()));
    let usec = std::env::var("WATCHDOG_USEC").ok();
    let pid = std::env::var("WATCHDOG_PID").ok();
    let (Some(n), Some(every)) = (notifier(), watchdog_interval(usec.as_deref(), pid.as_deref())) else {
        return Ok(());
    };
    tracing::info!("systemd watchdog: a ping every {:?} while the workers answer", every / 2);
    std::thread::Builder::new().name("rvsd-watchdog".into()).spawn(move || watchdog(n, every / 2, &stop, alive))?;
    Ok(())
}

fn watchdog(n: &Notifier, period: Duration, stop: &AtomicBool, alive: impl Fn() -> Result<(), String>) {
    while !stop.load(Ordering::Relaxed) {
        match alive() {
            Ok(()) => {
                if let Err(e) = n.send("WATCHDOG=1") {
                    tracing::warn!("sd_notify WATCHDOG=1: {e}");
                }
            }
            Err(e) => tracing::error!("watchdog: {e}; not pinging systemd"),
        }
        // Sleep in short steps so a stop is not delayed by a long interval.
        let mut left = period;
        while !left.is_zero() && !stop.load(Ordering::Relaxed) {
            let step = left.min(Duration::from_millis(200));
            std::thread::sleep(step);
            left -= step;
        }
    }
}

/// A reload as systemd wants to see it: `RELOADING=1`, the reload, `READY=1` with its outcome.
pub fn reload<T, E: std::fmt::Display>(f: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
    send("RELOADING=1");
    let r = f();
    match &r {
        Ok(_) => send("READY=1\nSTATUS=serving (configuration reloaded)"),
        Err(e) => send(&format!("READY=1\nSTATUS=serving (reload failed, previous table kept: {e})")),
    }
    r
}

/// Every worker answers an empty listing request within `within`: their loops turn.
pub fn workers_answer<R>(
    workers: &[mpsc::Sender<R>],
    request: impl Fn(mpsc::Sender<crate::listing::ConnList>) -> R,
    within: Duration,
) -> Result<(), String> {
    let mut answers = Vec::with_capacity(workers.len());
    for (i, w) in workers.iter().enumerate() {
        let (tx, rx) = mpsc::channel();
        w.send(request(tx)).map_err(|_| format!("worker {i} is not running"))?;
        answers.push((i, rx));
    }
    for (i, rx) in answers {
        rx.recv_timeout(within).map_err(|_| format!("worker {i} did not answer within {within:?}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_and_abstract_sockets_receive() {
        let dir = std::env::temp_dir().join(format!("rvsd-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let rx = UnixDatagram::bind(&path).unwrap();
        Notifier::new(path.to_str().unwrap()).unwrap().send("READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        std::fs::remove_dir_all(&dir).unwrap();

        let name = format!("rvsd-notify-test-{}", std::process::id());
        let rx = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
        Notifier::new(&format!("@{name}")).unwrap().send("WATCHDOG=1").unwrap();
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"WATCHDOG=1");
    }

    #[test]
    fn bad_targets_are_refused() {
        assert!(Notifier::new("relative/path").is_err());
        assert!(Notifier::new("").is_err());
    }

    #[test]
    fn watchdog_interval_rules() {
        let me = std::process::id().to_string();
        assert_eq!(watchdog_interval(Some("30000000"), None), Some(Duration::from_secs(30)));
        assert_eq!(watchdog_interval(Some("30000000"), Some(&me)), Some(Duration::from_secs(30)));
        assert_eq!(watchdog_interval(Some("30000000"), Some("1")), None, "another process's watchdog");
        assert_eq!(watchdog_interval(Some("0"), None), None);
        assert_eq!(watchdog_interval(Some("x"), None), None);
        assert_eq!(watchdog_interval(None, None), None);
    }

    #[test]
    fn a_stuck_worker_fails_the_probe() {
        let (live_tx, live_rx) = mpsc::channel::<mpsc::Sender<crate::listing::ConnList>>();
        std::thread::spawn(move || {
            while let Ok(r) = live_rx.recv() {
                let _ = r.send(Default::default());
            }
        });
        let (stuck_tx, _stuck_rx) = mpsc::channel::<mpsc::Sender<crate::listing::ConnList>>();
        let ms = Duration::from_millis(50);
        assert_eq!(workers_answer(std::slice::from_ref(&live_tx), |t| t, ms), Ok(()));
        let e = workers_answer(&[live_tx, stuck_tx], |t| t, ms).unwrap_err();
        assert!(e.contains("worker 1 did not answer"), "{e}");
    }
}
