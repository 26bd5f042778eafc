//! keepalived.conf block syntax: statements, blocks, comments, quotes, includes (crates/fuzz-targets/src).
//!
//! `cargo fuzz run keepalived_lexer -s none fuzz/corpus/keepalived_lexer fuzz/seeds/keepalived_lexer` (fuzz/README.md).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rvs_fuzz_targets::keepalived::lexer(data));
