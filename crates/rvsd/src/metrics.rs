//! Prometheus text exposition (format 0.0.4) at `GET /metrics` on `--metrics ADDR`.
//! Hand-written: a few families, no client library needed. The IPVS families carry the
//! node_exporter IPVS collector's names, help texts, types and labels
//! (`collector/ipvs_linux.go`), so existing dashboards and alerts work unchanged; rvs's own
//! families are prefixed `rvs_`.

use std::fmt::Write as _;
use std::io::BufReader;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use control::api::{self, Counters, ServiceKey, Snapshot};
use control::ops::{DrainingView, ServiceHealth};

use crate::operate::{Transitions, server_label};

/// Everything one scrape shows, gathered from the daemon (or made up by tests).
#[derive(Default)]
pub struct Input {
    /// Director-wide counters (`ipvsadm -L --stats` totals).
    pub total: Counters,
    pub snapshot: Option<Snapshot>,
    /// Drops by reason name, every reason.
    pub drops: Vec<(String, u64)>,
    /// Frames forwarded by the established-flow shortcut.
    pub shortcut: u64,
    pub conn_entries: u64,
    pub conn_limit: u64,
    pub health: Vec<ServiceHealth>,
    pub transitions: Transitions,
    pub draining: Vec<DrainingView>,
    /// Per packet worker (`GET /v1/stats` `per_worker`).
    pub workers: Vec<crate::admin::WorkerStats>,
}

/// One scrape's data from the running daemon.
pub fn gather(api: &crate::server::Api) -> Input {
    let stats = api.admin.stats();
    let snapshot = api.admin.snapshot();
    Input {
        total: crate::convert::counters(api.admin.node.ipvs.total.read()),
        conn_limit: (stats.max_conns_per_worker as u64).saturating_mul(stats.workers.max(1) as u64),
        conn_entries: stats.conns_total as u64,
        drops: stats.drops.into_iter().collect(),
        shortcut: stats.shortcut,
        snapshot: Some(snapshot),
        health: api.ops.health(),
        transitions: api.ops.transitions(),
        draining: api.admin.draining(),
        workers: stats.per_worker,
    }
}

/// Label value escaping of the text format: backslash, double quote, newline.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn labels(pairs: &[(&str, String)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}=\"{}\"", esc(v))).collect();
    format!("{{{}}}", inner.join(","))
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }
    fn sample(&mut self, name: &str, l: &[(&str, String)], v: u64) {
        let _ = writeln!(self.0, "{name}{} {v}", labels(l));
    }
}

/// The collector's service-side labels: (proto, local_address, local_port, local_mark).
fn service_labels(k: &ServiceKey) -> [(&'static str, String); 4] {
    let (proto, addr, port, mark) = match *k {
        ServiceKey::Tcp { addr, port } => ("TCP", addr.to_string(), port, String::new()),
        ServiceKey::Udp { addr, port } => ("UDP", addr.to_string(), port, String::new()),
        ServiceKey::Sctp { addr, port } => ("SCTP", addr.to_string(), port, String::new()),
        // /proc/net/ip_vs prints the mark as %08X; procfs passes it on as is.
        ServiceKey::Fwmark { mark, .. } => ("FWM", String::new(), 0, format!("{mark:08X}")),
    };
    [("local_address", addr), ("local_port", port.to_string()), ("proto", proto.into()), ("local_mark", mark)]
}

/// The collector's backend label set, in its order.
fn backend_labels(k: &ServiceKey, addr: std::net::IpAddr, port: u16) -> Vec<(&'static str, String)> {
    let [la, lp, pr, lm] = service_labels(k);
    vec![la, lp, ("remote_address", addr.to_string()), ("remote_port", port.to_string()), pr, lm]
}

/// Renders one scrape.
pub fn render(i: &Input) -> String {
    let mut o = Out(String::with_capacity(4096));
    let totals: [(&str, &str, u64); 5] = [
        ("node_ipvs_connections_total", "The total number of connections made.", i.total.conns),
        ("node_ipvs_incoming_packets_total", "The total number of incoming packets.", i.total.inpkts),
        ("node_ipvs_outgoing_packets_total", "The total number of outgoing packets.", i.total.outpkts),
        ("node_ipvs_incoming_bytes_total", "The total amount of incoming data.", i.total.inbytes),
        ("node_ipvs_outgoing_bytes_total", "The total amount of outgoing data.", i.total.outbytes),
    ];
    for (name, help, v) in totals {
        o.family(name, "counter", help);
        o.sample(name, &[], v);
    }
    let services = i.snapshot.as_ref().map(|s| s.services.as_slice()).unwrap_or_default();
    type DestValue = fn(&api::DestView) -> u64;
    let backend: [(&str, &str, DestValue); 3] = [
        ("node_ipvs_backend_connections_active", "The current active connections by local and remote address.", |d| {
            u64::from(d.active)
        }),
        (
            "node_ipvs_backend_connections_inactive",
            "The current inactive connections by local and remote address.",
            |d| u64::from(d.inactive),
        ),
        ("node_ipvs_backend_weight", "The current backend weight by local and remote address.", |d| {
            u64::from(d.spec.weight)
        }),
    ];
    for (name, help, f) in backend {
        o.family(name, "gauge", help);
        for s in services {
            for d in &s.dests {
                o.sample(name, &backend_labels(&s.spec.key, d.spec.addr, d.spec.port), f(d));
            }
        }
    }
    type RateValue = fn(&api::Rates) -> u64;
    let rates: [(&str, &str, RateValue); 5] = [
        ("cps", "connections per second", |r| r.cps),
        ("inpps", "incoming packets per second", |r| r.inpps),
        ("outpps", "outgoing packets per second", |r| r.outpps),
        ("inbps", "incoming bytes per second", |r| r.inbps),
        ("outbps", "outgoing bytes per second", |r| r.outbps),
    ];
    for (suffix, what, f) in rates {
        let name = format!("rvs_service_rate_{suffix}");
        o.family(
            &name,
            "gauge",
            &format!("Estimated {what} of the virtual service (2 s estimator, as ipvsadm --rate)."),
        );
        for s in services {
            o.sample(&name, &service_labels(&s.spec.key), f(&s.rates));
        }
    }
    o.family("rvs_drops_total", "counter", "Frames dropped by the node, by reason.");
    for (reason, n) in &i.drops {
        o.sample("rvs_drops_total", &[("reason", reason.clone())], *n);
    }
    o.family("rvs_shortcut_packets_total", "counter", "Frames forwarded by the established-flow shortcut.");
    o.sample("rvs_shortcut_packets_total", &[], i.shortcut);
    if !i.workers.is_empty() {
        o.family("rvs_worker_frames_total", "counter", "Frames a packet worker ran through the packet path.");
        for w in &i.workers {
            o.sample("rvs_worker_frames_total", &[("worker", w.id.to_string())], w.rx);
        }
        o.family(
            "rvs_worker_handed_frames_total",
            "counter",
            "Frames passed between AF_XDP workers to the one owning their client (out: received here, run there).",
        );
        for w in &i.workers {
            for (dir, v) in [("out", w.handed_out), ("in", w.handed_in)] {
                o.sample(
                    "rvs_worker_handed_frames_total",
                    &[("worker", w.id.to_string()), ("direction", dir.into())],
                    v,
                );
            }
        }
        // The I/O loop's stages: frames per batch and per wake-up follow from these and the
        // frames above.
        for (name, help, get) in [
            (
                "rvs_worker_polls_total",
                "Times a packet worker slept in poll().",
                (|w| w.polls) as fn(&crate::admin::WorkerStats) -> u64,
            ),
            (
                "rvs_worker_batches_total",
                "Batches a packet worker ran through the packet path (AF_PACKET: RX blocks).",
                |w| w.batches,
            ),
            ("rvs_worker_tx_kicks_total", "Transmit wake-ups (sendto) a packet worker made.", |w| w.tx_kicks),
        ] {
            o.family(name, "counter", help);
            for w in &i.workers {
                o.sample(name, &[("worker", w.id.to_string())], get(w));
            }
        }
    }
    o.family("rvs_conn_table_entries", "gauge", "Connection-table entries (all workers).");
    o.sample("rvs_conn_table_entries", &[], i.conn_entries);
    o.family("rvs_conn_table_limit", "gauge", "Connection-table limit (all workers).");
    o.sample("rvs_conn_table_limit", &[], i.conn_limit);
    o.family("rvs_health_check_up", "gauge", "1 when the real server passes all its health checks.");
    for s in &i.health {
        for r in &s.reals {
            let checker = if r.checkers.is_empty() { "none".to_string() } else { r.checkers.join("+") };
            let l = [("service", s.name.clone()), ("server", server_label(r.addr, r.port)), ("checker", checker)];
            o.sample("rvs_health_check_up", &l, u64::from(r.up));
        }
    }
    o.family("rvs_health_transitions_total", "counter", "Health transitions of real servers since rvsd started.");
    for ((service, server, to), n) in &i.transitions {
        let l = [("service", service.clone()), ("server", server.clone()), ("to", to.to_string())];
        o.sample("rvs_health_transitions_total", &l, *n);
    }
    o.family("rvs_draining_connections", "gauge", "Connections left on real servers being drained.");
    for d in &i.draining {
        for (state, v) in [("active", d.active), ("inactive", d.inactive)] {
            let mut l = backend_labels(&d.service, d.addr, d.port);
            l.push(("state", state.into()));
            o.sample("rvs_draining_connections", &l, u64::from(v));
        }
    }
    o.0
}

/// The metrics listener's limits: like the API's, but no request body at all (GET only).
pub const METRICS_POLICY: crate::server::Policy =
    crate::server::Policy { max_conns: 64, deadline: Duration::from_secs(10), max_body: 0 };

/// Serves `GET /metrics` until the process ends; `scrape` renders one answer.
pub fn serve(listener: TcpListener, scrape: Arc<dyn Fn() -> String + Send + Sync>) {
    serve_with(listener, scrape, METRICS_POLICY)
}

fn serve_with(listener: TcpListener, scrape: Arc<dyn Fn() -> String + Send + Sync>, policy: crate::server::Policy) {
    let f: Arc<dyn Fn(TcpStream) + Send + Sync> = Arc::new(move |stream: TcpStream| {
        if let Err(e) = answer(&stream, &*scrape, &policy) {
            tracing::debug!("metrics connection: {e}");
        }
    });
    crate::server::accept_loop(listener.incoming(), "rvsd-metrics", policy.max_conns, f)
}

fn answer(stream: &TcpStream, scrape: &dyn Fn() -> String, policy: &crate::server::Policy) -> std::io::Result<()> {
    use control::http::{self, HttpError};
    stream.set_write_timeout(Some(policy.deadline))?;
    let deadline = std::time::Instant::now() + policy.deadline;
    let mut r = BufReader::new(http::DeadlineReader::new(stream, deadline));
    let (status, ctype, body) = match http::read_request_head(&mut r) {
        Ok(req) if req.method != "GET" || req.path.split('?').next() != Some("/metrics") => {
            (404, "text/plain", b"only GET /metrics here\n".to_vec())
        }
        Ok(req) => match http::read_body(&mut r, &req, policy.max_body) {
            Ok(_) => (200, "text/plain; version=0.0.4; charset=utf-8", scrape().into_bytes()),
            Err(e) => (e.status().max(400), "text/plain", format!("{e}\n").into_bytes()),
        },
        Err(HttpError::Closed) => return Ok(()),
        Err(HttpError::Io(e)) => return Err(e),
        Err(e) => (e.status(), "text/plain", format!("{e}\n").into_bytes()),
    };
    http::write_response(&mut &*stream, status, ctype, &body)
}

#[cfg(test)]
#[path = "../tests/support/exposition.rs"]
mod exposition;

#[cfg(test)]
mod tests {
    use super::*;
    use control::api::{DestSpec, DestView, ForwardMethod, Rates, ServiceSpec, ServiceView, Timeouts};
    use control::ops::RealHealth;
    use exposition::{find, parse_exposition};

    fn fake() -> Input {
        let key = ServiceKey::Tcp { addr: "10.0.0.100".parse().unwrap(), port: 80 };
        let dest = |a: &str, w, active, inactive| DestView {
            spec: DestSpec {
                addr: a.parse().unwrap(),
                port: 8080,
                method: ForwardMethod::Masq,
                weight: w,
                u_threshold: 0,
                l_threshold: 0,
                tun_type: Default::default(),
                tun_port: 0,
                tun_csum: Default::default(),
            },
            active,
            inactive,
            persistent: 0,
            stats: Counters::default(),
            rates: Rates::default(),
        };
        let spec = |key| ServiceSpec {
            key,
            scheduler: "wrr".into(),
            sched_flags: Default::default(),
            persistent: None,
            netmask: u32::MAX,
            ops: false,
            pe: None,
        };
        let snapshot = Snapshot {
            version: "1.2.1".into(),
            conn_tab_size: 4096,
            timeouts: Timeouts::default(),
            daemons: vec![],
            services: vec![
                ServiceView {
                    spec: spec(key),
                    stats: Counters::default(),
                    rates: Rates { cps: 7, inpps: 100, outpps: 90, inbps: 6000, outbps: 5000 },
                    dests: vec![dest("192.168.1.12", 3, 5, 2), dest("192.168.1.11", 1, 1, 0)],
                },
                ServiceView {
                    spec: spec(ServiceKey::Fwmark { mark: 10, ipv6: false }),
                    stats: Counters::default(),
                    rates: Rates::default(),
                    dests: vec![dest("192.168.1.13", 2, 0, 0)],
                },
            ],
        };
        let mut transitions = Transitions::new();
        transitions.insert(("TCP 10.0.0.100:80".into(), "192.168.1.11:8080".into(), "down"), 2);
        Input {
            total: Counters { conns: 12, inpkts: 345, outpkts: 300, inbytes: 45678, outbytes: 40000 },
            snapshot: Some(snapshot),
            drops: vec![("truncated".into(), 3), ("no_route".into(), 0)],
            shortcut: 321,
            conn_entries: 6,
            conn_limit: 4096,
            health: vec![ServiceHealth {
                name: "TCP 10.0.0.100:80".into(),
                quorum_up: true,
                live_weight: 3,
                sorry_active: false,
                reals: vec![RealHealth {
                    addr: "192.168.1.11".parse().unwrap(),
                    port: Some(8080),
                    up: false,
                    weight: 1,
                    checkers: vec!["tcp".into(), "http".into()],
                    transitions_up: 1,
                    transitions_down: 2,
                    checks_ok: 5,
                    checks_failed: 3,
                }],
            }],
            transitions,
            draining: vec![DrainingView {
                service: key,
                addr: "192.168.1.10".parse().unwrap(),
                port: 8080,
                active: 4,
                inactive: 1,
                persistent: 0,
                remaining_secs: 30,
            }],
            workers: vec![
                crate::admin::WorkerStats {
                    id: 0,
                    rx: 100,
                    handed_out: 7,
                    handed_in: 9,
                    polls: 40,
                    batches: 25,
                    tx_kicks: 30,
                    ..Default::default()
                },
                crate::admin::WorkerStats {
                    id: 1,
                    rx: 50,
                    handed_out: 9,
                    handed_in: 7,
                    polls: 20,
                    batches: 12,
                    tx_kicks: 11,
                    ..Default::default()
                },
            ],
        }
    }

    #[test]
    fn fake_data_renders_valid_exposition_with_node_exporter_names() {
        let text = render(&fake());
        let (types, samples) = parse_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        for (f, t) in [
            ("node_ipvs_connections_total", "counter"),
            ("node_ipvs_incoming_packets_total", "counter"),
            ("node_ipvs_outgoing_packets_total", "counter"),
            ("node_ipvs_incoming_bytes_total", "counter"),
            ("node_ipvs_outgoing_bytes_total", "counter"),
            ("node_ipvs_backend_connections_active", "gauge"),
            ("node_ipvs_backend_connections_inactive", "gauge"),
            ("node_ipvs_backend_weight", "gauge"),
            ("rvs_drops_total", "counter"),
            ("rvs_shortcut_packets_total", "counter"),
            ("rvs_conn_table_entries", "gauge"),
            ("rvs_conn_table_limit", "gauge"),
            ("rvs_health_check_up", "gauge"),
            ("rvs_health_transitions_total", "counter"),
            ("rvs_service_rate_cps", "gauge"),
            ("rvs_service_rate_inpps", "gauge"),
            ("rvs_service_rate_outpps", "gauge"),
            ("rvs_service_rate_inbps", "gauge"),
            ("rvs_service_rate_outbps", "gauge"),
            ("rvs_draining_connections", "gauge"),
            ("rvs_worker_frames_total", "counter"),
            ("rvs_worker_handed_frames_total", "counter"),
            ("rvs_worker_polls_total", "counter"),
            ("rvs_worker_batches_total", "counter"),
            ("rvs_worker_tx_kicks_total", "counter"),
        ] {
            assert_eq!(types.get(f).map(String::as_str), Some(t), "{f}");
        }
        assert!(text.contains("# HELP node_ipvs_connections_total The total number of connections made.\n"));
        assert!(text.contains(
            "# HELP node_ipvs_backend_connections_active The current active connections by local and remote address.\n"
        ));
        assert_eq!(find(&samples, "node_ipvs_incoming_bytes_total", &[]).unwrap().2, 45678.0);
        let b = [
            ("local_address", "10.0.0.100"),
            ("local_port", "80"),
            ("remote_address", "192.168.1.12"),
            ("remote_port", "8080"),
            ("proto", "TCP"),
            ("local_mark", ""),
        ];
        assert_eq!(find(&samples, "node_ipvs_backend_connections_active", &b).unwrap().2, 5.0);
        assert_eq!(find(&samples, "node_ipvs_backend_connections_inactive", &b).unwrap().2, 2.0);
        assert_eq!(find(&samples, "node_ipvs_backend_weight", &b).unwrap().2, 3.0);
        let labels: Vec<&str> =
            find(&samples, "node_ipvs_backend_weight", &b).unwrap().1.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(labels, ["local_address", "local_port", "remote_address", "remote_port", "proto", "local_mark"]);
        let fwm = [("proto", "FWM"), ("local_mark", "0000000A"), ("local_address", ""), ("local_port", "0")];
        assert_eq!(find(&samples, "node_ipvs_backend_weight", &fwm).unwrap().2, 2.0);
        assert_eq!(find(&samples, "rvs_service_rate_inbps", &[("local_port", "80")]).unwrap().2, 6000.0);
        assert_eq!(find(&samples, "rvs_drops_total", &[("reason", "truncated")]).unwrap().2, 3.0);
        assert_eq!(find(&samples, "rvs_shortcut_packets_total", &[]).unwrap().2, 321.0);
        assert_eq!(find(&samples, "rvs_conn_table_limit", &[]).unwrap().2, 4096.0);
        assert_eq!(find(&samples, "rvs_worker_frames_total", &[("worker", "1")]).unwrap().2, 50.0);
        let out1 = [("worker", "1"), ("direction", "out")];
        assert_eq!(find(&samples, "rvs_worker_handed_frames_total", &out1).unwrap().2, 9.0);
        assert_eq!(find(&samples, "rvs_worker_batches_total", &[("worker", "0")]).unwrap().2, 25.0);
        assert_eq!(find(&samples, "rvs_worker_tx_kicks_total", &[("worker", "1")]).unwrap().2, 11.0);
        assert_eq!(find(&samples, "rvs_worker_polls_total", &[("worker", "1")]).unwrap().2, 20.0);
        let h = [("server", "192.168.1.11:8080"), ("checker", "tcp+http"), ("service", "TCP 10.0.0.100:80")];
        assert_eq!(find(&samples, "rvs_health_check_up", &h).unwrap().2, 0.0);
        assert_eq!(find(&samples, "rvs_health_transitions_total", &[("to", "down")]).unwrap().2, 2.0);
        assert_eq!(
            find(&samples, "rvs_draining_connections", &[("remote_address", "192.168.1.10"), ("state", "active")])
                .unwrap()
                .2,
            4.0
        );
    }

    #[test]
    fn the_metrics_listener_takes_no_body_and_caps_connections() {
        use std::io::Write as _;
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        // A deadline long enough that a loaded machine has taken both idle connections well
        // before it cuts them.
        let policy = crate::server::Policy { max_conns: 2, deadline: Duration::from_secs(3), ..METRICS_POLICY };
        std::thread::spawn(move || serve_with(l, Arc::new(|| "x 1\n".to_string()), policy));
        let ask = |raw: &[u8]| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(raw).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            control::http::read_response(&mut BufReader::new(&s)).map(|r| r.status).unwrap_or(0)
        };
        assert_eq!(ask(b"GET /metrics HTTP/1.1\r\n\r\n"), 200);
        assert_eq!(ask(b"GET /metrics HTTP/1.1\r\nContent-Length: 100000000\r\n\r\n"), 413);
        assert_eq!(ask(b"POST /metrics HTTP/1.1\r\nContent-Length: 100000000\r\n\r\n"), 404);
        // Two idle connections take both slots; a third is refused at once.
        // (A handler may still hold its slot for a moment after its answer was read; then one
        // of the idle pair is the one refused, and the pair is tried again.)
        let mut idle: Vec<TcpStream> = Vec::new();
        for _ in 0..20 {
            std::thread::sleep(Duration::from_millis(100));
            let pair: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
            std::thread::sleep(Duration::from_millis(50));
            if ask(b"GET /metrics HTTP/1.1\r\n\r\n") == 503 {
                idle = pair;
                break;
            }
        }
        assert_eq!(idle.len(), 2, "a third connection is refused while two hold the slots");
        // Idle ones are cut at the deadline (408), and the slots come back.
        for s in &idle {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            assert_eq!(control::http::read_response(&mut BufReader::new(s)).map(|r| r.status).unwrap_or(0), 408);
        }
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(ask(b"GET /metrics HTTP/1.1\r\n\r\n"), 200);
    }

    #[test]
    fn the_checker_rejects_broken_exposition() {
        for bad in [
            "x 1\n",                                                         // no TYPE
            "# HELP a h\n# TYPE a gauge\na{b=\"1\" 2\n",                     // unterminated labels
            "# HELP a h\n# TYPE a gauge\na{b=1} 2\n",                        // unquoted
            "# HELP a h\n# TYPE a gauge\na 1\n# HELP a h\n",                 // HELP twice
            "# HELP a h\n# TYPE a gauge\na one\n",                           // bad value
            "# HELP a h\n# TYPE a gauge\n# HELP b h\n# TYPE b gauge\na 1\n", // not contiguous
        ] {
            assert!(parse_exposition(bad).is_err(), "{bad:?}");
        }
        let (_, s) = parse_exposition("# HELP a h\n# TYPE a gauge\na{b=\"q\\\"x\\\\\",c=\"\"} 2\n").unwrap();
        assert_eq!(s[0].1, vec![("b".to_string(), "q\"x\\".to_string()), ("c".to_string(), String::new())]);
        assert_eq!(esc("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
