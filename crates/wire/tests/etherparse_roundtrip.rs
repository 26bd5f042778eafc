//! Cross-checks against etherparse, an independent implementation: packets
//! built by `etherparse::PacketBuilder` are read with our views field by
//! field; packets rewritten with our setters and incremental checksums
//! (NAT, TTL decrement) are re-parsed by etherparse, whose own checksum
//! computation must agree with what we stored.

use etherparse::{
    Ipv4Header, Ipv6Header, LinkHeader, NetHeaders, PacketBuilder, PacketHeaders, TcpHeader, TransportHeader,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use wire::ethernet::{self, ethertype};
use wire::ip::protocol;
use wire::{
    EthernetFrame, Icmpv4Packet, Icmpv6Packet, Ipv4Packet, Ipv6Packet, MacAddr, TcpPacket, UdpPacket, checksum,
};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn u16(&mut self) -> u16 {
        self.next() as u16
    }
    fn u32(&mut self) -> u32 {
        self.next() as u32
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    fn v4(&mut self) -> [u8; 4] {
        self.u32().to_be_bytes()
    }
    fn v6(&mut self) -> [u8; 16] {
        let mut a = [0u8; 16];
        a[..8].copy_from_slice(&self.next().to_be_bytes());
        a[8..].copy_from_slice(&self.next().to_be_bytes());
        a
    }
}

const SRC_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const DST_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];

/// etherparse's view of a frame: (ipv4 or ipv6 header, transport, payload).
fn ep_parse(frame: &[u8]) -> (NetHeaders, TransportHeader, Vec<u8>) {
    let h = PacketHeaders::from_ethernet_slice(frame).expect("etherparse parses our output");
    match h.link {
        Some(LinkHeader::Ethernet2(e)) => {
            assert_eq!(e.source, SRC_MAC);
            assert_eq!(e.destination, DST_MAC);
        }
        other => panic!("no ethernet header: {other:?}"),
    }
    let payload = h.payload.slice().to_vec();
    (h.net.expect("ip header"), h.transport.expect("transport header"), payload)
}

fn ep_ipv4(net: &NetHeaders) -> &Ipv4Header {
    match net {
        NetHeaders::Ipv4(h, _) => h,
        _ => panic!("not ipv4"),
    }
}

fn ep_ipv6(net: &NetHeaders) -> &Ipv6Header {
    match net {
        NetHeaders::Ipv6(h, _) => h,
        _ => panic!("not ipv6"),
    }
}

fn ep_tcp_ok_v4(net: &NetHeaders, t: &TransportHeader, payload: &[u8]) {
    let ip = ep_ipv4(net);
    assert_eq!(ip.calc_header_checksum(), ip.header_checksum, "ip header checksum");
    let TransportHeader::Tcp(tcp) = t else { panic!("not tcp") };
    assert_eq!(tcp.calc_checksum_ipv4(ip, payload).unwrap(), tcp.checksum, "tcp checksum");
}

fn ep_udp_ok_v4(net: &NetHeaders, t: &TransportHeader, payload: &[u8]) {
    let ip = ep_ipv4(net);
    assert_eq!(ip.calc_header_checksum(), ip.header_checksum, "ip header checksum");
    let TransportHeader::Udp(udp) = t else { panic!("not udp") };
    assert_eq!(udp.calc_checksum_ipv4(ip, payload).unwrap(), udp.checksum, "udp checksum");
}

fn build_tcp_v4(rng: &mut Rng, payload_len: usize) -> (Vec<u8>, Vec<u8>, TcpHeader) {
    let payload = rng.bytes(payload_len);
    let mut tcp = TcpHeader::new(rng.u16(), rng.u16(), rng.u32(), rng.u16());
    tcp.syn = rng.next() & 1 == 1;
    tcp.ack = rng.next() & 1 == 1;
    tcp.fin = rng.next() & 1 == 1;
    tcp.psh = rng.next() & 1 == 1;
    tcp.acknowledgment_number = rng.u32();
    tcp.urgent_pointer = rng.u16();
    if rng.next() & 1 == 1 {
        tcp.set_options(&[
            etherparse::TcpOptionElement::MaximumSegmentSize(1460),
            etherparse::TcpOptionElement::WindowScale(7),
        ])
        .unwrap();
    }
    let b = PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
        .ipv4(rng.v4(), rng.v4(), 2 + (rng.next() % 250) as u8)
        .tcp_header(tcp.clone());
    let mut out = Vec::new();
    b.write(&mut out, &payload).unwrap();
    (out, payload, tcp)
}

#[test]
fn tcp_v4_fields_match_etherparse() {
    let mut rng = Rng(0x1234_5678);
    for i in 0..300 {
        let (frame, payload, _) = build_tcp_v4(&mut rng, i % 97);
        let (net, t, _) = ep_parse(&frame);
        let (ip, TransportHeader::Tcp(tcp)) = (ep_ipv4(&net), &t) else { panic!() };

        let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
        assert_eq!(eth.src_addr(), MacAddr(SRC_MAC));
        assert_eq!(eth.dst_addr(), MacAddr(DST_MAC));
        assert_eq!(eth.ethertype(), ethertype::IPV4);
        let v4 = Ipv4Packet::new_checked(eth.payload()).unwrap();
        assert!(v4.verify_checksum());
        assert_eq!(v4.header_len(), usize::from(ip.ihl()) * 4);
        assert_eq!(v4.dscp(), ip.dscp.value());
        assert_eq!(v4.ecn(), ip.ecn.value());
        assert_eq!(v4.total_len(), ip.total_len);
        assert_eq!(v4.ident(), ip.identification);
        assert_eq!(v4.dont_frag(), ip.dont_fragment);
        assert_eq!(v4.more_frags(), ip.more_fragments);
        assert_eq!(v4.frag_offset(), ip.fragment_offset.value() * 8);
        assert_eq!(v4.ttl(), ip.time_to_live);
        assert_eq!(v4.protocol(), ip.protocol.0);
        assert_eq!(v4.checksum(), ip.header_checksum);
        assert_eq!(v4.src_addr().octets(), ip.source);
        assert_eq!(v4.dst_addr().octets(), ip.destination);

        let seg = TcpPacket::new_checked(v4.payload()).unwrap();
        assert_eq!(seg.src_port(), tcp.source_port);
        assert_eq!(seg.dst_port(), tcp.destination_port);
        assert_eq!(seg.seq_number(), tcp.sequence_number);
        assert_eq!(seg.ack_number(), tcp.acknowledgment_number);
        assert_eq!(seg.header_len(), tcp.header_len());
        assert_eq!(seg.syn(), tcp.syn);
        assert_eq!(seg.ack(), tcp.ack);
        assert_eq!(seg.fin(), tcp.fin);
        assert_eq!(seg.psh(), tcp.psh);
        assert_eq!(seg.rst(), tcp.rst);
        assert_eq!(seg.window_len(), tcp.window_size);
        assert_eq!(seg.checksum(), tcp.checksum);
        assert_eq!(seg.urgent_at(), tcp.urgent_pointer);
        assert_eq!(seg.options(), tcp.options.as_slice());
        assert_eq!(seg.payload(), &payload[..]);
        let (s, d) = (IpAddr::V4(v4.src_addr()), IpAddr::V4(v4.dst_addr()));
        assert!(seg.verify_checksum(&s, &d));
    }
}

/// IPVS NAT in-path (lvs-semantics.md §16): daddr VIP -> RIP, dport -> rport,
/// TTL - 1, all incremental; then the reply path SNAT back.
#[test]
fn tcp_v4_nat_incremental_agrees_with_etherparse() {
    let mut rng = Rng(0xdead_beef_cafe);
    for i in 0..500 {
        let (mut frame, payload, _) = build_tcp_v4(&mut rng, i % 61);
        let rip = Ipv4Addr::from(rng.v4());
        let rport = rng.u16();
        {
            let mut eth = EthernetFrame::new_checked(&mut frame[..]).unwrap();
            let mut ip = Ipv4Packet::new_checked(eth.payload_mut()).unwrap();
            let (old_dst, ttl) = (ip.dst_addr(), ip.ttl());
            ip.dec_ttl();
            ip.set_dst_addr_update(rip);
            assert_eq!(ip.ttl(), ttl - 1);
            let mut seg = TcpPacket::new_checked(ip.payload_mut()).unwrap();
            seg.update_pseudo_addr(&IpAddr::V4(old_dst), &IpAddr::V4(rip));
            seg.set_dst_port_update(rport);
        }
        let (net, t, p) = ep_parse(&frame);
        assert_eq!(p, payload);
        ep_tcp_ok_v4(&net, &t, &p);
        assert_eq!(ep_ipv4(&net).destination, rip.octets());
        let TransportHeader::Tcp(tcp) = &t else { panic!() };
        assert_eq!(tcp.destination_port, rport);

        // Out-path: the checksum helpers as free functions, source side.
        let vip = Ipv4Addr::from(rng.v4());
        let vport = rng.u16();
        {
            let mut ip = Ipv4Packet::new_checked(&mut frame[ethernet::HEADER_LEN..]).unwrap();
            let old_src = ip.src_addr();
            ip.set_src_addr(vip);
            let c = checksum::update32(ip.checksum(), u32::from(old_src), u32::from(vip));
            ip.set_checksum(c);
            let mut seg = TcpPacket::new_checked(ip.payload_mut()).unwrap();
            let old_port = seg.src_port();
            seg.update_checksum(|c| {
                let c = checksum::update_addr(c, &IpAddr::V4(old_src), &IpAddr::V4(vip));
                checksum::update16(c, old_port, vport)
            });
            seg.set_src_port(vport);
        }
        let (net, t, p) = ep_parse(&frame);
        ep_tcp_ok_v4(&net, &t, &p);
    }
}

#[test]
fn udp_v4_nat_and_zero_checksum_agree_with_etherparse() {
    let mut rng = Rng(77);
    for i in 0..2000 {
        let payload = rng.bytes(i % 40);
        let b = PacketBuilder::ethernet2(SRC_MAC, DST_MAC).ipv4(rng.v4(), rng.v4(), 64).udp(rng.u16(), rng.u16());
        let mut frame = Vec::new();
        b.write(&mut frame, &payload).unwrap();
        {
            let (net, t, p) = ep_parse(&frame);
            let TransportHeader::Udp(udp) = &t else { panic!() };
            let ip = Ipv4Packet::new_checked(&frame[ethernet::HEADER_LEN..]).unwrap();
            let d = UdpPacket::new_checked(ip.payload()).unwrap();
            assert_eq!((d.src_port(), d.dst_port()), (udp.source_port, udp.destination_port));
            assert_eq!((d.len(), d.checksum()), (udp.length, udp.checksum));
            assert_eq!(d.payload(), &p[..]);
            let (s, dst) = (IpAddr::V4(ip.src_addr()), IpAddr::V4(ip.dst_addr()));
            assert!(d.verify_checksum(&s, &dst));
            ep_udp_ok_v4(&net, &t, &p);
        }
        // NAT the destination; a stored 0 would mean "none" and is kept.
        let rip = Ipv4Addr::from(rng.v4());
        let rport = rng.u16();
        {
            let mut ip = Ipv4Packet::new_checked(&mut frame[ethernet::HEADER_LEN..]).unwrap();
            let old = ip.dst_addr();
            ip.set_dst_addr_update(rip);
            let mut d = UdpPacket::new_checked(ip.payload_mut()).unwrap();
            d.update_pseudo_addr(&IpAddr::V4(old), &IpAddr::V4(rip));
            d.set_dst_port_update(rport);
        }
        let (net, t, p) = ep_parse(&frame);
        let stored = {
            let ip = ep_ipv4(&net);
            assert_eq!(ip.calc_header_checksum(), ip.header_checksum);
            let TransportHeader::Udp(udp) = &t else { panic!() };
            let full = udp.calc_checksum_ipv4(ip, &p).unwrap();
            // etherparse also maps a computed 0 to ffff.
            assert_eq!(full, udp.checksum);
            udp.checksum
        };
        // A non-zero checksum stays non-zero through NAT (0 -> ffff).
        assert_ne!(stored, 0);
    }
}

#[test]
fn udp_v6_and_icmpv6_agree_with_etherparse() {
    let mut rng = Rng(4242);
    for i in 0..300 {
        let (src, dst) = (rng.v6(), rng.v6());
        let payload = rng.bytes(i % 50);
        let mut frame = Vec::new();
        PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
            .ipv6(src, dst, 33)
            .udp(rng.u16(), rng.u16())
            .write(&mut frame, &payload)
            .unwrap();
        let (net, t, p) = ep_parse(&frame);
        let ip6 = ep_ipv6(&net);
        let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
        assert_eq!(eth.ethertype(), ethertype::IPV6);
        let v6 = Ipv6Packet::new_checked(eth.payload()).unwrap();
        assert_eq!(v6.traffic_class(), ip6.traffic_class);
        assert_eq!(v6.flow_label(), ip6.flow_label.value());
        assert_eq!(v6.payload_len(), ip6.payload_length);
        assert_eq!(v6.next_header(), ip6.next_header.0);
        assert_eq!(v6.hop_limit(), ip6.hop_limit);
        assert_eq!(v6.src_addr().octets(), ip6.source);
        assert_eq!(v6.dst_addr().octets(), ip6.destination);
        let TransportHeader::Udp(udp) = &t else { panic!() };
        let d = UdpPacket::new_checked(v6.payload()).unwrap();
        assert_eq!(d.checksum(), udp.checksum);
        assert_eq!(d.payload(), &p[..]);
        let (s6, d6) = (IpAddr::V6(Ipv6Addr::from(src)), IpAddr::V6(Ipv6Addr::from(dst)));
        assert!(d.verify_checksum(&s6, &d6));

        // Rewrite the v6 destination (NAT66-style) incrementally.
        let new_dst = Ipv6Addr::from(rng.v6());
        {
            let mut ip = Ipv6Packet::new_checked(&mut frame[ethernet::HEADER_LEN..]).unwrap();
            ip.set_dst_addr(new_dst);
            ip.dec_hop_limit();
            let mut u = UdpPacket::new_checked(ip.payload_mut()).unwrap();
            u.update_pseudo_addr(&d6, &IpAddr::V6(new_dst));
        }
        let (net, t, p) = ep_parse(&frame);
        let ip6 = ep_ipv6(&net);
        assert_eq!(ip6.hop_limit, 32);
        let TransportHeader::Udp(udp) = &t else { panic!() };
        assert_eq!(udp.calc_checksum_ipv6(ip6, &p).unwrap(), udp.checksum);

        // ICMPv6 echo.
        let mut frame = Vec::new();
        PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
            .ipv6(src, dst, 64)
            .icmpv6_echo_request(rng.u16(), rng.u16())
            .write(&mut frame, &payload)
            .unwrap();
        let ip = Ipv6Packet::new_checked(&frame[ethernet::HEADER_LEN..]).unwrap();
        assert_eq!(ip.next_header(), protocol::ICMPV6);
        let m = Icmpv6Packet::new_checked(ip.payload()).unwrap();
        assert_eq!(m.msg_type(), wire::icmpv6::msg_type::ECHO_REQUEST);
        assert!(m.verify_checksum(&s6, &d6));
        let (_, t, p) = ep_parse(&frame);
        let TransportHeader::Icmpv6(h) = &t else { panic!() };
        assert_eq!(h.icmp_type.calc_checksum(src, dst, &p).unwrap(), m.checksum());
        assert_eq!(m.payload(), &p[..]);
    }
}

#[test]
fn icmpv4_echo_agrees_with_etherparse() {
    let mut rng = Rng(31337);
    for i in 0..300 {
        let payload = rng.bytes(i % 70);
        let (id, seq) = (rng.u16(), rng.u16());
        let mut frame = Vec::new();
        PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
            .ipv4(rng.v4(), rng.v4(), 64)
            .icmpv4_echo_request(id, seq)
            .write(&mut frame, &payload)
            .unwrap();
        let ip = Ipv4Packet::new_checked(&frame[ethernet::HEADER_LEN..]).unwrap();
        assert_eq!(ip.protocol(), protocol::ICMP);
        let m = Icmpv4Packet::new_checked(ip.payload()).unwrap();
        assert!(m.verify_checksum());
        assert_eq!((m.msg_type(), m.code()), (8, 0));
        assert_eq!((m.echo_ident(), m.echo_seq_no()), (id, seq));
        assert_eq!(m.payload(), &payload[..]);
        // Turn it into the reply in place, with an incremental checksum.
        {
            let mut ip = Ipv4Packet::new_checked(&mut frame[ethernet::HEADER_LEN..]).unwrap();
            let mut m = Icmpv4Packet::new_checked(ip.payload_mut()).unwrap();
            let c = checksum::update16(m.checksum(), 0x0800, 0x0000);
            m.set_msg_type(0);
            m.set_checksum(c);
        }
        let (_, t, p) = ep_parse(&frame);
        let TransportHeader::Icmpv4(h) = &t else { panic!() };
        assert_eq!(h.icmp_type.calc_checksum(&p), h.checksum);
        assert!(matches!(h.icmp_type, etherparse::Icmpv4Type::EchoReply(_)));
    }
}

/// Walks a frame through every view the way the node does, touching every
/// accessor; used on prefixes and garbage to show nothing panics.
fn walk(frame: &[u8]) -> usize {
    let mut touched = 0;
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return 0;
    };
    let _ = (eth.src_addr(), eth.dst_addr());
    match eth.ethertype() {
        ethertype::IPV4 => {
            let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
                return 1;
            };
            let _ = (ip.verify_checksum(), ip.options(), ip.header(), ip.src_addr(), ip.is_fragment());
            let (s, d) = (IpAddr::V4(ip.src_addr()), IpAddr::V4(ip.dst_addr()));
            touched += 2 + l4(ip.protocol(), ip.payload(), &s, &d);
        }
        ethertype::IPV6 => {
            let Ok(ip) = Ipv6Packet::new_checked(eth.payload()) else {
                return 1;
            };
            let (s, d) = (IpAddr::V6(ip.src_addr()), IpAddr::V6(ip.dst_addr()));
            touched += 2 + l4(ip.next_header(), ip.payload(), &s, &d);
        }
        ethertype::ARP => {
            if let Ok(a) = wire::ArpPacket::new_checked(eth.payload()) {
                let _ = (a.sender_ip(), a.target_hw());
                touched += 2;
            }
        }
        _ => {}
    }
    touched
}

fn l4(proto: u8, b: &[u8], s: &IpAddr, d: &IpAddr) -> usize {
    match proto {
        protocol::TCP => TcpPacket::new_checked(b)
            .map(|t| {
                let _ = (t.options(), t.payload(), t.flags(), t.verify_checksum(s, d));
                1
            })
            .unwrap_or(0),
        protocol::UDP => UdpPacket::new_checked(b)
            .map(|u| {
                let _ = (u.payload(), u.verify_checksum(s, d));
                1
            })
            .unwrap_or(0),
        protocol::ICMP => Icmpv4Packet::new_checked(b)
            .map(|m| {
                let _ = (m.payload(), m.verify_checksum(), m.is_error());
                if let Ok(inner) = Ipv4Packet::new_checked_header(m.payload()) {
                    let _ = wire::ip::ports(inner.payload());
                }
                1
            })
            .unwrap_or(0),
        protocol::ICMPV6 => Icmpv6Packet::new_checked(b)
            .map(|m| {
                let _ = (m.target_addr(), m.ndp_lladdr(1), m.verify_checksum(s, d));
                1
            })
            .unwrap_or(0),
        _ => 0,
    }
}

#[test]
fn every_prefix_of_real_frames_is_safe() {
    let mut rng = Rng(999);
    let mut frames = Vec::new();
    for i in 0..20 {
        frames.push(build_tcp_v4(&mut rng, i * 3).0);
        let mut f = Vec::new();
        PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
            .ipv6(rng.v6(), rng.v6(), 1)
            .udp(1, 2)
            .write(&mut f, &rng.bytes(i))
            .unwrap();
        frames.push(f);
        let mut f = Vec::new();
        PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
            .ipv4(rng.v4(), rng.v4(), 1)
            .icmpv4_echo_request(1, 2)
            .write(&mut f, &rng.bytes(i))
            .unwrap();
        frames.push(f);
    }
    for f in &frames {
        let full = walk(f);
        assert_eq!(full, 3, "a complete frame parses through L4");
        for len in 0..f.len() {
            let t = walk(&f[..len]);
            // IP views check the length field, so a cut frame never reaches L4.
            assert!(t <= 1, "prefix {len} of {} reached L4", f.len());
        }
    }
    // Garbage with plausible headers.
    for _ in 0..20_000 {
        let n = (rng.next() % 120) as usize;
        let mut g = rng.bytes(n);
        if g.len() > 14 {
            let et = [ethertype::IPV4, ethertype::IPV6, ethertype::ARP][(rng.next() % 3) as usize];
            g[12..14].copy_from_slice(&et.to_be_bytes());
            g[14] = if et == ethertype::IPV6 { 0x60 } else { 0x45 };
        }
        if g.len() > 24 && rng.next() & 1 == 1 {
            let len = (g.len() - 14) as u16;
            g[16..18].copy_from_slice(&len.to_be_bytes()); // valid v4 total length
            g[23] = [protocol::TCP, protocol::UDP, protocol::ICMP][(rng.next() % 3) as usize];
        }
        walk(&g);
    }
}
