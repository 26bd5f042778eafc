//! Start-up checks of the director host and the interface settings rvs needs
//! (node/src/io/README.md "On the director", DESIGN.md "Traps measured").
//!
//! - Every served interface exists, is up and is Ethernet.
//! - `net.ipv4.ip_forward` is 0: the kernel sees every frame rvs sees and must never forward
//!   what rvs forwards (with forwarding off and the VIP not local it drops VIP traffic
//!   silently).
//! - GRO and LRO are off on served interfaces: otherwise the ring delivers aggregates of up to
//!   64 KB that no link can carry.
//! - A VIP must not be one of the kernel's own addresses (checked when a service is added,
//!   see `admin.rs`): the kernel would answer for it (RSTs, ICMP, duplicate ARP replies).

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use node::netlink;

/// Why the daemon refuses to start (printed as is; `main` exits 1).
#[derive(Debug)]
pub struct Refusal(pub String);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks that every interface in `names` exists in `snap`, is up and has a MAC address.
pub fn check_interfaces(snap: &netlink::Snapshot, names: &[String]) -> Result<(), Refusal> {
    for name in names {
        let Some(link) = snap.links.iter().find(|l| &l.name == name) else {
            return Err(Refusal(format!("interface {name} does not exist")));
        };
        if !link.up {
            return Err(Refusal(format!("interface {name} is down (ip link set {name} up)")));
        }
        if link.mac.is_none() || link.arphrd != 1 {
            return Err(Refusal(format!("interface {name} is not an Ethernet interface")));
        }
        if !link.lower_up {
            tracing::warn!("interface {name} has no carrier");
        }
    }
    Ok(())
}

/// What `/proc/sys/net/ipv4/ip_forward` must say, checked on `content`.
pub fn check_ip_forward(content: &str) -> Result<(), Refusal> {
    match content.trim() {
        "0" => Ok(()),
        v => Err(Refusal(format!(
            "net.ipv4.ip_forward is {v}: the director's kernel must not forward what rvs forwards; \
             fix with: sysctl -w net.ipv4.ip_forward=0"
        ))),
    }
}

/// Reads and checks `ip_forward` of the current network namespace.
pub fn check_ip_forward_sysctl() -> Result<(), Refusal> {
    let path = "/proc/sys/net/ipv4/ip_forward";
    let content = std::fs::read_to_string(path).map_err(|e| Refusal(format!("cannot read {path}: {e}")))?;
    check_ip_forward(&content)
}

/// Is `addr` configured on any interface of the director's kernel (including `lo`)?
pub fn kernel_has_addr(snap: &netlink::Snapshot, addr: &IpAddr) -> bool {
    snap.addrs.iter().any(|a| a.addr == *addr)
}

// ---------------------------------------------------------------- ethtool

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GFLAGS: u32 = 0x25;
const ETHTOOL_SFLAGS: u32 = 0x26;
const ETHTOOL_GGRO: u32 = 0x2b;
const ETHTOOL_SGRO: u32 = 0x2c;
const ETH_FLAG_LRO: u32 = 1 << 15;

/// `struct ethtool_value`.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// `struct ifreq` with the `ifr_data` member of the union (40 bytes on 64-bit).
#[repr(C)]
struct IfreqData {
    name: [u8; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

fn ethtool(sock: &OwnedFd, name: &str, cmd: u32, data: u32) -> io::Result<u32> {
    let bytes = name.as_bytes();
    if bytes.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "interface name too long"));
    }
    let mut val = EthtoolValue { cmd, data };
    let mut req = IfreqData { name: [0; libc::IFNAMSIZ], data: std::ptr::null_mut(), _pad: [0; 16] };
    req.name[..bytes.len()].copy_from_slice(bytes);
    req.data = &mut val as *mut EthtoolValue as *mut libc::c_void;
    // SAFETY: SIOCETHTOOL with a valid ifreq whose data points at a live ethtool_value, both
    // outliving the call.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL, &mut req as *mut IfreqData) };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(val.data) }
}

fn ioctl_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Switches GRO and LRO off on `name`. Returns what was changed (empty when both were off
/// already). An interface that does not support a setting is not an error.
pub fn offloads_off(name: &str) -> io::Result<Vec<&'static str>> {
    let sock = ioctl_socket()?;
    let mut changed = Vec::new();
    match ethtool(&sock, name, ETHTOOL_GGRO, 0) {
        Ok(0) => {}
        Ok(_) => {
            ethtool(&sock, name, ETHTOOL_SGRO, 0)?;
            changed.push("gro");
        }
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {}
        Err(e) => return Err(e),
    }
    match ethtool(&sock, name, ETHTOOL_GFLAGS, 0) {
        Ok(flags) if flags & ETH_FLAG_LRO != 0 => {
            ethtool(&sock, name, ETHTOOL_SFLAGS, flags & !ETH_FLAG_LRO)?;
            changed.push("lro");
        }
        Ok(_) => {}
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {}
        Err(e) => return Err(e),
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(name: &str, up: bool, mac: bool) -> netlink::Link {
        netlink::Link {
            index: 3,
            name: name.into(),
            mac: mac.then_some([2, 0, 0, 0, 0, 1]),
            mtu: 1500,
            up,
            lower_up: up,
            arphrd: 1,
            kind: Some("veth".into()),
        }
    }

    #[test]
    fn interfaces_must_exist_be_up_and_ethernet() {
        let snap = netlink::Snapshot {
            links: vec![link("a0", true, true), link("b0", false, true), link("c0", true, false)],
            ..Default::default()
        };
        assert!(check_interfaces(&snap, &["a0".into()]).is_ok());
        let e = check_interfaces(&snap, &["a0".into(), "zz0".into()]).unwrap_err();
        assert_eq!(e.0, "interface zz0 does not exist");
        let e = check_interfaces(&snap, &["b0".into()]).unwrap_err();
        assert!(e.0.contains("b0 is down"), "{e}");
        let e = check_interfaces(&snap, &["c0".into()]).unwrap_err();
        assert!(e.0.contains("not an Ethernet"), "{e}");
    }

    #[test]
    fn ip_forward_must_be_off_and_the_message_says_how() {
        assert!(check_ip_forward("0\n").is_ok());
        let e = check_ip_forward("1\n").unwrap_err();
        assert!(e.0.contains("net.ipv4.ip_forward is 1"), "{e}");
        assert!(e.0.contains("sysctl -w net.ipv4.ip_forward=0"), "{e}");
    }

    #[test]
    fn kernel_addresses() {
        let snap = netlink::Snapshot {
            addrs: vec![netlink::Addr { ifindex: 1, addr: "127.0.0.1".parse().unwrap(), prefix_len: 8, scope: 254 }],
            ..Default::default()
        };
        assert!(kernel_has_addr(&snap, &"127.0.0.1".parse().unwrap()));
        assert!(!kernel_has_addr(&snap, &"10.0.0.100".parse().unwrap()));
    }

    /// As root: a veth in a fresh namespace with GRO switched on is switched off, and a second
    /// call changes nothing.
    #[test]
    fn gro_is_switched_off_on_a_veth() {
        // SAFETY: no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            println!("note: gro_is_switched_off_on_a_veth skipped: needs root");
            return;
        }
        let ns = format!("rvsd-u-{}-gro", std::process::id());
        let ip = |a: &[&str]| std::process::Command::new("ip").args(a).status().is_ok_and(|s| s.success());
        assert!(ip(&["netns", "add", &ns]));
        struct Del(String);
        impl Drop for Del {
            fn drop(&mut self) {
                let _ = std::process::Command::new("ip").args(["netns", "del", &self.0]).status();
            }
        }
        let _del = Del(ns.clone());
        assert!(ip(&["-n", &ns, "link", "add", "g0", "type", "veth", "peer", "name", "g1"]));
        let ns2 = ns.clone();
        let r = std::thread::spawn(move || {
            let f = std::fs::File::open(format!("/var/run/netns/{ns2}")).unwrap();
            // SAFETY: setns on a valid namespace fd; affects only this thread.
            assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
            let sock = ioctl_socket().unwrap();
            ethtool(&sock, "g0", ETHTOOL_SGRO, 1).unwrap();
            assert_ne!(ethtool(&sock, "g0", ETHTOOL_GGRO, 0).unwrap(), 0, "GRO on before");
            let first = offloads_off("g0").unwrap();
            let after = ethtool(&sock, "g0", ETHTOOL_GGRO, 0).unwrap();
            let second = offloads_off("g0").unwrap();
            (first, after, second, offloads_off("nosuch0").is_err())
        })
        .join()
        .unwrap();
        assert_eq!(r, (vec!["gro"], 0, vec![], true));
    }

    #[test]
    fn ifreq_has_the_kernel_size() {
        assert_eq!(std::mem::size_of::<IfreqData>(), std::mem::size_of::<libc::ifreq>());
    }
}
