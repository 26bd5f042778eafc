//! The VIP gate (VIP follow-up): a standby VIP keeps its service but is not active; the gate
//! applies to tables published later too, and lifting it makes every VIP active again.

use std::net::IpAddr;

use ipvs::Ipvs;
use ipvs::service::{ServiceConfig, ServiceKey};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn standby_vip_is_configured_but_not_active() {
    let ipvs = Ipvs::new(1024);
    ipvs.add_service(ServiceConfig::new(ServiceKey::tcp(ip("10.0.0.1"), 80), "rr")).unwrap();
    ipvs.add_service(ServiceConfig::new(ServiceKey::tcp(ip("10.0.0.2"), 80), "rr")).unwrap();
    assert!(ipvs.services().is_vip(&ip("10.0.0.1")) && ipvs.services().is_vip(&ip("10.0.0.2")));

    // Only 10.0.0.1 is on an interface: 10.0.0.2 becomes standby.
    assert!(ipvs.set_vip_gate(Some(vec![ip("10.0.0.1"), ip("192.0.2.1")])));
    let t = ipvs.services();
    assert!(t.is_vip(&ip("10.0.0.1")));
    assert!(!t.is_vip(&ip("10.0.0.2")));
    assert!(!t.is_vip_v4(u32::from("10.0.0.2".parse::<std::net::Ipv4Addr>().unwrap())));
    assert!(!t.is_vip(&ip("192.0.2.1")), "an interface address is not a VIP");
    assert_eq!(t.vips().count(), 2, "both stay configured");
    assert!(t.get(&ServiceKey::tcp(ip("10.0.0.2"), 80)).is_some(), "the standby service is kept");
    drop(t);

    // Same gate again: nothing to republish.
    assert!(!ipvs.set_vip_gate(Some(vec![ip("10.0.0.1"), ip("192.0.2.1")])));

    // A service added later is gated too.
    ipvs.add_service(ServiceConfig::new(ServiceKey::udp(ip("10.0.0.3"), 53), "rr")).unwrap();
    assert!(!ipvs.services().is_vip(&ip("10.0.0.3")));

    // keepalived moves 10.0.0.2 here and takes 10.0.0.1 away.
    assert!(ipvs.set_vip_gate(Some(vec![ip("10.0.0.2")])));
    let active: Vec<IpAddr> = ipvs.services().active_vips().copied().collect();
    assert_eq!(active, vec![ip("10.0.0.2")]);

    // No gate: all active.
    assert!(ipvs.set_vip_gate(None));
    assert_eq!(ipvs.services().active_vips().count(), 3);
}

#[test]
fn frozen_gate_ignores_the_interfaces_until_thawed() {
    let ipvs = Ipvs::new(1024);
    ipvs.add_service(ServiceConfig::new(ServiceKey::tcp(ip("10.0.0.1"), 80), "rr")).unwrap();
    ipvs.freeze_vips(None);
    assert!(!ipvs.services().is_vip(&ip("10.0.0.1")));
    assert!(!ipvs.set_vip_gate(Some(vec![ip("10.0.0.1")])), "frozen: the follower cannot re-open it");
    assert!(!ipvs.services().is_vip(&ip("10.0.0.1")));
    ipvs.freeze_vips(Some(None));
    assert!(ipvs.services().is_vip(&ip("10.0.0.1")));
}
