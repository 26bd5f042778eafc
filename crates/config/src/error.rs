//! Errors and warnings that point at the place in the file they come from, so an
//! operator can fix a configuration without guessing (`rvs.toml:12: services[0].scheduler: …`).

use std::fmt;

/// Where a value came from: file, 1-based line, and the field path (`services[0].scheduler`
/// for the native file, the keyword for keepalived.conf).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Place {
    pub file: String,
    pub line: usize,
    pub field: String,
}

impl Place {
    pub fn new(file: impl Into<String>, line: usize, field: impl Into<String>) -> Self {
        Place { file: file.into(), line, field: field.into() }
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)?;
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        Ok(())
    }
}

/// A configuration that cannot be used. Displayed as `file:line: field: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub place: Place,
    pub message: String,
}

impl ConfigError {
    pub fn new(place: Place, message: impl Into<String>) -> Self {
        ConfigError { place, message: message.into() }
    }
    pub fn at(file: &str, line: usize, field: &str, message: impl Into<String>) -> Self {
        ConfigError::new(Place::new(file, line, field), message)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.place, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Something accepted but changed, defaulted or ignored (keepalived "warn and fix").
/// Same shape and display as an error.
pub type Warning = ConfigError;
