//! Sync daemons that follow a VRRP instance (keepalived's `lvs_sync_daemon IFACE VI_1`).
//!
//! keepalived switches the kernel's daemons at each transition of the named instance: to
//! MASTER, it stops the backup daemon and starts the master one; to BACKUP or FAULT, the
//! reverse (its `ipvs_syncd_master`/`ipvs_syncd_backup`). rvsd cannot hear VRRP, but with
//! `--vip-follow` it already sees what keepalived does at the same transitions: the instance's
//! `virtual_ipaddress` appears on the interfaces or leaves them (vipfollow.rs). So the
//! instance counts as MASTER while all its addresses are on this director, and each netlink
//! snapshot the VIP follow-up takes re-decides the role: no poller, no notify script.
//! As with the VIPs, a SIGKILLed keepalived leaves its addresses behind, and the daemon stays
//! master until keepalived starts again and removes them.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use control::api::{ApiError, DaemonConfig, ErrorKind, SyncRole};

use super::SyncDaemons;

/// The instance's role as its addresses show it: MASTER while every one of them is among
/// this director's kernel addresses (keepalived adds them all on becoming MASTER and removes
/// them all on leaving it).
pub fn role(vips: &[IpAddr], addrs: &[IpAddr]) -> SyncRole {
    if !vips.is_empty() && vips.iter().all(|v| addrs.contains(v)) { SyncRole::Master } else { SyncRole::Backup }
}

/// What to stop, then start, to go from `running` to `want` (keepalived's order: the old
/// role's daemon stops before the new one starts).
pub fn switch(running: Option<SyncRole>, want: SyncRole) -> (Option<SyncRole>, Option<SyncRole>) {
    match running {
        Some(r) if r == want => (None, None),
        Some(r) => (Some(r), Some(want)),
        None => (None, Some(want)),
    }
}

/// One daemon bound to an instance.
struct Bound {
    instance: String,
    vips: Vec<IpAddr>,
    cfg: DaemonConfig,
    /// The role started by us (`None`: none yet, or its start failed: retried at the next
    /// snapshot).
    running: Option<SyncRole>,
}

struct State {
    /// The kernel's addresses in the last snapshot.
    addrs: Vec<IpAddr>,
    bound: Vec<Bound>,
}

/// The daemons bound to VRRP instances, switched as the instances' addresses come and go.
pub struct InstanceSync {
    daemons: Arc<SyncDaemons>,
    state: Mutex<State>,
}

impl InstanceSync {
    /// `addrs`: the kernel's addresses now (later ones come from [`InstanceSync::update`]).
    pub fn new(daemons: Arc<SyncDaemons>, addrs: Vec<IpAddr>) -> Arc<InstanceSync> {
        Arc::new(InstanceSync { daemons, state: Mutex::new(State { addrs, bound: Vec::new() }) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts `cfg` (its role is ignored) in the role instance `instance` has now, and
    /// switches it from then on.
    pub fn bind(&self, instance: &str, vips: Vec<IpAddr>, cfg: &DaemonConfig) -> Result<(), ApiError> {
        let mut st = self.lock();
        let want = role(&vips, &st.addrs);
        let mut b = Bound { instance: instance.to_owned(), vips, cfg: cfg.clone(), running: None };
        self.start(&mut b, want)?;
        tracing::info!(
            "sync daemon follows vrrp_instance {instance} (virtual addresses {:?}): {} now, as {want:?}",
            b.vips,
            if want == SyncRole::Master { "MASTER" } else { "not MASTER" }
        );
        st.bound.push(b);
        Ok(())
    }

    /// A new snapshot of the kernel's addresses: switch every daemon whose instance changed.
    pub fn update(&self, addrs: Vec<IpAddr>) {
        let mut st = self.lock();
        st.addrs = addrs;
        let State { addrs, bound } = &mut *st;
        for b in bound.iter_mut() {
            let want = role(&b.vips, addrs);
            let (stop, start) = switch(b.running, want);
            if let Some(old) = stop {
                match self.daemons.stop(old) {
                    Ok(()) => {}
                    // Stopped by hand (`--stop-daemon`): nothing to do.
                    Err(e) if e.kind == ErrorKind::NoDaemon => {}
                    Err(e) => {
                        tracing::warn!("sync daemon of vrrp_instance {}: stop {old:?}: {}", b.instance, e.message)
                    }
                }
                b.running = None;
            }
            if start.is_none() {
                continue;
            }
            let state = if want == SyncRole::Master { "MASTER" } else { "no longer MASTER" };
            match self.start(b, want) {
                Ok(()) => tracing::info!(
                    "vrrp_instance {} {state} (its virtual addresses {} this director): sync daemon {}",
                    b.instance,
                    if want == SyncRole::Master { "are on" } else { "are not all on" },
                    match stop {
                        Some(old) => format!("switched from {old:?} to {want:?}"),
                        None => format!("started as {want:?}"),
                    }
                ),
                Err(e) => tracing::error!(
                    "vrrp_instance {} {state}: sync daemon {want:?} not started: {} (retried at the next address change)",
                    b.instance,
                    e.message
                ),
            }
        }
    }

    fn start(&self, b: &mut Bound, want: SyncRole) -> Result<(), ApiError> {
        let cfg = DaemonConfig { role: want, ..b.cfg.clone() };
        match self.daemons.start(&cfg) {
            // The same role started by hand: ours now.
            Ok(()) => {}
            Err(e) if e.kind == ErrorKind::DaemonRunning => {}
            Err(e) => return Err(e),
        }
        b.running = Some(want);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(v: &[&str]) -> Vec<IpAddr> {
        v.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn master_while_every_address_of_the_instance_is_here() {
        let vips = ips(&["10.77.0.100", "2001:db8::100"]);
        let own = ips(&["127.0.0.1", "10.77.0.11"]);
        assert_eq!(role(&vips, &own), SyncRole::Backup, "BACKUP: none of them");
        let some = ips(&["127.0.0.1", "10.77.0.11", "10.77.0.100"]);
        assert_eq!(role(&vips, &some), SyncRole::Backup, "half-way (one address added so far)");
        let all = ips(&["127.0.0.1", "10.77.0.11", "10.77.0.100", "2001:db8::100"]);
        assert_eq!(role(&vips, &all), SyncRole::Master);
        assert_eq!(role(&[], &all), SyncRole::Backup, "no address: never MASTER");
    }

    #[test]
    fn a_transition_stops_the_old_role_then_starts_the_new() {
        use SyncRole::{Backup, Master};
        assert_eq!(switch(None, Backup), (None, Some(Backup)), "first start");
        assert_eq!(switch(Some(Backup), Backup), (None, None), "no transition: nothing");
        assert_eq!(switch(Some(Master), Master), (None, None));
        assert_eq!(switch(Some(Backup), Master), (Some(Backup), Some(Master)), "to MASTER");
        assert_eq!(switch(Some(Master), Backup), (Some(Master), Some(Backup)), "to BACKUP/FAULT");
    }
}
