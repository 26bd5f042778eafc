/// Protocol families with their own hook tables (`NFPROTO_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    Ipv4 = 0,
    Ipv6 = 1,
    Arp = 2,
}

impl Family {
    pub const ALL: [Family; 3] = [Family::Ipv4, Family::Ipv6, Family::Arp];
}

/// The five hook points along the IP path (`NF_INET_*`). ARP uses only LOCAL_IN and LOCAL_OUT
/// in the kernel; here any point may be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HookPoint {
    PreRouting = 0,
    LocalIn = 1,
    Forward = 2,
    LocalOut = 3,
    PostRouting = 4,
}

impl HookPoint {
    pub const ALL: [HookPoint; 5] =
        [HookPoint::PreRouting, HookPoint::LocalIn, HookPoint::Forward, HookPoint::LocalOut, HookPoint::PostRouting];
}
