//! VIP follow-up: which VIPs this director is active for, taken from the interfaces.
//!
//! keepalived runs VRRP (`keepalived --vrrp -f keepalived.conf`, the user's own file) and, as
//! it always does, adds an instance's `virtual_ipaddress` to the interface when it becomes
//! MASTER and removes it when it becomes BACKUP or FAULT or dies cleanly. rvsd already watches
//! the kernel's addresses over netlink (netstate.rs), so following that needs no glue from the
//! user: no notify script, no state file, nothing to get wrong in keepalived.conf. When
//! following, a VIP is active only while it is one of the director's kernel addresses; the
//! others are standby: their services stay configured (and their sync state fed), but the
//! node neither answers ARP/ND for them nor takes their packets ([`ipvs::Ipvs::set_vip_gate`]).
//! A VIP that becomes active is announced at once (gratuitous ARP, unsolicited NA) on the
//! served interfaces; one that becomes standby stops being answered with the next table.
//!
//! Why not keepalived's notify hooks: they need a script path in every instance, run as a
//! process per transition, and are missed when rvsd restarts between two transitions; the
//! address is the state itself and is re-read on every netlink change and at start.
//! A SIGKILLed keepalived leaves its address behind (it cannot remove it): then the peer takes
//! the VIP too and both answer, exactly as two keepalived-driven kernels would; keepalived
//! removes stale VIPs when it starts again.
//!
//! The same addresses drive the sync daemons bound to an instance (keepalived's
//! `lvs_sync_daemon IFACE VI_1`, sync/follow.rs): master while the instance's addresses are
//! here, backup otherwise.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;

use node::Node;
use node::netlink::Snapshot;

use crate::sync::follow::InstanceSync;

/// `--vip-follow`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FollowArg {
    /// `interface` when the keepalived file has `vrrp_instance` blocks, else `always`.
    Auto,
    /// Every configured VIP is active (rvs answers for it; the VIP must not be on the kernel).
    Always,
    /// A VIP is active only while it is on one of the director's interfaces.
    Interface,
}

impl FollowArg {
    pub fn parse(s: &str) -> Option<FollowArg> {
        Some(match s {
            "auto" => FollowArg::Auto,
            "always" => FollowArg::Always,
            "interface" => FollowArg::Interface,
            _ => return None,
        })
    }

    /// Does this director follow the interfaces, given the loaded configuration?
    pub fn follows(self, cfg: Option<&rvs_config::Config>) -> bool {
        match self {
            FollowArg::Always => false,
            FollowArg::Interface => true,
            FollowArg::Auto => cfg.is_some_and(|c| !c.vrrp_instances.is_empty()),
        }
    }
}

/// The kernel's addresses (every interface, `lo` included): what keepalived may have added.
pub fn kernel_addrs(snap: &Snapshot) -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = snap.addrs.iter().map(|a| a.addr).collect();
    v.sort();
    v.dedup();
    v
}

/// Applies the interfaces to the VIP gate and announces takeovers.
pub struct Follower {
    served: Vec<String>,
    /// Active VIPs after the last update.
    active: Vec<IpAddr>,
    sock: Option<OwnedFd>,
    /// Sync daemons bound to VRRP instances, switched by the same addresses.
    sync: Option<Arc<InstanceSync>>,
}

impl Follower {
    pub fn new(served: Vec<String>, sync: Option<Arc<InstanceSync>>) -> Self {
        let sock = match packet_socket() {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!("VIP follow-up: no socket for gratuitous ARP/NA ({e}); takeovers not announced");
                None
            }
        };
        Follower { served, active: Vec::new(), sock, sync }
    }

    /// A new snapshot of the kernel: set the gate from its addresses, then [`Follower::tick`],
    /// then the sync daemons bound to instances.
    pub fn update(&mut self, node: &Node, snap: &Snapshot) {
        let addrs = kernel_addrs(snap);
        node.ipvs.set_vip_gate(Some(addrs.clone()));
        self.tick(node, Some(snap));
        if let Some(s) = &self.sync {
            s.update(addrs);
        }
    }

    /// Logs and announces changes of the active set (also after a service was added or
    /// removed; `snap` tells which interface holds a VIP, when known).
    pub fn tick(&mut self, node: &Node, snap: Option<&Snapshot>) {
        let table = node.ipvs.services();
        let mut now: Vec<IpAddr> = table.active_vips().copied().collect();
        now.sort_unstable(); // the table keeps them in no particular order
        if now == self.active {
            return;
        }
        for v in table.vips().filter(|v| self.active.contains(v) && !now.contains(v)) {
            tracing::info!("VIP {v}: standby (not on this director's interfaces): no longer answered or forwarded");
        }
        let net = node.net();
        for v in now.iter().filter(|v| !self.active.contains(v)) {
            // The served interface holding the VIP, else every served interface.
            let holder = snap
                .and_then(|s| s.addrs.iter().find(|a| a.addr == *v))
                .map(|a| a.ifindex)
                .filter(|h| net.interfaces.iter().any(|i| i.index == *h && self.served.contains(&i.name)));
            let ifs: Vec<&node::Interface> = net
                .interfaces
                .iter()
                .filter(|i| self.served.contains(&i.name) && holder.is_none_or(|h| h == i.index))
                .collect();
            let names: Vec<&str> = ifs.iter().map(|i| i.name.as_str()).collect();
            tracing::info!(
                "VIP {v}: active (on this director's interfaces): answering, forwarding, announcing on {names:?}"
            );
            for i in ifs {
                let frame = node::announce::frame(i.mac, *v);
                // Twice: one lost frame should not leave a neighbour cache pointing elsewhere.
                for _ in 0..2 {
                    if let Err(e) = self.send(i.index, &frame) {
                        tracing::warn!("VIP {v}: announcement on {}: {e}", i.name);
                        break;
                    }
                }
            }
        }
        self.active = now;
    }

    fn send(&self, ifindex: u32, frame: &[u8]) -> io::Result<()> {
        let Some(s) = &self.sock else { return Ok(()) };
        // SAFETY: sockaddr_ll is plain data; the fields the kernel reads are set below.
        let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sa.sll_family = libc::AF_PACKET as u16;
        sa.sll_ifindex = ifindex as i32;
        sa.sll_halen = 6;
        sa.sll_addr[..6].copy_from_slice(&frame[..6]);
        // SAFETY: valid socket, buffer and address with their lengths.
        let rc = unsafe {
            libc::sendto(
                s.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&sa as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
    }
}

/// An AF_PACKET socket that only sends (protocol 0: it receives nothing).
fn packet_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); checked.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(FollowArg::parse("auto"), Some(FollowArg::Auto));
        assert_eq!(FollowArg::parse("interface"), Some(FollowArg::Interface));
        assert_eq!(FollowArg::parse("always"), Some(FollowArg::Always));
        assert_eq!(FollowArg::parse("vrrp"), None);
        let mut cfg = rvs_config::Config::default();
        assert!(!FollowArg::Auto.follows(None));
        assert!(!FollowArg::Auto.follows(Some(&cfg)), "no vrrp_instance: always");
        cfg.vrrp_instances.push(rvs_config::VrrpInstance { name: "VI_1".into(), vips: vec![], vrid: None });
        assert!(FollowArg::Auto.follows(Some(&cfg)));
        assert!(!FollowArg::Always.follows(Some(&cfg)));
        assert!(FollowArg::Interface.follows(None));
    }
}
