//! Schedulers: one file each, behind one trait (reference/lvs-semantics.md §15).
//!
//! A scheduler instance belongs to one service and lives as long as the service, across
//! snapshots. The control plane calls [`Scheduler::update`] after every add, delete or edit of a
//! dest (single writer); workers call [`Scheduler::schedule`] for new connections only.

use std::net::IpAddr;
use std::sync::Arc;

use crate::dest::Dest;

/// What a scheduler may look at in the packet that opens a connection.
#[derive(Clone, Copy, Debug)]
pub struct SchedInput {
    pub proto: u8,
    pub saddr: IpAddr,
    pub sport: u16,
    pub daddr: IpAddr,
    pub dport: u16,
}

/// Scheduler flags (`-b`; service flags SCHED1/2/3, §7).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedFlags {
    /// flag-1: sh-fallback / mh-fallback.
    pub flag1: bool,
    /// flag-2: sh-port / mh-port.
    pub flag2: bool,
    /// flag-3.
    pub flag3: bool,
}

pub trait Scheduler: Send + Sync + std::fmt::Debug {
    /// The ipvsadm name (`rr`, `wlc`, ...).
    fn name(&self) -> &'static str;
    /// The dest list changed (add, delete, edit). `dests` is in kernel order: newest first.
    fn update(&self, dests: &[Arc<Dest>]);
    /// Pick a dest for a new connection; `None` is "no destination available".
    fn schedule(&self, dests: &[Arc<Dest>], pkt: &SchedInput) -> Option<Arc<Dest>>;
}

/// Every scheduler name rvs knows, as ipvsadm spells them.
pub const NAMES: &[&str] = &[
    "rr", "wrr", "lc", "wlc", "sed", "nq", "fo", "ovf", "lblc", "lblcr", "dh", "sh", "mh", "twos",
];

/// Build a scheduler by name. `None` for an unknown name (ipvsadm: "Scheduler or persistence
/// engine not found").
pub fn new_scheduler(name: &str, flags: SchedFlags) -> Option<Arc<dyn Scheduler>> {
    let _ = flags;
    let _ = name;
    None
}
