//! Hot restart: entries stashed for a worker are inserted when it is created, bound to this
//! director's dests with their state, flags and time left; unknown services or real servers
//! are counted, not inserted.

use std::net::IpAddr;
use std::sync::Arc;

use ipvs::conn::ConnFlags;
use ipvs::restore::{RestoreCount, Restored};
use ipvs::service::{ServiceConfig, ServiceKey};
use ipvs::{DestConfig, ForwardMethod, Ipvs, Worker};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn rec(cport: u16, daddr: &str, state: u8, flags: u32) -> Restored {
    Restored {
        protocol: 6,
        caddr: ip("198.51.100.2"),
        cport,
        vaddr: ip("10.0.0.1"),
        vport: 80,
        daddr: ip(daddr),
        dport: 8080,
        state,
        flags,
        expires_in_ms: 120_000,
        fwmark: 0,
    }
}

#[test]
fn stashed_entries_land_in_their_worker() {
    let ipvs = Arc::new(Ipvs::new(1024));
    let key = ServiceKey::tcp(ip("10.0.0.1"), 80);
    ipvs.add_service(ServiceConfig::new(key, "rr")).unwrap();
    let mut d = DestConfig::new(ip("192.168.1.11"), 8080);
    d.method = ForwardMethod::Masq;
    ipvs.add_dest(&key, d).unwrap();
    let est = ipvs::proto::tcp::ESTABLISHED;
    ipvs.stash_restored(vec![
        vec![],
        vec![
            rec(1000, "192.168.1.11", est, ForwardMethod::Masq as u32),
            rec(1001, "192.168.1.11", 2, ForwardMethod::Masq as u32 | ConnFlags::INACTIVE),
            rec(1002, "192.168.1.99", est, 0),
        ],
    ]);
    let w0 = Worker::new(0, ipvs.clone());
    assert_eq!(w0.conns.len(), 0);
    let w1 = Worker::new(1, ipvs.clone());
    assert_eq!(w1.conns.len(), 2);
    assert_eq!(ipvs.restored(), RestoreCount { inserted: 2, unbound: 1, full: 0 });
    let id = w1.conns.lookup_in(6, &ip("198.51.100.2"), 1000, &ip("10.0.0.1"), 80).expect("found by the client");
    let c = w1.conns.get(id).unwrap();
    assert_eq!((c.state, c.dport, c.expires), (est, 8080, 120_000));
    assert_eq!(c.method(), ForwardMethod::Masq);
    assert!(w1.conns.lookup_out(6, &ip("192.168.1.11"), 8080, &ip("198.51.100.2"), 1000).is_some(), "and by the reply");
    let dest = ipvs.services().get(&key).unwrap().dests[0].clone();
    assert_eq!((dest.activeconns(), dest.inactconns()), (1, 1));
    // Taken once: a worker created again starts empty.
    assert_eq!(Worker::new(1, ipvs).conns.len(), 0);
}
