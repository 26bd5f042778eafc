//! Golden packet fixtures, in the spirit of Katran's: (description, input frame, expected
//! action, expected output frame), run through the real node path and its hooks, compared
//! byte for byte. Expected frames are built independently with etherparse (full checksums,
//! never our incremental code), and every output is also parsed by etherparse with all its
//! checksums verified.

mod common;

use common::*;
use etherparse::{Icmpv4Header, Icmpv4Type, IpNumber, Ipv4Header};
use ipvs::{DestConfig, ForwardMethod, ServiceConfig, ServiceKey};
use netfilter::DropReason;
use node::Action;
use std::net::{IpAddr, Ipv4Addr};

const C: Ipv4Addr = CLIENT;

fn vip() -> IpAddr {
    IpAddr::V4(VIP)
}

/// The services every fixture runs against.
fn services(lab: &Lab) {
    let ipvs = lab.ipvs();
    let add = |key: ServiceKey, rs_n: u8, port: u16, m: ForwardMethod, w: i32| {
        if ipvs.services().get(&key).is_none() {
            ipvs.add_service(ServiceConfig::new(key, "rr")).unwrap();
        }
        ipvs.add_dest(&key, DestConfig::new(rs(rs_n).into(), port).method(m).weight(w)).unwrap();
    };
    add(ServiceKey::tcp(vip(), 80), 1, 8080, ForwardMethod::Masq, 1);
    add(ServiceKey::udp(vip(), 53), 1, 5353, ForwardMethod::Masq, 1);
    add(ServiceKey::tcp(vip(), 443), 2, 443, ForwardMethod::Route, 1);
    add(ServiceKey::udp(vip(), 123), 2, 123, ForwardMethod::Route, 1);
    add(ServiceKey::tcp(vip(), 8443), 3, 8443, ForwardMethod::Tunnel, 1);
    add(ServiceKey::udp(vip(), 500), 3, 500, ForwardMethod::Tunnel, 1);
    add(ServiceKey::tcp(vip(), 81), 4, 81, ForwardMethod::Masq, 0);
}

/// What the director is expected to do with the input.
enum Expect {
    Tx(u32, Vec<u8>),
    Drop(DropReason),
    Local,
}

struct Fixture {
    desc: &'static str,
    /// Frames sent first (their own outputs are checked by other fixtures).
    before: Vec<(u32, Vec<u8>)>,
    input: (u32, Vec<u8>),
    expect: Expect,
}

/// The NAT'ed form of a client packet: destination RS:port, TTL − 1, new MACs.
fn nat_in(p: &Pkt, n: u8, port: u16) -> Vec<u8> {
    let mut q = p.clone().macs(INT_MAC, rs_mac(n)).ttl(p.ttl - 1);
    q.daddr = rs(n);
    q.dport = port;
    q.build()
}

/// The client packet as DR sends it: only TTL and MACs change.
fn dr(p: &Pkt, n: u8) -> Vec<u8> {
    p.clone().macs(INT_MAC, rs_mac(n)).ttl(p.ttl - 1).build()
}

/// The client packet in an IPIP header from the director's internal address.
fn tun(p: &Pkt, n: u8, outer_id: u16) -> Vec<u8> {
    let inner = p.clone().ttl(p.ttl - 1).ip_bytes();
    let mut o =
        Ipv4Header::new(inner.len() as u16, p.ttl - 1, IpNumber::IPV4, INT_ADDR.octets(), rs(n).octets()).unwrap();
    o.dont_fragment = p.df;
    o.identification = outer_id;
    o.dscp = etherparse::Ipv4Dscp::try_new(p.tos >> 2).unwrap();
    o.ecn = etherparse::Ipv4Ecn::try_new(p.tos & 3).unwrap();
    o.header_checksum = o.calc_header_checksum();
    let mut ip = o.to_bytes().to_vec();
    ip.extend_from_slice(&inner);
    eth(INT_MAC, rs_mac(n), &ip)
}

/// An ICMP error from the VIP back to the client quoting the client's packet.
fn icmp_error(p: &Pkt, t: Icmpv4Type) -> Vec<u8> {
    let quote = p.ip_bytes();
    let quote = &quote[..quote.len().min(548)];
    let icmp = Icmpv4Header::with_checksum(t, quote);
    let mut ip =
        Ipv4Header::new((8 + quote.len()) as u16, 64, IpNumber::ICMP, p.daddr.octets(), p.saddr.octets()).unwrap();
    ip.dont_fragment = false;
    ip.dscp = etherparse::Ipv4Dscp::try_new(0x30).unwrap(); // precedence "internetwork control"
    ip.header_checksum = ip.calc_header_checksum();
    let mut out = ip.to_bytes().to_vec();
    out.extend_from_slice(&icmp.to_bytes());
    out.extend_from_slice(quote);
    eth(EXT_MAC, CLIENT_MAC, &out)
}

/// A NAT reply from real server `n` (its port) to the client, arriving on the internal leg.
fn reply(n: u8, port: u16, cport: u16, flags: u8) -> Pkt {
    let mut p = Pkt::tcp(rs(n), port, C, cport, flags).macs(rs_mac(n), INT_MAC);
    p.id = 0;
    if let L4::Tcp { seq, .. } = &mut p.l4 {
        *seq = 1000;
    }
    p
}

/// The reply as the client must see it: from VIP:vport, forwarded (TTL − 1).
fn unnat_out(p: &Pkt, vport: u16) -> Vec<u8> {
    let mut q = p.clone().macs(EXT_MAC, CLIENT_MAC).ttl(p.ttl - 1);
    q.saddr = VIP;
    q.sport = vport;
    q.build()
}

fn fixtures() -> Vec<Fixture> {
    let syn = Pkt::tcp(C, 40512, VIP, 80, SYN);
    let udp = Pkt::udp(C, 1234, VIP, 53, b"\xe6\xd0query");
    let udp0 = {
        // A UDP datagram without checksum: NAT must compute a full one (§12).
        let mut p = Pkt::udp(C, 1235, VIP, 53, b"abc");
        p.id = 7;
        p
    };
    let syn_dr = Pkt::tcp(C, 40513, VIP, 443, SYN);
    let udp_dr = Pkt::udp(C, 1236, VIP, 123, b"ntp");
    let syn_tun = Pkt::tcp(C, 40514, VIP, 8443, SYN);
    let udp_tun = Pkt::udp(C, 1237, VIP, 500, b"ike!");
    let synack = reply(1, 8080, 40512, SYN | ACK);
    let ack = Pkt::tcp(C, 40512, VIP, 80, ACK);
    let data = Pkt::tcp(C, 40512, VIP, 80, ACK | PSH).payload(b"GET / HTTP/1.0\r\n\r\n");
    let udp_reply = {
        let mut p = Pkt::udp(rs(1), 5353, C, 1234, b"answer").macs(rs_mac(1), INT_MAC);
        p.id = 0;
        p
    };
    let udp0_frame = {
        let mut f = udp0.build();
        f[14 + 20 + 6] = 0;
        f[14 + 20 + 7] = 0;
        f
    };
    vec![
        Fixture {
            desc: "NAT TCP SYN: destination rewritten to the real server (reference vector §2 row 2)",
            before: vec![],
            input: (EXT, syn.build()),
            expect: Expect::Tx(INT, nat_in(&syn, 1, 8080)),
        },
        Fixture {
            desc: "NAT TCP reply SYN-ACK: source rewritten back to VIP:80",
            before: vec![(EXT, syn.build())],
            input: (INT, synack.build()),
            expect: Expect::Tx(EXT, unnat_out(&synack, 80)),
        },
        Fixture {
            desc: "NAT TCP data on an established connection",
            before: vec![(EXT, syn.build()), (INT, synack.build()), (EXT, ack.build())],
            input: (EXT, data.build()),
            expect: Expect::Tx(INT, nat_in(&data, 1, 8080)),
        },
        Fixture {
            desc: "NAT UDP: destination rewritten, checksum updated",
            before: vec![],
            input: (EXT, udp.build()),
            expect: Expect::Tx(INT, nat_in(&udp, 1, 5353)),
        },
        Fixture {
            desc: "NAT UDP reply: source rewritten back to VIP:53",
            before: vec![(EXT, udp.build())],
            input: (INT, udp_reply.build()),
            expect: Expect::Tx(EXT, unnat_out(&udp_reply, 53)),
        },
        Fixture {
            desc: "NAT UDP with zero checksum: a full checksum is computed",
            before: vec![],
            input: (EXT, udp0_frame),
            expect: Expect::Tx(INT, nat_in(&udp0, 1, 5353)),
        },
        Fixture {
            desc: "DR TCP SYN: only the MACs and the TTL change",
            before: vec![],
            input: (EXT, syn_dr.build()),
            expect: Expect::Tx(INT, dr(&syn_dr, 2)),
        },
        Fixture {
            desc: "DR UDP",
            before: vec![],
            input: (EXT, udp_dr.build()),
            expect: Expect::Tx(INT, dr(&udp_dr, 2)),
        },
        Fixture {
            desc: "TUN TCP SYN: IPIP outer header, DF and id 0 from the inner DF packet",
            before: vec![],
            input: (EXT, syn_tun.build()),
            expect: Expect::Tx(INT, tun(&syn_tun, 3, 0)),
        },
        Fixture {
            desc: "TUN UDP without DF: outer DF clear, generated id (first = 1)",
            before: vec![],
            input: (EXT, udp_tun.build()),
            expect: Expect::Tx(INT, tun(&udp_tun, 3, 1)),
        },
        Fixture {
            desc: "TUN TCP with ECN CE inside: outer ECN becomes ECT(0) (RFC 6040)",
            before: vec![],
            input: (EXT, {
                let mut p = syn_tun.clone();
                p.tos = 0xb8 | 3;
                p.build()
            }),
            expect: Expect::Tx(INT, {
                let mut p = syn_tun.clone();
                p.tos = 0xb8 | 3;
                let mut f = tun(&p, 3, 0);
                // outer TOS: DSCP kept, CE → ECT(0); fix the outer header checksum accordingly
                f[14 + 1] = 0xb8 | 2;
                f[14 + 10] = 0;
                f[14 + 11] = 0;
                let c = wire_checksum(&f[14..34]);
                f[14 + 10..14 + 12].copy_from_slice(&c.to_be_bytes());
                f
            }),
        },
        Fixture {
            desc: "a packet to the VIP on a port without service goes to the local stack",
            before: vec![],
            input: (EXT, Pkt::tcp(C, 40600, VIP, 9999, SYN).build()),
            expect: Expect::Local,
        },
        Fixture {
            desc: "SYN to a service whose only dest is quiescent (weight 0): ICMP port unreachable",
            before: vec![],
            input: (EXT, Pkt::tcp(C, 40601, VIP, 81, SYN).build()),
            expect: Expect::Tx(
                EXT,
                icmp_error(
                    &Pkt::tcp(C, 40601, VIP, 81, SYN),
                    Icmpv4Type::DestinationUnreachable(etherparse::icmpv4::DestUnreachableHeader::Port),
                ),
            ),
        },
        Fixture {
            desc: "TTL 1: ICMP time exceeded back to the client, nothing forwarded",
            before: vec![],
            input: (EXT, syn.clone().ttl(1).build()),
            expect: Expect::Tx(
                EXT,
                icmp_error(
                    &syn.clone().ttl(1),
                    Icmpv4Type::TimeExceeded(etherparse::icmpv4::TimeExceededCode::TtlExceededInTransit),
                ),
            ),
        },
        Fixture {
            desc: "a mid-stream ACK without connection is not scheduled: a RST answers it (stray_rst)",
            before: vec![],
            input: (EXT, Pkt::tcp(C, 40602, VIP, 80, ACK).build()),
            expect: Expect::Tx(EXT, {
                // RFC 793: the RST's sequence is the segment's ACK (1); VIP:80 → client, DF.
                let mut r = Pkt::tcp(VIP, 80, C, 40602, RST).macs(EXT_MAC, CLIENT_MAC);
                r.id = 0;
                r.l4 = L4::Tcp { flags: RST, seq: 1, ack: 0, win: 0 };
                r.build()
            }),
        },
        Fixture {
            desc: "a reply from a real server with no connection is not forwarded",
            before: vec![],
            input: (INT, reply(1, 8080, 45000, ACK).build()),
            expect: Expect::Drop(DropReason::NotForUs),
        },
        Fixture {
            desc: "bad IP header checksum is dropped and counted",
            before: vec![],
            input: (EXT, {
                let mut f = syn.build();
                f[14 + 10] ^= 0xff;
                f
            }),
            expect: Expect::Drop(DropReason::BadIpChecksum),
        },
        Fixture {
            desc: "truncated TCP header is dropped",
            before: vec![],
            input: (EXT, {
                let f = syn.build();
                let mut t = f[..14 + 20 + 10].to_vec();
                t[14 + 2..14 + 4].copy_from_slice(&30u16.to_be_bytes());
                t[14 + 10] = 0;
                t[14 + 11] = 0;
                let c = wire_checksum(&t[14..34]);
                t[14 + 10..14 + 12].copy_from_slice(&c.to_be_bytes());
                t
            }),
            expect: Expect::Drop(DropReason::BadL4Header),
        },
    ]
}

fn wire_checksum(b: &[u8]) -> u16 {
    let mut s = 0u32;
    for c in b.chunks(2) {
        s += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32;
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn golden_fixtures() {
    let mut failures = Vec::new();
    for f in fixtures() {
        let mut lab = Lab::new();
        services(&lab);
        for (i, fr) in &f.before {
            lab.send(*i, fr);
        }
        let (action, out) = lab.send(f.input.0, &f.input.1);
        let ok = match &f.expect {
            Expect::Tx(ifc, frame) => {
                if action == Action::Tx(*ifc) && out == *frame {
                    verify_checksums(&out);
                    true
                } else {
                    failures.push(format!(
                        "{}\n  action {action:?}, want Tx({ifc})\n  got  {}\n  want {}",
                        f.desc,
                        hex(&out),
                        hex(frame)
                    ));
                    false
                }
            }
            Expect::Drop(r) => {
                let ok = action == Action::Drop(*r) && lab.node.counters.read().drops_of(*r) == 1;
                if !ok {
                    failures.push(format!("{}: action {action:?}, want Drop({r:?}) counted once", f.desc));
                }
                ok
            }
            Expect::Local => {
                let ok = action == Action::Local;
                if !ok {
                    failures.push(format!("{}: action {action:?}, want Local", f.desc));
                }
                ok
            }
        };
        let _ = ok;
    }
    assert!(failures.is_empty(), "{} fixture(s) failed:\n{}", failures.len(), failures.join("\n"));
}

/// The NAT SYN of reference vector §2: IP header and TCP checksum exactly as listed there.
#[test]
fn nat_matches_reference_vector() {
    let mut lab = Lab::new();
    services(&lab);
    let (a, out) = lab.send(EXT, &Pkt::tcp(C, 40512, VIP, 80, SYN).build());
    assert_eq!(a, Action::Tx(INT));
    assert_eq!(hex(&out[14..34]), "45000028123440003f063daec6336407c0a8010b");
    assert_eq!(hex(&out[34 + 16..34 + 18]), "0b32");
}

/// Every TCP state transition a handshake / data / FIN / RST sequence reaches, checked after
/// each packet, for NAT (INPUT/OUTPUT tables) and DR (INPUT-ONLY).
#[test]
fn tcp_state_sequences() {
    struct Step(u32, Pkt, &'static str);
    let c = |port: u16, flags: u8| Pkt::tcp(C, port, VIP, 80, flags);
    let r = |port: u16, flags: u8| reply(1, 8080, port, flags);
    let d = |port: u16, flags: u8| Pkt::tcp(C, port, VIP, 443, flags);
    let sequences: Vec<(&str, Vec<Step>)> = vec![
        (
            "NAT, client closes first",
            vec![
                Step(EXT, c(50001, SYN), "SYN_RECV"),
                Step(INT, r(50001, SYN | ACK), "SYN_RECV"),
                Step(EXT, c(50001, ACK), "ESTABLISHED"),
                Step(EXT, c(50001, ACK | PSH).payload(b"hello"), "ESTABLISHED"),
                Step(INT, r(50001, ACK | PSH).payload(b"world"), "ESTABLISHED"),
                Step(EXT, c(50001, FIN | ACK), "CLOSE_WAIT"),
                Step(INT, r(50001, FIN | ACK), "TIME_WAIT"),
                Step(EXT, c(50001, ACK), "TIME_WAIT"),
            ],
        ),
        (
            "NAT, server closes first",
            vec![
                Step(EXT, c(50002, SYN), "SYN_RECV"),
                Step(INT, r(50002, SYN | ACK), "SYN_RECV"),
                Step(EXT, c(50002, ACK), "ESTABLISHED"),
                Step(INT, r(50002, FIN | ACK), "FIN_WAIT"),
                Step(EXT, c(50002, ACK), "FIN_WAIT"),
                Step(EXT, c(50002, FIN | ACK), "TIME_WAIT"),
            ],
        ),
        (
            "NAT, client resets",
            vec![
                Step(EXT, c(50003, SYN), "SYN_RECV"),
                Step(INT, r(50003, SYN | ACK), "SYN_RECV"),
                Step(EXT, c(50003, ACK), "ESTABLISHED"),
                Step(EXT, c(50003, RST), "CLOSE"),
            ],
        ),
        ("NAT, server refuses", vec![Step(EXT, c(50004, SYN), "SYN_RECV"), Step(INT, r(50004, RST | ACK), "CLOSE")]),
        (
            "NAT, client RST during handshake",
            vec![Step(EXT, c(50005, SYN), "SYN_RECV"), Step(EXT, c(50005, RST), "SYN_RECV")],
        ),
        (
            "DR (input only)",
            vec![
                Step(EXT, d(50006, SYN), "SYN_RECV"),
                Step(EXT, d(50006, ACK), "ESTABLISHED"),
                Step(EXT, d(50006, ACK | PSH).payload(b"x"), "ESTABLISHED"),
                Step(EXT, d(50006, FIN | ACK), "FIN_WAIT"),
                Step(EXT, d(50006, ACK), "FIN_WAIT"),
            ],
        ),
        (
            "DR, client resets",
            vec![
                Step(EXT, d(50007, SYN), "SYN_RECV"),
                Step(EXT, d(50007, ACK), "ESTABLISHED"),
                Step(EXT, d(50007, RST), "CLOSE"),
            ],
        ),
        ("DR, RST in SYN_RECV", vec![Step(EXT, d(50008, SYN), "SYN_RECV"), Step(EXT, d(50008, RST), "SYN_RECV")]),
    ];
    for (name, steps) in sequences {
        let mut lab = Lab::new();
        services(&lab);
        for (i, Step(ifc, p, want)) in steps.iter().enumerate() {
            let (a, out) = lab.send(*ifc, &p.build());
            assert!(matches!(a, Action::Tx(_)), "{name} step {i}: {a:?}");
            verify_checksums(&out);
            let port = if *ifc == EXT { p.sport } else { p.dport };
            assert_eq!(lab.state_of(C, port), Some(*want), "{name} step {i}");
        }
    }
}

/// ActiveConn / InActConn follow the states (§11): SYN_RECV and ESTABLISHED are active,
/// TIME_WAIT is not; UDP entries are always inactive; expiry brings both to zero.
#[test]
fn active_inactive_counts_and_expiry() {
    let mut lab = Lab::new();
    services(&lab);
    let key = ServiceKey::tcp(vip(), 80);
    let dest = lab.ipvs().services().get(&key).unwrap().dests[0].clone();
    lab.send(EXT, &Pkt::tcp(C, 51000, VIP, 80, SYN).build());
    assert_eq!((dest.activeconns(), dest.inactconns()), (1, 0));
    lab.send(INT, &reply(1, 8080, 51000, SYN | ACK).build());
    lab.send(EXT, &Pkt::tcp(C, 51000, VIP, 80, ACK).build());
    assert_eq!((dest.activeconns(), dest.inactconns()), (1, 0));
    lab.send(EXT, &Pkt::tcp(C, 51000, VIP, 80, FIN | ACK).build());
    lab.send(INT, &reply(1, 8080, 51000, FIN | ACK).build());
    assert_eq!(lab.state_of(C, 51000), Some("TIME_WAIT"));
    assert_eq!((dest.activeconns(), dest.inactconns()), (0, 1));

    let udest = lab.ipvs().services().get(&ServiceKey::udp(vip(), 53)).unwrap().dests[0].clone();
    lab.send(EXT, &Pkt::udp(C, 999, VIP, 53, b"q").build());
    assert_eq!((udest.activeconns(), udest.inactconns()), (0, 1));

    // TIME_WAIT lasts 120 s, UDP 300 s (§11, §12).
    lab.advance(119);
    assert_eq!(lab.cx.ipvs.expire_all(), 0);
    lab.advance(2);
    assert_eq!(lab.cx.ipvs.expire_all(), 1);
    assert_eq!((dest.activeconns(), dest.inactconns()), (0, 0));
    lab.advance(200);
    assert_eq!(lab.cx.ipvs.expire_all(), 1);
    assert_eq!(udest.inactconns(), 0);
    assert!(lab.cx.ipvs.conns.is_empty());
}

/// The seed's defaults: SYN 60 s, ESTABLISHED 900 s, FIN 60 s, UDP 300 s.
#[test]
fn seed_timeouts() {
    let mut lab = Lab::new();
    services(&lab);
    let timeout_of = |lab: &Lab, port: u16| {
        let t = &lab.cx.ipvs.conns;
        t.ids().filter_map(|i| t.get(i)).find(|c| c.cport == port).map(|c| c.timeout)
    };
    lab.send(EXT, &Pkt::tcp(C, 52000, VIP, 443, SYN).build());
    assert_eq!(timeout_of(&lab, 52000), Some(60));
    lab.send(EXT, &Pkt::tcp(C, 52000, VIP, 443, ACK).build());
    assert_eq!(timeout_of(&lab, 52000), Some(900));
    lab.send(EXT, &Pkt::tcp(C, 52000, VIP, 443, FIN | ACK).build());
    assert_eq!(timeout_of(&lab, 52000), Some(60));
    lab.send(EXT, &Pkt::udp(C, 52001, VIP, 123, b"t").build());
    assert_eq!(timeout_of(&lab, 52001), Some(300));
    // --set changes them globally; 0 keeps a value.
    lab.ipvs().set_timeouts(1000, 0, 30);
    lab.advance(0);
    lab.send(EXT, &Pkt::tcp(C, 52002, VIP, 443, SYN).build());
    lab.send(EXT, &Pkt::tcp(C, 52002, VIP, 443, ACK).build());
    assert_eq!(timeout_of(&lab, 52002), Some(1000));
    lab.send(EXT, &Pkt::tcp(C, 52002, VIP, 443, FIN | ACK).build());
    assert_eq!(timeout_of(&lab, 52002), Some(60));
}
