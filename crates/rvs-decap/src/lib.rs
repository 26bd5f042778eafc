//! `rvs-decap`: the real-server side of LVS TUN forwarding for hosts whose
//! kernel has no `ipip` (or `fou`/`gre`) module. Tunnelled packets addressed to
//! the host are read from raw/UDP sockets, the outer headers are validated and
//! stripped ([`decap`], pure), and the inner IPv4 packet is written into a TUN
//! device, from which the local stack delivers it to the VIP on `lo`; the reply
//! goes straight to the client by normal routing (lvs-semantics.md §16, TUN).
//!
//! See README.md for the real-server setup (DR and TUN).

pub mod args;
pub mod craft;
pub mod decap;
pub mod run;
pub mod signal;
pub mod socket;
pub mod stats;
pub mod sys;
pub mod sysctl;
pub mod tun;

pub use decap::{DropReason, Encap, decapsulate};
pub use stats::Counters;
