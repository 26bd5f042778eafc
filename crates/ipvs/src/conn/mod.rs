//! Connection entries and the table that finds them from either direction
//! (lvs-semantics.md §7–§9).

mod entry;
mod table;

pub use entry::{Conn, ConnAddrs, ConnFlags};
pub use table::{ConnId, ConnTable, Direction, TableFull};
