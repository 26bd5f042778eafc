//! The IPVS engine: services, dests, schedulers, the connection table, protocol state machines
//! and transmitters, registered on the netfilter hooks as the kernel registers IPVS.

pub mod dest;
pub mod sched;
pub mod stats;

pub use dest::{Dest, DestConfig, ForwardMethod, TunnelCsum, TunnelType};
pub use sched::{SchedFlags, SchedInput, Scheduler};
pub use stats::{Counters, Stats};
