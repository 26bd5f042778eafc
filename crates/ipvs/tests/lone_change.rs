//! A lone command (`-A`, `-E`, `-D`, `-a`, `-d` outside a batch) changes a copy of the
//! published table that shares all but one shard with it (service.rs, shardmap.rs). Property:
//! after any random sequence of such commands, the published table answers every question
//! exactly as a table rebuilt from scratch from its services would, and a snapshot taken
//! before a command never sees it.

use std::net::IpAddr;
use std::sync::Arc;

use ipvs::Ipvs;
use ipvs::dest::DestConfig;
use ipvs::service::{ServiceConfig, ServiceKey, ServiceTable};

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const VIPS: u32 = 200;

fn vip(i: u32) -> IpAddr {
    if i % 10 == 9 {
        IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i as u16))
    } else {
        IpAddr::V4((0x0a00_0000 + i).into())
    }
}

fn random_key(r: &mut Rng) -> ServiceKey {
    match r.below(20) {
        0 => ServiceKey::Fwmark { mark: 1 + r.below(5) as u32, ipv6: r.below(2) == 0 },
        n => {
            let port = [0u16, 80, 443][r.below(3) as usize];
            let addr = vip(r.below(u64::from(VIPS)) as u32);
            if n % 2 == 0 { ServiceKey::tcp(addr, port) } else { ServiceKey::udp(addr, port) }
        }
    }
}

fn random_config(r: &mut Rng, key: ServiceKey) -> ServiceConfig {
    let mut c = ServiceConfig::new(key, ["rr", "wlc", "sh"][r.below(3) as usize]);
    if r.below(3) == 0 || matches!(key, ServiceKey::Addr { port: 0, .. }) {
        c.persistent = Some(300);
        if !key.is_ipv6() {
            c.netmask = [u32::MAX, 0xffff_ff00, 0xffff_0000][r.below(3) as usize];
        }
    }
    c
}

/// Every question the packet path and the control plane ask, on both tables.
fn assert_same(t: &ServiceTable, model: &[ServiceKey]) {
    let keys: Vec<ServiceKey> = t.order().iter().map(|s| s.config.key).collect();
    assert_eq!(keys, model, "creation order");
    let full = ServiceTable::build(t.order());
    assert_eq!(t.len(), full.len());
    assert_eq!(t.is_empty(), full.is_empty());
    assert_eq!(t.client_mask(), full.client_mask(), "client mask");
    let sorted = |i: &mut dyn Iterator<Item = &IpAddr>| {
        let mut v: Vec<IpAddr> = i.copied().collect();
        v.sort_unstable();
        v
    };
    assert_eq!(sorted(&mut t.vips()), sorted(&mut full.vips()), "configured VIPs");
    assert_eq!(sorted(&mut t.active_vips()), sorted(&mut full.active_vips()), "active VIPs");
    assert_eq!(t.active_vip_count(), full.active_vip_count());
    for i in 0..VIPS + 5 {
        let a = vip(i);
        assert_eq!(t.is_vip(&a), full.is_vip(&a), "is_vip {a}");
        assert_eq!(t.is_configured_vip(&a), full.is_configured_vip(&a));
        if let IpAddr::V4(v) = a {
            assert_eq!(t.is_vip_v4(v.into()), full.is_vip_v4(v.into()), "is_vip_v4 {a}");
        }
        for proto in [6u8, 17] {
            for port in [0u16, 80, 443, 8080] {
                for mark in [0u32, 1, 3, 7] {
                    let x = t.lookup(mark, proto, &a, port).map(Arc::as_ptr);
                    let y = full.lookup(mark, proto, &a, port).map(Arc::as_ptr);
                    assert_eq!(x, y, "lookup {mark} {proto} {a}:{port}");
                }
            }
        }
    }
    for mark in 0..8 {
        for v6 in [false, true] {
            assert_eq!(t.has_mark(mark, v6), full.has_mark(mark, v6));
        }
    }
    for k in model {
        assert!(Arc::ptr_eq(t.get(k).unwrap(), full.get(k).unwrap()));
    }
}

#[test]
fn lone_commands_give_the_table_a_full_rebuild_gives() {
    for seed in 1..=3u64 {
        let mut r = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let ipvs = Ipvs::new(1024);
        let mut model: Vec<ServiceKey> = Vec::new();
        for step in 0..1500 {
            // A snapshot held across the command, as a worker would: it must not change.
            let before = ipvs.services_full();
            let before_keys = model.clone();
            let op = r.below(10);
            if op < 5 || model.is_empty() {
                let k = random_key(&mut r);
                let c = random_config(&mut r, k);
                match ipvs.add_service(c) {
                    Ok(()) => model.push(k),
                    Err(_) => assert!(model.contains(&k), "step {step}: -A refused a new key"),
                }
            } else if op < 7 {
                let k = model[r.below(model.len() as u64) as usize];
                ipvs.delete_service(&k).unwrap();
                model.retain(|x| *x != k);
            } else if op < 8 {
                let k = model[r.below(model.len() as u64) as usize];
                ipvs.edit_service(random_config(&mut r, k)).unwrap();
            } else {
                let k = model[r.below(model.len() as u64) as usize];
                let d = IpAddr::V4((0xc0a8_0000 + r.below(4) as u32).into());
                let d =
                    if k.is_ipv6() { IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1)) } else { d };
                if ipvs.add_dest(&k, DestConfig::new(d, 8080)).is_err() {
                    ipvs.delete_dest(&k, &d, 8080).unwrap();
                }
            }
            let keys: Vec<ServiceKey> = before.order().iter().map(|s| s.config.key).collect();
            assert_eq!(keys, before_keys, "step {step}: an older snapshot changed");
            if step % 13 == 0 || step > 1450 {
                assert_same(&ipvs.services(), &model);
            }
        }
        assert!(model.len() > 100, "the table grew past the short-VIP-list and first shard sizes");
    }
}
