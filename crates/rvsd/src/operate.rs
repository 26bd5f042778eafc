//! Operating the director from a configuration file: the load at start, hot reloads
//! (SIGHUP, `POST /v1/reload`) and the health checkers (`rvs_config::health::Engine`),
//! whose table changes go through `Admin::command` like any API command.
//!
//! Reload order: parse, plan, validate on a scratch engine (so a bad file changes
//! nothing, checkers included), stop the old checkers (so none of their changes lands on
//! the new table) and take their state, install the table that state implies for the new
//! file (`Config::table_after`, atomically with `Ipvs::replace_table`), start the new
//! checkers from that state (`Engine::start_with`). Kept services and dests keep their
//! connections and counters; kept real servers keep their health (a server that was down
//! is not installed again), as keepalived does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use control::api::{ApiError, Command, ErrorKind};
use control::ops::{ConfigStatus, RealHealth, ReloadReply, ServiceHealth};
use rvs_config::health::{Engine, Event, EventKind};
use rvs_config::{CheckKind, Config};

use crate::admin::Admin;
use crate::args::ConfigFormat;
use crate::cfgload;

/// Health transitions counted since the daemon started (across reloads), by
/// (service name, server `addr[:port]`, `up`/`down`).
pub type Transitions = BTreeMap<(String, String, &'static str), u64>;

struct State {
    config: Option<Config>,
    engine: Option<Engine>,
    status: ConfigStatus,
    /// Last event of the current engine already logged.
    cursor: Option<Event>,
    transitions: Transitions,
}

pub struct Operator {
    admin: Arc<Admin>,
    /// Format and file given at start.
    source: Option<(ConfigFormat, PathBuf)>,
    state: Mutex<State>,
    /// One reload at a time (the state lock is not held while checkers stop).
    reloading: Mutex<()>,
}

/// Name of a check type as metrics and `/v1/health` show it.
pub fn checker_name(c: &rvs_config::Check) -> &'static str {
    match &c.kind {
        CheckKind::Tcp => "tcp",
        CheckKind::Http(_) if c.tls.is_some() => "ssl",
        CheckKind::Http(_) => "http",
        CheckKind::Misc(_) => "misc",
        CheckKind::Udp(_) => "udp",
        CheckKind::Ping => "ping",
        CheckKind::Dns(_) => "dns",
        CheckKind::Smtp { .. } => "smtp",
    }
}

/// `addr:port` (or the address alone when the port is the service's).
pub fn server_label(addr: std::net::IpAddr, port: Option<u16>) -> String {
    match port {
        Some(p) => std::net::SocketAddr::new(addr, p).to_string(),
        None => addr.to_string(),
    }
}

impl Operator {
    pub fn new(admin: Arc<Admin>, source: Option<(ConfigFormat, PathBuf)>) -> Operator {
        let status = ConfigStatus { format: source.as_ref().map(|(f, _)| f.name().to_string()), ..Default::default() };
        Operator {
            admin,
            source,
            state: Mutex::new(State { config: None, engine: None, status, cursor: None, transitions: BTreeMap::new() }),
            reloading: Mutex::new(()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Installs `cfg` (loaded from `file`) and starts its checkers: the start-up load and
    /// the second half of a reload.
    pub fn activate(&self, cfg: Config, file: &Path) -> Result<ReloadReply, ApiError> {
        let _r = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        self.activate_locked(cfg, file)
    }

    fn activate_locked(&self, cfg: Config, file: &Path) -> Result<ReloadReply, ApiError> {
        let shown = file.display().to_string();
        // Validated with the checkers' state of now; the state at their stop may differ
        // only in which configured servers are in and their weights.
        let now = self.lock().engine.as_ref().map(Engine::carried).unwrap_or_default();
        let checked = cfgload::plan(&cfg, &now)?;
        cfgload::validate(&checked)?;
        self.admin.check_vips(&checked)?;
        for w in &cfg.warnings {
            tracing::warn!("{w}");
        }
        // Old checkers first: none of their changes may land on the new table. Their
        // final state decides the new table (no omega scripts: the servers live on).
        self.pump_events();
        let old = self.lock().engine.take();
        let last = old.map(Engine::stop_for_reload).unwrap_or_default();
        let (plan, prior) = match cfgload::plan(&cfg, &last).and_then(|p| cfgload::validate(&p).map(|()| p)) {
            Ok(p) => (p, last),
            Err(e) => {
                tracing::warn!(
                    "health state at the reload gives an invalid table ({}); using the earlier one",
                    e.message
                );
                (checked, now)
            }
        };
        let down = cfg.states_after(&prior).iter().flat_map(|s| s.alive.clone()).filter(|a| !a).count();
        self.admin.install(&plan)?;
        crate::sysctl::apply_config(&self.admin.node.ipvs, &cfg.sysctl);
        let admin = self.admin.clone();
        let apply = move |cmd: &Command| admin.command(cmd).map(|_| ()).map_err(|e| e.message);
        let checks = cfgload::check_count(&cfg);
        let engine = Engine::start_with(&cfg, Box::new(apply), &prior);
        if !prior.is_empty() {
            tracing::info!("health state carried over from the previous checkers: {down} real servers start down");
        }
        let reply =
            ReloadReply { file: shown.clone(), services: plan.table.len(), checks, warnings: cfgload::warnings(&cfg) };
        let mut st = self.lock();
        st.engine = Some(engine);
        st.cursor = None;
        st.config = Some(cfg);
        st.status.file = Some(shown.clone());
        st.status.loads += 1;
        st.status.warnings = reply.warnings.clone();
        tracing::info!("configuration {shown} installed: {} services, {checks} health checks", reply.services);
        Ok(reply)
    }

    /// Reloads the file given at start, or `path` (same format). On any error nothing
    /// changes and the error says `file:line: field: message` (Invalid → HTTP 422).
    pub fn reload(&self, path: Option<&str>) -> Result<ReloadReply, ApiError> {
        let _r = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        let Some((format, start_path)) = &self.source else {
            let m = "rvsd was started without --config or --keepalived: nothing to reload";
            tracing::warn!("reload: {m}");
            return Err(ApiError::new(ErrorKind::Conflict, m));
        };
        let file = path.map(PathBuf::from).unwrap_or_else(|| start_path.clone());
        let r = if file.is_file() {
            cfgload::load(*format, &file)
                .map_err(|m| ApiError::new(ErrorKind::Invalid, m))
                .and_then(|cfg| self.activate_locked(cfg, &file))
        } else {
            Err(ApiError::new(ErrorKind::NotFound, format!("{}: no such file", file.display())))
        };
        match &r {
            Ok(_) => tracing::info!("reload of {}: done", file.display()),
            Err(e) => {
                tracing::error!("reload of {} refused, configuration unchanged: {}", file.display(), e.message);
                let mut st = self.lock();
                st.status.failures += 1;
                st.status.last_error = Some(e.message.clone());
            }
        }
        r
    }

    /// Logs the checkers' new events and counts the transitions (a thread calls this
    /// every half second, and a reload before stopping the old checkers).
    pub fn pump_events(&self) {
        let mut st = self.lock();
        let Some(engine) = &st.engine else { return };
        let events = engine.status().events;
        let start = match &st.cursor {
            Some(c) => events.iter().position(|e| e == c).map_or(0, |i| i + 1),
            None => 0,
        };
        let fresh: Vec<Event> = events.iter().skip(start).cloned().collect();
        for e in &fresh {
            let server = e.real.map(|(a, p)| server_label(a, p)).unwrap_or_default();
            match &e.kind {
                EventKind::RealUp => {
                    tracing::info!("health: {} {server}: up", e.service);
                    *st.transitions.entry((e.service.clone(), server, "up")).or_default() += 1;
                }
                EventKind::RealDown { reason } => {
                    tracing::warn!("health: {} {server}: down ({reason})", e.service);
                    *st.transitions.entry((e.service.clone(), server, "down")).or_default() += 1;
                }
                EventKind::WeightChanged { weight } => {
                    tracing::info!("health: {} {server}: weight {weight}", e.service)
                }
                EventKind::QuorumGained => tracing::info!("health: {}: quorum gained", e.service),
                EventKind::QuorumLost => tracing::warn!("health: {}: quorum lost", e.service),
                EventKind::Applied(c) => tracing::debug!("health: {}: applied {c:?}", e.service),
                EventKind::ApplyFailed { command, error } => {
                    tracing::error!("health: {}: {command:?} failed: {error}", e.service)
                }
            }
        }
        if let Some(last) = fresh.last() {
            st.cursor = Some(last.clone());
        }
    }

    pub fn transitions(&self) -> Transitions {
        self.lock().transitions.clone()
    }

    pub fn config_status(&self) -> ConfigStatus {
        self.lock().status.clone()
    }

    /// `GET /v1/health`: the checkers' view, with the check types from the configuration.
    pub fn health(&self) -> Vec<ServiceHealth> {
        let st = self.lock();
        let (Some(cfg), Some(engine)) = (&st.config, &st.engine) else { return Vec::new() };
        let status = engine.status();
        status
            .services
            .iter()
            .enumerate()
            .map(|(si, s)| {
                let vs = cfg.services.get(si);
                ServiceHealth {
                    name: s.name.clone(),
                    quorum_up: s.quorum_up,
                    live_weight: s.live_weight,
                    sorry_active: s.sorry_active,
                    reals: s
                        .reals
                        .iter()
                        .map(|r| {
                            let checkers = vs
                                .and_then(|vs| vs.reals.iter().find(|x| x.addr == r.addr && x.port == r.port))
                                .map(|x| x.checks.iter().map(|c| checker_name(c).to_string()).collect())
                                .unwrap_or_default();
                            RealHealth {
                                addr: r.addr,
                                port: r.port,
                                up: r.up,
                                weight: r.weight,
                                checkers,
                                transitions_up: r.transitions_up,
                                transitions_down: r.transitions_down,
                                checks_ok: r.checks_ok,
                                checks_failed: r.checks_failed,
                            }
                        })
                        .collect(),
                }
            })
            .collect()
    }

    /// Stops the checkers (omega scripts run), at shutdown.
    pub fn stop(&self) {
        self.pump_events();
        let e = self.lock().engine.take();
        if let Some(e) = e {
            e.stop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rates::RateTable;
    use std::sync::atomic::AtomicUsize;
    use std::time::{Duration, Instant};

    fn operator(source: Option<(ConfigFormat, PathBuf)>) -> Operator {
        let node = node::Node::new(Arc::new(ipvs::Ipvs::new(100)), node::NetState::default());
        let sizes: Arc<[AtomicUsize]> = vec![AtomicUsize::new(0)].into();
        let admin = Arc::new(Admin::new(
            node,
            Arc::new(RateTable::default()),
            Box::new(|a: &std::net::IpAddr| a.to_string() == "10.0.0.1"),
            vec![],
            sizes,
            None,
            vec![],
        ));
        Operator::new(admin, source)
    }

    fn config(weight: u32, extra: bool, check_port: Option<u16>) -> String {
        let mut s = format!(
            "[timeouts]\ntcp = 700\n[[services]]\nprotocol = \"tcp\"\naddress = \"10.0.0.100:80\"\nscheduler = \"wrr\"\n\
             [[services.real_servers]]\naddress = \"127.0.0.1:8080\"\nmethod = \"nat\"\nweight = {weight}\n"
        );
        if let Some(p) = check_port {
            s += &format!(
                "[[services.real_servers.checks]]\ntype = \"tcp\"\nconnect_port = {p}\ndelay_loop = 0.1\n\
                 connect_timeout = 0.2\nretry = 0\nwarmup = 0\n"
            );
        }
        if extra {
            s += "[[services.real_servers]]\naddress = \"127.0.0.2:8080\"\nmethod = \"nat\"\n";
        }
        s
    }

    fn dests(o: &Operator) -> Vec<(String, i32)> {
        let t = o.admin.node.ipvs.services_full();
        t.order().iter().flat_map(|s| s.dests.iter().map(|d| (d.addr.to_string(), d.config().weight))).collect()
    }

    #[test]
    fn reloads_replace_the_table_and_bad_files_change_nothing() {
        let dir = std::env::temp_dir().join(format!("rvsd-op-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("rvs.toml");
        std::fs::write(&file, config(1, false, None)).unwrap();
        let o = operator(Some((ConfigFormat::Native, file.clone())));
        let cfg = cfgload::load(ConfigFormat::Native, &file).unwrap();
        let r = o.activate(cfg, &file).unwrap();
        assert_eq!((r.services, r.checks), (1, 0));
        assert_eq!(dests(&o), [("127.0.0.1".to_string(), 1)]);
        assert_eq!(o.admin.node.ipvs.timeouts().triple().0, 700);
        let svc = o.admin.node.ipvs.services_full().order()[0].clone();
        let dest0 = svc.dests[0].clone();

        std::fs::write(&file, config(5, true, None)).unwrap();
        o.reload(None).unwrap();
        let mut d = dests(&o);
        d.sort();
        assert_eq!(d, [("127.0.0.1".to_string(), 5), ("127.0.0.2".to_string(), 1)]);
        let kept = o.admin.node.ipvs.services_full().order()[0].clone();
        assert!(Arc::ptr_eq(&kept.stats, &svc.stats), "service counters kept");
        assert!(kept.dests.iter().any(|x| Arc::ptr_eq(x, &dest0)), "the kept dest is the same object");

        // Bad files: refused with file:line: field, nothing changes.
        std::fs::write(&file, config(5, false, None).replace("\"wrr\"", "\"nosuch\"")).unwrap();
        let e = o.reload(None).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Invalid);
        assert!(e.message.contains("rvs.toml:") && e.message.contains("services[0].scheduler"), "{}", e.message);
        let e = o.reload(Some("/nonexistent/x.toml")).unwrap_err();
        assert!(e.message.starts_with("/nonexistent/x.toml: "), "{}", e.message);
        assert_eq!(e.kind, ErrorKind::NotFound);
        // A VIP owned by the kernel is refused too.
        std::fs::write(&file, config(5, false, None).replace("10.0.0.100", "10.0.0.1")).unwrap();
        assert!(o.reload(None).unwrap_err().message.contains("configured on the director's kernel"));
        assert_eq!(dests(&o).len(), 2, "table untouched");
        let st = o.config_status();
        assert_eq!((st.loads, st.failures), (2, 3));
        assert!(st.last_error.unwrap().contains("kernel"));
        assert_eq!(st.format.as_deref(), Some("native"));

        // Another file by path.
        let other = dir.join("other.toml");
        std::fs::write(&other, config(2, false, None)).unwrap();
        assert_eq!(o.reload(Some(other.to_str().unwrap())).unwrap().file, other.display().to_string());
        assert_eq!(dests(&o), [("127.0.0.1".to_string(), 2)]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn without_a_file_reload_is_a_conflict() {
        let o = operator(None);
        assert_eq!(o.reload(None).unwrap_err().kind, ErrorKind::Conflict);
        assert!(o.health().is_empty());
    }

    #[test]
    fn health_transitions_are_applied_logged_and_counted() {
        // A TCP check on a port that nobody listens on at first.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let dir = std::env::temp_dir().join(format!("rvsd-op-h-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("rvs.toml");
        std::fs::write(&file, config(3, false, Some(port))).unwrap();
        let o = operator(Some((ConfigFormat::Native, file.clone())));
        let cfg = cfgload::load(ConfigFormat::Native, &file).unwrap();
        assert_eq!(o.activate(cfg, &file).unwrap().checks, 1);
        let wait = |what: &str, f: &dyn Fn() -> bool| {
            let deadline = Instant::now() + Duration::from_secs(5);
            while !f() {
                assert!(Instant::now() < deadline, "timed out waiting for {what}");
                std::thread::sleep(Duration::from_millis(20));
                o.pump_events();
            }
        };
        wait("the server to go down", &|| dests(&o).is_empty());
        let h = o.health();
        assert_eq!(h[0].reals[0].checkers, ["tcp"]);
        assert!(!h[0].reals[0].up);
        let l = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        wait("the server to come back", &|| dests(&o) == [("127.0.0.1".to_string(), 3)]);
        o.pump_events();
        let t = o.transitions();
        let key = |to| ("TCP 10.0.0.100:80".to_string(), "127.0.0.1:8080".to_string(), to);
        assert_eq!(t.get(&key("down")), Some(&1), "{t:?}");
        assert_eq!(t.get(&key("up")), Some(&1), "{t:?}");
        o.stop();
        drop(l);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_reload_keeps_a_down_server_out() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let dir = std::env::temp_dir().join(format!("rvsd-op-c-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("rvs.toml");
        // Retries make a fresh checker slow to see the failure (about 0.9 s): the window
        // in which a reload without carried state would have the dead server in.
        let slow = |t: String| t.replace("retry = 0", "retry = 3\ndelay_before_retry = 0.3");
        std::fs::write(&file, slow(config(3, false, Some(port)))).unwrap();
        let o = operator(Some((ConfigFormat::Native, file.clone())));
        o.activate(cfgload::load(ConfigFormat::Native, &file).unwrap(), &file).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !dests(&o).is_empty() {
            assert!(Instant::now() < deadline, "the server never went down");
            std::thread::sleep(Duration::from_millis(20));
        }
        // Another weight and a second (unchecked) server: the dead one stays out.
        std::fs::write(&file, slow(config(4, true, Some(port)))).unwrap();
        o.reload(None).unwrap();
        for _ in 0..10 {
            assert_eq!(dests(&o), [("127.0.0.2".to_string(), 1)], "right after the reload and after");
            std::thread::sleep(Duration::from_millis(100));
        }
        let h = o.health();
        assert_eq!((h[0].reals[0].up, h[0].reals[0].transitions_down), (false, 1), "carried, not re-counted");
        o.pump_events();
        let down = ("TCP 10.0.0.100:80".to_string(), "127.0.0.1:8080".to_string(), "down");
        assert_eq!(o.transitions().get(&down), Some(&1));
        // The carried checker still sees the recovery, with the new weight.
        let l = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while dests(&o).len() != 2 {
            assert!(Instant::now() < deadline, "the server never came back");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(dests(&o).contains(&("127.0.0.1".to_string(), 4)));
        o.stop();
        drop(l);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
