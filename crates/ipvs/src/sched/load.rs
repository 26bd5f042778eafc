//! Helpers shared by the load-based schedulers (lvs-semantics.md §15 "Common rules").

use std::sync::Arc;

use crate::dest::Dest;
use crate::sched::SchedInput;

/// A dest that may take a new connection: weight > 0 and no OVERLOAD flag.
#[inline]
pub(crate) fn eligible(d: &Dest) -> bool {
    d.weight() > 0 && !d.is_overloaded()
}

/// "The new dest is less loaded": the kernel's `loh * w_d > doh * w_least`, which compares
/// overhead/weight without division. Computed in 128 bits because rvs' overhead is 64-bit.
#[inline]
pub(crate) fn less_loaded(doh: u64, dw: i32, loh: u64, lw: i32) -> bool {
    (loh as i128) * (dw as i128) > (doh as i128) * (lw as i128)
}

/// The wlc selection: the first eligible dest is the start, then the strictly smaller
/// `overhead/weight` wins, so ties keep the earlier (newer) dest. Weight-0 dests can never win
/// the cross-multiplication, which is why the kernel does not test it in the second stage.
/// Used by wlc (overhead), sed (active + 1), lblc and lblcr.
pub(crate) fn weighted_least(dests: &[Arc<Dest>], overhead: impl Fn(&Dest) -> u64) -> Option<&Arc<Dest>> {
    let start = dests.iter().position(|d| eligible(d))?;
    let mut least = &dests[start];
    let mut loh = overhead(least);
    for d in &dests[start + 1..] {
        if d.is_overloaded() {
            continue;
        }
        let doh = overhead(d);
        if less_loaded(doh, d.weight(), loh, least.weight()) {
            least = d;
            loh = doh;
        }
    }
    Some(least)
}

/// sed/nq overhead: `activeconns + 1`, inactive connections ignored.
#[inline]
pub(crate) fn active_plus_one(d: &Dest) -> u64 {
    d.activeconns() as u64 + 1
}

/// The lblc/lblcr "overloaded" rule: `active > weight` while some dest of the service has
/// `active * 2 < weight` (there is a clearly idler dest to move to).
pub(crate) fn lblc_overloaded(dest: &Dest, dests: &[Arc<Dest>]) -> bool {
    if (dest.activeconns() as i64) <= dest.weight() as i64 {
        return false;
    }
    dests.iter().any(|d| (d.activeconns() as i64) * 2 < d.weight() as i64)
}

/// The source port sh-port / mh-port hash on: only TCP, UDP and SCTP carry one; 0 otherwise
/// and when the flag is off.
#[inline]
pub(crate) fn hash_port(pkt: &SchedInput, use_port: bool) -> u16 {
    match (use_port, pkt.proto) {
        (true, 6 | 17 | 132) => pkt.sport,
        _ => 0,
    }
}

pub(crate) fn gcd(mut a: i32, mut b: i32) -> i32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The identity of a dest object, for noticing list changes without dereferencing anything.
#[inline]
pub(crate) fn ident(d: &Arc<Dest>) -> usize {
    Arc::as_ptr(d) as usize
}

#[cfg(test)]
pub(crate) mod testutil {
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::Arc;

    use crate::dest::{Dest, DestConfig};
    use crate::sched::SchedInput;

    /// Dest 10.1.0.<n>:80 with weight `w`.
    pub fn dest(n: u8, w: i32) -> Arc<Dest> {
        let addr = IpAddr::V4(Ipv4Addr::new(10, 1, 0, n));
        Arc::new(Dest::new(&DestConfig::new(addr, 80).weight(w)))
    }

    /// The kernel list after adding `added` in order: newest first.
    pub fn kernel_list(added: &[Arc<Dest>]) -> Vec<Arc<Dest>> {
        added.iter().rev().cloned().collect()
    }

    pub fn pkt(saddr: &str, sport: u16, daddr: &str) -> SchedInput {
        SchedInput {
            proto: 6,
            saddr: saddr.parse().expect("test address"),
            sport,
            daddr: daddr.parse().expect("test address"),
            dport: 80,
        }
    }

    pub fn any_pkt() -> SchedInput {
        pkt("198.51.100.7", 40000, "10.0.0.100")
    }

    /// Position of `d` in `list` (for readable assertions).
    pub fn pos(list: &[Arc<Dest>], d: &Arc<Dest>) -> usize {
        list.iter().position(|x| Arc::ptr_eq(x, d)).expect("pick is in the list")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn less_loaded_is_cross_multiplication() {
        // 10/2 < 6/1: new dest (10, w2) is better than least (6, w1)
        assert!(less_loaded(10, 2, 6, 1));
        // equal ratio: not better (ties keep the earlier dest)
        assert!(!less_loaded(12, 2, 6, 1));
        // weight 0 never wins
        assert!(!less_loaded(0, 0, 1000, 1));
        // large values do not overflow
        assert!(less_loaded(u64::MAX / 2, i32::MAX, u64::MAX, i32::MAX));
    }

    #[test]
    fn gcd_works() {
        assert_eq!(gcd(4, 6), 2);
        assert_eq!(gcd(3, 1), 1);
        assert_eq!(gcd(100, 200), 100);
    }
}
