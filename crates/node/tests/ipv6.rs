//! IPv6 services and real servers through the node path: NAT, DR, TUN (IPv6-in-IPv6 and mixed
//! families), hop limit, packet too big, ICMPv6 errors and neighbour discovery. Expected frames
//! are built with etherparse and compared byte for byte.

mod common;

use common::*;
use etherparse::{EtherType, Ethernet2Header, IpNumber, Ipv4Header, Ipv6Header, TcpHeader, UdpHeader};
use ipvs::{DestConfig, ForwardMethod, ServiceConfig, ServiceKey};
use node::Action;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fn eth6(src: [u8; 6], dst: [u8; 6], ip: &[u8]) -> Vec<u8> {
    let mut out = Ethernet2Header { source: src, destination: dst, ether_type: EtherType::IPV6 }.to_bytes().to_vec();
    out.extend_from_slice(ip);
    out
}

/// An IPv6 TCP packet (no Ethernet header), checksums by etherparse.
fn tcp6(s: Ipv6Addr, sport: u16, d: Ipv6Addr, dport: u16, hop: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
    let ip = Ipv6Header {
        traffic_class: 0,
        flow_label: Default::default(),
        payload_length: (20 + payload.len()) as u16,
        next_header: IpNumber::TCP,
        hop_limit: hop,
        source: s.octets(),
        destination: d.octets(),
    };
    let mut t = TcpHeader::new(sport, dport, 1, 64240);
    t.syn = flags & SYN != 0;
    t.ack = flags & ACK != 0;
    t.psh = flags & PSH != 0;
    t.checksum = t.calc_checksum_ipv6(&ip, payload).unwrap();
    let mut out = ip.to_bytes().to_vec();
    out.extend_from_slice(&t.to_bytes());
    out.extend_from_slice(payload);
    out
}

fn udp6(s: Ipv6Addr, sport: u16, d: Ipv6Addr, dport: u16, hop: u8, payload: &[u8]) -> Vec<u8> {
    let ip = Ipv6Header {
        traffic_class: 0,
        flow_label: Default::default(),
        payload_length: (8 + payload.len()) as u16,
        next_header: IpNumber::UDP,
        hop_limit: hop,
        source: s.octets(),
        destination: d.octets(),
    };
    let u = UdpHeader::with_ipv6_checksum(sport, dport, &ip, payload).unwrap();
    let mut out = ip.to_bytes().to_vec();
    out.extend_from_slice(&u.to_bytes());
    out.extend_from_slice(payload);
    out
}

fn add(lab: &Lab, key: ServiceKey, d: DestConfig) {
    if lab.ipvs().services().get(&key).is_none() {
        lab.ipvs().add_service(ServiceConfig::new(key, "rr")).unwrap();
    }
    lab.ipvs().add_dest(&key, d).unwrap();
}

fn vip6() -> IpAddr {
    IpAddr::V6(VIP6)
}

#[test]
fn nat_tcp_both_directions() {
    let mut lab = Lab::new();
    add(&lab, ServiceKey::tcp(vip6(), 80), DestConfig::new(rs6(1).into(), 8080).method(ForwardMethod::Masq));
    let (a, out) = lab.send(EXT, &eth6(CLIENT_MAC, EXT_MAC, &tcp6(CLIENT6, 40000, VIP6, 80, 64, SYN, &[])));
    assert_eq!(a, Action::Tx(INT));
    assert_eq!(out, eth6(INT_MAC, rs_mac(1), &tcp6(CLIENT6, 40000, rs6(1), 8080, 63, SYN, &[])));
    let reply = tcp6(rs6(1), 8080, CLIENT6, 40000, 64, SYN | ACK, b"hi");
    let (a, out) = lab.send(INT, &eth6(rs_mac(1), INT_MAC, &reply));
    assert_eq!(a, Action::Tx(EXT));
    assert_eq!(out, eth6(EXT_MAC, CLIENT_MAC, &tcp6(VIP6, 80, CLIENT6, 40000, 63, SYN | ACK, b"hi")));
    assert_eq!(lab.state_of_any(40000), Some("SYN_RECV"));
}

#[test]
fn dr_udp() {
    let mut lab = Lab::new();
    add(&lab, ServiceKey::udp(vip6(), 53), DestConfig::new(rs6(2).into(), 53).method(ForwardMethod::Route));
    let (a, out) = lab.send(EXT, &eth6(CLIENT_MAC, EXT_MAC, &udp6(CLIENT6, 5000, VIP6, 53, 64, b"query")));
    assert_eq!(a, Action::Tx(INT));
    assert_eq!(out, eth6(INT_MAC, rs_mac(2), &udp6(CLIENT6, 5000, VIP6, 53, 63, b"query")));
}

fn outer6(next: IpNumber, inner: &[u8], hop: u8) -> Vec<u8> {
    let o = Ipv6Header {
        traffic_class: 0,
        flow_label: Default::default(),
        payload_length: inner.len() as u16,
        next_header: next,
        hop_limit: hop,
        source: INT6.octets(),
        destination: rs6(3).octets(),
    };
    let mut v = o.to_bytes().to_vec();
    v.extend_from_slice(inner);
    v
}

#[test]
fn tunnel_ipv6_in_ipv6() {
    let mut lab = Lab::new();
    add(&lab, ServiceKey::tcp(vip6(), 443), DestConfig::new(rs6(3).into(), 443).method(ForwardMethod::Tunnel));
    let (a, out) = lab.send(EXT, &eth6(CLIENT_MAC, EXT_MAC, &tcp6(CLIENT6, 40001, VIP6, 443, 64, SYN, &[])));
    assert_eq!(a, Action::Tx(INT));
    let inner = tcp6(CLIENT6, 40001, VIP6, 443, 63, SYN, &[]);
    assert_eq!(out, eth6(INT_MAC, rs_mac(3), &outer6(IpNumber::IPV6, &inner, 63)));
}

#[test]
fn tunnel_ipv4_service_to_ipv6_real_server() {
    let mut lab = Lab::new();
    add(&lab, ServiceKey::tcp(IpAddr::V4(VIP), 443), DestConfig::new(rs6(3).into(), 443).method(ForwardMethod::Tunnel));
    let syn = Pkt::tcp(CLIENT, 40002, VIP, 443, SYN);
    let (a, out) = lab.send(EXT, &syn.build());
    assert_eq!(a, Action::Tx(INT));
    let inner = syn.clone().ttl(63).ip_bytes();
    assert_eq!(out, eth6(INT_MAC, rs_mac(3), &outer6(IpNumber::IPV4, &inner, 63)));
}

#[test]
fn tunnel_ipv6_service_to_ipv4_real_server() {
    let mut lab = Lab::new();
    add(&lab, ServiceKey::tcp(vip6(), 443), DestConfig::new(rs(3).into(), 443).method(ForwardMethod::Tunnel));
    let (a, out) = lab.send(EXT, &eth6(CLIENT_MAC, EXT_MAC, &tcp6(CLIENT6, 40003, VIP6, 443, 64, SYN, &[])));
    assert_eq!(a, Action::Tx(INT));
    let inner = tcp6(CLIENT6, 40003, VIP6, 443, 63, SYN, &[]);
    let mut o = Ipv4Header::new(inner.len() as u16, 63, IpNumber::IPV6, INT_ADDR.octets(), rs(3).octets()).unwrap();
    o.dont_fragment = true;
    o.header_checksum = o.calc_header_checksum();
    let mut ip = o.to_bytes().to_vec();
    ip.extend_from_slice(&inner);
    assert_eq!(out, eth(INT_MAC, rs_mac(3), &ip));
    // A non-tunnel dest of the other family is refused.
    let err = lab
        .ipvs()
        .add_dest(&ServiceKey::tcp(vip6(), 443), DestConfig::new(rs(4).into(), 443).method(ForwardMethod::Masq));
    assert!(err.is_err());
}

/// ICMPv6 error built by etherparse: from `src` to `dst`, quoting `quoted`.
fn icmp6(src: Ipv6Addr, dst: Ipv6Addr, hop: u8, t: etherparse::Icmpv6Type, quoted: &[u8]) -> Vec<u8> {
    let ip = Ipv6Header {
        traffic_class: 0,
        flow_label: Default::default(),
        payload_length: (8 + quoted.len()) as u16,
        next_header: IpNumber::IPV6_ICMP,
        hop_limit: hop,
        source: src.octets(),
        destination: dst.octets(),
    };
    let h = etherparse::Icmpv6Header::with_checksum(t, src.octets(), dst.octets(), quoted).unwrap();
    let mut out = ip.to_bytes().to_vec();
    out.extend_from_slice(&h.to_bytes());
    out.extend_from_slice(quoted);
    out
}

#[test]
fn hop_limit_one_gets_time_exceeded() {
    let mut lab = Lab::new();
    add(&lab, ServiceKey::tcp(vip6(), 80), DestConfig::new(rs6(1).into(), 8080).method(ForwardMethod::Masq));
    let pkt = tcp6(CLIENT6, 40004, VIP6, 80, 1, SYN, &[]);
    let (a, out) = lab.send(EXT, &eth6(CLIENT_MAC, EXT_MAC, &pkt));
    assert_eq!(a, Action::Tx(EXT));
    let te = etherparse::Icmpv6Type::TimeExceeded(etherparse::icmpv6::TimeExceededCode::HopLimitExceeded);
    assert_eq!(out, eth6(EXT_MAC, CLIENT_MAC, &icmp6(VIP6, CLIENT6, 64, te, &pkt)));
}

#[test]
fn packet_too_big_for_the_tunnel() {
    let mut lab = Lab::new();
    add(&lab, ServiceKey::tcp(vip6(), 443), DestConfig::new(rs6(3).into(), 443).method(ForwardMethod::Tunnel));
    let pkt = tcp6(CLIENT6, 40005, VIP6, 443, 64, SYN | ACK, &vec![0u8; 1440]);
    let (a, out) = lab.send(EXT, &eth6(CLIENT_MAC, EXT_MAC, &pkt));
    assert_eq!(a, Action::Tx(EXT));
    let ptb = etherparse::Icmpv6Type::PacketTooBig { mtu: 1460 };
    // The quote is cut so that the error fits the IPv6 minimum MTU (RFC 4443 §2.4).
    assert_eq!(out, eth6(EXT_MAC, CLIENT_MAC, &icmp6(VIP6, CLIENT6, 64, ptb, &pkt[..1280 - 48])));
}

#[test]
fn client_icmpv6_error_is_relayed_to_the_nat_real_server() {
    let mut lab = Lab::new();
    add(&lab, ServiceKey::tcp(vip6(), 80), DestConfig::new(rs6(1).into(), 8080).method(ForwardMethod::Masq));
    lab.send(EXT, &eth6(CLIENT_MAC, EXT_MAC, &tcp6(CLIENT6, 40006, VIP6, 80, 64, SYN, &[])));
    let ours = tcp6(VIP6, 80, CLIENT6, 40006, 60, ACK, &[]);
    let pu = etherparse::Icmpv6Type::DestinationUnreachable(etherparse::icmpv6::DestUnreachableCode::Port);
    let (a, out) = lab.send(EXT, &eth6(CLIENT_MAC, EXT_MAC, &icmp6(CLIENT6, VIP6, 64, pu, &ours)));
    assert_eq!(a, Action::Tx(INT));
    // The quoted packet now comes from RIP:8080 (its TCP checksum untouched).
    let mut q = ours.clone();
    q[8..24].copy_from_slice(&rs6(1).octets());
    q[40..42].copy_from_slice(&8080u16.to_be_bytes());
    assert_eq!(out, eth6(INT_MAC, rs_mac(1), &icmp6(CLIENT6, rs6(1), 63, pu, &q)));
}

#[test]
fn neighbour_solicitation_for_a_vip_is_answered() {
    let mut lab = Lab::new();
    add(&lab, ServiceKey::tcp(vip6(), 80), DestConfig::new(rs6(1).into(), 8080).method(ForwardMethod::Masq));
    lab.advance(0);
    let ns = node::ndp::solicitation(wire::MacAddr(CLIENT_MAC), CLIENT6, VIP6);
    let (a, na) = lab.send(EXT, &ns);
    assert_eq!(a, Action::Tx(EXT));
    assert_eq!(&na[..6], &CLIENT_MAC);
    assert_eq!(&na[6..12], &EXT_MAC);
    let p = etherparse::SlicedPacket::from_ethernet(&na).unwrap();
    let Some(etherparse::TransportSlice::Icmpv6(icmp)) = p.transport else { panic!("not ICMPv6") };
    assert_eq!(icmp.type_u8(), 136, "neighbour advertisement");
    let Some(etherparse::NetSlice::Ipv6(ip)) = p.net else { panic!() };
    let h = ip.header();
    let calc = icmp.header().icmp_type.calc_checksum(h.source(), h.destination(), icmp.payload()).unwrap();
    assert_eq!(icmp.checksum(), calc);
    assert_eq!(h.hop_limit(), 255);
    assert_eq!(&na[14 + 48..14 + 64], &VIP6.octets(), "target");
    assert_eq!(&na[14 + 66..14 + 72], &EXT_MAC, "target link-layer address");
    // An unknown target gets no answer.
    let ns =
        node::ndp::solicitation(wire::MacAddr(CLIENT_MAC), CLIENT6, Ipv6Addr::new(0x2001, 0xdb8, 9, 0, 0, 0, 0, 9));
    assert_eq!(lab.send(EXT, &ns).0, Action::Local);
    let _ = Ipv4Addr::UNSPECIFIED;
}

#[test]
fn fwmark_service_for_an_ipv6_range() {
    let mut lab = Lab::new();
    let key = ServiceKey::Fwmark { mark: 9, ipv6: true };
    lab.ipvs().add_service(ServiceConfig::new(key, "rr")).unwrap();
    lab.ipvs().add_dest(&key, DestConfig::new(rs6(2).into(), 0).method(ForwardMethod::Route)).unwrap();
    let range: Ipv6Addr = "2001:db8:200::".parse().unwrap();
    lab.node.set_fwmark_rules(vec![ipvs::fwmark::FwmarkRule {
        daddr: IpAddr::V6(range),
        dprefix: 64,
        saddr: None,
        protocol: 17,
        dports: (0, 65535),
        mark: 9,
    }]);
    lab.advance(0);
    let target: Ipv6Addr = "2001:db8:200::53".parse().unwrap();
    let (a, out) = lab.send(EXT, &eth6(CLIENT_MAC, EXT_MAC, &udp6(CLIENT6, 5001, target, 53, 64, b"q")));
    assert_eq!(a, Action::Tx(INT));
    assert_eq!(out, eth6(INT_MAC, rs_mac(2), &udp6(CLIENT6, 5001, target, 53, 63, b"q")));
    // The node answers neighbour solicitations for the classified range.
    let ns = node::ndp::solicitation(wire::MacAddr(CLIENT_MAC), CLIENT6, target);
    assert_eq!(lab.send(EXT, &ns).0, Action::Tx(EXT));
    // Without rules the classifier is gone and the range is not ours.
    lab.node.set_fwmark_rules(vec![]);
    lab.advance(0);
    let (a, _) = lab.send(EXT, &eth6(CLIENT_MAC, EXT_MAC, &udp6(CLIENT6, 5002, target, 53, 64, b"q")));
    assert_ne!(a, Action::Tx(INT));
}
