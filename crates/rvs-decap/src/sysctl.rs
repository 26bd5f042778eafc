//! The per-device sysctls the decapsulator touches. Reverse-path filtering
//! applies to the device a packet arrives on (the TUN device here), and the
//! kernel uses max(conf/all, conf/<dev>): strict mode (1) on either drops the
//! inner packets, since the route back to the client does not go through the
//! TUN device (lvs-semantics.md §16: "rp_filter relaxed").

use std::io;

fn path(family: &str, dev: &str, name: &str) -> String {
    format!("/proc/sys/net/{family}/conf/{dev}/{name}")
}

pub fn read_ipv4(dev: &str, name: &str) -> io::Result<i64> {
    let s = std::fs::read_to_string(path("ipv4", dev, name))?;
    s.trim().parse().map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("unexpected value '{}'", s.trim())))
}

pub fn write_ipv4(dev: &str, name: &str, value: i64) -> io::Result<()> {
    std::fs::write(path("ipv4", dev, name), format!("{value}\n"))
}

/// IPv6 on the TUN device would only queue router solicitations nobody reads.
pub fn disable_ipv6(dev: &str) -> io::Result<()> {
    std::fs::write(path("ipv6", dev, "disable_ipv6"), "1\n")
}

/// The effective rp_filter mode for packets arriving on `dev`.
pub fn effective_rp_filter(dev: &str) -> io::Result<i64> {
    Ok(read_ipv4("all", "rp_filter")?.max(read_ipv4(dev, "rp_filter")?))
}
