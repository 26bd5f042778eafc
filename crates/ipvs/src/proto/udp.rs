//! UDP: one state, NORMAL, printed as "UDP" (lvs-semantics.md §12).

pub const NORMAL: u8 = 0;
pub const NAME: &str = "UDP";
pub const DEFAULT_TIMEOUT: u32 = 300;
