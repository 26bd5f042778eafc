//! `rvsd --check` (`keepalived -t`): reads the configuration file as the daemon would at
//! start, runs every check the daemon runs before installing it — the file's own
//! validation, the conversion to the engine's types and the engine's own checks (address
//! families, schedulers, forwarding methods, persistence, thresholds) on a scratch engine —
//! and reports every warning and error with its file and line. Nothing is opened but the
//! file: no socket, no interface, no root.

use std::path::Path;

use rvs_config::health::Carried;
use rvs_config::{Config, ConfigError};

use crate::args::ConfigFormat;
use crate::cfgload;

/// Exit status when the configuration cannot be used (keepalived -t's "configuration
/// cannot be run").
pub const EXIT_UNUSABLE: u8 = 3;

/// What a check found: the lines to print and the exit status.
#[derive(Debug, Default)]
pub struct Report {
    pub warnings: Vec<String>,
    pub errors: Vec<String>,
    pub services: usize,
    pub checks: usize,
}

impl Report {
    pub fn exit_code(&self) -> u8 {
        if self.errors.is_empty() { 0 } else { EXIT_UNUSABLE }
    }

    /// The report as printed: one line per warning and error, then a summary.
    pub fn render(&self, file: &Path) -> String {
        let mut out = String::new();
        for w in &self.warnings {
            out.push_str(&format!("warning: {w}\n"));
        }
        for e in &self.errors {
            out.push_str(&format!("error: {e}\n"));
        }
        let n = |k: usize, what: &str| format!("{k} {what}{}", if k == 1 { "" } else { "s" });
        let warnings = n(self.warnings.len(), "warning");
        if self.errors.is_empty() {
            let (services, checks) = (n(self.services, "service"), n(self.checks, "health check"));
            out.push_str(&format!("{}: configuration OK: {services}, {checks}, {warnings}\n", file.display()));
        } else {
            let errors = n(self.errors.len(), "error");
            out.push_str(&format!("{}: configuration cannot be used: {errors}, {warnings}\n", file.display()));
        }
        out
    }
}

/// Reads the file: every error the reader can report (keepalived files: each failing
/// top-level block; native files: each failing `[[services]]`, `[[fwmark]]` or
/// `[[interfaces]]` entry, else the first), and the warnings.
fn read(format: ConfigFormat, path: &Path, config_id: Option<&str>, r: &mut Report) -> Option<Config> {
    match format {
        ConfigFormat::Native => {
            let text = match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(e) => {
                    r.errors.push(format!("{}: {e}", path.display()));
                    return None;
                }
            };
            let (cfg, errors) = rvs_config::native::parse_all(&text, &path.display().to_string());
            r.errors.extend(errors.iter().map(ConfigError::to_string));
            if let Some(c) = &cfg {
                r.warnings.extend(cfgload::warnings(c));
            }
            cfg
        }
        ConfigFormat::Keepalived => {
            let mut loader = rvs_config::keepalived::Loader::default();
            if let Some(id) = config_id {
                loader.config_id = Some(id.to_owned());
            }
            let c = rvs_config::keepalived::check_with(loader, path);
            r.warnings.extend(c.warnings.iter().map(ConfigError::to_string));
            r.errors.extend(c.errors.iter().map(ConfigError::to_string));
            c.config
        }
    }
}

/// The engine's checks, service by service so that each error names its service's place,
/// then on the whole table (what only shows across services).
fn engine_checks(cfg: &Config, r: &mut Report) {
    let none = Carried::default();
    let mut each_ok = true;
    for vs in &cfg.services {
        let one = Config { services: vec![vs.clone()], fwmark_rules: Vec::new(), ..cfg.clone() };
        if let Err(e) = cfgload::plan(&one, &none).and_then(|p| cfgload::validate(&p)) {
            each_ok = false;
            let place = if vs.place.file.is_empty() { vs.name.clone() } else { vs.place.to_string() };
            r.errors.push(format!("{place}: {}", e.message));
        }
    }
    if each_ok {
        match cfgload::plan(cfg, &none).and_then(|p| cfgload::validate(&p).map(|()| p)) {
            Ok(p) => r.services = p.table.len(),
            Err(e) => r.errors.push(e.message),
        }
    }
    r.checks = cfgload::check_count(cfg);
}

/// Files the checkers will need (MISC_CHECK programs, TLS files): missing ones are warned
/// about, as keepalived -t does, since the file may appear before the daemon starts.
fn file_checks(cfg: &Config, r: &mut Report) {
    let mut seen = std::collections::BTreeSet::new();
    for vs in &cfg.services {
        for rs in &vs.reals {
            for c in &rs.checks {
                if let rvs_config::CheckKind::Misc(m) = &c.kind
                    && let Some(prog) = m.path.split_whitespace().next()
                    && prog.starts_with('/')
                    && seen.insert(prog.to_owned())
                    && !Path::new(prog).is_file()
                {
                    r.warnings.push(format!("{}: MISC_CHECK program {prog} does not exist", vs.place));
                }
                if let Some(t) = &c.tls {
                    let mut all = true;
                    for f in [&t.ca, &t.certificate, &t.key].into_iter().flatten() {
                        let exists = Path::new(f).is_file();
                        all &= exists;
                        if seen.insert(f.clone()) && !exists {
                            r.warnings.push(format!("{}: SSL file {f} does not exist", vs.place));
                        }
                    }
                    // Files that exist are loaded as the checker will load them.
                    if all
                        && let Err(e) = rvs_config::health::check_tls_files(t)
                        && seen.insert(e.clone())
                    {
                        r.warnings.push(format!("{}: {e}", vs.place));
                    }
                }
            }
        }
    }
}

/// Checks `path` as the daemon would load it.
pub fn check(format: ConfigFormat, path: &Path, config_id: Option<&str>) -> Report {
    let mut r = Report::default();
    if let Some(cfg) = read(format, path, config_id, &mut r) {
        engine_checks(&cfg, &mut r);
        file_checks(&cfg, &mut r);
    }
    r
}
