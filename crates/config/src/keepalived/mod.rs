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

pub use lexer::{Loader, Stmt};

/// Imports a keepalived.conf file (includes are relative to it).
pub fn import_file(path: &Path) -> Result<Config, ConfigError> {
    import_with(Loader::default(), path)
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
