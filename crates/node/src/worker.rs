//! A worker's context: what the hooks of one worker thread reach without locks.

use ipvs::service::FastMap as HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use ipvs::{IpvsContext, Routing};
use wire::MacAddr;

use crate::net::NetState;

pub struct WorkerCtx {
    pub id: usize,
    pub ipvs: ipvs::Worker,
    pub net: Arc<NetState>,
    pub learnt: Arc<HashMap<IpAddr, MacAddr>>,
    /// Next hops that need an ARP request (the io loop sends them), with the time last asked.
    pub arp_wanted: Vec<(u32, IpAddr)>,
    /// Packets waiting for their next hop's address (`neighq.rs`).
    pub neighq: crate::neighq::NeighQueue,
    /// Asks the director's kernel to resolve next hops (opened on first use when the node
    /// resolves through the kernel, `Node::set_kernel_resolution`).
    pub(crate) resolver: Option<crate::netlink::resolve::Resolver>,
    /// Direct-mapped IPv4 next hop → MAC cache, cleared when `net` or `learnt` changes.
    neigh_cache: Box<[(u32, MacAddr); NEIGH_CACHE]>,
    /// The service table under which the last `Node::process_batch_ahead` ran the next batch's
    /// first pipeline stage (held, so that its address cannot be reused by another table while
    /// compared). A hash taken under another table may be of the wrong direction, so it is
    /// taken again.
    pub(crate) staged_under: Option<Arc<ipvs::service::ServiceTable>>,
}

const NEIGH_CACHE: usize = 256;

#[inline]
fn slot(ip: u32) -> usize {
    (ip.wrapping_mul(0x61C8_8647) >> 24) as usize
}

impl WorkerCtx {
    pub fn new(id: usize, ipvs: ipvs::Worker, net: Arc<NetState>, learnt: Arc<HashMap<IpAddr, MacAddr>>) -> Self {
        WorkerCtx {
            id,
            ipvs,
            net,
            learnt,
            arp_wanted: Vec::with_capacity(16),
            neighq: crate::neighq::NeighQueue::new(),
            resolver: None,
            neigh_cache: Box::new([(0, MacAddr::default()); NEIGH_CACHE]),
            staged_under: None,
        }
    }

    pub(crate) fn clear_neigh_cache(&mut self) {
        self.neigh_cache.fill((0, MacAddr::default()));
    }

    /// The MAC of a next hop: configured/kernel neighbours first, then learnt ones.
    #[inline]
    pub(crate) fn neighbour(&mut self, ip: &IpAddr) -> Option<MacAddr> {
        if let IpAddr::V4(v) = ip {
            let k = u32::from(*v);
            let e = self.neigh_cache[slot(k)];
            if e.0 == k && k != 0 {
                return Some(e.1);
            }
            let mac = self.net.neighbours.get(ip).or_else(|| self.learnt.get(ip)).copied()?;
            self.neigh_cache[slot(k)] = (k, mac);
            return Some(mac);
        }
        self.net.neighbours.get(ip).or_else(|| self.learnt.get(ip)).copied()
    }

    pub(crate) fn want_neighbour(&mut self, out_if: u32, ip: IpAddr) {
        if self.arp_wanted.len() < 16 && !self.arp_wanted.iter().any(|(_, x)| *x == ip) {
            self.arp_wanted.push((out_if, ip));
        }
    }
}

impl IpvsContext for WorkerCtx {
    #[inline]
    fn ipvs(&mut self) -> (&mut ipvs::Worker, &dyn Routing) {
        (&mut self.ipvs, &*self.net)
    }
}
