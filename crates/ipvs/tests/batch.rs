//! A batch of commands (`Ipvs::batch`, `ipvsadm -R`): changes are made in one private table
//! and published once, and they read each other's results as single commands would.

use std::net::IpAddr;
use std::sync::Arc;

use ipvs::Ipvs;
use ipvs::dest::DestConfig;
use ipvs::service::{ServiceConfig, ServiceKey};

fn vip(i: u32) -> IpAddr {
    IpAddr::V4((0x0a00_0000 + i).into())
}

#[test]
fn a_batch_publishes_once_and_sees_its_own_changes() {
    let ipvs = Ipvs::new(1024);
    ipvs.add_service(ServiceConfig::new(ServiceKey::tcp(vip(0), 80), "rr")).unwrap();
    let before = ipvs.services_full();
    ipvs.batch(|| {
        for i in 1..=1000 {
            let k = ServiceKey::tcp(vip(i), 80);
            ipvs.add_service(ServiceConfig::new(k, "wlc")).unwrap();
            ipvs.add_dest(&k, DestConfig::new(IpAddr::V4((0xc0a8_0000 + i).into()), 8080)).unwrap();
            // Later commands see earlier ones of the same batch.
            assert!(ipvs.add_service(ServiceConfig::new(k, "rr")).is_err(), "duplicate inside a batch");
        }
        ipvs.delete_service(&ServiceKey::tcp(vip(500), 80)).unwrap();
        ipvs.edit_service(ServiceConfig::new(ServiceKey::tcp(vip(501), 80), "sh")).unwrap();
        // Workers still see the table from before the batch.
        assert!(Arc::ptr_eq(&before, &ipvs.services_full()), "nothing published inside the batch");
    });
    let t = ipvs.services();
    assert_eq!(t.len(), 1000);
    assert!(t.is_vip(&vip(1000)) && t.is_vip_v4(0x0a00_0000 + 1000));
    assert!(!t.is_vip(&vip(500)), "the deleted service's VIP went with it");
    assert_eq!(t.vips().count(), 1000);
    let s = t.get(&ServiceKey::tcp(vip(999), 80)).unwrap();
    assert_eq!(s.dests.len(), 1);
    assert_eq!(t.get(&ServiceKey::tcp(vip(501), 80)).unwrap().config.scheduler, "sh");
    // Creation order kept, the deleted one left out.
    assert_eq!(t.order()[0].config.key, ServiceKey::tcp(vip(0), 80));
    assert_eq!(t.order()[499].config.key, ServiceKey::tcp(vip(499), 80));
    assert_eq!(t.order()[500].config.key, ServiceKey::tcp(vip(501), 80));
    // After the batch, a single command edits the published table again.
    drop(t);
    ipvs.delete_service(&ServiceKey::tcp(vip(0), 80)).unwrap();
    assert_eq!(ipvs.services().len(), 999);
}
