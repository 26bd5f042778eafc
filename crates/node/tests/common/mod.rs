//! Shared by the engine's golden fixtures and benchmarks: a fixed two-legged director
//! topology, and an independent frame builder (etherparse) for inputs and expected outputs.

#![allow(dead_code)]

use ipvs::service::FastMap as HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use etherparse::{EtherType, Ethernet2Header, IpNumber, Ipv4Header, TcpHeader, UdpHeader};
use netfilter::{Family, Skb};
use node::{Action, Interface, NetState, Node, RouteEntry, WorkerCtx};
use wire::{Frame, MacAddr};

pub const EXT: u32 = 1;
pub const INT: u32 = 2;
pub const EXT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
pub const INT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
pub const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xc7];
pub const GW_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xfe];
pub const EXT_ADDR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
pub const INT_ADDR: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);
pub const GW: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 254);
pub const HEADROOM: usize = 128;

pub const EXT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
pub const INT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 1);
pub const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 7);
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 0x100);

pub fn rs6(n: u8) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 0x10 + n as u16)
}

pub fn rs(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 168, 1, 10 + n)
}
pub fn rs_mac(n: u8) -> [u8; 6] {
    [2, 0, 0, 0, 1, 0x10 + n]
}

/// Director with an external leg (clients, 198.51.100.0/24, default route via .254) and an
/// internal leg (real servers 192.168.1.11-.19).
pub fn topology() -> NetState {
    let interfaces = vec![
        Interface {
            index: EXT,
            name: "ext".into(),
            mac: MacAddr(EXT_MAC),
            mtu: 1500,
            addrs: vec![(EXT_ADDR.into(), 24), (EXT6.into(), 64)],
        },
        Interface {
            index: INT,
            name: "int".into(),
            mac: MacAddr(INT_MAC),
            mtu: 1500,
            addrs: vec![(INT_ADDR.into(), 24), (INT6.into(), 64)],
        },
    ];
    let routes = vec![RouteEntry {
        dst: Ipv4Addr::UNSPECIFIED.into(),
        prefix: 0,
        gateway: Some(GW.into()),
        out_if: EXT,
        src: None,
        mtu: None,
    }];
    let mut neigh = HashMap::default();
    neigh.insert(IpAddr::V4(CLIENT), MacAddr(CLIENT_MAC));
    neigh.insert(IpAddr::V4(GW), MacAddr(GW_MAC));
    for n in 1..=9 {
        neigh.insert(IpAddr::V4(rs(n)), MacAddr(rs_mac(n)));
        neigh.insert(IpAddr::V6(rs6(n)), MacAddr(rs_mac(n)));
    }
    neigh.insert(IpAddr::V6(CLIENT6), MacAddr(CLIENT_MAC));
    NetState::new(interfaces, routes, neigh)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4 {
    Tcp { flags: u8, seq: u32, ack: u32, win: u16 },
    Udp,
}

/// A frame described by its fields; `build` serialises it with etherparse (full checksums).
#[derive(Clone, Debug)]
pub struct Pkt {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub saddr: Ipv4Addr,
    pub daddr: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    pub ttl: u8,
    pub id: u16,
    pub df: bool,
    pub tos: u8,
    pub l4: L4,
    pub payload: Vec<u8>,
}

pub const SYN: u8 = 0x02;
pub const ACK: u8 = 0x10;
pub const FIN: u8 = 0x01;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;

impl Pkt {
    pub fn tcp(saddr: Ipv4Addr, sport: u16, daddr: Ipv4Addr, dport: u16, flags: u8) -> Pkt {
        Pkt {
            src_mac: CLIENT_MAC,
            dst_mac: EXT_MAC,
            saddr,
            daddr,
            sport,
            dport,
            ttl: 64,
            id: 0x1234,
            df: true,
            tos: 0,
            l4: L4::Tcp { flags, seq: 1, ack: if flags & ACK != 0 { 1 } else { 0 }, win: 64240 },
            payload: Vec::new(),
        }
    }
    pub fn udp(saddr: Ipv4Addr, sport: u16, daddr: Ipv4Addr, dport: u16, payload: &[u8]) -> Pkt {
        Pkt {
            src_mac: CLIENT_MAC,
            dst_mac: EXT_MAC,
            saddr,
            daddr,
            sport,
            dport,
            ttl: 64,
            id: 0x4321,
            df: false,
            tos: 0,
            l4: L4::Udp,
            payload: payload.to_vec(),
        }
    }
    pub fn macs(mut self, src: [u8; 6], dst: [u8; 6]) -> Pkt {
        self.src_mac = src;
        self.dst_mac = dst;
        self
    }
    pub fn ttl(mut self, ttl: u8) -> Pkt {
        self.ttl = ttl;
        self
    }
    pub fn payload(mut self, p: &[u8]) -> Pkt {
        self.payload = p.to_vec();
        self
    }

    pub fn ip_header(&self) -> Ipv4Header {
        let l4len = match self.l4 {
            L4::Tcp { .. } => 20,
            L4::Udp => 8,
        } + self.payload.len();
        let proto = match self.l4 {
            L4::Tcp { .. } => IpNumber::TCP,
            L4::Udp => IpNumber::UDP,
        };
        let mut ip = Ipv4Header::new(l4len as u16, self.ttl, proto, self.saddr.octets(), self.daddr.octets()).unwrap();
        ip.identification = self.id;
        ip.dont_fragment = self.df;
        ip.dscp = etherparse::Ipv4Dscp::try_new(self.tos >> 2).unwrap();
        ip.ecn = etherparse::Ipv4Ecn::try_new(self.tos & 3).unwrap();
        ip.header_checksum = ip.calc_header_checksum();
        ip
    }

    /// The IP packet (no Ethernet header).
    pub fn ip_bytes(&self) -> Vec<u8> {
        let ip = self.ip_header();
        let mut out = ip.to_bytes().to_vec();
        match self.l4 {
            L4::Tcp { flags, seq, ack, win } => {
                let mut t = TcpHeader::new(self.sport, self.dport, seq, win);
                t.fin = flags & FIN != 0;
                t.syn = flags & SYN != 0;
                t.rst = flags & RST != 0;
                t.psh = flags & PSH != 0;
                t.ack = flags & ACK != 0;
                t.acknowledgment_number = ack;
                t.checksum = t.calc_checksum_ipv4(&ip, &self.payload).unwrap();
                out.extend_from_slice(&t.to_bytes());
            }
            L4::Udp => {
                let u = UdpHeader::with_ipv4_checksum(self.sport, self.dport, &ip, &self.payload).unwrap();
                out.extend_from_slice(&u.to_bytes());
            }
        }
        out.extend_from_slice(&self.payload);
        out
    }

    pub fn build(&self) -> Vec<u8> {
        eth(self.src_mac, self.dst_mac, &self.ip_bytes())
    }
}

pub fn eth(src: [u8; 6], dst: [u8; 6], ip: &[u8]) -> Vec<u8> {
    let mut out = Ethernet2Header { source: src, destination: dst, ether_type: EtherType::IPV4 }.to_bytes().to_vec();
    out.extend_from_slice(ip);
    out
}

/// A director (node + IPVS, one worker) on the fixed topology, driven frame by frame.
pub struct Lab {
    pub node: Arc<Node>,
    pub cx: WorkerCtx,
    pub now: u64,
    buf: Vec<u8>,
}

impl Default for Lab {
    fn default() -> Self {
        Self::new()
    }
}

impl Lab {
    pub fn new() -> Lab {
        Self::with_max_conns(1 << 16)
    }
    pub fn with_max_conns(max: usize) -> Lab {
        let ipvs = Arc::new(ipvs::Ipvs::new(max));
        let node = Node::new(ipvs, topology());
        let cx = node.worker(0);
        Lab { node, cx, now: 1_000_000, buf: vec![0u8; 4096] }
    }
    pub fn ipvs(&self) -> &ipvs::Ipvs {
        &self.node.ipvs
    }

    /// Process one frame arriving on `in_if`; returns the action and the frame as it leaves.
    pub fn send(&mut self, in_if: u32, frame: &[u8]) -> (Action, Vec<u8>) {
        self.send_csum(in_if, frame, netfilter::CsumState::None)
    }

    pub fn send_csum(&mut self, in_if: u32, frame: &[u8], csum: netfilter::CsumState) -> (Action, Vec<u8>) {
        let tr = self.node.begin_batch(&mut self.cx, self.now);
        self.buf[HEADROOM..HEADROOM + frame.len()].copy_from_slice(frame);
        let f = Frame::new(&mut self.buf, HEADROOM, frame.len()).unwrap();
        let mut skb = Skb::new(f, 14, Family::Ipv4);
        skb.in_if = in_if;
        skb.csum = csum;
        // Through the batch entry point (prefetch stages and the precomputed flow hash), as the
        // io backends call it.
        let mut skbs = [skb];
        let mut actions = [Action::Local];
        self.node.process_batch(&tr, &mut self.cx, &mut skbs, &mut actions);
        (actions[0], skbs[0].frame.data().to_vec())
    }

    pub fn advance(&mut self, secs: u64) {
        self.now += secs * 1000;
        self.node.begin_batch(&mut self.cx, self.now);
    }

    /// The state name of the (non-template) entry with this client port, any family.
    pub fn state_of_any(&self, cport: u16) -> Option<&'static str> {
        let t = &self.cx.ipvs.conns;
        t.ids().filter_map(|id| t.get(id)).find(|c| c.cport == cport && !c.is_template()).map(|c| match c.protocol {
            6 => ipvs::proto::tcp::NAMES[c.state as usize],
            _ => ipvs::proto::udp::NAME,
        })
    }

    /// The only connection entry's state name (panics unless exactly one non-template entry).
    pub fn state_of(&self, caddr: Ipv4Addr, cport: u16) -> Option<&'static str> {
        let t = &self.cx.ipvs.conns;
        t.ids()
            .filter_map(|id| t.get(id))
            .find(|c| t.caddr(c) == IpAddr::V4(caddr) && c.cport == cport && !c.is_template())
            .map(|c| match c.protocol {
                6 => ipvs::proto::tcp::NAMES[c.state as usize],
                _ => ipvs::proto::udp::NAME,
            })
    }
}

/// Parse with etherparse and verify every checksum in the frame (IP header, TCP/UDP, ICMP and
/// an embedded inner packet for IPIP). Panics with a description when one is wrong.
pub fn verify_checksums(frame: &[u8]) {
    let p = etherparse::SlicedPacket::from_ethernet(frame).expect("etherparse parses the output frame");
    let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else { return };
    let h = ip.header().to_header();
    assert_eq!(h.header_checksum, h.calc_header_checksum(), "IPv4 header checksum");
    match &p.transport {
        Some(etherparse::TransportSlice::Tcp(t)) => {
            let calc = t.to_header().calc_checksum_ipv4(&h, t.payload()).unwrap();
            assert_eq!(t.checksum(), calc, "TCP checksum");
        }
        Some(etherparse::TransportSlice::Udp(u)) if u.checksum() != 0 => {
            let calc = u.to_header().calc_checksum_ipv4(&h, u.payload()).unwrap();
            assert_eq!(u.checksum(), calc, "UDP checksum");
        }
        Some(etherparse::TransportSlice::Icmpv4(i)) => {
            let calc = i.header().icmp_type.calc_checksum(i.payload());
            assert_eq!(i.checksum(), calc, "ICMP checksum");
        }
        _ => {}
    }
    if h.protocol == IpNumber::IPV4 {
        // IPIP: check the inner packet too.
        let inner = &frame[14 + 20..];
        let mut fake = frame[..14].to_vec();
        fake.extend_from_slice(inner);
        verify_checksums(&fake);
    }
}

/// A small deterministic generator (xorshift64) for the property and equivalence tests: fixed
/// seeds, reproducible failures.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
