//! SMTP_CHECK with `host { }` blocks (keepalived's deprecated form, still honoured): each
//! host is checked with its own connect_ip/connect_port, against real SMTP responders on
//! loopback addresses; the real server is up only while every host answers.

use super::*;
use crate::keepalived;
use std::io::BufRead;

/// A minimal SMTP responder: 220 greeting, 250 to HELO, 221 to QUIT; stoppable. It records
/// the HELO lines it got.
struct Smtp {
    addr: std::net::Ipv4Addr,
    port: u16,
    helos: Arc<Mutex<Vec<String>>>,
    run: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
}

impl Smtp {
    fn new(addr: std::net::Ipv4Addr) -> Smtp {
        let port = (0..200)
            .map(|_| 20000 + (probe::random_u64() % 12000) as u16)
            .find(|p| TcpListener::bind((addr, *p)).is_ok())
            .expect("a free port");
        let mut s = Smtp { addr, port, helos: Arc::default(), run: None };
        s.start();
        s
    }

    fn start(&mut self) {
        let l = TcpListener::bind((self.addr, self.port)).unwrap();
        l.set_nonblocking(true).unwrap();
        let flag = Arc::new(AtomicBool::new(true));
        let (f2, helos) = (flag.clone(), self.helos.clone());
        let h = std::thread::spawn(move || {
            while f2.load(Ordering::Relaxed) {
                let Ok((c, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let _ = c.set_nonblocking(false);
                let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
                let mut w = c.try_clone().unwrap();
                let mut r = std::io::BufReader::new(c);
                let _ = w.write_all(b"220 smtp.test ESMTP\r\n");
                let mut line = String::new();
                if r.read_line(&mut line).is_ok() && line.starts_with("HELO ") {
                    helos.lock().unwrap().push(line.trim_end().to_string());
                    let _ = w.write_all(b"250 smtp.test\r\n");
                    line.clear();
                    if r.read_line(&mut line).is_ok() && line.starts_with("QUIT") {
                        let _ = w.write_all(b"221 bye\r\n");
                    }
                }
            }
        });
        self.run = Some((flag, h));
    }

    fn stop(&mut self) {
        if let Some((f, h)) = self.run.take() {
            f.store(false, Ordering::Relaxed);
            let _ = h.join();
        }
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        self.stop();
    }
}

fn keepalived_conf(rs_port: u16, a: &Smtp, b: &Smtp, own: &str) -> String {
    format!(
        "virtual_server 10.0.0.1 25 {{
  lvs_sched rr
  lvs_method NAT
  protocol TCP
  delay_loop 0.2
  real_server 127.0.0.1 {rs_port} {{
    connect_timeout 0.5
    SMTP_CHECK {{
      helo_name checker.rvs.test
      retry 0
      delay_before_retry 0.2
      warmup 0{own}
      host {{
        connect_ip {}
        connect_port {}
      }}
      host {{
        connect_ip {}
        connect_port {}
        connect_timeout 0.4
      }}
    }}
  }}
}}
",
        a.addr, a.port, b.addr, b.port
    )
}

#[test]
fn each_host_is_checked_and_the_server_is_up_only_when_all_are() {
    let mut a = Smtp::new(std::net::Ipv4Addr::new(127, 0, 0, 2));
    let mut b = Smtp::new(std::net::Ipv4Addr::new(127, 0, 0, 3));
    // Nothing listens on the real server's own address: with host blocks (and no
    // connection option of the SMTP_CHECK's own) only the hosts are checked.
    let rs_port = free_port();
    let cfg = keepalived::import_str(&keepalived_conf(rs_port, &a, &b, ""), "k.conf").unwrap();
    let checks = &cfg.services[0].reals[0].checks;
    assert_eq!(checks.len(), 2, "one check per host");
    assert_eq!((checks[0].connect_ip, checks[0].connect_port), (Some(a.addr.into()), Some(a.port)));
    assert_eq!((checks[1].connect_ip, checks[1].connect_port), (Some(b.addr.into()), Some(b.port)));
    assert_eq!(checks[0].timing.connect_timeout, Duration::from_millis(500), "the real server's");
    assert_eq!(checks[1].timing.connect_timeout, Duration::from_millis(400), "the host's own");
    assert!(cfg.warnings.iter().any(|w| w.to_string().contains("host block is deprecated")), "{:?}", cfg.warnings);

    let log = Log::default();
    let engine = Engine::start(&cfg, log.apply());
    assert!(wait_for(Duration::from_secs(3), || engine.status().services[0].reals[0].checks_ok >= 2));
    std::thread::sleep(Duration::from_millis(500));
    assert!(log.commands().is_empty(), "both hosts answer: nothing changes ({:?})", log.commands());
    for s in [&a, &b] {
        let h = s.helos.lock().unwrap();
        assert!(h.iter().any(|l| l == "HELO checker.rvs.test"), "{}: {h:?}", s.addr);
    }

    // One host down: the real server goes; back: it returns. Then the other host.
    for which in [0, 1] {
        let srv = if which == 0 { &mut a } else { &mut b };
        let t0 = Instant::now();
        srv.stop();
        log.wait(t0, Duration::from_secs(5), is_delete(rs_port)).expect("a failing host takes the server down");
        let t1 = Instant::now();
        srv.start();
        log.wait(t1, Duration::from_secs(5), is_add(rs_port, 1)).expect("all hosts answer again: up");
    }
    engine.stop();
}

#[test]
fn an_smtp_check_with_its_own_target_checks_it_too() {
    let a = Smtp::new(std::net::Ipv4Addr::new(127, 0, 0, 2));
    let b = Smtp::new(std::net::Ipv4Addr::new(127, 0, 0, 3));
    let main = Smtp::new(std::net::Ipv4Addr::new(127, 0, 0, 4));
    let own = format!("\n      connect_ip {}\n      connect_port {}", main.addr, main.port);
    let cfg = keepalived::import_str(&keepalived_conf(free_port(), &a, &b, &own), "k.conf").unwrap();
    let checks = &cfg.services[0].reals[0].checks;
    assert_eq!(checks.len(), 3, "its own target and each host");
    assert_eq!((checks[0].connect_ip, checks[0].connect_port), (Some(main.addr.into()), Some(main.port)));
    // A host opened after the SMTP_CHECK's connect_ip inherits it unless it sets its own.
    assert_eq!(checks[1].connect_ip, Some(a.addr.into()));
}
