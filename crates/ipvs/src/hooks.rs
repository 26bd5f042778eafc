//! IPVS's registrations on the hook framework, at the kernel's points and priorities
//! (lvs-semantics.md §1): the in-hook on LOCAL_IN (client → VIP) and the out-hook on FORWARD
//! (NAT replies).

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use netfilter::{DropReason, Family, Hook, HookHandle, HookOps, HookPoint, Hooks, PktType, Skb, Verdict, priority};

use crate::conn::{ConnFlags, ConnId};
use crate::ctx::{IpvsContext, Routing};
use crate::packet::{Parsed, Tuple, parse};
use crate::proto::{Dir, tcp};
use crate::synproxy::Proxied;
use crate::worker::Worker;
use crate::xmit;

/// The in-hook (`ip_vs_in`): look up or schedule, count, run the state machine, transmit.
#[derive(Debug, Default)]
pub struct InHook;

/// The out-hook (`ip_vs_out`): NAT replies from real servers get the VIP back as source.
#[derive(Debug, Default)]
pub struct OutHook;

/// Register IPVS on `hooks` for IPv4 and IPv6 (the same priorities, §1). The firewall-mark
/// classifier is registered separately ([`crate::fwmark::register`]) while it has rules.
pub fn register<C: IpvsContext>(hooks: &Hooks<C>) -> Vec<HookHandle> {
    let mut handles = Vec::new();
    for family in [Family::Ipv4, Family::Ipv6] {
        handles.push(hooks.register(HookOps {
            family,
            point: HookPoint::LocalIn,
            priority: priority::IPVS_LOCAL_IN,
            name: "ipvs_in".into(),
            hook: Arc::new(InHook),
        }));
        handles.push(hooks.register(HookOps {
            family,
            point: HookPoint::Forward,
            priority: priority::IPVS_REPLY_FORWARD,
            name: "ipvs_out".into(),
            hook: Arc::new(OutHook),
        }));
    }
    handles
}

impl<C: IpvsContext> Hook<C> for InHook {
    #[inline]
    fn hook(&self, cx: &mut C, skb: &mut Skb<'_>, _point: HookPoint) -> Verdict {
        if skb.ipvs_property || skb.pkt_type != PktType::Host {
            return Verdict::Accept;
        }
        let t = match parse(skb) {
            Parsed::Tuple(t) => t,
            Parsed::Icmp => {
                let (w, routing) = cx.ipvs();
                return w.in_icmp(skb, routing);
            }
            Parsed::Other => return Verdict::Accept,
            Parsed::Bad(r) => return skb.drop_with(r),
        };
        let (w, routing) = cx.ipvs();
        w.in_packet(skb, &t, routing)
    }
}

impl<C: IpvsContext> Hook<C> for OutHook {
    #[inline]
    fn hook(&self, cx: &mut C, skb: &mut Skb<'_>, _point: HookPoint) -> Verdict {
        if skb.ipvs_property {
            return Verdict::Accept;
        }
        let t = match parse(skb) {
            Parsed::Tuple(t) => t,
            Parsed::Icmp => {
                let (w, _) = cx.ipvs();
                return w.out_icmp(skb);
            }
            Parsed::Other => return Verdict::Accept,
            Parsed::Bad(r) => return skb.drop_with(r),
        };
        let (w, routing) = cx.ipvs();
        w.out_packet(skb, &t, routing)
    }
}

impl Worker {
    /// The in-path of §2 for one TCP/UDP packet to a VIP.
    pub fn in_packet(&mut self, skb: &mut Skb<'_>, t: &Tuple, routing: &dyn Routing) -> Verdict {
        // The prefetch stage hashed the client side only for packets to a VIP (a firewall-mark
        // service's address is not one): otherwise hash here.
        let h = if skb.hash != 0 && self.services().is_vip(&t.daddr) {
            skb.hash
        } else {
            self.conns.hash(t.protocol, &t.saddr, t.sport)
        };
        let mut found = self.conns.lookup_in_hashed(h, t.protocol, &t.saddr, t.sport, &t.daddr, t.dport);
        if let Some(id) = found {
            match self.check_existing(id, t) {
                Existing::Use => {}
                Existing::Reschedule => {
                    self.remove(id);
                    found = None;
                }
                Existing::Drop(r) => return skb.drop_with(r),
            }
        }
        let mut proxied = None;
        let mut rewritten;
        let mut t = t;
        if found.is_none() {
            rewritten = *t;
            match self.synproxy_in(skb, &mut rewritten, routing) {
                Proxied::Pass => {}
                Proxied::Answered(v) => return v,
                Proxied::Validated(bind) => {
                    proxied = Some(bind);
                    t = &rewritten;
                }
            }
        }
        let id = match found {
            Some(id) => id,
            None => match self.schedule(skb, t, routing) {
                Ok(id) => id,
                Err(v) => return v,
            },
        };
        if let Some(bind) = proxied {
            self.synproxy_bind(id, bind);
        } else if self.conns.get(id).is_some_and(|c| c.flags & ConnFlags::SYNPROXY != 0)
            && !self.synproxy_client_packet(id, skb, t)
        {
            return skb.drop_with(DropReason::Defense);
        }
        let w = self.id;
        if let Some(c) = self.conns.get(id)
            && let Some(d) = &c.dest
            && d.is_available()
        {
            d.stats.count_in(w, t.ip_len);
            d.svc_stats.count_in(w, t.ip_len);
            self.ipvs.total.count_in(w, t.ip_len);
        }
        self.transition(id, Dir::Input, t.tcp_flags);
        let pmtu = self.ipvs.sysctl.pmtu_disc.load(Relaxed) != 0;
        let Some(c) = self.conns.get_mut(id) else {
            return skb.drop_with(DropReason::NoDestConn);
        };
        c.in_pkts = c.in_pkts.wrapping_add(1);
        let pkts = c.in_pkts;
        self.sync_conn(id, pkts);
        let Worker { conns, ip_id, .. } = self;
        let Some(c) = conns.get(id) else {
            return skb.drop_with(DropReason::NoDestConn);
        };
        let v = xmit::xmit(c, &conns.addrs(c), skb, t, routing, ip_id, pmtu);
        if c.flags & ConnFlags::ONE_PACKET != 0 {
            // One-packet scheduling: the entry lives for this packet only (§9).
            self.remove(id);
        }
        v
    }

    /// Reuse and no-dest rules for a packet that matched an entry (§2 steps 5–6, §6).
    /// rvs reschedules a reused port at once, never with the kernel's one-second SYN drop.
    fn check_existing(&self, id: ConnId, t: &Tuple) -> Existing {
        let Some(c) = self.conns.get(id) else {
            return Existing::Reschedule;
        };
        let sysctl = &self.ipvs.sysctl;
        let opens = match t.protocol {
            wire::ip::protocol::TCP => tcp::schedules(t.tcp_flags, false),
            wire::ip::protocol::SCTP => t.tcp_flags == crate::proto::sctp::Event::Init as u8,
            _ => false,
        };
        let dest_ok = c.dest.as_ref().is_some_and(|d| d.is_available());
        if opens {
            let nodest = sysctl.expire_nodest_conn.load(Relaxed) != 0;
            if nodest && c.dest.as_ref().is_some_and(|d| d.weight() == 0) {
                return Existing::Reschedule;
            }
            let mode = sysctl.conn_reuse_mode.load(Relaxed);
            let closed = match c.protocol {
                6 => {
                    matches!(c.state, tcp::TIME_WAIT | tcp::CLOSE)
                        || (mode & 2 != 0 && c.state == tcp::FIN_WAIT && c.flags & ConnFlags::NOOUTPUT != 0)
                }
                _ => c.state == crate::proto::sctp::CLOSED,
            };
            let reusable = c.n_control == 0 && !c.has_control() && closed;
            if mode != 0 && reusable {
                return Existing::Reschedule;
            }
            // rvs: never route a new SYN to a removed or draining dest (§21.1, §21.2).
            if !c.dest.as_ref().is_some_and(|d| d.takes_new()) {
                return Existing::Reschedule;
            }
        }
        if !dest_ok {
            if sysctl.expire_nodest_conn.load(Relaxed) != 0 {
                return Existing::Reschedule;
            }
            return Existing::Drop(DropReason::NoDestConn);
        }
        Existing::Use
    }

    /// The out-path of §3 for a TCP/UDP packet being forwarded.
    pub fn out_packet(&mut self, skb: &mut Skb<'_>, t: &Tuple, routing: &dyn Routing) -> Verdict {
        let h = if skb.hash != 0 { skb.hash } else { self.conns.hash(t.protocol, &t.daddr, t.dport) };
        let Some(id) = self.conns.lookup_out_hashed(h, t.protocol, &t.saddr, t.sport, &t.daddr, t.dport) else {
            return Verdict::Accept;
        };
        let w = self.id;
        let Some(c) = self.conns.get(id) else {
            return Verdict::Accept;
        };
        let (vaddr, vport, nat) = (self.conns.vaddr(c), c.vport, c.flags & ConnFlags::FWD_MASK == 0);
        if let Some(d) = &c.dest
            && d.is_available()
        {
            d.stats.count_out(w, t.ip_len);
            d.svc_stats.count_out(w, t.ip_len);
            self.ipvs.total.count_out(w, t.ip_len);
        }
        if nat
            && c.flags & ConnFlags::SYNPROXY != 0
            && let Some(v) = self.synproxy_server_packet(id, skb, t, routing)
        {
            return v;
        }
        if nat {
            xmit::nat_out_rewrite(skb, t, &vaddr, vport);
            skb.hash = 0;
        }
        self.transition(id, Dir::Output, t.tcp_flags);
        skb.ipvs_property = true;
        Verdict::Accept
    }
}

enum Existing {
    Use,
    Reschedule,
    Drop(DropReason),
}
