//! ipvsadm's listing order (ipvsadm-cli.md §8), including the unsigned-subtraction
//! quirk: keys are compared as `(int)(a - b)` on 32-bit words, so values that differ
//! by 2^31 or more compare the wrong way round (200.0.0.1 sorts before 10.0.0.1).
//!
//! The comparison is not a total order, so Rust's `sort_by` (which may panic on
//! inconsistent comparators) is not used: `msort` is glibc's top-down merge sort,
//! which is what `qsort` runs for these small arrays.

use crate::api::{DestView, ServiceView};
use std::cmp::Ordering;
use std::net::IpAddr;

/// `(int)(a - b)` as C computes it on two u32.
fn quirk(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

/// The address as the kernel's union stores it: four host-order words, IPv4 in
/// the first.
fn words(a: &IpAddr) -> [u32; 4] {
    match a {
        IpAddr::V4(v4) => [u32::from(*v4), 0, 0, 0],
        IpAddr::V6(v6) => {
            let o = v6.octets();
            let w = |i: usize| u32::from_be_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            [w(0), w(4), w(8), w(12)]
        }
    }
}

/// Address comparison as ipvsadm does it; `v6` is the family of the left side.
fn cmp_addr(a: &IpAddr, b: &IpAddr, v6: bool) -> i32 {
    let (wa, wb) = (words(a), words(b));
    let n = if v6 { 4 } else { 1 };
    for i in 0..n {
        let r = quirk(wa[i], wb[i]);
        if r != 0 {
            return r;
        }
    }
    0
}

/// AF_INET / AF_INET6 numbers, as the family comparison uses them.
fn af(v6: bool) -> i32 {
    if v6 { 10 } else { 2 }
}

/// ipvsadm's `ipvs_cmp_services`.
pub fn cmp_services(a: &ServiceView, b: &ServiceView) -> i32 {
    let (ka, kb) = (&a.spec.key, &b.spec.key);
    let r = quirk(ka.fwmark(), kb.fwmark());
    if r != 0 {
        return r;
    }
    let r = af(ka.is_ipv6()) - af(kb.is_ipv6());
    if r != 0 {
        return r;
    }
    let r = i32::from(ka.protocol()) - i32::from(kb.protocol());
    if r != 0 {
        return r;
    }
    let (aa, pa) = ka.addr_port().unwrap_or((IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0));
    let (ab, pb) = kb.addr_port().unwrap_or((IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0));
    let r = cmp_addr(&aa, &ab, ka.is_ipv6());
    if r != 0 {
        return r;
    }
    i32::from(pa) - i32::from(pb)
}

/// ipvsadm's `ipvs_cmp_dests`.
pub fn cmp_dests(a: &DestView, b: &DestView) -> i32 {
    let r = cmp_addr(&a.spec.addr, &b.spec.addr, a.spec.addr.is_ipv6());
    if r != 0 {
        return r;
    }
    i32::from(a.spec.port) - i32::from(b.spec.port)
}

/// Stable top-down merge sort with a C-style comparator (glibc `msort`): the left
/// element is taken while `cmp(left, right) <= 0`. Never panics, whatever `cmp`
/// returns.
pub fn msort<T: Clone>(v: &mut [T], cmp: &impl Fn(&T, &T) -> i32) {
    let n = v.len();
    if n <= 1 {
        return;
    }
    let n1 = n / 2;
    {
        let (l, r) = v.split_at_mut(n1);
        msort(l, cmp);
        msort(r, cmp);
    }
    let mut out = Vec::with_capacity(n);
    let (mut i, mut j) = (0, n1);
    while i < n1 && j < n {
        if cmp(&v[i], &v[j]) <= 0 {
            out.push(v[i].clone());
            i += 1;
        } else {
            out.push(v[j].clone());
            j += 1;
        }
    }
    out.extend_from_slice(&v[i..n1]);
    out.extend_from_slice(&v[j..n]);
    v.clone_from_slice(&out);
}

/// Services (and their dests) in listing order.
pub fn sorted(services: &[ServiceView], nosort: bool) -> Vec<ServiceView> {
    let mut v = services.to_vec();
    if nosort {
        return v;
    }
    msort(&mut v, &cmp_services);
    for s in &mut v {
        msort(&mut s.dests, &cmp_dests);
    }
    v
}

/// `Ordering` view of a C comparator result (for tests and callers that want it).
pub fn ordering(r: i32) -> Ordering {
    r.cmp(&0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quirk_puts_200_before_10() {
        let a: IpAddr = "200.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.1".parse().expect("ip");
        assert!(cmp_addr(&a, &b, false) < 0);
        let c: IpAddr = "10.0.0.2".parse().expect("ip");
        assert!(cmp_addr(&b, &c, false) < 0);
    }

    #[test]
    fn msort_is_stable_and_total() {
        let mut v = vec![(3, 'a'), (1, 'b'), (3, 'c'), (0, 'd'), (1, 'e')];
        msort(&mut v, &|x: &(i32, char), y: &(i32, char)| x.0 - y.0);
        assert_eq!(v, vec![(0, 'd'), (1, 'b'), (1, 'e'), (3, 'a'), (3, 'c')]);
        // An inconsistent comparator must not panic.
        let mut w: Vec<u32> = (0..50).collect();
        msort(&mut w, &|_: &u32, _: &u32| 1);
        assert_eq!(w.len(), 50);
    }
}
