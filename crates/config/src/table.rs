//! From the configuration and the health state to the IPVS table: the one place
//! that decides which destinations are installed with which weight, used both for
//! the table at startup (`Config::to_commands`, `save_lines`) and by the checker
//! engine after every state change (keepalived.md §6 "Checker state machine",
//! "Quorum and sorry server").

use crate::health::Carried;
use crate::model::{Config, VirtualService};
use control::api::{Command, DestSpec, DestView, ServiceKey, ServiceSpec, ServiceView, Snapshot};
use control::ipvsadm::{resolve::NoResolver, save};
use std::net::IpAddr;

/// Health state of one virtual service: which real servers are alive, their current
/// weights (misc_dynamic changes them) and the quorum state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceState {
    pub alive: Vec<bool>,
    pub weight: Vec<u32>,
    pub quorum_up: bool,
}

impl ServiceState {
    /// The state at startup: servers are up unless a check has `alpha`; the quorum is
    /// then evaluated once (so a lost quorum installs the sorry server at once).
    pub fn initial(vs: &VirtualService) -> Self {
        let mut s = ServiceState {
            alive: vs.reals.iter().map(|r| !r.starts_down()).collect(),
            weight: vs.reals.iter().map(|r| r.weight).collect(),
            quorum_up: true,
        };
        s.update_quorum(vs);
        s
    }

    /// Sum of the weights of the live servers.
    pub fn live_weight(&self) -> u64 {
        self.alive.iter().zip(&self.weight).filter(|(a, _)| **a).map(|(_, w)| u64::from(*w)).sum()
    }

    /// keepalived's quorum rule with hysteresis: gained at W ≥ quorum + hysteresis, lost
    /// at W < quorum − hysteresis or W = 0. Returns the new state when it changed.
    pub fn update_quorum(&mut self, vs: &VirtualService) -> Option<bool> {
        let w = self.live_weight() as i64;
        let (q, h) = (i64::from(vs.quorum), i64::from(vs.hysteresis));
        if !self.quorum_up && (if w == 0 { q + h <= 0 } else { w >= q + h }) {
            self.quorum_up = true;
            return Some(true);
        }
        if self.quorum_up && (w == 0 || w < q - h) {
            self.quorum_up = false;
            return Some(false);
        }
        None
    }

    /// True when the sorry server replaces the real servers.
    pub fn sorry_active(&self, vs: &VirtualService) -> bool {
        !self.quorum_up && vs.sorry_server.is_some()
    }

    /// The destinations of IPVS service `key` in this state, in configuration order.
    /// A server that does not serve is absent, or has weight 0 with inhibit_on_failure.
    pub fn dests(&self, vs: &VirtualService, key: &ServiceKey) -> Vec<DestSpec> {
        let sorry = self.sorry_active(vs);
        let mut out = Vec::new();
        for (i, rs) in vs.reals.iter().enumerate() {
            let alive = self.alive.get(i).copied().unwrap_or(false);
            let weight = self.weight.get(i).copied().unwrap_or(rs.weight);
            if alive && !sorry {
                out.push(rs.dest_for(key, weight));
            } else if rs.inhibit_on_failure {
                out.push(rs.dest_for(key, 0));
            }
        }
        if let Some(s) = &vs.sorry_server {
            if sorry {
                out.push(s.server.dest_for(key, s.server.weight));
            } else if s.inhibit {
                out.push(s.server.dest_for(key, 0));
            }
        }
        out
    }
}

/// The commands that turn `old` into `new` for service `key`: deletions first, then
/// weight edits, then additions (keepalived removes before it adds).
pub fn diff(key: &ServiceKey, old: &[DestSpec], new: &[DestSpec]) -> Vec<Command> {
    let id = |d: &DestSpec| -> (IpAddr, u16) { (d.addr, d.port) };
    let mut cmds = Vec::new();
    for o in old {
        if !new.iter().any(|n| id(n) == id(o)) {
            cmds.push(Command::DeleteDest(*key, o.addr, o.port));
        }
    }
    for n in new {
        if let Some(o) = old.iter().find(|o| id(o) == id(n))
            && o != n
        {
            cmds.push(Command::EditDest(*key, n.clone()));
        }
    }
    for n in new {
        if !old.iter().any(|o| id(o) == id(n)) {
            cmds.push(Command::AddDest(*key, n.clone()));
        }
    }
    cmds
}

impl Config {
    /// The health state of every service at startup.
    pub fn initial_states(&self) -> Vec<ServiceState> {
        self.services.iter().map(ServiceState::initial).collect()
    }

    /// The health state of every service when this configuration's checkers start from
    /// `prior`, the state of the previous engine (a reload; `health::Carried`): kept real
    /// servers keep their state, new ones start as at startup. With nothing carried, this
    /// is `initial_states()`.
    pub fn states_after(&self, prior: &Carried) -> Vec<ServiceState> {
        let now = std::time::SystemTime::now();
        self.services.iter().map(|vs| crate::health::start_state(vs, prior, now)).collect()
    }

    /// The IPVS table at startup: every service with its installed destinations.
    pub fn initial_table(&self) -> Vec<(ServiceSpec, Vec<DestSpec>)> {
        self.table_after(&Carried::default())
    }

    /// The IPVS table that `health::Engine::start_with(self, _, prior)` assumes installed:
    /// what a reload installs, so that no kept server flips.
    pub fn table_after(&self, prior: &Carried) -> Vec<(ServiceSpec, Vec<DestSpec>)> {
        let mut out = Vec::new();
        for (vs, st) in self.services.iter().zip(self.states_after(prior)) {
            for key in &vs.keys {
                out.push((vs.spec(key), st.dests(vs, key)));
            }
        }
        out
    }

    /// The table as ipvsadm commands would build it: `-C` (keepalived `lvs_flush`),
    /// `--set`, `--start-daemon`, then `-A` and `-a` for every service and destination.
    /// Daemons bound to a VRRP instance (`instance_daemons`) are not here: their role is
    /// decided by the instance's state when rvsd starts them.
    pub fn to_commands(&self) -> Vec<Command> {
        let mut cmds = Vec::new();
        if self.flush_on_start {
            cmds.push(Command::Clear);
        }
        if let Some(t) = self.timeouts.set_command() {
            cmds.push(Command::SetTimeouts(t));
        }
        cmds.extend(self.sync_daemons.iter().cloned().map(Command::StartDaemon));
        for (spec, dests) in self.initial_table() {
            let key = spec.key;
            cmds.push(Command::AddService(spec));
            cmds.extend(dests.into_iter().map(|d| Command::AddDest(key, d)));
        }
        cmds
    }

    /// The startup table as a daemon snapshot (kernel order: dests newest first).
    pub fn snapshot(&self) -> Snapshot {
        let services = self
            .initial_table()
            .into_iter()
            .map(|(spec, dests)| ServiceView {
                spec,
                stats: Default::default(),
                rates: Default::default(),
                dests: dests
                    .into_iter()
                    .rev()
                    .map(|spec| DestView {
                        spec,
                        active: 0,
                        inactive: 0,
                        persistent: 0,
                        stats: Default::default(),
                        rates: Default::default(),
                    })
                    .collect(),
            })
            .collect();
        let t = self.timeouts.set_command().unwrap_or_default();
        Snapshot { version: "1.2.1".into(), conn_tab_size: 4096, services, timeouts: t, daemons: Vec::new() }
    }

    /// The startup table exactly as `ipvsadm -S -n` prints it (ipvsadm-cli.md §9.8).
    pub fn save_lines(&self) -> Vec<String> {
        save::save(&self.snapshot(), true, &NoResolver).lines().map(str::to_owned).collect()
    }
}
