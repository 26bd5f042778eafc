//! What the steering program's maps should hold, computed from the published service table,
//! the firewall-mark rules and the node's own addresses. Layouts match `bpf/steer.bpf.c`:
//! addresses as 16 bytes (IPv4 as `::ffff:a.b.c.d`), ports in network byte order.

use std::collections::HashSet;
use std::net::IpAddr;

use ipvs::dest::{ForwardMethod, TunnelType};
use ipvs::fwmark::FwmarkRule;
use ipvs::{ServiceKey, ServiceTable};

/// `struct svc_key`: a service (address, protocol, port) or a real server's.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SvcKey {
    pub addr: [u8; 16],
    pub proto: u8,
    pub pad: u8,
    /// Network byte order; 0 = any.
    pub port: u16,
}

// SAFETY: repr(C), no padding bytes left uninitialised (explicit `pad`), plain integers.
unsafe impl aya::Pod for SvcKey {}

/// `struct addr_key`.
pub type AddrKey = [u8; 16];

/// The 16-byte form of an address.
pub fn addr16(a: &IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(v) => v.to_ipv6_mapped().octets(),
        IpAddr::V6(v) => v.octets(),
    }
}

impl SvcKey {
    pub fn new(addr: &IpAddr, proto: u8, port: u16) -> Self {
        SvcKey { addr: addr16(addr), proto, pad: 0, port: port.to_be() }
    }
}

/// Desired contents of the maps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SteerMaps {
    /// Address services (port 0 = any).
    pub services: HashSet<SvcKey>,
    /// Every VIP address (ARP/ND answers, and any frame to it the kernel does not own).
    pub vip_addrs: HashSet<AddrKey>,
    /// Real servers whose replies rvs rewrites (NAT), and tunnel endpoints (ICMP errors
    /// about tunnelled packets).
    pub reals: HashSet<SvcKey>,
    /// The director's own addresses: frames to them stay with the kernel unless they are
    /// for a service.
    pub locals: HashSet<AddrKey>,
    /// Firewall-mark rules' destination prefixes (16-byte address, prefix length).
    pub prefixes: HashSet<([u8; 16], u8)>,
}

const TCP: u8 = 6;
const UDP: u8 = 17;
const SCTP: u8 = 132;

impl SteerMaps {
    /// The maps for a service table and classifier rules, plus `extra` services about to be
    /// published (so their first packets are already steered).
    pub fn of(table: &ServiceTable, rules: &[FwmarkRule], extra: &[ServiceKey], locals: &[IpAddr]) -> Self {
        let mut m = SteerMaps::default();
        let add_service = |m: &mut SteerMaps, key: &ServiceKey| {
            if let ServiceKey::Addr { protocol, addr, port } = key {
                m.services.insert(SvcKey::new(addr, *protocol, *port));
                m.vip_addrs.insert(addr16(addr));
            }
        };
        for k in extra {
            add_service(&mut m, k);
        }
        for s in table.iter() {
            add_service(&mut m, &s.config.key);
            let one;
            let protos: &[u8] = match s.config.key {
                ServiceKey::Addr { protocol, .. } => {
                    one = [protocol];
                    &one
                }
                // A fwmark service carries any protocol.
                ServiceKey::Fwmark { .. } => &[TCP, UDP, SCTP],
            };
            for d in &s.dests {
                match d.method() {
                    ForwardMethod::Masq => {
                        for &p in protos {
                            m.reals.insert(SvcKey::new(&d.addr, p, d.port));
                        }
                    }
                    ForwardMethod::Tunnel => {
                        let (t, _, port) = d.tunnel();
                        let (p, port) = match (t, d.addr) {
                            (TunnelType::Gue, _) => (UDP, port),
                            (TunnelType::Gre, _) => (47, 0),
                            (TunnelType::Ipip, IpAddr::V4(_)) => (4, 0),
                            (TunnelType::Ipip, IpAddr::V6(_)) => (41, 0),
                        };
                        m.reals.insert(SvcKey::new(&d.addr, p, port));
                    }
                    _ => {}
                }
            }
        }
        for r in rules {
            let (a, len) = match r.daddr {
                IpAddr::V4(_) => (addr16(&r.daddr), r.dprefix.min(32) + 96),
                IpAddr::V6(_) => (addr16(&r.daddr), r.dprefix.min(128)),
            };
            m.prefixes.insert((mask(a, len), len));
        }
        m.locals = locals.iter().map(addr16).collect();
        m
    }
}

/// `a` with the bits past `len` cleared.
fn mask(mut a: [u8; 16], len: u8) -> [u8; 16] {
    for (i, b) in a.iter_mut().enumerate() {
        let bits = (usize::from(len)).saturating_sub(i * 8).min(8);
        *b &= if bits == 0 { 0 } else { 0xffu8 << (8 - bits) };
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_clear_host_bits() {
        let a = addr16(&"10.1.2.3".parse().unwrap());
        assert_eq!(mask(a, 96 + 24), addr16(&"10.1.2.0".parse().unwrap()));
        assert_eq!(mask(a, 96 + 32), a);
        assert_eq!(mask(a, 0), [0; 16]);
    }

    #[test]
    fn keys_hold_ports_in_network_order_and_ipv4_mapped() {
        let k = SvcKey::new(&"10.0.0.1".parse().unwrap(), 6, 80);
        assert_eq!(k.port.to_ne_bytes(), [0, 80]);
        assert_eq!(&k.addr[10..], &[0xff, 0xff, 10, 0, 0, 1]);
        assert_eq!(std::mem::size_of::<SvcKey>(), 20);
    }
}
