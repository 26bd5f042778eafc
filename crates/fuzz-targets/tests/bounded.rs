//! A bounded fuzz run of every target (stable Rust, no coverage feedback): the seed corpus in
//! fuzz/seeds/<target>/, then random mutations for RVS_FUZZ_SECS seconds per target (default
//! 2; CI runs longer, scripts/test.sh) or RVS_FUZZ_EXECS executions. RVS_FUZZ_SEED repeats a
//! run. A failing input is written to target/fuzz-failures/ and named in the failure.

use std::time::Duration;

use rvs_fuzz_targets::{TARGETS, harness};

fn env_num(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn bounded(target: &str) {
    let (name, f) = *TARGETS.iter().find(|(n, _)| *n == target).expect("a known target");
    let seeds = harness::load_corpus(&harness::corpus_dir(name));
    assert!(seeds.len() >= 5, "{name}: only {} seeds in {}", seeds.len(), harness::corpus_dir(name).display());
    let secs = env_num("RVS_FUZZ_SECS").unwrap_or(2);
    let max_execs = env_num("RVS_FUZZ_EXECS").unwrap_or(u64::MAX);
    let seed = env_num("RVS_FUZZ_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
    });
    let r = harness::run(name, f, &seeds, seed, Duration::from_secs(secs), max_execs);
    println!(
        "fuzz {name}: {} seeds, {} executions in {:.1} s ({:.0}/s), RVS_FUZZ_SEED={seed}",
        r.seeds,
        r.execs,
        r.elapsed.as_secs_f64(),
        r.per_sec()
    );
    if let Some((input, path)) = r.failure {
        panic!(
            "fuzz {name}: input {} bytes panicked, saved to {} (RVS_FUZZ_SEED={seed}); first bytes {:02x?}",
            input.len(),
            path.display(),
            &input[..input.len().min(64)]
        );
    }
}

#[test]
fn node_path() {
    bounded("node_path");
}

#[test]
fn keepalived_lexer() {
    bounded("keepalived_lexer");
}

#[test]
fn keepalived() {
    bounded("keepalived");
}

#[test]
fn config_toml() {
    bounded("config_toml");
}

#[test]
fn ipvsadm_args() {
    bounded("ipvsadm_args");
}

#[test]
fn api_request() {
    bounded("api_request");
}

#[test]
fn sync_message() {
    bounded("sync_message");
}

#[test]
fn every_target_has_a_test_here() {
    let src = include_str!("bounded.rs");
    for (name, _) in TARGETS {
        assert!(src.contains(&format!("bounded(\"{name}\")")), "{name} is not run by this file");
    }
}
