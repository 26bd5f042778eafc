//! ipvsadm compatibility: argument parsing, listings, save and restore, exactly as
//! ipvsadm 1.31 does them (reference: ipvsadm-cli.md). Pure library code; the
//! daemon is reached through the `run::Backend` trait.

pub mod args;
pub mod format;
pub mod numbers;
pub mod popt;
pub mod resolve;
pub mod restore;
pub mod run;
pub mod save;
pub mod sort;

#[cfg(test)]
mod tests;
