//! The native TOML configuration: parse and validate any text; an accepted file is a table
//! ipvsadm reads back.

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(cfg) = rvs_config::native::parse(text, "fuzz.toml") {
        crate::save_lines_parse(&cfg);
    }
}
