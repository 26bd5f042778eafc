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

mod carry;
pub mod md5;
pub mod probe;
mod script;
mod sock;
mod tls;

pub use carry::Carried;
pub(crate) use carry::start_state;
pub use tls::check_files as check_tls_files;

use crate::model::{Config, VirtualService};
use crate::table::{ServiceState, diff};
use control::api::{Command, DestSpec};
use probe::{Outcome, Target};
use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// Run the omega scripts when stopping (not when handing over to a reload).
    omega: AtomicBool,
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
    /// `Engine::carried`: the state to carry, computed on demand (it copies every check).
    Carry(Sender<Carried>),
}

fn lock_status(m: &Mutex<Status>) -> MutexGuard<'_, Status> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The running checkers. Dropping it stops them (without omega actions).
pub struct Engine {
    stopper: Arc<Stopper>,
    status: Arc<Mutex<Status>>,
    /// To the coordinator (`Msg::Carry`).
    requests: Sender<Msg>,
    threads: Vec<JoinHandle<()>>,
    coordinator: Option<JoinHandle<Carried>>,
}

impl Engine {
    /// Starts one thread per check and the coordinator. The table installed is
    /// assumed to be `cfg.to_commands()` (the startup state of `Config::initial_states`).
    pub fn start(cfg: &Config, apply: Box<dyn Apply>) -> Engine {
        Engine::start_with(cfg, apply, &Carried::default())
    }

    /// Starts the checkers of `cfg` from the state of a previous engine (a reload, `carry.rs`):
    /// kept real servers keep their state, new ones follow the start rules. The table
    /// installed is assumed to be `cfg.table_after(prior)`.
    pub fn start_with(cfg: &Config, apply: Box<dyn Apply>, prior: &Carried) -> Engine {
        let stopper =
            Arc::new(Stopper { stopped: Mutex::new(false), cv: Condvar::new(), omega: AtomicBool::new(true) });
        let now = SystemTime::now();
        let starts: Vec<carry::Start> = cfg.services.iter().map(|vs| carry::start(vs, prior, now)).collect();
        let (tx, rx) = mpsc::channel();
        let mut threads = Vec::new();
        for ((si, vs), start) in cfg.services.iter().enumerate().zip(&starts) {
            let key0 = vs.keys[0];
            for (ri, rs) in vs.reals.iter().enumerate() {
                for (ci, check) in rs.checks.iter().enumerate() {
                    let target = Target::of(check, rs, rs.port_for(&key0));
                    let up = start.checks_up.get(ri).and_then(|c| c.get(ci)).copied().unwrap_or(!check.alpha);
                    let (check, weight, tx, st) = (check.clone(), rs.weight, tx.clone(), stopper.clone());
                    let h = std::thread::Builder::new()
                        .name(format!("rvs-check-{si}-{ri}-{ci}"))
                        .spawn(move || checker(Slot { svc: si, rs: ri, check: ci }, check, target, weight, up, tx, st));
                    if let Ok(h) = h {
                        threads.push(h);
                    }
                }
            }
        }
        let coord = Coordinator::new(cfg, apply, starts);
        let status = Arc::new(Mutex::new(coord.status()));
        let (st2, stop2) = (status.clone(), stopper.clone());
        let coordinator =
            std::thread::Builder::new().name("rvs-health".into()).spawn(move || coord.run(rx, st2, stop2)).ok();
        Engine { stopper, status, requests: tx, threads, coordinator }
    }

    /// A copy of the current status.
    pub fn status(&self) -> Status {
        lock_status(&self.status).clone()
    }

    /// The state a reload would carry now (the checkers keep running); nothing if the
    /// coordinator does not answer within a second.
    pub fn carried(&self) -> Carried {
        let (tx, rx) = mpsc::channel();
        if self.requests.send(Msg::Carry(tx)).is_err() {
            return Carried::default();
        }
        rx.recv_timeout(Duration::from_secs(1)).unwrap_or_default()
    }

    /// Stops all checkers and waits for them; with `omega`, runs the quorum_down and
    /// notify_down scripts of what was up (keepalived.md §4 `omega`). Returns the final
    /// state.
    pub fn stop(mut self) -> Carried {
        self.shutdown()
    }

    /// Stops the checkers to hand their state over to the next configuration's engine
    /// (`start_with`): as `stop`, but without the omega scripts, since the servers live on.
    pub fn stop_for_reload(mut self) -> Carried {
        self.stopper.omega.store(false, Ordering::Relaxed);
        self.shutdown()
    }

    fn shutdown(&mut self) -> Carried {
        self.stopper.stop();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.coordinator.take().and_then(|c| c.join().ok()).unwrap_or_default()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if self.coordinator.is_some() {
            self.stopper.omega.store(false, Ordering::Relaxed);
            self.shutdown();
        }
    }
}

/// Which check a checker thread runs.
#[derive(Clone, Copy)]
struct Slot {
    svc: usize,
    rs: usize,
    check: usize,
}

/// One check's loop (keepalived.md §6 "Checker state machine"). `up` is the verdict it
/// starts with: `!alpha`, or the one carried across a reload.
fn checker(
    slot: Slot,
    check: crate::model::Check,
    target: Target,
    weight: u32,
    mut up: bool,
    tx: Sender<Msg>,
    stop: Arc<Stopper>,
) {
    let Slot { svc, rs, check: ci } = slot;
    let warmup = check.timing.warmup.as_nanos() as u64;
    if warmup > 0 && !stop.sleep(Duration::from_nanos(probe::random_u64() % (warmup + 1))) {
        return;
    }
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
    /// The coordinator of `cfg` from each service's start state (`carry::start`). What
    /// differs from the carried state at start is announced like a check's verdict would
    /// be: a quorum lost at startup runs quorum_down once, as keepalived's first
    /// evaluation does; a kept server or quorum whose state the new file changed gets its
    /// event, count and script.
    fn new(cfg: &Config, apply: Box<dyn Apply>, starts: Vec<carry::Start>) -> Self {
        let mut status = Status::default();
        let mut announce = Vec::new();
        let services = cfg
            .services
            .iter()
            .zip(starts)
            .map(|(vs, start)| {
                let installed = vs.keys.iter().map(|k| start.state.dests(vs, k)).collect();
                announce.push((start.prior_quorum, start.prior_up));
                status.services.push(start.status);
                Svc {
                    checks_up: start.checks_up,
                    dyn_weight: start.dyn_weight,
                    vs: vs.clone(),
                    state: start.state,
                    installed,
                }
            })
            .collect();
        let mut c = Coordinator { services, apply, status };
        let now = SystemTime::now();
        for (si, (prior_quorum, prior_up)) in announce.into_iter().enumerate() {
            for (ri, was) in prior_up.into_iter().enumerate() {
                let s = &c.services[si];
                let alive = s.state.alive[ri];
                if was.is_none_or(|w| w == alive) {
                    continue;
                }
                let rs = &s.vs.reals[ri];
                let (name, real) = (s.vs.name.clone(), Some((rs.addr, rs.port)));
                let script = if alive { rs.notify_up.clone() } else { rs.notify_down.clone() };
                let r = &mut c.status.services[si].reals[ri];
                r.since = now;
                if alive {
                    r.transitions_up += 1;
                } else {
                    r.transitions_down += 1;
                }
                let reason = "changed by the reloaded configuration".to_string();
                c.event(&name, real, if alive { EventKind::RealUp } else { EventKind::RealDown { reason } });
                if let Some(sc) = script {
                    script::spawn_detached(&sc);
                }
            }
            let s = &c.services[si];
            let up = s.state.quorum_up;
            // A new service announces a lost quorum; a kept one announces any change.
            if prior_quorum.map_or(up, |p| p == up) {
                continue;
            }
            let (name, script) =
                (s.vs.name.clone(), if up { s.vs.quorum_up.clone() } else { s.vs.quorum_down.clone() });
            let st = &mut c.status.services[si];
            if up {
                st.quorum_gained += 1;
            } else {
                st.quorum_lost += 1;
            }
            c.event(&name, None, if up { EventKind::QuorumGained } else { EventKind::QuorumLost });
            if let Some(sc) = script {
                script::spawn_detached(&sc);
            }
        }
        c
    }

    /// The state to carry into the next engine.
    fn carried(&self) -> Carried {
        let mut c = Carried::default();
        for (s, st) in self.services.iter().zip(&self.status.services) {
            c.push(&s.vs, &s.state, &s.checks_up, &s.dyn_weight, st);
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

    /// Handles the checkers' messages until stopped; returns the final state.
    fn run(mut self, rx: Receiver<Msg>, shared: Arc<Mutex<Status>>, stop: Arc<Stopper>) -> Carried {
        loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(Msg::Carry(reply)) => {
                    let _ = reply.send(self.carried());
                }
                Ok(msg) => {
                    self.handle(msg);
                    *lock_status(&shared) = self.status.clone();
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
        // Verdicts already queued are handled too (the old table is still installed), so
        // the state handed over is the latest one seen.
        while let Ok(msg) = rx.try_recv() {
            self.handle(msg);
        }
        if stop.omega.load(Ordering::Relaxed) {
            self.omega();
        }
        *lock_status(&shared) = self.status.clone();
        self.carried()
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
            Msg::Carry(reply) => {
                let _ = reply.send(self.carried());
            }
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
