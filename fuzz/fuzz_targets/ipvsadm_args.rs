//! ipvsadm command lines and -R input, split and parsed as rvsadm does (crates/fuzz-targets/src).
//!
//! `cargo fuzz run ipvsadm_args -s none fuzz/corpus/ipvsadm_args fuzz/seeds/ipvsadm_args` (fuzz/README.md).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rvs_fuzz_targets::ipvsadm::run(data));
