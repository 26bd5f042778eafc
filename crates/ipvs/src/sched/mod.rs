//! Schedulers: one file each, behind one trait (reference/lvs-semantics.md §15).
//!
//! A scheduler instance belongs to one service and lives as long as the service, across
//! snapshots. The control plane calls [`Scheduler::update`] after every add, delete or edit of a
//! dest (single writer); workers call [`Scheduler::schedule`] for new connections only.

use std::net::IpAddr;
use std::sync::Arc;

use crate::dest::Dest;

mod cache;
pub mod clock;
pub mod hash;
mod load;

pub mod dh;
pub mod fo;
pub mod lblc;
pub mod lblcr;
pub mod lc;
pub mod mh;
pub mod nq;
pub mod ovf;
pub mod rr;
pub mod sed;
pub mod sh;
pub mod twos;
pub mod wlc;
pub mod wrr;

pub use cache::DEFAULT_EXPIRATION;
pub use clock::{Clock, ManualClock, MonotonicClock};

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
    /// The most dests the scheduler can serve; adding beyond it must be refused (EINVAL), as
    /// the kernel refuses more than M dests for mh. `None` = no limit.
    fn max_dests(&self) -> Option<usize> {
        None
    }
}

/// Every scheduler name rvs knows, as ipvsadm spells them.
pub const NAMES: &[&str] =
    &["rr", "wrr", "lc", "wlc", "sed", "nq", "fo", "ovf", "lblc", "lblcr", "dh", "sh", "mh", "twos"];

/// Build a scheduler by name. `None` for an unknown name (ipvsadm: "Scheduler or persistence
/// engine not found").
pub fn new_scheduler(name: &str, flags: SchedFlags) -> Option<Arc<dyn Scheduler>> {
    Some(match name {
        "rr" => Arc::new(rr::Rr::new()),
        "wrr" => Arc::new(wrr::Wrr::new()),
        "lc" => Arc::new(lc::Lc),
        "wlc" => Arc::new(wlc::Wlc),
        "sed" => Arc::new(sed::Sed),
        "nq" => Arc::new(nq::Nq),
        "fo" => Arc::new(fo::Fo),
        "ovf" => Arc::new(ovf::Ovf),
        "lblc" => Arc::new(lblc::Lblc::new()),
        "lblcr" => Arc::new(lblcr::Lblcr::new()),
        "dh" => Arc::new(dh::Dh::new()),
        "sh" => Arc::new(sh::Sh::new(flags)),
        "mh" => Arc::new(mh::Mh::new(flags)),
        "twos" => Arc::new(twos::Twos::new()),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::load::testutil::*;

    #[test]
    fn knows_every_name_and_only_those() {
        for name in NAMES {
            let s = new_scheduler(name, SchedFlags::default()).expect(name);
            assert_eq!(s.name(), *name);
        }
        for bad in ["", "RR", "wlc ", "maglev", "sip"] {
            assert!(new_scheduler(bad, SchedFlags::default()).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn every_scheduler_common_rules() {
        // Empty → None; weight 0 and OVERLOAD dests are never chosen.
        for name in NAMES {
            let flags = SchedFlags::default();
            let s = new_scheduler(name, flags).expect(name);
            s.update(&[]);
            assert!(s.schedule(&[], &any_pkt()).is_none(), "{name}: empty");
            let list = vec![dest(1, 0), dest(2, 3), dest(3, 1), dest(4, 2)];
            list[1].set_overloaded(true);
            s.update(&list);
            for i in 0..200u32 {
                let p = pkt(&format!("198.51.{}.{}", i / 250, i % 250), i as u16, "10.0.0.100");
                if let Some(d) = s.schedule(&list, &p) {
                    let k = pos(&list, &d);
                    assert!(k == 2 || k == 3, "{name}: picked {k}");
                }
            }
            for d in &list[2..] {
                d.set_overloaded(true);
            }
            // A fresh destination address: an lblc cache hit is not checked for OVERLOAD in
            // the kernel (see lblc.rs), a miss is.
            let fresh = pkt("198.51.100.7", 1, "10.0.0.200");
            assert!(s.schedule(&list, &fresh).is_none(), "{name}: all overloaded");
        }
    }
}
