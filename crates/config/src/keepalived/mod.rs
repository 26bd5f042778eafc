//! keepalived.conf import (keepalived.md): the LVS subset — `global_defs` LVS keys,
//! `virtual_server_group`, `virtual_server`, `real_server` and the checkers — into
//! the same `Config` as the native file. keepalived's defaults and "warn and fix"
//! validation are reproduced (keepalived.md §4, §7): NAT, wlc and UDP by default,
//! port-0 services made persistent, `ops` cleared on non-UDP services, DR/TUN ports
//! reset... Each fix, unsupported keyword and ignored block is a warning with its file
//! and line; values that cannot be understood are errors.

pub mod lexer;
mod parse;

use crate::error::ConfigError;
use crate::model::Config;
use std::path::Path;

pub use lexer::{Loader, Stmt, conditional, default_config_id};

/// Imports a keepalived.conf file (includes are relative to it), with the host's default
/// config id for `@ID` lines.
pub fn import_file(path: &Path) -> Result<Config, ConfigError> {
    import_with(Loader::default(), path)
}

/// Imports a keepalived.conf file with `config_id` for its conditional lines (`keepalived
/// -i ID`; `None`: the host name's first label, as keepalived).
pub fn import_file_as(path: &Path, config_id: Option<&str>) -> Result<Config, ConfigError> {
    let mut loader = Loader::default();
    if let Some(id) = config_id {
        loader.config_id = Some(id.to_owned());
    }
    import_with(loader, path)
}

/// Everything a check of a file finds (`rvsd --check`): every error (each failing top-level
/// block is reported and left out), every warning, and the configuration when there was no
/// error.
#[derive(Debug, Default)]
pub struct Checked {
    pub config: Option<Config>,
    pub warnings: Vec<crate::error::Warning>,
    pub errors: Vec<ConfigError>,
}

/// Reads `path` with `loader` and keeps going after an error, so one run names them all.
pub fn check_with(mut loader: Loader, path: &Path) -> Checked {
    let stmts = match loader.load(path) {
        Ok(s) => s,
        Err(e) => return Checked { config: None, warnings: loader.warnings, errors: vec![e] },
    };
    let mut errors = Vec::new();
    let cfg = match parse::Importer::default().run_collecting(&stmts, &mut errors) {
        Ok(c) => Some(c),
        Err(e) => {
            errors.push(e);
            None
        }
    };
    let mut warnings = loader.warnings;
    let config = cfg.map(|mut c| {
        warnings.append(&mut c.warnings);
        c
    });
    Checked { config: if errors.is_empty() { config } else { None }, warnings, errors }
}

/// Imports with a custom file reader (tests, or configurations held in memory).
pub fn import_with(mut loader: Loader, path: &Path) -> Result<Config, ConfigError> {
    let stmts = loader.load(path)?;
    let mut cfg = parse::Importer::default().run(&stmts)?;
    let mut warnings = loader.warnings;
    warnings.append(&mut cfg.warnings);
    cfg.warnings = warnings;
    Ok(cfg)
}

/// Imports configuration text named `file_name`; includes are relative to the
/// directory of `file_name`.
pub fn import_str(text: &str, file_name: &str) -> Result<Config, ConfigError> {
    let mut loader = Loader::default();
    let dir = Path::new(file_name).parent().map(Path::to_path_buf);
    let stmts = loader.parse(text, file_name, dir)?;
    let mut cfg = parse::Importer::default().run(&stmts)?;
    let mut warnings = loader.warnings;
    warnings.append(&mut cfg.warnings);
    cfg.warnings = warnings;
    Ok(cfg)
}

#[cfg(test)]
mod tests;
