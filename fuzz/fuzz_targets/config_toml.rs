//! The native TOML configuration; accepted files save as ipvsadm lines that parse (crates/fuzz-targets/src).
//!
//! `cargo fuzz run config_toml -s none fuzz/corpus/config_toml fuzz/seeds/config_toml` (fuzz/README.md).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rvs_fuzz_targets::config_toml::run(data));
