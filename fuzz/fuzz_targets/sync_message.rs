//! Connection sync datagrams: decoded as the kernel's backup decodes them, re-encoded, applied (crates/fuzz-targets/src).
//!
//! `cargo fuzz run sync_message -s none fuzz/corpus/sync_message fuzz/seeds/sync_message` (fuzz/README.md).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rvs_fuzz_targets::sync_message::run(data));
