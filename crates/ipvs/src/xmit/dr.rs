//! Direct routing: L3/L4 untouched but for the TTL; the real server is the next hop, so only
//! the frame's MAC changes (done by the node's neighbour stage).

use netfilter::{Skb, Verdict};

use crate::ctx::{RouteTo, Routing};
use crate::packet::Tuple;

#[inline]
pub(super) fn xmit(skb: &mut Skb<'_>, t: &Tuple, rt: &RouteTo, routing: &dyn Routing) -> Verdict {
    if let Some(v) = super::check_mtu(skb, t, rt.mtu as usize, routing) {
        return v;
    }
    super::dec_ttl(skb);
    super::steal(skb, rt)
}
