//! Control API requests: HTTP head and body, JSON bodies (round trip), listing filters (crates/fuzz-targets/src).
//!
//! `cargo fuzz run api_request -s none fuzz/corpus/api_request fuzz/seeds/api_request` (fuzz/README.md).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rvs_fuzz_targets::api::run(data));
