//! The fuzz targets of rvs, one function per input surface, shared by the cargo-fuzz binaries
//! (`fuzz/fuzz_targets/*.rs`, libFuzzer) and the stable-Rust harness ([`harness`], run by
//! `cargo test -p rvs-fuzz-targets`) so both exercise the same code with the same checks.
//!
//! A target takes any bytes, must not panic, and asserts what must hold for every input.
//! Seeds: `fuzz/seeds/<target>/` (fuzz/README.md).

pub mod api;
pub mod config_toml;
pub mod harness;
pub mod ipvsadm;
pub mod keepalived;
pub mod node_path;
pub mod sync_message;

/// A target: any bytes in, a panic on a broken invariant.
pub type Target = fn(&[u8]);

/// Every target by its name (the seed folder fuzz/seeds/NAME and the cargo-fuzz binary share it).
pub const TARGETS: &[(&str, Target)] = &[
    ("node_path", node_path::run),
    ("keepalived_lexer", keepalived::lexer),
    ("keepalived", keepalived::import),
    ("config_toml", config_toml::run),
    ("ipvsadm_args", ipvsadm::run),
    ("api_request", api::run),
    ("sync_message", sync_message::run),
];

/// The table a parsed configuration describes, as `ipvsadm -S -n` lines, must read back as
/// ipvsadm commands: what rvs prints, rvs (and ipvsadm -R) accepts.
pub(crate) fn save_lines_parse(cfg: &rvs_config::Config) {
    let _ = cfg.to_commands();
    for line in cfg.save_lines() {
        let argv = control::ipvsadm::restore::line_to_argv("ipvsadm", &line);
        let parsed = control::ipvsadm::args::parse(&argv, true, &control::ipvsadm::resolve::NoResolver);
        assert!(parsed.is_ok(), "saved line {line:?} does not parse back: {parsed:?}");
    }
}
