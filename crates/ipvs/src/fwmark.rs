//! The firewall-mark classifier: what iptables `-j MARK` does for kernel IPVS `-f` services,
//! registered on the hook framework at PRE_ROUTING with the mangle table's priority. Rules
//! match destination (and optionally source) prefix, protocol and destination port range; the
//! first match sets `skb.mark`.

use std::net::IpAddr;
use std::sync::Arc;

use netfilter::{Family, Hook, HookHandle, HookOps, HookPoint, Hooks, Skb, Verdict, priority};

use crate::ctx::IpvsContext;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FwmarkRule {
    pub daddr: IpAddr,
    pub dprefix: u8,
    /// Optional source prefix.
    pub saddr: Option<(IpAddr, u8)>,
    /// 0 = any protocol.
    pub protocol: u8,
    /// Inclusive destination port range; (0, 65535) = any.
    pub dports: (u16, u16),
    pub mark: u32,
}

fn in_prefix(a: u32, net: u32, prefix: u8) -> bool {
    let m = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix.min(32)) };
    a & m == net & m
}

fn in_prefix_ip(a: &IpAddr, net: &IpAddr, prefix: u8) -> bool {
    match (a, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => in_prefix(u32::from(*a), u32::from(*n), prefix),
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let p = prefix.min(128) as u32;
            let m = if p == 0 { 0 } else { u128::MAX << (128 - p) };
            u128::from(*a) & m == u128::from(*n) & m
        }
        _ => false,
    }
}

impl FwmarkRule {
    /// Does the rule's destination range contain `a` (the node answers ARP for it)?
    pub fn covers(&self, a: &IpAddr) -> bool {
        in_prefix_ip(a, &self.daddr, self.dprefix)
    }

    /// Whether a packet matches; `dport` is 0 for protocols without ports.
    pub fn matches(&self, protocol: u8, saddr: &IpAddr, daddr: &IpAddr, dport: u16) -> bool {
        (self.protocol == 0 || self.protocol == protocol)
            && (self.dports.0..=self.dports.1).contains(&dport)
            && in_prefix_ip(daddr, &self.daddr, self.dprefix)
            && self.saddr.is_none_or(|(n, p)| in_prefix_ip(saddr, &n, p))
    }
}

/// The classifier hook. Its rules come from the worker's per-batch snapshot.
#[derive(Debug, Default)]
pub struct Classifier;

/// Register the classifier on PRE_ROUTING for IPv4 and IPv6.
pub fn register<C: IpvsContext>(hooks: &Hooks<C>) -> [HookHandle; 2] {
    [Family::Ipv4, Family::Ipv6].map(|family| {
        hooks.register(HookOps {
            family,
            point: HookPoint::PreRouting,
            priority: priority::MANGLE,
            name: "fwmark".into(),
            hook: Arc::new(Classifier),
        })
    })
}

impl<C: IpvsContext> Hook<C> for Classifier {
    #[inline]
    fn hook(&self, cx: &mut C, skb: &mut Skb<'_>, _point: HookPoint) -> Verdict {
        let (w, _) = cx.ipvs();
        let rules = w.fwmark_rules();
        if rules.is_empty() {
            return Verdict::Accept;
        }
        let n = skb.network_bytes();
        let (protocol, saddr, daddr, ihl) = match n.first().map(|b| b >> 4) {
            Some(4) if n.len() >= 20 => (
                n[9],
                IpAddr::V4([n[12], n[13], n[14], n[15]].into()),
                IpAddr::V4([n[16], n[17], n[18], n[19]].into()),
                (n[0] & 0xf) as usize * 4,
            ),
            Some(6) if n.len() >= 40 => {
                let a = |o: usize| {
                    let mut b = [0u8; 16];
                    b.copy_from_slice(&n[o..o + 16]);
                    IpAddr::V6(b.into())
                };
                (n[6], a(8), a(24), 40)
            }
            _ => return Verdict::Accept,
        };
        let dport = match protocol {
            6 | 17 | 132 => n.get(ihl + 2..ihl + 4).map_or(0, |p| u16::from_be_bytes([p[0], p[1]])),
            _ => 0,
        };
        if let Some(r) = rules.iter().find(|r| r.matches(protocol, &saddr, &daddr, dport)) {
            skb.mark = r.mark;
        }
        Verdict::Accept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_matching() {
        let r = FwmarkRule {
            daddr: "10.0.0.0".parse().unwrap(),
            dprefix: 24,
            saddr: Some(("198.51.100.0".parse().unwrap(), 24)),
            protocol: 6,
            dports: (80, 90),
            mark: 7,
        };
        let c: IpAddr = "198.51.100.7".parse().unwrap();
        let v: IpAddr = "10.0.0.100".parse().unwrap();
        assert!(r.matches(6, &c, &v, 80));
        assert!(r.matches(6, &c, &v, 90));
        assert!(!r.matches(6, &c, &v, 91));
        assert!(!r.matches(17, &c, &v, 80));
        assert!(!r.matches(6, &"203.0.113.1".parse().unwrap(), &v, 80));
        assert!(!r.matches(6, &c, &"10.0.1.1".parse().unwrap(), 80));
        assert!(r.covers(&"10.0.0.255".parse().unwrap()));
        assert!(!r.covers(&"10.0.1.0".parse().unwrap()));
    }
}
