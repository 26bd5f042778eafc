//! Health state carried across a reload. keepalived keeps the state of the real servers
//! that exist before and after a reload; so does rvs: a server that was down stays out of
//! the table until its check succeeds, instead of being installed again (and sent
//! connections) until the new checker notices it is down.
//!
//! Matching: a real server of the new configuration is the same as an old one when one of
//! its service's keys is a key of the old service and the server has the same address and
//! effective port (`RealServer::port_for`) in that key. What is carried: up/down, the
//! per-check verdicts (a check of the new file identical to an old one keeps its verdict; a
//! new or changed check starts in the server's carried state), the misc_dynamic weight
//! (while an identical dynamic MISC_CHECK remains), the transition and attempt counts, and
//! the quorum state of kept services (hysteresis needs it), re-evaluated with the carried
//! weights. Servers and services that are new follow the start rules (`alpha`, quorum).

use super::{RealStatus, ServiceStatus};
use crate::model::{Check, CheckKind, RealServer, VirtualService};
use crate::table::ServiceState;
use control::api::ServiceKey;
use std::time::SystemTime;

/// The health state of a stopped (or running) engine, for `Engine::start_with` and
/// `Config::table_after`. `Carried::default()` carries nothing (the start-up state).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Carried {
    services: Vec<CarriedService>,
}

#[derive(Debug, Clone, PartialEq)]
struct CarriedService {
    keys: Vec<ServiceKey>,
    quorum_up: bool,
    quorum_lost: u64,
    quorum_gained: u64,
    reals: Vec<CarriedReal>,
}

#[derive(Debug, Clone, PartialEq)]
struct CarriedReal {
    /// Effective port in each key of the service (same order as `CarriedService::keys`).
    ports: Vec<u16>,
    /// Each check with its last verdict.
    checks: Vec<(Check, bool)>,
    dyn_weight: Option<u32>,
    /// Address, up/down, weight and counts.
    status: RealStatus,
}

impl Carried {
    /// Nothing carried.
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    /// Records one service's state (the coordinator, for every service).
    pub(crate) fn push(
        &mut self,
        vs: &VirtualService,
        state: &ServiceState,
        checks_up: &[Vec<bool>],
        dyn_weight: &[Option<u32>],
        status: &ServiceStatus,
    ) {
        let reals = vs
            .reals
            .iter()
            .enumerate()
            .map(|(i, rs)| {
                let ups = checks_up.get(i).map(Vec::as_slice).unwrap_or(&[]);
                let mut st = status.reals.get(i).cloned().unwrap_or_else(|| fresh(rs, SystemTime::now()));
                st.up = state.alive.get(i).copied().unwrap_or(st.up);
                CarriedReal {
                    ports: vs.keys.iter().map(|k| rs.port_for(k)).collect(),
                    checks: rs.checks.iter().cloned().zip(ups.iter().copied()).collect(),
                    dyn_weight: dyn_weight.get(i).copied().flatten(),
                    status: st,
                }
            })
            .collect();
        self.services.push(CarriedService {
            keys: vs.keys.clone(),
            quorum_up: state.quorum_up,
            quorum_lost: status.quorum_lost,
            quorum_gained: status.quorum_gained,
            reals,
        });
    }

    /// The old service sharing a key with `vs`.
    fn service(&self, vs: &VirtualService) -> Option<&CarriedService> {
        self.services.iter().find(|s| s.keys.iter().any(|k| vs.keys.contains(k)))
    }

    /// The old real server matching `rs` of `vs`: same key, address and effective port.
    fn real(&self, vs: &VirtualService, rs: &RealServer) -> Option<&CarriedReal> {
        vs.keys.iter().find_map(|key| {
            let port = rs.port_for(key);
            self.services.iter().find_map(|s| {
                let j = s.keys.iter().position(|k| k == key)?;
                s.reals.iter().find(|r| r.status.addr == rs.addr && r.ports.get(j) == Some(&port))
            })
        })
    }
}

/// A real server's status when nothing is carried: up unless a check has `alpha`.
fn fresh(rs: &RealServer, now: SystemTime) -> RealStatus {
    RealStatus {
        addr: rs.addr,
        port: rs.port,
        up: !rs.starts_down(),
        weight: rs.weight,
        transitions_up: 0,
        transitions_down: 0,
        checks_ok: 0,
        checks_failed: 0,
        since: now,
    }
}

fn is_dynamic(c: &Check) -> bool {
    matches!(&c.kind, CheckKind::Misc(m) if m.dynamic)
}

/// The table state of `vs` when its checkers start from `prior` (`Config::states_after`).
pub(crate) fn start_state(vs: &VirtualService, prior: &Carried, now: SystemTime) -> ServiceState {
    start(vs, prior, now).state
}

/// Where one service of the new configuration starts.
pub(crate) struct Start {
    pub state: ServiceState,
    /// Per real server, per check: up?
    pub checks_up: Vec<Vec<bool>>,
    pub dyn_weight: Vec<Option<u32>>,
    pub status: ServiceStatus,
    /// The carried quorum state (None: a new service).
    pub prior_quorum: Option<bool>,
    /// Per real server, its carried up state (None: a new server).
    pub prior_up: Vec<Option<bool>>,
}

/// The start state of `vs` given what `prior` carries (module docs).
pub(crate) fn start(vs: &VirtualService, prior: &Carried, now: SystemTime) -> Start {
    let (mut checks_up, mut dyn_weight, mut reals, mut prior_up) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for rs in &vs.reals {
        let Some(c) = prior.real(vs, rs) else {
            checks_up.push(rs.checks.iter().map(|ch| !ch.alpha).collect());
            dyn_weight.push(None);
            reals.push(fresh(rs, now));
            prior_up.push(None);
            continue;
        };
        // Identical checks keep their verdicts (each old check used once); others start
        // in the server's state, so the reload itself flips nothing.
        let mut used = vec![false; c.checks.len()];
        let ups: Vec<bool> = rs
            .checks
            .iter()
            .map(|ch| match c.checks.iter().enumerate().position(|(i, (o, _))| !used[i] && o == ch) {
                Some(i) => {
                    used[i] = true;
                    c.checks[i].1
                }
                None => c.status.up,
            })
            .collect();
        let kept_dynamic = rs.checks.iter().any(|ch| is_dynamic(ch) && c.checks.iter().any(|(o, _)| o == ch));
        let dynw = c.dyn_weight.filter(|_| kept_dynamic);
        let mut st = c.status.clone();
        st.port = rs.port;
        st.up = ups.iter().all(|u| *u);
        st.weight = dynw.unwrap_or(rs.weight);
        checks_up.push(ups);
        dyn_weight.push(dynw);
        reals.push(st);
        prior_up.push(Some(c.status.up));
    }
    let svc = prior.service(vs);
    let mut state = ServiceState {
        alive: reals.iter().map(|r| r.up).collect(),
        weight: reals.iter().map(|r| r.weight).collect(),
        quorum_up: svc.is_none_or(|s| s.quorum_up),
    };
    state.update_quorum(vs);
    let status = ServiceStatus {
        name: vs.name.clone(),
        quorum_up: state.quorum_up,
        live_weight: state.live_weight(),
        quorum_lost: svc.map_or(0, |s| s.quorum_lost),
        quorum_gained: svc.map_or(0, |s| s.quorum_gained),
        sorry_active: state.sorry_active(vs),
        reals,
    };
    Start { state, checks_up, dyn_weight, status, prior_quorum: svc.map(|s| s.quorum_up), prior_up }
}
