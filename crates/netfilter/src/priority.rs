//! Hook priorities: the kernel's `NF_IP_PRI_*` values (lower runs first). IPv6 uses the same
//! numbers. IPVS registers relative to NAT_SRC / NAT_DST (lvs-semantics.md §1).

pub const FIRST: i32 = i32::MIN;
pub const RAW_BEFORE_DEFRAG: i32 = -450;
pub const CONNTRACK_DEFRAG: i32 = -400;
pub const RAW: i32 = -300;
pub const SELINUX_FIRST: i32 = -225;
pub const CONNTRACK: i32 = -200;
pub const MANGLE: i32 = -150;
pub const NAT_DST: i32 = -100;
pub const FILTER: i32 = 0;
pub const SECURITY: i32 = 50;
pub const NAT_SRC: i32 = 100;
pub const SELINUX_LAST: i32 = 225;
pub const CONNTRACK_HELPER: i32 = 300;
pub const CONNTRACK_CONFIRM: i32 = i32::MAX;
pub const LAST: i32 = i32::MAX;

/// IPVS: NAT replies to the director itself, LOCAL_IN (NAT_SRC − 2).
pub const IPVS_REPLY_LOCAL_IN: i32 = NAT_SRC - 2;
/// IPVS: the in-hook, LOCAL_IN (NAT_SRC − 1), after the filter table.
pub const IPVS_LOCAL_IN: i32 = NAT_SRC - 1;
/// IPVS: NAT replies generated locally, LOCAL_OUT (NAT_DST + 1).
pub const IPVS_REPLY_LOCAL_OUT: i32 = NAT_DST + 1;
/// IPVS: schedules local clients, LOCAL_OUT (NAT_DST + 2).
pub const IPVS_LOCAL_OUT: i32 = NAT_DST + 2;
/// IPVS: ICMP errors being forwarded, FORWARD (99).
pub const IPVS_FORWARD_ICMP: i32 = 99;
/// IPVS: the out-hook for NAT replies from real servers, FORWARD (100).
pub const IPVS_REPLY_FORWARD: i32 = 100;
