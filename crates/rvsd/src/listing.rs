//! Connection listings without stalling the packet path.
//!
//! A listing is answered by every worker for its own table, between two batches, so the
//! worker's part must be cheap and bounded: it applies the request's filter on the raw
//! entries and copies at most [`PAGE`] matches as fixed-size [`ConnRecord`]s (no
//! allocation per entry, no strings). The API thread turns them into `ConnView`s. A worker
//! with more matches says so (`truncated`, and where to go on: `next`) and is asked for the
//! next page from there (`from`: entry ids are table slots, listed in slot order), so a
//! listing is complete however large the table: `GET /v1/connections` streams it page by page.
//! Entries added or removed between two pages may be missed or listed twice, as with the
//! kernel's `/proc/net/ip_vs_conn` read in several calls.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::mpsc;

use control::api::{self, ConnView, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP};
use control::ops::ConnFilter;
use ipvs::conn::{Conn, ConnAddrs, ConnFlags, ConnId, ConnTable};

/// Entries per page of a listing: bounds the time a worker spends away from its packets (a
/// 10 000-entry copy is well under a millisecond) and the memory of a reply (~2 MB of JSON).
pub const PAGE: usize = 10_000;

/// A listing request to one worker.
pub struct ConnRequest {
    pub filter: ConnFilter,
    /// First entry id (table slot) to look at: 0, then the previous page's `next`.
    pub from: ConnId,
    /// At most this many matching entries ([`PAGE`]).
    pub limit: usize,
    pub reply: mpsc::Sender<ConnList>,
}

/// One worker's answer.
#[derive(Debug, Default)]
pub struct ConnList {
    pub records: Vec<ConnRecord>,
    /// More entries matched than were copied.
    pub truncated: bool,
    /// With `truncated`: the id of the first entry not copied (the next page's `from`).
    pub next: ConnId,
    /// Persistence-engine data of the records that have some (SIP templates' Call-IDs), by
    /// record index: only engine templates pay for a copy.
    pub pe_data: Vec<(usize, Box<[u8]>)>,
}

/// A connection entry as a listing needs it: fixed size, `Copy`, taken on the worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnRecord {
    pub caddr: IpAddr,
    pub vaddr: IpAddr,
    pub daddr: IpAddr,
    pub cport: u16,
    pub vport: u16,
    pub dport: u16,
    pub protocol: u8,
    pub state: u8,
    pub flags: u32,
    /// Seconds left on the owning worker's clock.
    pub expires_secs: u32,
    pub fwmark: u32,
}

impl ConnRecord {
    /// `a` are the entry's addresses (`ConnTable::addrs`); `now_ms` is the owning worker's clock.
    pub fn of(c: &Conn, a: ConnAddrs, now_ms: u64) -> Self {
        ConnRecord {
            caddr: a.caddr,
            vaddr: a.vaddr,
            daddr: a.daddr,
            cport: c.cport,
            vport: c.vport,
            dport: c.dport,
            protocol: c.protocol,
            state: c.state,
            flags: c.flags,
            expires_secs: (c.expires.saturating_sub(now_ms) / 1000).min(u64::from(u32::MAX)) as u32,
            fwmark: c.fwmark,
        }
    }

    fn template(&self) -> bool {
        self.flags & ConnFlags::TEMPLATE != 0
    }

    /// Protocol and virtual address as listed: templates of fwmark services have protocol
    /// IPPROTO_IP and the mark as the address (control/README.md "ConnView").
    fn listed_proto_vaddr(&self) -> (u8, IpAddr) {
        if self.template() && self.fwmark != 0 {
            (api::IPPROTO_IP, IpAddr::V4(Ipv4Addr::from(self.fwmark)))
        } else {
            (self.protocol, self.vaddr)
        }
    }

    fn state_name(&self) -> &'static str {
        api::state_name(self.protocol, u16::from(self.state), self.template(), self.state != 0)
    }

    /// `ConnFilter::matches` of the entry's view, without building the view.
    pub fn matches(&self, f: &ConnFilter) -> bool {
        let (proto, vaddr) = self.listed_proto_vaddr();
        let service_ok = f.service.is_none_or(|k| match k {
            api::ServiceKey::Fwmark { mark, .. } => self.fwmark == mark,
            api::ServiceKey::Tcp { addr, port } => proto == IPPROTO_TCP && vaddr == addr && self.vport == port,
            api::ServiceKey::Udp { addr, port } => proto == IPPROTO_UDP && vaddr == addr && self.vport == port,
            api::ServiceKey::Sctp { addr, port } => proto == IPPROTO_SCTP && vaddr == addr && self.vport == port,
        });
        let server_ok = f.server.is_none_or(|(a, p)| self.daddr == a && self.dport == p);
        let state_ok = f.state.as_ref().is_none_or(|s| self.state_name().eq_ignore_ascii_case(s));
        service_ok && server_ok && state_ok
    }

    /// The entry as `-L -c` lists it (built on the API thread).
    pub fn view(&self) -> ConnView {
        let (proto, vaddr) = self.listed_proto_vaddr();
        ConnView {
            proto,
            caddr: self.caddr,
            cport: self.cport,
            vaddr,
            vport: self.vport,
            daddr: self.daddr,
            dport: self.dport,
            state: self.state_name().to_string(),
            expires_secs: self.expires_secs,
            template: self.template(),
            one_packet: self.flags & ConnFlags::ONE_PACKET != 0,
            fwmark: self.fwmark,
            pe_name: None,
            pe_data: None,
            synced: self.flags & ConnFlags::SYNC != 0,
        }
    }
}

/// The worker's part of a listing: the entries of `table` matching `filter` from id `from`
/// on, at most `limit`. The ids below `from` cost a test of an empty slot each, no more.
pub fn collect(table: &ConnTable, now_ms: u64, filter: &ConnFilter, from: ConnId, limit: usize) -> ConnList {
    let mut out = ConnList {
        records: Vec::with_capacity(table.len().min(limit)),
        truncated: false,
        next: 0,
        pe_data: Vec::new(),
    };
    let unfiltered = filter.service.is_none() && filter.server.is_none() && filter.state.is_none();
    for id in table.ids().skip_while(|&id| id < from) {
        let Some(c) = table.get(id) else { continue };
        let r = ConnRecord::of(c, table.addrs(c), now_ms);
        if !unfiltered && !r.matches(filter) {
            continue;
        }
        if out.records.len() >= limit {
            out.truncated = true;
            out.next = id;
            break;
        }
        let mut r = r;
        if let Some(d) = table.pe_data(id) {
            // Indexed under a port made from the data (`ConnTable::pe_port`); listed as 0.
            r.cport = 0;
            out.pe_data.push((out.records.len(), d.into()));
        }
        out.records.push(r);
    }
    out
}

/// The views of one worker's answer, with the engine data where there is some (the only
/// engine is SIP, whose data, the Call-ID, is shown as text, as the kernel's `show_pe_data`).
pub fn views(list: &ConnList) -> impl Iterator<Item = ConnView> + '_ {
    let mut pe = list.pe_data.iter().peekable();
    list.records.iter().enumerate().map(move |(i, r)| {
        let mut v = r.view();
        if let Some((_, d)) = pe.next_if(|(j, _)| *j == i) {
            v.pe_name = Some(ipvs::pe_sip::NAME.to_string());
            v.pe_data = Some(String::from_utf8_lossy(d).into_owned());
        }
        v
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(i: u32, protocol: u8, state: u8, flags: u32, fwmark: u32) -> (ConnAddrs, Conn) {
        let a = ConnAddrs {
            caddr: IpAddr::V4(Ipv4Addr::from(0xc633_0000 + i)),
            vaddr: "10.0.0.100".parse().unwrap(),
            daddr: if i.is_multiple_of(2) { "192.168.1.11" } else { "192.168.1.12" }.parse().unwrap(),
        };
        let mut c = Conn::new(protocol, (1024 + i % 60000) as u16, 80, 8080);
        c.state = state;
        c.flags = flags;
        c.timeout = 900;
        c.expires = 900_000;
        c.fwmark = fwmark;
        (a, c)
    }

    /// `ConnRecord::matches` agrees with `ConnFilter::matches` on the view, for every kind of
    /// entry and filter.
    #[test]
    fn record_filter_agrees_with_the_view_filter() {
        let tcp = api::ServiceKey::Tcp { addr: "10.0.0.100".parse().unwrap(), port: 80 };
        let filters = [
            ConnFilter::default(),
            ConnFilter { service: Some(tcp), ..Default::default() },
            ConnFilter {
                service: Some(api::ServiceKey::Udp { addr: "10.0.0.100".parse().unwrap(), port: 80 }),
                ..Default::default()
            },
            ConnFilter { service: Some(api::ServiceKey::Fwmark { mark: 7, ipv6: false }), ..Default::default() },
            ConnFilter { server: Some(("192.168.1.11".parse().unwrap(), 8080)), ..Default::default() },
            ConnFilter { state: Some("established".into()), ..Default::default() },
            ConnFilter {
                state: Some("NONE".into()),
                service: Some(api::ServiceKey::Fwmark { mark: 7, ipv6: false }),
                ..Default::default()
            },
            ConnFilter {
                state: Some("UDP".into()),
                server: Some(("192.168.1.12".parse().unwrap(), 8080)),
                service: None,
            },
        ];
        let conns = [
            conn(0, 6, 1, 0, 0),
            conn(1, 6, 3, 0, 0),
            conn(2, 17, 0, 0, 0),
            conn(3, 6, 1, 0, 7),
            conn(4, 0, 0, ConnFlags::TEMPLATE, 7),
            conn(5, 6, 1, ConnFlags::TEMPLATE, 0),
            conn(6, 17, 0, ConnFlags::ONE_PACKET, 0),
            conn(7, 132, 2, 0, 0),
        ];
        for (a, c) in &conns {
            let r = ConnRecord::of(c, *a, 1000);
            let v = r.view();
            assert_eq!(v, crate::convert::conn_view(c, *a, 1000), "the record's view is the entry's view");
            for f in &filters {
                assert_eq!(r.matches(f), f.matches(&v), "{f:?} on {v:?}");
            }
        }
    }

    #[test]
    fn a_large_table_is_filtered_and_bounded_in_the_worker() {
        let n = 250_000u32;
        let mut t = ConnTable::new(n as usize);
        for i in 0..n {
            // One in five ESTABLISHED (TCP state 1), the others SYN_RECV (3).
            let state = if i.is_multiple_of(5) { 1 } else { 3 };
            let (a, c) = conn(i, 6, state, 0, 0);
            t.insert(a, c).unwrap();
        }
        // No filter: bounded, and says so.
        let all = collect(&t, 0, &ConnFilter::default(), 0, 100_000);
        assert_eq!(all.records.len(), 100_000);
        assert!(all.truncated);
        // A filter applied in the worker: only matches are copied (50 000, under the bound).
        let est = ConnFilter { state: Some("ESTABLISHED".into()), ..Default::default() };
        let l = collect(&t, 0, &est, 0, 100_000);
        assert_eq!(l.records.len(), 50_000);
        assert!(!l.truncated);
        assert!(l.records.iter().all(|r| r.view().state == "ESTABLISHED"));
        // Two filters together.
        let f = ConnFilter { server: Some(("192.168.1.11".parse().unwrap(), 8080)), ..est };
        let l = collect(&t, 0, &f, 0, 100_000);
        assert_eq!(l.records.len(), 25_000);
        // Exactly at the limit is not truncated; one more is.
        let l = collect(&t, 0, &f, 0, 25_000);
        assert!(!l.truncated && l.records.len() == 25_000);
        let l = collect(&t, 0, &f, 0, 24_999);
        assert!(l.truncated && l.records.len() == 24_999);
        // Pages: every entry once, in order, the last page not truncated.
        let (mut seen, mut from, mut pages) = (Vec::new(), 0, 0);
        loop {
            let p = collect(&t, 0, &ConnFilter::default(), from, 60_000);
            seen.extend(p.records.iter().map(|r| (r.caddr, r.cport)));
            pages += 1;
            if !p.truncated {
                break;
            }
            assert!(p.next > from);
            from = p.next;
        }
        assert_eq!(pages, 5, "250 000 entries in pages of 60 000");
        assert_eq!(seen.len(), n as usize);
        let unique: std::collections::HashSet<_> = seen.iter().collect();
        assert_eq!(unique.len(), n as usize);
        let first = collect(&t, 0, &f, 0, 20_000);
        let p = collect(&t, 0, &f, first.next, 10_000);
        assert_eq!((p.records.len(), p.truncated), (5_000, false), "the filtered matches past the first 20 000");
        assert!(first.records.iter().chain(&p.records).all(|r| r.matches(&f)));
    }
}
