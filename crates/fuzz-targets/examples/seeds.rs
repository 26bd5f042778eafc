//! Writes the seed corpora of fuzz/seeds/ (run from the repository root):
//!
//!     cargo run -p rvs-fuzz-targets --example seeds
//!
//! node_path: valid frames of every kind on both legs of the fuzz director (src/node_path.rs),
//! built with etherparse; ipvsadm_args: command lines of every ipvsadm command; api_request:
//! HTTP requests whose bodies are the JSON of those commands, drains, reloads, listing
//! filters. The text corpora (keepalived, config_toml) are files kept in the folder as they are.

use std::path::Path;

use control::ipvsadm::args::{Action, Parsed, parse};
use control::ipvsadm::resolve::NoResolver;
use control::ipvsadm::restore::line_to_argv;
use etherparse::PacketBuilder;

const DIR_EXT: [u8; 6] = [2, 0, 0, 0, 0, 1];
const DIR_INT: [u8; 6] = [2, 0, 0, 0, 0, 2];
const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xaa];
const CLIENT: [u8; 4] = [198, 51, 100, 2];
const VIP: [u8; 4] = [10, 0, 0, 100];
const CLIENT6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
const VIP6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0];
const RS6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x11];

fn rs(n: u8) -> [u8; 4] {
    [192, 168, 1, 10 + n]
}
fn rs_mac(n: u8) -> [u8; 6] {
    [2, 0, 0, 0, 1, n]
}

fn build(b: PacketBuilder_, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    b(&mut v, payload);
    v
}
type PacketBuilder_ = Box<dyn FnOnce(&mut Vec<u8>, &[u8])>;

fn ext4() -> etherparse::PacketBuilderStep<etherparse::Ethernet2Header> {
    PacketBuilder::ethernet2(CLIENT_MAC, DIR_EXT)
}

fn tcp4(src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16, flags: &str, from_rs: Option<u8>) -> PacketBuilder_ {
    let eth = match from_rs {
        Some(n) => PacketBuilder::ethernet2(rs_mac(n), DIR_INT),
        None => ext4(),
    };
    let mut t = eth.ipv4(src, dst, 64).tcp(sp, dp, 1000, 64240);
    for f in flags.chars() {
        t = match f {
            'S' => t.syn(),
            'A' => t.ack(2000),
            'F' => t.fin(),
            'R' => t.rst(),
            'P' => t.psh(),
            _ => t,
        };
    }
    Box::new(move |v, p| t.write(v, p).unwrap())
}

/// IPv4 header checksum over bytes 14..34 of an Ethernet frame (after a hand edit).
fn fix_ipv4_csum(f: &mut [u8]) {
    f[24] = 0;
    f[25] = 0;
    let mut sum = 0u32;
    for c in f[14..34].chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    f[24..26].copy_from_slice(&(!(sum as u16)).to_be_bytes());
}

fn arp(sender_mac: [u8; 6], sender: [u8; 4], target: [u8; 4], reply: bool, dst: [u8; 6]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(if reply { &dst } else { &[0xff; 6] });
    f.extend_from_slice(&sender_mac);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, if reply { 2 } else { 1 }]);
    f.extend_from_slice(&sender_mac);
    f.extend_from_slice(&sender);
    f.extend_from_slice(if reply { &dst } else { &[0; 6] });
    f.extend_from_slice(&target);
    f
}

fn sctp(src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16, chunk: u8, from_rs: Option<u8>) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&sp.to_be_bytes());
    body.extend_from_slice(&dp.to_be_bytes());
    body.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]); // verification tag, checksum
    body.extend_from_slice(&[chunk, 0, 0, 20, 0, 0, 0, 1, 0, 0, 0xff, 0xff, 0, 1, 0, 1, 0, 0, 0, 1]);
    let eth = match from_rs {
        Some(n) => PacketBuilder::ethernet2(rs_mac(n), DIR_INT),
        None => ext4(),
    };
    let mut v = Vec::new();
    eth.ipv4(src, dst, 64).write(&mut v, etherparse::IpNumber(132), &body).unwrap();
    v
}

fn node_frames() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut add = |name: &str, ctl: u8, frame: Vec<u8>| {
        let mut v = vec![ctl];
        v.extend_from_slice(&frame);
        out.push((name.to_string(), v));
    };
    let get = b"GET / HTTP/1.0\r\n\r\n";
    // External leg: clients to the VIPs.
    add("ext-tcp-syn-nat", 0, build(tcp4(CLIENT, VIP, 40000, 80, "S", None), &[]));
    add("ext-tcp-ack-nat", 0, build(tcp4(CLIENT, VIP, 40000, 80, "A", None), &[]));
    add("ext-tcp-data-nat", 0, build(tcp4(CLIENT, VIP, 40000, 80, "AP", None), get));
    add("ext-tcp-fin-nat", 0, build(tcp4(CLIENT, VIP, 40000, 80, "AF", None), &[]));
    add("ext-tcp-rst-nat", 0, build(tcp4(CLIENT, VIP, 40000, 80, "R", None), &[]));
    add("ext-tcp-syn-partial-csum", 2, build(tcp4(CLIENT, VIP, 40001, 80, "S", None), &[]));
    add("ext-tcp-syn-tun", 0, build(tcp4(CLIENT, VIP, 40002, 443, "S", None), &[]));
    add("ext-tcp-syn-no-service", 0, build(tcp4(CLIENT, VIP, 40003, 81, "S", None), &[]));
    add("ext-tcp-to-director", 0, build(tcp4(CLIENT, [198, 51, 100, 1], 40004, 22, "S", None), &[]));
    let mut udp = Vec::new();
    ext4().ipv4(CLIENT, VIP, 64).udp(5353, 53).write(&mut udp, &[0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]).unwrap();
    add("ext-udp-dr", 0, udp.clone());
    let mut frag = udp.clone();
    frag[20] |= 0x20; // more fragments
    fix_ipv4_csum(&mut frag);
    add("ext-udp-fragment", 0, frag);
    add("ext-sctp-init-nat", 0, sctp(CLIENT, VIP, 3868, 3868, 1, None));
    let mut v = Vec::new();
    ext4().ipv4(CLIENT, VIP, 64).icmpv4_echo_request(1, 1).write(&mut v, b"ping").unwrap();
    add("ext-icmp-echo-vip", 0, v);
    // A router's "fragmentation needed" about a reply VIP:80 -> client (PMTU for the service).
    let mut inner = Vec::new();
    PacketBuilder::ipv4(VIP, CLIENT, 64).tcp(80, 40000, 1, 1000).ack(1).write(&mut inner, &[]).unwrap();
    let mut v = Vec::new();
    ext4().ipv4([198, 51, 100, 254], VIP, 64).icmpv4_raw(3, 4, [0, 0, 5, 0x78]).write(&mut v, &inner).unwrap();
    add("ext-icmp-frag-needed", 0, v);
    add("ext-arp-request-vip", 0, arp(CLIENT_MAC, CLIENT, VIP, false, DIR_EXT));
    add("ext-arp-request-director", 0, arp(CLIENT_MAC, CLIENT, [198, 51, 100, 1], false, DIR_EXT));
    let mut v = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, DIR_EXT)
        .ipv6(CLIENT6, VIP6, 64)
        .tcp(40000, 80, 1000, 64240)
        .syn()
        .write(&mut v, &[])
        .unwrap();
    add("ext-tcp6-syn-nat", 0, v);
    // Neighbour solicitation for the VIP (target + source link-layer option).
    let mut ns = Vec::from(VIP6);
    ns.extend_from_slice(&[1, 1]);
    ns.extend_from_slice(&CLIENT_MAC);
    let mut v = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, [0x33, 0x33, 0xff, 0, 1, 0])
        .ipv6(CLIENT6, [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 1, 0], 255)
        .icmpv6_raw(135, 0, [0; 4])
        .write(&mut v, &ns)
        .unwrap();
    add("ext-ndp-solicit-vip", 0, v);
    let mut v = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, DIR_EXT)
        .ipv6(CLIENT6, VIP6, 64)
        .icmpv6_echo_request(1, 1)
        .write(&mut v, b"ping")
        .unwrap();
    add("ext-icmp6-echo-vip", 0, v);
    // Internal leg: real servers answering (NAT replies), and their own traffic.
    add("int-tcp-synack-nat-reply", 1, build(tcp4(rs(1), CLIENT, 80, 40000, "SA", Some(1)), &[]));
    add("int-tcp-data-nat-reply", 1, build(tcp4(rs(1), CLIENT, 80, 40000, "AP", Some(1)), b"HTTP/1.0 200 OK\r\n\r\n"));
    add("int-tcp-fin-nat-reply", 1, build(tcp4(rs(1), CLIENT, 80, 40000, "AF", Some(1)), &[]));
    add("int-tcp-reply-partial-csum", 3, build(tcp4(rs(1), CLIENT, 80, 40001, "SA", Some(1)), &[]));
    add("int-sctp-initack-nat-reply", 1, sctp(rs(4), CLIENT, 3868, 3868, 2, Some(4)));
    let mut v = Vec::new();
    PacketBuilder::ethernet2(rs_mac(1), DIR_INT)
        .ipv6(RS6, CLIENT6, 64)
        .tcp(80, 40000, 1000, 64240)
        .syn()
        .ack(1001)
        .write(&mut v, &[])
        .unwrap();
    add("int-tcp6-synack-nat-reply", 1, v);
    // A real server's "port unreachable" about a forwarded client packet.
    let mut inner = Vec::new();
    PacketBuilder::ipv4(CLIENT, rs(1), 63).udp(5353, 80).write(&mut inner, b"x").unwrap();
    let mut v = Vec::new();
    PacketBuilder::ethernet2(rs_mac(1), DIR_INT)
        .ipv4(rs(1), CLIENT, 64)
        .icmpv4_raw(3, 3, [0; 4])
        .write(&mut v, &inner)
        .unwrap();
    add("int-icmp-port-unreachable", 1, v);
    add("int-arp-reply-rs", 1, arp(rs_mac(1), rs(1), [192, 168, 1, 1], true, DIR_INT));
    add("int-arp-request-director", 1, arp(rs_mac(2), rs(2), [192, 168, 1, 1], false, DIR_INT));
    out
}

/// ipvsadm command lines: every command, every forwarding method and option family.
const IPVSADM: &[&str] = &[
    "-A -t 10.0.0.100:80 -s rr",
    "-A -t 10.0.0.100:443 -s wlc -p 300 -M 255.255.255.0",
    "-A -u 10.0.0.100:53 -s sh -b sh-fallback,sh-port -o",
    "-A --sctp-service 10.0.0.100:3868 -s mh -b mh-port",
    "-A -f 7 -s lblcr",
    "-A -f 9 -6 -s dh",
    "-A -t [2001:db8::100]:80 -s twos",
    "-A -t 10.0.0.100:0 -p",
    "-A -u 10.0.0.100:5060 -s rr --pe sip -p 60",
    "-E -t 10.0.0.100:80 -s wrr",
    "-D -t 10.0.0.100:80",
    "-a -t 10.0.0.100:80 -r 192.168.1.11:8080 -m -w 3",
    "-a -t 10.0.0.100:80 -r 192.168.1.12 -g -x 100 -y 50",
    "-a -t 10.0.0.100:443 -r 192.168.1.13 -i --tun-type gue --tun-port 6080 --tun-csum",
    "-a -t 10.0.0.100:443 -r 192.168.1.14 -i --tun-type gre --tun-nocsum",
    "-a -t [2001:db8::100]:80 -r [2001:db8:2::11]:80 -m",
    "-e -t 10.0.0.100:80 -r 192.168.1.11:8080 -m -w 0",
    "-d -t 10.0.0.100:80 -r 192.168.1.11:8080",
    "-C",
    "-Z",
    "-Z -t 10.0.0.100:80",
    "-L -n",
    "-L -n --stats --exact",
    "-L -n --rate",
    "-l -c -n",
    "-L --timeout",
    "-L --daemon",
    "-L -n --thresholds --persistent-conn --tun-info",
    "-L -t 10.0.0.100:80 -n --nosort",
    "-S -n",
    "-R",
    "--set 900 120 300",
    "--start-daemon master --mcast-interface eth0 --syncid 5 --sync-maxlen 1400",
    "--start-daemon backup --mcast-group 224.0.0.81 --mcast-port 8848 --mcast-ttl 2",
    "--stop-daemon master",
    "--add-service --tcp-service=10.0.0.100:80 --scheduler=rr",
    "-h",
    "-v",
];

/// JSON bodies of ipvsadm commands, as rvsadm sends them.
fn command_bodies() -> Vec<String> {
    IPVSADM
        .iter()
        .filter_map(|l| match parse(&line_to_argv("ipvsadm", l), false, &NoResolver) {
            Ok(Parsed::Action(Action::Command(c))) => Some(serde_json::to_string(&c).unwrap()),
            _ => None,
        })
        .collect()
}

fn http(method: &str, path: &str, body: &str) -> Vec<u8> {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: rvsd\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn write(dir: &Path, name: &str, data: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), data).unwrap();
}

fn main() {
    let root = Path::new("fuzz/seeds");
    assert!(Path::new("fuzz/Cargo.toml").exists(), "run from the repository root");
    for (name, data) in node_frames() {
        write(&root.join("node_path"), &name, &data);
    }
    for (i, l) in IPVSADM.iter().enumerate() {
        write(&root.join("ipvsadm_args"), &format!("line-{i:02}"), l.as_bytes());
    }
    write(&root.join("ipvsadm_args"), "restore-all", IPVSADM.join("\n").as_bytes());
    let api = root.join("api_request");
    for (i, b) in command_bodies().iter().enumerate() {
        write(&api, &format!("command-{i:02}"), &http("POST", "/v1/command", b));
    }
    let drain =
        r#"{"service":{"Tcp":{"addr":"10.0.0.100","port":80}},"addr":"192.168.1.11","port":8080,"timeout_secs":30}"#;
    write(&api, "drain", &http("POST", "/v1/drain", drain));
    write(&api, "reload-empty", &http("POST", "/v1/reload", ""));
    write(&api, "reload-path", &http("POST", "/v1/reload", r#"{"path":"/etc/rvs/rvsd.toml"}"#));
    for (i, q) in ["", "?service=tcp:10.0.0.100:80", "?server=192.168.1.11:8080&state=ESTABLISHED", "?service=fwm:7"]
        .iter()
        .enumerate()
    {
        write(&api, &format!("connections-{i}"), &http("GET", &format!("/v1/connections{q}"), ""));
    }
    write(&api, "snapshot", &http("GET", "/v1/snapshot", ""));
    println!("seeds written under {}", root.display());
}
