//! keepalived.conf import: lexer, parser, validation; accepted files save as ipvsadm lines that parse (crates/fuzz-targets/src).
//!
//! `cargo fuzz run keepalived -s none fuzz/corpus/keepalived fuzz/seeds/keepalived` (fuzz/README.md).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rvs_fuzz_targets::keepalived::import(data));
