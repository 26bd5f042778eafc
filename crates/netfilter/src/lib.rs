//! A netfilter-style hook framework (the seed's `nf_hooks[pf][hooknum]`, `nf_hook_ops`,
//! `nf_register_hook`): families × hook points, each a chain of registered functions ordered by
//! priority, returning verdicts.
//!
//! Traversal never takes a lock: each chain is an immutable, priority-sorted array published
//! with `arc_swap` (RCU-style). Registration builds a new array and swaps it in, so packets that
//! are already walking the old chain finish on it.

mod chain;
mod family;
pub mod priority;
mod skb;
mod verdict;

pub use chain::{Hook, HookHandle, HookOps, Hooks, Traversal};
pub use family::{Family, HookPoint};
pub use skb::{CsumState, DropReason, Output, PktType, Route, RouteKind, Skb};
pub use verdict::Verdict;
