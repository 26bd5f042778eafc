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
}

impl WorkerCtx {
    pub fn new(id: usize, ipvs: ipvs::Worker, net: Arc<NetState>, learnt: Arc<HashMap<IpAddr, MacAddr>>) -> Self {
        WorkerCtx { id, ipvs, net, learnt, arp_wanted: Vec::with_capacity(16) }
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
