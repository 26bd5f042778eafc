//! rvs configuration: the native TOML file (`native`), keepalived.conf import
//! (`keepalived`), both producing one model (`model::Config`), and the health
//! checkers that keep the IPVS table in line with the real servers (`health`).
//!
//! `Config::to_commands()` is the table as ipvsadm commands would build it and
//! `Config::save_lines()` the same table as `ipvsadm -S -n` prints it.

pub mod error;
pub mod health;
pub mod inherit;
pub mod keepalived;
pub mod model;
pub mod table;
pub mod validate;

pub use error::{ConfigError, Place, Warning};
pub use model::*;
pub use table::ServiceState;
pub mod native;
