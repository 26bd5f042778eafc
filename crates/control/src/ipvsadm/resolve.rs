//! Name lookups ipvsadm does: host and service names in arguments, and reverse
//! names in listings without `-n` (ipvsadm-cli.md §4 address rules, §7).
//!
//! A trait so tests run with fixed tables and never touch the system.

use crate::api::{IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP};
use std::net::{IpAddr, Ipv4Addr, ToSocketAddrs};

/// The four lookups ipvsadm makes (gethostbyname, getservbyname, gethostbyaddr,
/// getservbyport equivalents).
pub trait Resolver {
    /// First IPv4 address of a host name.
    fn host_addr(&self, name: &str) -> Option<Ipv4Addr>;
    /// Port of a service name for protocol `proto` (6/17/132).
    fn service_port(&self, name: &str, proto: u8) -> Option<u16>;
    /// Name of an address, if it has one.
    fn host_name(&self, addr: IpAddr) -> Option<String>;
    /// Service name of a port for protocol `proto`.
    fn service_name(&self, port: u16, proto: u8) -> Option<String>;
}

/// Resolves nothing: every lookup fails, so output is numeric.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoResolver;

impl Resolver for NoResolver {
    fn host_addr(&self, _: &str) -> Option<Ipv4Addr> {
        None
    }
    fn service_port(&self, _: &str, _: u8) -> Option<u16> {
        None
    }
    fn host_name(&self, _: IpAddr) -> Option<String> {
        None
    }
    fn service_name(&self, _: u16, _: u8) -> Option<String> {
        None
    }
}

fn proto_name(proto: u8) -> Option<&'static str> {
    match proto {
        IPPROTO_TCP => Some("tcp"),
        IPPROTO_UDP => Some("udp"),
        IPPROTO_SCTP => Some("sctp"),
        _ => None,
    }
}

/// One `/etc/services` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEntry {
    pub name: String,
    pub aliases: Vec<String>,
    pub port: u16,
    pub proto: String,
}

/// Parses `/etc/services` text (`name port/proto aliases... # comment`).
pub fn parse_services(text: &str) -> Vec<ServiceEntry> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split_whitespace();
        let (Some(name), Some(pp)) = (words.next(), words.next()) else {
            continue;
        };
        let Some((port, proto)) = pp.split_once('/') else {
            continue;
        };
        let Ok(port) = port.parse::<u16>() else {
            continue;
        };
        out.push(ServiceEntry {
            name: name.to_string(),
            aliases: words.map(str::to_string).collect(),
            port,
            proto: proto.to_string(),
        });
    }
    out
}

/// Parses `/etc/hosts` text into (address, canonical name, aliases).
pub fn parse_hosts(text: &str) -> Vec<(IpAddr, String, Vec<String>)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split_whitespace();
        let (Some(addr), Some(name)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(addr) = addr.parse::<IpAddr>() else {
            continue;
        };
        out.push((addr, name.to_string(), words.map(str::to_string).collect()));
    }
    out
}

/// Table-driven resolver over `/etc/services` and `/etc/hosts` contents; forward
/// host lookups may also use the system resolver (getaddrinfo).
#[derive(Debug, Default, Clone)]
pub struct TableResolver {
    pub services: Vec<ServiceEntry>,
    pub hosts: Vec<(IpAddr, String, Vec<String>)>,
    /// Ask the system resolver (DNS) for host names not in `hosts`.
    pub use_system_dns: bool,
}

impl TableResolver {
    /// Reads the system files; missing files just mean no names.
    pub fn system() -> Self {
        let services = std::fs::read_to_string("/etc/services").unwrap_or_default();
        let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
        TableResolver { services: parse_services(&services), hosts: parse_hosts(&hosts), use_system_dns: true }
    }
}

impl Resolver for TableResolver {
    fn host_addr(&self, name: &str) -> Option<Ipv4Addr> {
        for (addr, canon, aliases) in &self.hosts {
            if let IpAddr::V4(a) = addr
                && (canon == name || aliases.iter().any(|x| x == name))
            {
                return Some(*a);
            }
        }
        if !self.use_system_dns || name.is_empty() || name.contains(['/', ' ']) {
            return None;
        }
        (name, 0u16).to_socket_addrs().ok()?.find_map(|sa| match sa.ip() {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        })
    }

    fn service_port(&self, name: &str, proto: u8) -> Option<u16> {
        let p = proto_name(proto)?;
        self.services
            .iter()
            .find(|e| e.proto == p && (e.name == name || e.aliases.iter().any(|a| a == name)))
            .map(|e| e.port)
    }

    fn host_name(&self, addr: IpAddr) -> Option<String> {
        self.hosts.iter().find(|(a, _, _)| *a == addr).map(|(_, n, _)| n.clone())
    }

    fn service_name(&self, port: u16, proto: u8) -> Option<String> {
        let p = proto_name(proto)?;
        self.services.iter().find(|e| e.proto == p && e.port == port).map(|e| e.name.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_file() {
        let r = TableResolver {
            services: parse_services("# c\nhttp\t80/tcp\twww # web\ndomain 53/udp\nhttp-alt 8080/tcp webcache\n"),
            ..Default::default()
        };
        assert_eq!(r.service_port("www", IPPROTO_TCP), Some(80));
        assert_eq!(r.service_port("http", IPPROTO_UDP), None);
        assert_eq!(r.service_name(8080, IPPROTO_TCP).as_deref(), Some("http-alt"));
        assert_eq!(r.service_name(53, IPPROTO_UDP).as_deref(), Some("domain"));
        assert_eq!(r.service_name(53, 0), None);
    }

    #[test]
    fn hosts_file() {
        let r =
            TableResolver { hosts: parse_hosts("127.0.0.1 localhost lh\n::1 ip6-localhost\n"), ..Default::default() };
        assert_eq!(r.host_addr("lh"), Some(Ipv4Addr::LOCALHOST));
        assert_eq!(r.host_name("::1".parse().expect("v6")).as_deref(), Some("ip6-localhost"));
        assert_eq!(r.host_addr("nowhere"), None);
    }
}
