//! The IPVS engine: services, dests, schedulers, the connection table, protocol state machines
//! and transmitters, registered on the netfilter hooks as the kernel registers IPVS.

pub mod conn;
pub mod ctx;
pub mod defense;
pub mod dest;
pub mod fastpath;
pub mod fwmark;
pub mod hooks;
mod icmp;
pub mod ipvs;
pub mod packet;
pub mod pe_sip;
pub mod proto;
pub mod restore;
pub mod sched;
mod schedule;
pub mod service;
pub mod shardmap;
pub mod stats;
pub mod sync;
mod synproxy;
pub mod sysctl;
pub mod worker;
mod xmit;

pub use ctx::{IpvsContext, RouteTo, RouteV4, Routing};
pub use dest::{Dest, DestConfig, ForwardMethod, TunnelCsum, TunnelType};
pub use ipvs::{AdminError, Ipvs};
pub use sched::{SchedFlags, SchedInput, Scheduler};
pub use service::{PersistenceEngine, Service, ServiceConfig, ServiceKey, ServiceTable};
pub use stats::{Counters, Stats};
pub use worker::Worker;
