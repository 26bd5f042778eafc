//! Connection sync datagrams (what a backup reads from the network, lvs-semantics.md §18): any
//! bytes are decoded as the kernel's backup decodes them, without a panic. A datagram that
//! decodes re-encodes as version 1 to the same records, and every record can be applied to a
//! backup worker's table (bound, unbound, updated or refused, never a panic).

use std::sync::Arc;

use ipvs::conn::ConnFlags;
use ipvs::sync::{HASHED, SyncConn, decode, v1};

pub fn run(data: &[u8]) {
    let Ok(m) = decode(data, 0) else { return };
    let mut w = v1::Writer::new(m.syncid, 65507);
    for c in &m.conns {
        assert!(w.push(c), "a decoded record fits an empty maximal message");
        let again = decode(w.as_bytes(), 0).expect("what rvs encodes, rvs decodes");
        // The sender never sends HASHED or rvs's own bits.
        let sent = SyncConn { flags: c.flags & !(HASHED | ConnFlags::INTERNAL), ..c.clone() };
        assert_eq!(again.conns.as_slice(), std::slice::from_ref(&sent), "v1 round trip");
        w.clear();
    }
    let ipvs = ipvs::Ipvs::new(64);
    let key = ipvs::ServiceKey::tcp("10.0.0.100".parse().unwrap(), 80);
    let _ = ipvs.add_service(ipvs::ServiceConfig::new(key, "rr"));
    let _ = ipvs.add_dest(&key, ipvs::DestConfig::new("192.168.0.11".parse().unwrap(), 80));
    let mut worker = ipvs::Worker::new(0, Arc::new(ipvs));
    worker.set_now(1000);
    for c in &m.conns {
        let _ = worker.sync_apply(c, 3);
    }
}
