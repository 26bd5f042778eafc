//! Scheduling a new connection (lvs-semantics.md §4, §5, §10): the service lookup, the
//! scheduling trigger, persistence templates, one-packet entries and the no-destination path.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use netfilter::{DropReason, Skb, Verdict};

use crate::conn::{ConnFlags, ConnId};
use crate::ctx::Routing;
use crate::dest::Dest;
use crate::packet::Tuple;
use crate::pe_sip;
use crate::proto::{sctp, tcp};
use crate::sched::SchedInput;
use crate::service::{PersistenceEngine, Service, ServiceKey};
use crate::worker::{NewConn, Worker};
use crate::xmit;

/// An invalid template is re-keyed with these ports so it never matches again (§10).
const DEAD_PORT: u16 = 0xffff;
/// The FTP control port, which persistence treats specially (§10).
const FTP_PORT: u16 = 21;

/// The client's network for persistence: IPv4 address & mask, IPv6 prefix.
pub fn persistence_net(addr: &IpAddr, netmask: u32) -> IpAddr {
    match addr {
        IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(*a) & netmask)),
        IpAddr::V6(a) => {
            let p = netmask.min(128);
            let m = if p == 0 { 0 } else { u128::MAX << (128 - p) };
            IpAddr::V6(Ipv6Addr::from(u128::from(*a) & m))
        }
    }
}

impl Worker {
    /// No entry: find the service and schedule. `Err` carries the final verdict.
    pub(crate) fn schedule(&mut self, skb: &mut Skb<'_>, t: &Tuple, routing: &dyn Routing) -> Result<ConnId, Verdict> {
        let table = self.services().clone();
        let Some(svc) = table.lookup(skb.mark, t.protocol, &t.daddr, t.dport) else {
            return Err(Verdict::Accept);
        };
        let sloppy = self.ipvs.sysctl.sloppy_tcp.load(Relaxed) != 0;
        if t.protocol == wire::ip::protocol::TCP && !tcp::schedules(t.tcp_flags, sloppy) {
            // Not a connection opener: the kernel's stack would answer it with a RST.
            return Err(self.stray(skb, t, routing));
        }
        if t.protocol == wire::ip::protocol::SCTP {
            let sloppy = self.ipvs.sysctl.sloppy_sctp.load(Relaxed) != 0;
            let opens = match sctp::Event::from_u8(t.tcp_flags) {
                Some(sctp::Event::Init) => true,
                Some(sctp::Event::Abort) | None => false,
                Some(_) => sloppy,
            };
            if !opens || t.tcp_flags == crate::proto::NO_EVENT {
                return Err(Verdict::Accept);
            }
        }
        // drop_packet defence: only new connections are affected (§5, §19).
        if self.defense_drops_new() {
            return Err(skb.drop_with(DropReason::Defense));
        }
        let (svc_port, fwmark) = match svc.config.key {
            ServiceKey::Addr { port, .. } => (port, None),
            ServiceKey::Fwmark { mark, .. } => (0, Some(mark)),
        };
        let one_packet = svc.config.ops && t.protocol == wire::ip::protocol::UDP;
        let extra = if one_packet { ConnFlags::ONE_PACKET } else { 0 };
        if let Some(timeout) = svc.config.persistent {
            return self.schedule_persistent(skb, t, routing, svc, timeout, svc_port, fwmark, extra);
        }
        if fwmark.is_none() && t.dport != svc_port {
            // A port-0 catch-all schedules only when persistent (§5).
            return Err(Verdict::Accept);
        }
        let dest = self.pick(skb, t, routing, svc)?;
        let dport = if dest.port != 0 { dest.port } else { t.dport };
        self.new_conn(skb, t, svc, &dest, dport, None, extra)
    }

    /// A stray TCP segment (no entry, opens none): a RST back, within the `stray_rst` rate
    /// (xmit/rst.rs); with `stray_rst` 0, left to the local stack as before.
    fn stray(&mut self, skb: &mut Skb<'_>, t: &Tuple, routing: &dyn Routing) -> Verdict {
        let rate = self.ipvs.sysctl.stray_rst.load(Relaxed);
        if rate == 0 || t.tcp_flags & 0x04 != 0 {
            return Verdict::Accept;
        }
        let now = self.now();
        if !self.rst_bucket.take(now, rate) {
            return skb.drop_with(DropReason::StrayRstLimited);
        }
        xmit::rst::send(skb, t, routing).unwrap_or(Verdict::Accept)
    }

    fn pick(
        &mut self,
        skb: &mut Skb<'_>,
        t: &Tuple,
        routing: &dyn Routing,
        svc: &Service,
    ) -> Result<Arc<Dest>, Verdict> {
        let input = SchedInput { proto: t.protocol, saddr: t.saddr, sport: t.sport, daddr: t.daddr, dport: t.dport };
        svc.scheduler.schedule(&svc.dests, &input).ok_or_else(|| {
            // No destination: ICMP port unreachable to the client, even for TCP (§5).
            xmit::icmp::send_error(skb, routing, xmit::icmp::Error::PortUnreachable, DropReason::NoDest)
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn new_conn(
        &mut self,
        skb: &mut Skb<'_>,
        t: &Tuple,
        svc: &Service,
        dest: &Arc<Dest>,
        dport: u16,
        control: Option<ConnId>,
        extra: u32,
    ) -> Result<ConnId, Verdict> {
        let nc = NewConn {
            protocol: t.protocol,
            caddr: t.saddr,
            cport: t.sport,
            vaddr: t.daddr,
            vport: t.dport,
            dport,
            fwmark: skb.mark,
        };
        let id = self.create(&nc, dest, control, extra).map_err(|_| skb.drop_with(DropReason::ConnTableFull))?;
        dest.stats.count_conn(self.id);
        svc.stats.count_conn(self.id);
        self.ipvs.total.count_conn(self.id);
        Ok(id)
    }

    /// Persistence (§10): reuse the client network's template, or schedule and create one.
    #[allow(clippy::too_many_arguments)]
    fn schedule_persistent(
        &mut self,
        skb: &mut Skb<'_>,
        t: &Tuple,
        routing: &dyn Routing,
        svc: &Service,
        timeout: u32,
        svc_port: u16,
        fwmark: Option<u32>,
        extra: u32,
    ) -> Result<ConnId, Verdict> {
        let snet = persistence_net(&t.saddr, svc.config.netmask);
        // The template's ⟨protocol, vaddr, vport⟩ by case (§10 table).
        let (tproto, tvaddr, tvport, keep_dport) = match fwmark {
            Some(mark) => {
                let v = if t.daddr.is_ipv6() {
                    IpAddr::V6(Ipv6Addr::from(mark as u128))
                } else {
                    IpAddr::V4(Ipv4Addr::from(mark))
                };
                (0, v, 0, false)
            }
            None if t.dport == svc_port && svc_port != FTP_PORT => (t.protocol, t.daddr, t.dport, true),
            None => (t.protocol, t.daddr, 0, false),
        };
        let mark = fwmark.unwrap_or(0);
        // A persistence engine keys the template by its data too (`pe_sip`); copied to the
        // stack, the packet stays free for the scheduler.
        let mut pe_buf = [0u8; pe_sip::PEDATA_MAXLEN];
        let pe_data = match svc.config.pe {
            None => None,
            Some(PersistenceEngine::Sip) => {
                let net = skb.network_bytes();
                let payload = net.get(t.l4 + 8..t.ip_len.min(net.len())).unwrap_or(&[]);
                match pe_sip::call_id(payload).filter(|_| t.protocol == wire::ip::protocol::UDP) {
                    Some(id) => {
                        pe_buf[..id.len()].copy_from_slice(id);
                        Some(&pe_buf[..id.len()])
                    }
                    // The kernel's `ignored = -1`: the flow is dropped, never scheduled.
                    None => return Err(skb.drop_with(DropReason::PeNoData)),
                }
            }
        };
        let quiescent_invalid = self.ipvs.sysctl.expire_quiescent_template.load(Relaxed) != 0;
        let mut template = None;
        let found = match pe_data {
            Some(d) => self.conns.lookup_template_pe(tproto, &snet, &tvaddr, tvport, d),
            None => self.conns.lookup_template(tproto, &snet, &tvaddr, tvport, mark),
        };
        if let Some(id) = found {
            let valid = self
                .conns
                .get(id)
                .and_then(|c| c.dest.as_ref())
                .is_some_and(|d| d.is_available() && !(quiescent_invalid && d.weight() == 0));
            if valid {
                template = Some(id);
            } else {
                // Neutralise: it never matches again and simply expires (§10).
                self.conns.rekey(id, |c| {
                    c.vport = DEAD_PORT;
                    c.dport = DEAD_PORT;
                    c.cport = 0;
                });
            }
        }
        let (tid, dest) = match template {
            Some(id) => {
                let now = self.now();
                let Some(ct) = self.conns.get_mut(id) else { return Err(Verdict::Accept) };
                // Every new connection through a template restarts its timer.
                ct.expires = now + ct.timeout as u64 * 1000;
                let Some(d) = ct.dest.clone() else { return Err(Verdict::Accept) };
                (id, d)
            }
            None => {
                let dest = self.pick(skb, t, routing, svc)?;
                let nc = NewConn {
                    protocol: tproto,
                    caddr: snet,
                    cport: pe_data.map_or(0, |d| self.conns.pe_port(d)),
                    vaddr: tvaddr,
                    vport: tvport,
                    dport: if keep_dport { dest.port } else { 0 },
                    fwmark: skb.mark,
                };
                let id = self
                    .create(&nc, &dest, None, ConnFlags::TEMPLATE)
                    .map_err(|_| skb.drop_with(DropReason::ConnTableFull))?;
                let now = self.now();
                if let Some(ct) = self.conns.get_mut(id) {
                    ct.timeout = timeout;
                    ct.expires = now + timeout as u64 * 1000;
                }
                if let Some(d) = pe_data {
                    // One allocation per new engine template, as the kernel's kmemdup.
                    self.conns.set_pe_data(id, d);
                }
                (id, dest)
            }
        };
        let dport = if t.dport == svc_port && dest.port != 0 { dest.port } else { t.dport };
        self.new_conn(skb, t, svc, &dest, dport, Some(tid), extra)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persistence_granularity() {
        let a: IpAddr = "198.51.100.77".parse().unwrap();
        assert_eq!(persistence_net(&a, u32::MAX), a);
        assert_eq!(persistence_net(&a, 0xffff_ff00), "198.51.100.0".parse::<IpAddr>().unwrap());
        let b: IpAddr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
        assert_eq!(persistence_net(&b, 128), b);
        assert_eq!(persistence_net(&b, 64), "2001:db8:1:2::".parse::<IpAddr>().unwrap());
        assert_eq!(persistence_net(&b, 48), "2001:db8:1::".parse::<IpAddr>().unwrap());
        assert_eq!(persistence_net(&b, 0), "::".parse::<IpAddr>().unwrap());
    }
}
