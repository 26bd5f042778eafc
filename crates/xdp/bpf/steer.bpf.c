// SPDX-License-Identifier: MIT OR Apache-2.0
//
// rvs XDP steering program: sends to rvs's AF_XDP socket of the receiving queue exactly the
// frames rvs owns, and passes everything else to the director's kernel (its own ssh, routing
// daemons, the control API over TCP, ARP replies for its own addresses, ...).
//
// Frames rvs owns:
//   - IPv4/IPv6 whose destination is a virtual service (address, protocol, port; port 0 =
//     any, for persistent port-0 services), or any frame to a VIP address that is not also
//     one of the director's own addresses (the kernel does not own the VIP: it would only
//     answer with ICMP unreachable or drop);
//   - IPv4/IPv6 whose destination falls in a firewall-mark rule's destination prefix
//     (same condition as the node's fwmark classifier reaching rvs at all);
//   - replies from NAT real servers (source address, protocol, source port) not addressed
//     to one of the director's own addresses (the director's health checks stay with it);
//   - ARP requests and IPv6 neighbour solicitations for a VIP, a fwmark prefix or one of the
//     director's own addresses: rvs answers them (as on AF_PACKET) and learns the requester
//     at once; left to the kernel, rvs would learn a client's MAC only a netlink round trip
//     later and drop the first reply to it. ARP replies and neighbour advertisements stay
//     with the kernel (it resolves its own next hops, and rvs's through crates/xdp/src/neigh.rs);
//   - ICMP/ICMPv6 errors quoting a packet of the above (quoted source a VIP service, or
//     quoted destination a VIP service or real server: frag-needed, tunnel errors).
//
// A frame rvs owns for which no socket is bound on the receiving queue is dropped (never
// passed to the kernel) and counted. Maps are filled by rvsd (crates/xdp/src/maps.rs) as
// services and real servers change; the program is never reloaded for that.
//
// Addresses are stored as 16 bytes, IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d); ports and
// addresses in network byte order, as on the wire.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct svc_key {
	__u8 addr[16];
	__u8 proto;
	__u8 pad;
	__u16 port;
};

struct addr_key {
	__u8 addr[16];
};

struct lpm_key {
	__u32 prefixlen;
	__u8 addr[16];
};

// Services, VIP addresses and real servers: allocated as entries are added (no
// preallocation), so the bound costs nothing until used; 2^20 is far past the 100 000 services
// rvs is measured with (BENCHMARKS.md "Services at scale").
#define RVS_MAX_KEYS (1 << 20)

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RVS_MAX_KEYS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct svc_key);
	__type(value, __u8);
} rvs_vips SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RVS_MAX_KEYS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct addr_key);
	__type(value, __u8);
} rvs_vip_addrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RVS_MAX_KEYS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct svc_key);
	__type(value, __u8);
} rvs_reals SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct addr_key);
	__type(value, __u8);
} rvs_locals SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_key);
	__type(value, __u8);
} rvs_prefixes SEC(".maps");

// One block of QUEUES_PER_IF slots per interface: slot = rvs_if_base[ifindex] + queue.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);
} rvs_if_base SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u32);
} rvs_xsks SEC(".maps");

// Per-CPU counters: see STAT_* (crates/xdp/src/maps.rs reads them in the same order).
#define STAT_STEERED 0
#define STAT_NO_SOCKET 1
#define STAT_PASSED 2
#define STAT_COUNT 3

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} rvs_stats SEC(".maps");

#define ETH_P_ARP_BE bpf_htons(0x0806)
#define ETH_P_IP_BE bpf_htons(0x0800)
#define ETH_P_IPV6_BE bpf_htons(0x86DD)

static __always_inline void count(__u32 k)
{
	__u64 *v = bpf_map_lookup_elem(&rvs_stats, &k);
	if (v)
		*v += 1;
}

static __always_inline void map4(__u8 *dst, const void *src)
{
	__builtin_memset(dst, 0, 10);
	dst[10] = 0xff;
	dst[11] = 0xff;
	__builtin_memcpy(dst + 12, src, 4);
}

static __always_inline int is_local(const __u8 *addr)
{
	return bpf_map_lookup_elem(&rvs_locals, addr) != 0;
}

static __always_inline int is_vip_addr(const __u8 *addr)
{
	return bpf_map_lookup_elem(&rvs_vip_addrs, addr) != 0;
}

static __always_inline int in_prefix(const __u8 *addr)
{
	struct lpm_key k = { .prefixlen = 128 };
	__builtin_memcpy(k.addr, addr, 16);
	return bpf_map_lookup_elem(&rvs_prefixes, &k) != 0;
}

// A virtual service (exact port, then port 0 = any).
static __always_inline int is_service(const __u8 *addr, __u8 proto, __u16 port)
{
	struct svc_key k = { .proto = proto, .port = port };
	__builtin_memcpy(k.addr, addr, 16);
	if (bpf_map_lookup_elem(&rvs_vips, &k))
		return 1;
	k.port = 0;
	return bpf_map_lookup_elem(&rvs_vips, &k) != 0;
}

static __always_inline int is_real(const __u8 *addr, __u8 proto, __u16 port)
{
	struct svc_key k = { .proto = proto, .port = port };
	__builtin_memcpy(k.addr, addr, 16);
	if (bpf_map_lookup_elem(&rvs_reals, &k))
		return 1;
	k.port = 0;
	return bpf_map_lookup_elem(&rvs_reals, &k) != 0;
}

// Whether a packet to `daddr` belongs to rvs by its destination: a service, or a VIP or
// fwmark address the kernel does not own.
static __always_inline int owned_dst(const __u8 *daddr, __u8 proto, __u16 dport)
{
	if (is_service(daddr, proto, dport))
		return 1;
	if (is_local(daddr))
		return 0;
	return is_vip_addr(daddr) || in_prefix(daddr);
}

static __always_inline int has_ports(__u8 proto)
{
	return proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_SCTP;
}

// The packet quoted in an ICMP error, IPv4: owned if it came from a service or went to a
// service or real server.
static __attribute__((noinline)) int quoted_v4(void *q, void *end)
{
	__u8 *ip = q;
	if ((void *)(ip + 20) > end)
		return 0;
	__u32 ihl = (ip[0] & 0x0f) * 4;
	if (ihl < 20 || ihl > 60)
		return 0;
	__u8 proto = ip[9];
	__u8 saddr[16], daddr[16];
	map4(saddr, ip + 12);
	map4(daddr, ip + 16);
	__u16 sport = 0, dport = 0;
	if (has_ports(proto)) {
		__u8 *l4 = ip + ihl;
		if ((void *)(l4 + 4) > end)
			return 0;
		__builtin_memcpy(&sport, l4, 2);
		__builtin_memcpy(&dport, l4 + 2, 2);
	}
	return is_service(saddr, proto, sport) || is_service(daddr, proto, dport) ||
	       is_real(daddr, proto, dport);
}

static __attribute__((noinline)) int quoted_v6(void *q, void *end)
{
	__u8 *ip = q;
	if ((void *)(ip + 40) > end)
		return 0;
	__u8 proto = ip[6];
	__u16 sport = 0, dport = 0;
	if (has_ports(proto)) {
		__u8 *l4 = ip + 40;
		if ((void *)(l4 + 4) > end)
			return 0;
		__builtin_memcpy(&sport, l4, 2);
		__builtin_memcpy(&dport, l4 + 2, 2);
	}
	return is_service(ip + 8, proto, sport) || is_service(ip + 24, proto, dport) ||
	       is_real(ip + 24, proto, dport);
}

static __attribute__((noinline)) int owned_ipv4(__u8 *ip, void *end)
{
	if ((void *)(ip + 20) > end)
		return 0;
	__u32 ihl = (ip[0] & 0x0f) * 4;
	if (ihl < 20)
		return 0;
	__u8 proto = ip[9];
	__u8 saddr[16], daddr[16];
	map4(saddr, ip + 12);
	map4(daddr, ip + 16);
	// Non-first fragments carry no ports.
	int first = (bpf_ntohs(*(__u16 *)(ip + 6)) & 0x1fff) == 0;
	__u8 *l4 = ip + ihl;
	__u16 sport = 0, dport = 0;
	if (first && has_ports(proto)) {
		if ((void *)(l4 + 4) > end)
			return owned_dst(daddr, proto, 0);
		__builtin_memcpy(&sport, l4, 2);
		__builtin_memcpy(&dport, l4 + 2, 2);
	}
	if (owned_dst(daddr, proto, dport))
		return 1;
	if (is_local(daddr)) {
		// To the director itself: only ICMP errors about rvs's traffic (tunnel errors).
		if (first && proto == IPPROTO_ICMP && (void *)(l4 + 8) <= end) {
			__u8 t = l4[0];
			if (t == 3 || t == 4 || t == 5 || t == 11 || t == 12)
				return quoted_v4(l4 + 8, end);
		}
		return 0;
	}
	if (first && has_ports(proto) && is_real(saddr, proto, sport))
		return 1;
	if (first && proto == IPPROTO_ICMP && (void *)(l4 + 8) <= end) {
		__u8 t = l4[0];
		if (t == 3 || t == 4 || t == 5 || t == 11 || t == 12)
			return quoted_v4(l4 + 8, end);
	}
	return 0;
}

static __attribute__((noinline)) int owned_ipv6(__u8 *ip, void *end)
{
	if ((void *)(ip + 40) > end)
		return 0;
	__u8 proto = ip[6];
	__u8 *saddr = ip + 8, *daddr = ip + 24;
	__u8 *l4 = ip + 40;
	__u16 sport = 0, dport = 0;
	if (proto == IPPROTO_ICMPV6) {
		if ((void *)(l4 + 24) <= end && l4[0] == 135) {
			// Neighbour solicitation: the target follows the 8-byte ICMPv6 header.
			__u8 *target = l4 + 8;
			return is_local(target) || is_vip_addr(target) || in_prefix(target);
		}
	} else if (has_ports(proto)) {
		if ((void *)(l4 + 4) > end)
			return owned_dst(daddr, proto, 0);
		__builtin_memcpy(&sport, l4, 2);
		__builtin_memcpy(&dport, l4 + 2, 2);
	}
	if (owned_dst(daddr, proto, dport))
		return 1;
	int local = is_local(daddr);
	if (!local && has_ports(proto) && is_real(saddr, proto, sport))
		return 1;
	if (proto == IPPROTO_ICMPV6 && (void *)(l4 + 8) <= end && l4[0] >= 1 && l4[0] <= 4)
		return quoted_v6(l4 + 8, end);
	return 0;
}

static __attribute__((noinline)) int owned_arp(__u8 *arp, void *end)
{
	// Ethernet/IPv4 ARP: htype 1, ptype 0x0800, hlen 6, plen 4, op, sha, spa, tha, tpa.
	if ((void *)(arp + 28) > end)
		return 0;
	if (arp[6] != 0 || arp[7] != 1)
		return 0; // not a request: replies stay with the kernel
	__u8 tpa[16];
	map4(tpa, arp + 24);
	return is_local(tpa) || is_vip_addr(tpa) || in_prefix(tpa);
}

SEC("xdp")
int rvs_steer(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return XDP_PASS;
	__u8 *l3 = (__u8 *)(eth + 1);
	int owned = 0;
	if (eth->h_proto == ETH_P_IP_BE)
		owned = owned_ipv4(l3, end);
	else if (eth->h_proto == ETH_P_IPV6_BE)
		owned = owned_ipv6(l3, end);
	else if (eth->h_proto == ETH_P_ARP_BE)
		owned = owned_arp(l3, end);
	if (!owned) {
		count(STAT_PASSED);
		return XDP_PASS;
	}
	__u32 ifindex = ctx->ingress_ifindex;
	__u32 *base = bpf_map_lookup_elem(&rvs_if_base, &ifindex);
	__u32 q = (base ? *base : 0) + ctx->rx_queue_index;
	if (!base || !bpf_map_lookup_elem(&rvs_xsks, &q)) {
		count(STAT_NO_SOCKET);
		return XDP_DROP;
	}
	count(STAT_STEERED);
	return bpf_redirect_map(&rvs_xsks, q, XDP_DROP);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
