//! The rvs node: what the kernel's IP layer is to IPVS. Interfaces, routes, neighbours, the
//! packet path with its netfilter hooks, io backends and workers.

pub mod io;
pub mod netlink;
