//! The rvs node: what the kernel's IP layer is to IPVS. Interfaces, routes, neighbours, the
//! packet path with its netfilter hooks, io backends and workers.

pub mod announce;
pub mod counters;
pub mod io;
pub mod ndp;
pub mod neighq;
pub mod net;
pub mod netlink;
pub mod path;
mod shortcut;
pub mod worker;

pub use net::{Interface, NetState, RouteEntry};
pub use path::{Action, Node};
pub use worker::WorkerCtx;
