//! rvs's AF_XDP data path: the XDP steering program (kernel side, `bpf/steer.bpf.c`), its
//! loader and maps, AF_XDP sockets over `libc`, and the worker loop that runs the node over
//! them (crate README).

pub mod csum;
pub mod handoff;
pub mod maps;
pub mod neigh;
pub mod program;
pub mod sys;
pub mod worker;
pub mod xsk;

pub use maps::{MapDiff, SteerMaps, SteerModel};
pub use program::{AttachMode, ProgramStats, Steering};
