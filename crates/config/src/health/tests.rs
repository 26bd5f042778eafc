//! Checker tests against real servers on 127.0.0.1: listeners are stopped and
//! restarted, and detection must happen within the timing bound of the module docs
//! (plus `SLACK` for thread scheduling on a busy machine).

use super::*;
use crate::native;
use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

const SLACK: Duration = Duration::from_millis(400);

/// A TCP server on a fixed loopback port that can be stopped and restarted. With a
/// `reply`, it answers every request with it (an HTTP responder).
struct Server {
    port: u16,
    reply: Arc<Mutex<Vec<u8>>>,
    run: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
}

/// A free loopback port below the ephemeral range (32768–60999 by default), so that while
/// a server is stopped no outgoing connection of the host takes its port as a source port
/// (and the restart's bind cannot fail).
fn free_port() -> u16 {
    let start = probe::random_u64() % 12000;
    (0..12000)
        .map(|i| 20000 + ((start + i) % 12000) as u16)
        .find(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok() && UdpSocket::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port below the ephemeral range")
}

impl Server {
    fn new() -> Server {
        let port = free_port();
        let mut s = Server { port, reply: Arc::new(Mutex::new(Vec::new())), run: None };
        s.start();
        s
    }
    fn http(status: u16, body: &str) -> Server {
        let s = Server::new();
        s.set_http(status, body);
        s
    }
    fn set_http(&self, status: u16, body: &str) {
        *self.reply.lock().unwrap() =
            format!("HTTP/1.0 {status} X\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes();
    }
    fn start(&mut self) {
        let l = TcpListener::bind(("127.0.0.1", self.port)).unwrap();
        l.set_nonblocking(true).unwrap();
        let flag = Arc::new(AtomicBool::new(true));
        let (f2, reply) = (flag.clone(), self.reply.clone());
        let h = std::thread::spawn(move || {
            while f2.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((mut c, _)) => {
                        let reply = reply.lock().unwrap().clone();
                        if reply.is_empty() {
                            continue;
                        }
                        let _ = c.set_nonblocking(false);
                        let _ = c.set_read_timeout(Some(Duration::from_secs(1)));
                        let mut req = Vec::new();
                        let mut buf = [0u8; 1024];
                        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                            match c.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => req.extend_from_slice(&buf[..n]),
                            }
                        }
                        let _ = c.write_all(&reply);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        self.run = Some((flag, h));
    }
    fn stop(&mut self) {
        if let Some((f, h)) = self.run.take() {
            f.store(false, Ordering::Relaxed);
            h.join().unwrap();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A UDP echo server that can be stopped (its port then answers ICMP unreachable).
struct Echo {
    port: u16,
    run: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
}

impl Echo {
    fn new() -> Echo {
        let port = free_port();
        let mut e = Echo { port, run: None };
        e.start();
        e
    }
    fn start(&mut self) {
        let s = UdpSocket::bind(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
        let flag = Arc::new(AtomicBool::new(true));
        let f2 = flag.clone();
        let h = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while f2.load(Ordering::Relaxed) {
                if let Ok((n, from)) = s.recv_from(&mut buf) {
                    let _ = s.send_to(&buf[..n], from);
                }
            }
        });
        self.run = Some((flag, h));
    }
    fn stop(&mut self) {
        if let Some((f, h)) = self.run.take() {
            f.store(false, Ordering::Relaxed);
            h.join().unwrap();
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Commands the engine applied, shared with the test.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<(Instant, Command)>>>);

impl Log {
    fn apply(&self) -> Box<dyn Apply> {
        let l = self.0.clone();
        Box::new(move |c: &Command| {
            l.lock().unwrap().push((Instant::now(), c.clone()));
            Ok(())
        })
    }
    fn commands(&self) -> Vec<Command> {
        self.0.lock().unwrap().iter().map(|(_, c)| c.clone()).collect()
    }
    /// Waits (up to `limit`) for a command after `since` matching `f`; returns its delay.
    fn wait(&self, since: Instant, limit: Duration, f: impl Fn(&Command) -> bool) -> Option<Duration> {
        let end = since + limit;
        while Instant::now() < end {
            if let Some((t, _)) = self.0.lock().unwrap().iter().find(|(t, c)| *t >= since && f(c)) {
                return Some(*t - since);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }
}

fn wait_for(limit: Duration, f: impl Fn() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rvs-config-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

const TIMING: &str = "delay_loop = 0.2\nretry = 1\ndelay_before_retry = 0.2\nconnect_timeout = 0.5\nwarmup = 0\n";

fn bound(retry: u32) -> Duration {
    // delay_loop × (retry + 1) + one connect timeout (delay_before_retry = delay_loop).
    Duration::from_millis(200) * (retry + 1) + Duration::from_millis(500) + SLACK
}

fn is_delete(port: u16) -> impl Fn(&Command) -> bool {
    move |c| matches!(c, Command::DeleteDest(_, _, p) if *p == port)
}

fn is_add(port: u16, weight: u32) -> impl Fn(&Command) -> bool {
    move |c| matches!(c, Command::AddDest(_, d) if d.port == port && d.weight == weight)
}

fn is_edit(port: u16, weight: u32) -> impl Fn(&Command) -> bool {
    move |c| matches!(c, Command::EditDest(_, d) if d.port == port && d.weight == weight)
}

fn config(text: &str) -> Config {
    native::parse(text, "test.toml").unwrap()
}

fn warm(engine: &Engine, svc: usize, rs: usize) {
    assert!(wait_for(Duration::from_secs(3), || engine.status().services[svc].reals[rs].checks_ok > 0));
}

#[test]
fn tcp_check_detects_failure_and_recovery_in_time() {
    let mut srv = Server::new();
    let dir = tmpdir("tcp");
    let notes = dir.join("notify");
    let cfg = config(&format!(
        "[[services]]\nprotocol = \"tcp\"\naddress = \"10.0.0.1:80\"\n{TIMING}\
         [[services.real_servers]]\naddress = \"127.0.0.1:{}\"\nmethod = \"nat\"\n\
         notify_up = \"echo up >> {n}\"\nnotify_down = \"echo down >> {n}\"\n\
         [[services.real_servers.checks]]\ntype = \"tcp\"\n",
        srv.port,
        n = notes.display()
    ));
    let log = Log::default();
    let engine = Engine::start(&cfg, log.apply());
    warm(&engine, 0, 0);
    assert!(log.commands().is_empty(), "a healthy server changes nothing");

    let t0 = Instant::now();
    srv.stop();
    let d = log.wait(t0, Duration::from_secs(5), is_delete(srv.port)).expect("failure detected");
    assert!(d <= bound(1), "detected after {d:?}");

    let t1 = Instant::now();
    srv.start();
    let d = log.wait(t1, Duration::from_secs(5), is_add(srv.port, 1)).expect("recovery detected");
    assert!(d <= Duration::from_millis(700) + SLACK, "recovered after {d:?}");

    assert!(wait_for(Duration::from_secs(1), || engine.status().services[0].reals[0].up));
    let st = engine.status();
    let r = &st.services[0].reals[0];
    assert_eq!((r.transitions_down, r.transitions_up), (1, 1));
    assert!(r.checks_failed >= 2, "retry 1 means two failed attempts");
    assert!(st.events.iter().any(|e| matches!(e.kind, EventKind::RealDown { .. })));
    engine.stop();
    assert!(wait_for(Duration::from_secs(2), || std::fs::read_to_string(&notes).unwrap_or_default() == "down\nup\n"));
}

#[test]
fn inhibit_on_failure_sets_weight_zero_and_back() {
    let mut srv = Server::new();
    let cfg = config(&format!(
        "[[services]]\nprotocol = \"tcp\"\naddress = \"10.0.0.1:80\"\n{TIMING}\
         [[services.real_servers]]\naddress = \"127.0.0.1:{}\"\nmethod = \"nat\"\nweight = 5\ninhibit_on_failure = true\n\
         [[services.real_servers.checks]]\ntype = \"tcp\"\nretry = 0\n",
        srv.port
    ));
    let log = Log::default();
    let engine = Engine::start(&cfg, log.apply());
    warm(&engine, 0, 0);
    let t0 = Instant::now();
    srv.stop();
    let d = log.wait(t0, Duration::from_secs(5), is_edit(srv.port, 0)).expect("weight 0");
    assert!(d <= bound(0), "{d:?}");
    let t1 = Instant::now();
    srv.start();
    log.wait(t1, Duration::from_secs(5), is_edit(srv.port, 5)).expect("weight restored");
    assert!(!log.commands().iter().any(|c| matches!(c, Command::DeleteDest(..) | Command::AddDest(..))));
}

#[test]
fn http_status_and_digest() {
    let srv = Server::http(200, "ok");
    let digest = super::md5::hex(&super::md5::md5(b"ok"));
    let cfg = config(&format!(
        "[[services]]\nprotocol = \"tcp\"\naddress = \"10.0.0.1:80\"\n{TIMING}\
         [[services.real_servers]]\naddress = \"127.0.0.1:{}\"\nmethod = \"nat\"\n\
         [[services.real_servers.checks]]\ntype = \"http\"\nretry = 0\npath = \"/health\"\ndigest = \"{digest}\"\n",
        srv.port
    ));
    let log = Log::default();
    let engine = Engine::start(&cfg, log.apply());
    warm(&engine, 0, 0);
    assert!(engine.status().services[0].reals[0].up);
    let t0 = Instant::now();
    srv.set_http(503, "ok");
    log.wait(t0, Duration::from_secs(5), is_delete(srv.port)).expect("503 is a failure");
    let t1 = Instant::now();
    srv.set_http(200, "ok");
    log.wait(t1, Duration::from_secs(5), is_add(srv.port, 1)).expect("200 again");
    let t2 = Instant::now();
    srv.set_http(200, "changed");
    log.wait(t2, Duration::from_secs(5), is_delete(srv.port)).expect("digest mismatch is a failure");
    assert!(wait_for(Duration::from_secs(1), || !engine.status().services[0].reals[0].up));
    let st = engine.status();
    let reason = st.events.iter().rev().find_map(|e| match &e.kind {
        EventKind::RealDown { reason } => Some(reason.clone()),
        _ => None,
    });
    assert!(reason.unwrap_or_default().contains("digest"));
}

#[test]
fn quorum_loss_installs_the_sorry_server_and_back() {
    let (mut a, b) = (Server::new(), Server::new());
    let dir = tmpdir("quorum");
    let q = dir.join("quorum");
    let cfg = config(&format!(
        "[[services]]\nprotocol = \"tcp\"\naddress = \"10.0.0.1:80\"\n{TIMING}quorum = 2\n\
         quorum_up = \"echo up >> {q}\"\nquorum_down = \"echo down >> {q}\"\n\
         sorry_server = {{ address = \"127.0.0.1:9\", method = \"nat\" }}\n\
         [[services.checks]]\ntype = \"tcp\"\nretry = 0\n\
         [[services.real_servers]]\naddress = \"127.0.0.1:{}\"\nmethod = \"nat\"\n\
         [[services.real_servers]]\naddress = \"127.0.0.1:{}\"\nmethod = \"nat\"\n",
        a.port,
        b.port,
        q = q.display()
    ));
    let log = Log::default();
    let engine = Engine::start(&cfg, log.apply());
    warm(&engine, 0, 0);
    let t0 = Instant::now();
    a.stop();
    // W = 1 < 2: a is removed, the still-alive b is removed, the sorry server is added.
    log.wait(t0, bound(0), is_add(9, 1)).expect("sorry server added");
    let cmds = log.commands();
    assert!(cmds.iter().any(is_delete(a.port)) && cmds.iter().any(is_delete(b.port)), "{cmds:?}");
    assert!(wait_for(Duration::from_secs(1), || {
        let st = engine.status();
        !st.services[0].quorum_up && st.services[0].sorry_active && st.services[0].quorum_lost == 1
    }));
    let t1 = Instant::now();
    a.start();
    log.wait(t1, Duration::from_secs(5), is_delete(9)).expect("sorry server removed");
    log.wait(t1, Duration::from_secs(1), is_add(a.port, 1)).expect("a back");
    log.wait(t1, Duration::from_secs(1), is_add(b.port, 1)).expect("b back");
    assert!(wait_for(Duration::from_secs(1), || engine.status().services[0].quorum_up));
    assert!(wait_for(Duration::from_secs(2), || std::fs::read_to_string(&q).unwrap_or_default() == "down\nup\n"));
    drop(b);
}

#[test]
fn misc_dynamic_sets_weights() {
    let dir = tmpdir("misc");
    let code = dir.join("code");
    std::fs::write(&code, "0").unwrap();
    let cfg = config(&format!(
        "[[services]]\nprotocol = \"tcp\"\naddress = \"10.0.0.1:80\"\n{TIMING}\
         [[services.real_servers]]\naddress = \"127.0.0.1:8080\"\nmethod = \"nat\"\nweight = 2\n\
         [[services.real_servers.checks]]\ntype = \"misc\"\ncommand = \"exit $(cat {})\"\ndynamic = true\ntimeout = 2\n",
        code.display()
    ));
    let log = Log::default();
    let engine = Engine::start(&cfg, log.apply());
    warm(&engine, 0, 0);
    let t0 = Instant::now();
    std::fs::write(&code, "12").unwrap();
    log.wait(t0, Duration::from_secs(5), is_edit(8080, 10)).expect("exit 12 → weight 10");
    let t1 = Instant::now();
    std::fs::write(&code, "1").unwrap();
    log.wait(t1, Duration::from_secs(5), is_delete(8080)).expect("exit 1 → down");
    let t2 = Instant::now();
    std::fs::write(&code, "0").unwrap();
    log.wait(t2, Duration::from_secs(5), is_add(8080, 2)).expect("exit 0 → up with the configured weight");
    assert!(wait_for(Duration::from_secs(1), || engine.status().services[0].reals[0].weight == 2));
}

#[test]
fn misc_timeout_is_a_failure() {
    let cfg = config(&format!(
        "[[services]]\nprotocol = \"tcp\"\naddress = \"10.0.0.1:80\"\n{TIMING}\
         [[services.real_servers]]\naddress = \"127.0.0.1:8080\"\nmethod = \"nat\"\n\
         [[services.real_servers.checks]]\ntype = \"misc\"\ncommand = \"sleep 5\"\ntimeout = 0.2\n"
    ));
    let log = Log::default();
    let t0 = Instant::now();
    let _engine = Engine::start(&cfg, log.apply());
    let d = log.wait(t0, Duration::from_secs(3), is_delete(8080)).expect("killed script = down");
    assert!(d < Duration::from_secs(2), "{d:?}");
}

#[test]
fn udp_check_sees_icmp_unreachable_and_replies() {
    let mut echo = Echo::new();
    let cfg = config(&format!(
        "[[services]]\nprotocol = \"udp\"\naddress = \"10.0.0.1:53\"\n{TIMING}\
         [[services.real_servers]]\naddress = \"127.0.0.1:{}\"\nmethod = \"nat\"\n\
         [[services.real_servers.checks]]\ntype = \"udp\"\nretry = 0\npayload = \"cafe01\"\nrequire_reply = \"CAFEX1\"\n",
        echo.port
    ));
    let log = Log::default();
    let engine = Engine::start(&cfg, log.apply());
    warm(&engine, 0, 0);
    let t0 = Instant::now();
    echo.stop();
    let d = log.wait(t0, Duration::from_secs(5), is_delete(echo.port)).expect("port unreachable detected");
    assert!(d <= bound(0), "{d:?}");
    let t1 = Instant::now();
    echo.start();
    log.wait(t1, Duration::from_secs(5), is_add(echo.port, 1)).expect("echo back");
}

#[test]
fn udp_pattern_mismatch_fails() {
    let echo = Echo::new();
    let cfg = config(&format!(
        "[[services]]\nprotocol = \"udp\"\naddress = \"10.0.0.1:53\"\n{TIMING}\
         [[services.real_servers]]\naddress = \"127.0.0.1:{}\"\nmethod = \"nat\"\n\
         [[services.real_servers.checks]]\ntype = \"udp\"\npayload = \"cafe01\"\nrequire_reply = \"BEEF\"\n",
        echo.port
    ));
    let log = Log::default();
    let _engine = Engine::start(&cfg, log.apply());
    log.wait(Instant::now(), Duration::from_secs(5), is_delete(echo.port)).expect("wrong reply = down");
}

#[test]
fn alpha_starts_down_until_the_first_success() {
    let srv = Server::new();
    let text = format!(
        "[[services]]\nprotocol = \"tcp\"\naddress = \"10.0.0.1:80\"\n{TIMING}alpha = true\n\
         [[services.real_servers]]\naddress = \"127.0.0.1:{}\"\nmethod = \"nat\"\n\
         [[services.real_servers.checks]]\ntype = \"tcp\"\n",
        srv.port
    );
    let cfg = config(&text);
    assert_eq!(cfg.save_lines(), vec!["-A -t 10.0.0.1:80 -s wlc"], "not installed at startup");
    let log = Log::default();
    let t0 = Instant::now();
    let _engine = Engine::start(&cfg, log.apply());
    log.wait(t0, Duration::from_secs(2), is_add(srv.port, 1)).expect("added after the first success");
}

#[test]
fn ping_loopback_when_icmp_sockets_are_allowed() {
    let target = Target { addr: "127.0.0.1:0".parse().unwrap(), bind: None };
    let mut check = crate::model::Check::new(crate::model::CheckKind::Ping);
    check.timing.connect_timeout = Duration::from_secs(1);
    if sock::icmp_socket(&target.addr.ip()).is_err() {
        eprintln!("no ICMP socket permitted here (ping_group_range, no CAP_NET_RAW): skipped");
        return;
    }
    assert_eq!(probe::probe(&check, &target, 1), Outcome::Up(None));
}

#[test]
fn omega_runs_quorum_down_at_shutdown() {
    let srv = Server::new();
    let dir = tmpdir("omega");
    let f = dir.join("omega");
    let cfg = config(&format!(
        "[[services]]\nprotocol = \"tcp\"\naddress = \"10.0.0.1:80\"\n{TIMING}omega = true\nquorum_down = \"echo qdown >> {f}\"\n\
         [[services.real_servers]]\naddress = \"127.0.0.1:{}\"\nmethod = \"nat\"\nnotify_down = \"echo rsdown >> {f}\"\n\
         [[services.real_servers.checks]]\ntype = \"tcp\"\n",
        srv.port,
        f = f.display()
    ));
    let engine = Engine::start(&cfg, Log::default().apply());
    warm(&engine, 0, 0);
    engine.stop();
    assert!(wait_for(Duration::from_secs(2), || {
        let s = std::fs::read_to_string(&f).unwrap_or_default();
        s.contains("qdown") && s.contains("rsdown")
    }));
}

#[test]
fn stop_is_prompt() {
    let cfg = config(
        "[[services]]\nprotocol = \"tcp\"\naddress = \"10.0.0.1:80\"\ndelay_loop = 60\nwarmup = 60\n\
         [[services.real_servers]]\naddress = \"127.0.0.1:9\"\nmethod = \"nat\"\n[[services.real_servers.checks]]\ntype = \"tcp\"\n",
    );
    let engine = Engine::start(&cfg, Log::default().apply());
    let t0 = Instant::now();
    engine.stop();
    assert!(t0.elapsed() < Duration::from_secs(1));
}

#[test]
fn state_is_carried_across_a_restart_with_a_changed_config() {
    let (a, mut b, mut c, d) = (Server::new(), Server::new(), Server::new(), Server::new());
    let rs = |port: u16, extra: &str| {
        format!(
            "[[services.real_servers]]\naddress = \"127.0.0.1:{port}\"\nmethod = \"nat\"\n{extra}\
             [[services.real_servers.checks]]\ntype = \"tcp\"\nretry = 0\n"
        )
    };
    let head = |sched: &str| {
        format!("[[services]]\nprotocol = \"tcp\"\naddress = \"10.0.0.1:80\"\nscheduler = \"{sched}\"\n{TIMING}")
    };
    let inhibited = "weight = 5\ninhibit_on_failure = true\n";
    let cfg1 = config(&format!("{}{}{}{}", head("wlc"), rs(a.port, ""), rs(b.port, ""), rs(c.port, inhibited)));
    let log1 = Log::default();
    let engine = Engine::start(&cfg1, log1.apply());
    warm(&engine, 0, 0);
    let t0 = Instant::now();
    b.stop();
    c.stop();
    log1.wait(t0, Duration::from_secs(5), is_delete(b.port)).expect("b removed");
    log1.wait(t0, Duration::from_secs(5), is_edit(c.port, 0)).expect("c inhibited");
    assert!(wait_for(Duration::from_secs(1), || {
        let st = engine.status();
        !st.services[0].reals[1].up && !st.services[0].reals[2].up
    }));
    let carried = engine.stop_for_reload();
    assert!(!carried.is_empty());

    // Something else changes (scheduler, a's weight); d is new, with alpha.
    let cfg2 = config(&format!(
        "{}{}{}{}{}",
        head("rr"),
        rs(a.port, "weight = 3\n"),
        rs(b.port, ""),
        rs(c.port, inhibited),
        rs(d.port, "alpha = true\n")
    ));
    let dest = |port: u16, weight: u32| (port, weight);
    let table = |t: Vec<(control::api::ServiceSpec, Vec<DestSpec>)>| -> Vec<(u16, u32)> {
        t[0].1.iter().map(|x| dest(x.port, x.weight)).collect()
    };
    // What a reload installs: b stays out, c stays at weight 0, d (alpha) is not in yet.
    assert_eq!(table(cfg2.table_after(&carried)), [dest(a.port, 3), dest(c.port, 0)]);
    assert_eq!(table(cfg2.initial_table()), [dest(a.port, 3), dest(b.port, 1), dest(c.port, 5)], "without carry");
    assert_eq!(cfg2.states_after(&carried)[0].alive, [true, false, false, false]);

    let log2 = Log::default();
    let t1 = Instant::now();
    let engine = Engine::start_with(&cfg2, log2.apply(), &carried);
    let st = engine.status();
    let r = &st.services[0].reals;
    assert_eq!((r[1].up, r[1].transitions_down), (false, 1), "b carried down with its count");
    assert_eq!((r[2].up, r[2].transitions_down), (false, 1), "c carried down");
    assert!(r[1].checks_failed >= 1);
    log2.wait(t1, Duration::from_secs(3), is_add(d.port, 1)).expect("d added after its first success");
    // A few rounds later: b and c did not flip back in.
    std::thread::sleep(Duration::from_millis(600));
    let cmds = log2.commands();
    assert_eq!(cmds.len(), 1, "only d's addition: {cmds:?}");
    // The carried down checkers still see the recovery.
    let t2 = Instant::now();
    b.start();
    c.start();
    log2.wait(t2, Duration::from_secs(3), is_add(b.port, 1)).expect("b back");
    log2.wait(t2, Duration::from_secs(3), is_edit(c.port, 5)).expect("c weight restored");
    assert!(wait_for(Duration::from_secs(1), || engine.status().services[0].reals[1].transitions_up == 1));
    engine.stop();
}

#[test]
fn dynamic_weight_and_quorum_are_carried() {
    let dir = tmpdir("carry-misc");
    let code = dir.join("code");
    std::fs::write(&code, "12").unwrap();
    let text = |sched: &str| {
        format!(
            "[[services]]\nprotocol = \"tcp\"\naddress = \"10.0.0.1:80\"\nscheduler = \"{sched}\"\n{TIMING}\
             quorum = 5\nhysteresis = 2\nsorry_server = {{ address = \"127.0.0.1:9\", method = \"nat\" }}\n\
             [[services.real_servers]]\naddress = \"127.0.0.1:8080\"\nmethod = \"nat\"\nweight = 6\n\
             [[services.real_servers.checks]]\ntype = \"misc\"\ncommand = \"exit $(cat {})\"\ndynamic = true\ntimeout = 2\n",
            code.display()
        )
    };
    let cfg = config(&text("wlc"));
    let log = Log::default();
    let engine = Engine::start(&cfg, log.apply());
    log.wait(Instant::now(), Duration::from_secs(5), is_edit(8080, 10)).expect("exit 12 → weight 10");
    assert!(wait_for(Duration::from_secs(1), || engine.status().services[0].reals[0].weight == 10));
    // Weight 2 < quorum − hysteresis: lost, the sorry server replaces the server.
    std::fs::write(&code, "4").unwrap();
    log.wait(Instant::now(), Duration::from_secs(5), is_add(9, 1)).expect("sorry server in");
    // Weight 4: inside the hysteresis band [3, 7), the quorum stays lost.
    std::fs::write(&code, "6").unwrap();
    assert!(wait_for(Duration::from_secs(3), || engine.status().services[0].reals[0].weight == 4));
    assert!(!engine.status().services[0].quorum_up);
    let carried = engine.stop_for_reload();

    let cfg2 = config(&text("rr"));
    let st = &cfg2.states_after(&carried)[0];
    assert_eq!((st.alive[0], st.weight[0], st.quorum_up), (true, 4, false), "weight 4 and the lost quorum carried");
    let fresh = &cfg2.initial_states()[0];
    assert_eq!((fresh.weight[0], fresh.quorum_up), (6, true));
    let t = cfg2.table_after(&carried);
    assert_eq!(t[0].1.iter().map(|d| (d.port, d.weight)).collect::<Vec<_>>(), [(9, 1)], "the sorry server stays");

    // A different (non-identical) dynamic check does not inherit the weight.
    let cfg3 = config(&text("rr").replace("timeout = 2", "timeout = 3"));
    assert_eq!(cfg3.states_after(&carried)[0].weight[0], 6);
    let engine = Engine::start_with(&cfg2, log.apply(), &carried);
    let s = engine.status();
    let svc = &s.services[0];
    assert_eq!((svc.reals[0].weight, svc.quorum_up, svc.sorry_active, svc.quorum_lost), (4, false, true, 1));
    assert!(!s.events.iter().any(|e| e.kind == EventKind::QuorumLost), "no second quorum_down for a kept state");
    engine.stop();
}

mod smtp_hosts;
mod ssl_get;
