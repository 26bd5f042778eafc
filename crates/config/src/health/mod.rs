//! Health checkers (keepalived.md §6): threads that probe the real servers and a
//! coordinator that turns their verdicts into IPVS table changes, outside any packet
//! path. The daemon applies the changes through `Apply`.
//!
//! Threads: one per check (blocking sockets with timeouts), plus one coordinator
//! that owns all state, so the state machine needs no locks; the status for
//! metrics sits behind one mutex that only the coordinator writes.
//!
//! Timing (per check): a change is seen within
//! `delay_loop + (retry + 1) × connect_timeout + retry × delay_before_retry` of
//! happening (one full round of attempts after the current wait), and a recovery
//! within `delay_loop + connect_timeout` (one success is enough).

pub mod md5;
pub mod probe;
mod script;
mod sock;

use crate::model::{Config, VirtualService};
use crate::table::{ServiceState, diff};
use control::api::{Command, DestSpec};
use probe::{Outcome, Target};
use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// What the daemon implements to apply the checkers' decisions. Only `AddDest`,
/// `EditDest` (weight changes) and `DeleteDest` are issued; the services themselves
/// come from `Config::to_commands()`, which must be installed before `Engine::start`.
pub trait Apply: Send {
    fn apply(&mut self, cmd: &Command) -> Result<(), String>;
}

impl<F: FnMut(&Command) -> Result<(), String> + Send> Apply for F {
    fn apply(&mut self, cmd: &Command) -> Result<(), String> {
        self(cmd)
    }
}

/// What happened, for the event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    RealUp,
    RealDown { reason: String },
    WeightChanged { weight: u32 },
    QuorumGained,
    QuorumLost,
    Applied(Command),
    ApplyFailed { command: Command, error: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub at: SystemTime,
    /// Service name (`VirtualService::name`).
    pub service: String,
    /// Real server address and configured port, when the event is about one.
    pub real: Option<(IpAddr, Option<u16>)>,
    pub kind: EventKind,
}

/// Live state of one real server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealStatus {
    pub addr: IpAddr,
    pub port: Option<u16>,
    pub up: bool,
    /// Current weight (misc_dynamic may change it).
    pub weight: u32,
    pub transitions_up: u64,
    pub transitions_down: u64,
    /// Individual probe attempts.
    pub checks_ok: u64,
    pub checks_failed: u64,
    pub since: SystemTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceStatus {
    pub name: String,
    pub quorum_up: bool,
    pub live_weight: u64,
    pub quorum_lost: u64,
    pub quorum_gained: u64,
    /// True while the sorry server replaces the real servers.
    pub sorry_active: bool,
    pub reals: Vec<RealStatus>,
}

/// Everything queryable for metrics and `status` commands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    pub services: Vec<ServiceStatus>,
    /// The latest events, oldest first (at most `EVENT_LOG_LEN`).
    pub events: VecDeque<Event>,
    pub apply_errors: u64,
}

/// Length of the event log.
pub const EVENT_LOG_LEN: usize = 1024;

/// Stop flag with a condition variable, so sleeping checkers wake at once.
struct Stopper {
    stopped: Mutex<bool>,
    cv: Condvar,
}

impl Stopper {
    fn lock(&self) -> MutexGuard<'_, bool> {
        self.stopped.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// Sleeps `d`; false if stopped meanwhile.
    fn sleep(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        let mut g = self.lock();
        while !*g {
            let now = Instant::now();
            if now >= deadline {
                return true;
            }
            g = self.cv.wait_timeout(g, deadline - now).map(|(g, _)| g).unwrap_or_else(|e| e.into_inner().0);
        }
        false
    }
    fn is_stopped(&self) -> bool {
        *self.lock()
    }
    fn stop(&self) {
        *self.lock() = true;
        self.cv.notify_all();
    }
}

enum Msg {
    /// One probe attempt finished.
    Attempt { svc: usize, rs: usize, ok: bool },
    /// A round finished: the check's verdict.
    Round { svc: usize, rs: usize, check: usize, outcome: Outcome },
}

/// The running checkers. Dropping it stops them (without omega actions).
pub struct Engine {
    stopper: Arc<Stopper>,
    status: Arc<Mutex<Status>>,
    threads: Vec<JoinHandle<()>>,
    coordinator: Option<JoinHandle<()>>,
}

impl Engine {
    /// Starts one thread per check and the coordinator. The table installed is
    /// assumed to be `cfg.to_commands()` (the startup state of `Config::initial_states`).
    pub fn start(cfg: &Config, apply: Box<dyn Apply>) -> Engine {
        let stopper = Arc::new(Stopper { stopped: Mutex::new(false), cv: Condvar::new() });
        let (tx, rx) = mpsc::channel();
        let mut threads = Vec::new();
        for (si, vs) in cfg.services.iter().enumerate() {
            let key0 = vs.keys[0];
            for (ri, rs) in vs.reals.iter().enumerate() {
                for (ci, check) in rs.checks.iter().enumerate() {
                    let target = Target::of(check, rs, rs.port_for(&key0));
                    let (check, weight, tx, st) = (check.clone(), rs.weight, tx.clone(), stopper.clone());
                    let h = std::thread::Builder::new()
                        .name(format!("rvs-check-{si}-{ri}-{ci}"))
                        .spawn(move || checker(si, ri, ci, check, target, weight, tx, st));
                    if let Ok(h) = h {
                        threads.push(h);
                    }
                }
            }
        }
        drop(tx);
        let coord = Coordinator::new(cfg, apply);
        let status = Arc::new(Mutex::new(coord.status()));
        let (st2, stop2) = (status.clone(), stopper.clone());
        let coordinator =
            std::thread::Builder::new().name("rvs-health".into()).spawn(move || coord.run(rx, st2, stop2)).ok();
        Engine { stopper, status, threads, coordinator }
    }

    /// A copy of the current status.
    pub fn status(&self) -> Status {
        self.status.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Stops all checkers and waits for them; with `omega`, runs the quorum_down and
    /// notify_down scripts of what was up (keepalived.md §4 `omega`).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stopper.stop();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if let Some(c) = self.coordinator.take() {
            let _ = c.join();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// One check's loop (keepalived.md §6 "Checker state machine").
#[allow(clippy::too_many_arguments)]
fn checker(
    svc: usize,
    rs: usize,
    ci: usize,
    check: crate::model::Check,
    target: Target,
    weight: u32,
    tx: Sender<Msg>,
    stop: Arc<Stopper>,
) {
    let warmup = check.timing.warmup.as_nanos() as u64;
    if warmup > 0 && !stop.sleep(Duration::from_nanos(probe::random_u64() % (warmup + 1))) {
        return;
    }
    let mut up = !check.alpha;
    while !stop.is_stopped() {
        let mut out = probe::probe(&check, &target, weight);
        let _ = tx.send(Msg::Attempt { svc, rs, ok: out.is_up() });
        // Retries only matter while up: a down checker stays down on failure.
        let mut tries = 0;
        while up && !out.is_up() && tries < check.timing.retry {
            if !stop.sleep(check.timing.delay_before_retry) {
                return;
            }
            out = probe::probe(&check, &target, weight);
            let _ = tx.send(Msg::Attempt { svc, rs, ok: out.is_up() });
            tries += 1;
        }
        up = out.is_up();
        if tx.send(Msg::Round { svc, rs, check: ci, outcome: out }).is_err() {
            return;
        }
        if !stop.sleep(check.timing.delay_loop) {
            return;
        }
    }
}

struct Svc {
    vs: VirtualService,
    state: ServiceState,
    /// Per real server, per check: up?
    checks_up: Vec<Vec<bool>>,
    /// Per real server: weight set by misc_dynamic.
    dyn_weight: Vec<Option<u32>>,
    /// Per IPVS service (key): the dests installed.
    installed: Vec<Vec<DestSpec>>,
}

struct Coordinator {
    services: Vec<Svc>,
    apply: Box<dyn Apply>,
    status: Status,
}

impl Coordinator {
    fn new(cfg: &Config, apply: Box<dyn Apply>) -> Self {
        let mut status = Status::default();
        let now = SystemTime::now();
        let services = cfg
            .services
            .iter()
            .map(|vs| {
                let state = ServiceState::initial(vs);
                let installed = vs.keys.iter().map(|k| state.dests(vs, k)).collect();
                status.services.push(ServiceStatus {
                    name: vs.name.clone(),
                    quorum_up: state.quorum_up,
                    live_weight: state.live_weight(),
                    quorum_lost: 0,
                    quorum_gained: 0,
                    sorry_active: state.sorry_active(vs),
                    reals: vs
                        .reals
                        .iter()
                        .zip(&state.alive)
                        .map(|(r, up)| RealStatus {
                            addr: r.addr,
                            port: r.port,
                            up: *up,
                            weight: r.weight,
                            transitions_up: 0,
                            transitions_down: 0,
                            checks_ok: 0,
                            checks_failed: 0,
                            since: now,
                        })
                        .collect(),
                });
                Svc {
                    checks_up: vs.reals.iter().map(|r| r.checks.iter().map(|c| !c.alpha).collect()).collect(),
                    dyn_weight: vec![None; vs.reals.len()],
                    vs: vs.clone(),
                    state,
                    installed,
                }
            })
            .collect();
        let mut c = Coordinator { services, apply, status };
        // A quorum lost at startup runs quorum_down, as keepalived's first evaluation does.
        for i in 0..c.services.len() {
            if !c.services[i].state.quorum_up {
                let s = &c.services[i];
                c.status.services[i].quorum_lost += 1;
                let (name, script) = (s.vs.name.clone(), s.vs.quorum_down.clone());
                c.event(&name, None, EventKind::QuorumLost);
                if let Some(sc) = script {
                    script::spawn_detached(&sc);
                }
            }
        }
        c
    }

    fn status(&self) -> Status {
        self.status.clone()
    }

    fn event(&mut self, service: &str, real: Option<(IpAddr, Option<u16>)>, kind: EventKind) {
        if self.status.events.len() >= EVENT_LOG_LEN {
            self.status.events.pop_front();
        }
        self.status.events.push_back(Event { at: SystemTime::now(), service: service.to_owned(), real, kind });
    }

    fn run(mut self, rx: Receiver<Msg>, shared: Arc<Mutex<Status>>, stop: Arc<Stopper>) {
        loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(msg) => {
                    self.handle(msg);
                    *shared.lock().unwrap_or_else(|e| e.into_inner()) = self.status.clone();
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    if stop.sleep(Duration::from_secs(3600)) {
                        continue;
                    }
                }
            }
            if stop.is_stopped() {
                break;
            }
        }
        self.omega();
        *shared.lock().unwrap_or_else(|e| e.into_inner()) = self.status.clone();
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Attempt { svc, rs, ok } => {
                if let Some(r) = self.status.services.get_mut(svc).and_then(|s| s.reals.get_mut(rs)) {
                    if ok {
                        r.checks_ok += 1;
                    } else {
                        r.checks_failed += 1;
                    }
                }
            }
            Msg::Round { svc, rs, check, outcome } => self.round(svc, rs, check, outcome),
        }
    }

    fn round(&mut self, si: usize, ri: usize, ci: usize, outcome: Outcome) {
        let Some(s) = self.services.get_mut(si) else { return };
        let Some(slot) = s.checks_up.get_mut(ri).and_then(|c| c.get_mut(ci)) else { return };
        *slot = outcome.is_up();
        if let Outcome::Up(Some(w)) = outcome {
            s.dyn_weight[ri] = Some(w);
        }
        let rs = &s.vs.reals[ri];
        let real = Some((rs.addr, rs.port));
        let alive = s.checks_up[ri].iter().all(|u| *u);
        let weight = s.dyn_weight[ri].unwrap_or(rs.weight);
        let (was_alive, was_weight) = (s.state.alive[ri], s.state.weight[ri]);
        s.state.alive[ri] = alive;
        s.state.weight[ri] = weight;
        let quorum = s.state.update_quorum(&s.vs);
        let name = s.vs.name.clone();
        let (notify_up, notify_down) = (rs.notify_up.clone(), rs.notify_down.clone());
        let (q_up, q_down) = (s.vs.quorum_up.clone(), s.vs.quorum_down.clone());

        // Apply the table changes first, then tell the world (keepalived's order).
        let mut cmds = Vec::new();
        for (ki, key) in s.vs.keys.iter().enumerate() {
            let new = s.state.dests(&s.vs, key);
            cmds.extend(diff(key, &s.installed[ki], &new));
            s.installed[ki] = new;
        }
        let (live, sorry) = (s.state.live_weight(), s.state.sorry_active(&s.vs));
        for cmd in cmds {
            match self.apply.apply(&cmd) {
                Ok(()) => self.event(&name, None, EventKind::Applied(cmd)),
                Err(error) => {
                    self.status.apply_errors += 1;
                    self.event(&name, None, EventKind::ApplyFailed { command: cmd, error });
                }
            }
        }
        let now = SystemTime::now();
        let st = &mut self.status.services[si];
        st.live_weight = live;
        st.sorry_active = sorry;
        let r = &mut st.reals[ri];
        r.weight = weight;
        if alive != was_alive {
            r.up = alive;
            r.since = now;
            if alive {
                r.transitions_up += 1;
            } else {
                r.transitions_down += 1;
            }
            let kind = if alive {
                EventKind::RealUp
            } else {
                EventKind::RealDown { reason: if let Outcome::Down(r) = &outcome { r.clone() } else { String::new() } }
            };
            self.event(&name, real, kind);
            if let Some(sc) = if alive { notify_up } else { notify_down } {
                script::spawn_detached(&sc);
            }
        } else if alive && weight != was_weight {
            self.event(&name, real, EventKind::WeightChanged { weight });
        }
        if let Some(up) = quorum {
            let st = &mut self.status.services[si];
            st.quorum_up = up;
            if up {
                st.quorum_gained += 1;
            } else {
                st.quorum_lost += 1;
            }
            self.event(&name, None, if up { EventKind::QuorumGained } else { EventKind::QuorumLost });
            if let Some(sc) = if up { q_up } else { q_down } {
                script::spawn_detached(&sc);
            }
        }
    }

    /// keepalived `omega`: at shutdown, quorum_down if the quorum was up, and
    /// notify_down for every live real server.
    fn omega(&mut self) {
        for s in &self.services {
            if !s.vs.omega {
                continue;
            }
            if s.state.quorum_up
                && let Some(sc) = &s.vs.quorum_down
            {
                script::spawn_detached(sc);
            }
            for (rs, alive) in s.vs.reals.iter().zip(&s.state.alive) {
                if let (true, Some(sc)) = (*alive, &rs.notify_down) {
                    script::spawn_detached(sc);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
