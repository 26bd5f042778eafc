//! Any frame, on either leg, through the whole node path with IPVS services of every kind (crates/fuzz-targets/src).
//!
//! `cargo fuzz run node_path -s none fuzz/corpus/node_path fuzz/seeds/node_path` (fuzz/README.md).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rvs_fuzz_targets::node_path::run(data));
