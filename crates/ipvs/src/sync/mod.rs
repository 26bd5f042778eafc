//! Connection synchronisation, the pure half: the kernel's sync message format (versions 0 and
//! 1, byte for byte as `net/netfilter/ipvs/ip_vs_sync.c` lays them out; lvs-semantics.md §18),
//! the master's "is this entry sent now?" rules, and the per-worker buffer of records that the
//! packet path fills. No socket here: the daemon owns the threads and the multicast sockets.

pub mod backup;
pub mod master;
pub mod rules;
pub mod snapshot;
pub mod v0;
pub mod v1;

#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv4Addr};

pub use rules::{SyncControl, SyncSysctls};

/// Default multicast group (`IP_VS_SYNC_GROUP`).
pub const DEFAULT_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 81);
/// Default UDP port (`IP_VS_SYNC_PORT`).
pub const DEFAULT_PORT: u16 = 8848;
/// Default master message size over IPv4: 1500 − 20 (IP) − 8 (UDP).
pub const DEFAULT_MAXLEN_V4: u16 = 1472;
/// Default master message size over IPv6: 1500 − 40 − 8.
pub const DEFAULT_MAXLEN_V6: u16 = 1452;

/// Entry flags a backup takes from a message (`IP_VS_CONN_F_BACKUP_MASK`).
pub const BACKUP_MASK: u32 = 0x1F87;
/// Entry flags a backup updates on an entry it already has (`IP_VS_CONN_F_BACKUP_UPD_MASK`).
pub const BACKUP_UPD_MASK: u32 = 0x0700;
/// `IP_VS_CONN_F_SEQ_MASK`: the entry carries TCP sequence adjustments (FTP helper).
pub const SEQ_MASK: u32 = 0x0600;
/// `IP_VS_CONN_F_HASHED`: never sent.
pub const HASHED: u32 = 0x0040;
/// Longest persistence-engine data (`IP_VS_PEDATA_MAXLEN`).
pub const PE_DATA_MAX: usize = 255;
/// Longest persistence-engine name (`IP_VS_PENAME_MAXLEN`).
pub const PE_NAME_MAX: usize = 16;

/// One direction's TCP sequence adjustment (`struct ip_vs_seq`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SeqData {
    pub init_seq: u32,
    pub delta: u32,
    pub previous_delta: u32,
}

/// A connection entry (or persistence template) as a sync message carries it.
///
/// The three addresses are of one family (the kernel syncs no mixed-family entry). `timeout`
/// is in seconds, 0 when the message did not say (version 0).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncConn {
    pub protocol: u8,
    pub flags: u32,
    pub state: u16,
    pub cport: u16,
    pub vport: u16,
    pub dport: u16,
    pub fwmark: u32,
    pub timeout: u32,
    pub caddr: IpAddr,
    pub vaddr: IpAddr,
    pub daddr: IpAddr,
    /// `IPVS_OPT_SEQ_DATA`: in_seq then out_seq.
    pub seq: Option<[SeqData; 2]>,
    /// `IPVS_OPT_PE_DATA` (persistence-engine data, e.g. a SIP Call-ID); empty when absent.
    pub pe_data: Vec<u8>,
    /// `IPVS_OPT_PE_NAME`; empty when absent.
    pub pe_name: Vec<u8>,
}

impl SyncConn {
    pub fn is_v6(&self) -> bool {
        self.caddr.is_ipv6()
    }
    pub fn is_template(&self) -> bool {
        self.flags & crate::conn::ConnFlags::TEMPLATE != 0
    }
}

/// Why a received datagram was not used (each is counted by the receiver).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drop {
    /// Shorter than any header, or a record runs past the end.
    Truncated,
    /// The header's size is not the datagram's length.
    BadSize,
    /// A record is malformed (unknown type, bad option, record version ≠ 0).
    Malformed,
    /// Another director group's message (`syncid` differs from ours, ours ≠ 0).
    OtherSyncId,
}

impl Drop {
    pub fn name(self) -> &'static str {
        match self {
            Drop::Truncated => "truncated",
            Drop::BadSize => "bad_size",
            Drop::Malformed => "malformed",
            Drop::OtherSyncId => "other_syncid",
        }
    }
}

/// A record skipped while the rest of its message is used (the kernel's positive error
/// codes: the message is sound, this entry cannot be taken).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// An option we do not know that is not marked optional.
    UnknownOption,
    /// A protocol without a state table here (not TCP, UDP or SCTP).
    Protocol,
    /// A state number past the protocol's last state.
    State,
    /// PE data without a PE name.
    PeParams,
}

/// A decoded message: its header and the usable records, with the skipped ones counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Message {
    /// 0 or 1.
    pub version: u8,
    pub syncid: u8,
    pub conns: Vec<SyncConn>,
    pub skipped: Vec<Skip>,
}

/// Decodes a received datagram the way the kernel's backup does (`ip_vs_process_message`):
/// size check, syncid filter (when `own_syncid` ≠ 0), then version 1 when the header says so
/// (version 1, reserved 0, spare 0), else version 0.
///
/// Unlike the kernel, which keeps the records it applied before meeting a malformed one, rvs
/// drops the whole datagram: a message that is wrong somewhere is trusted nowhere.
pub fn decode(buf: &[u8], own_syncid: u8) -> Result<Message, Drop> {
    if buf.len() < v0::HEADER_LEN {
        return Err(Drop::Truncated);
    }
    if usize::from(u16::from_be_bytes([buf[2], buf[3]])) != buf.len() {
        return Err(Drop::BadSize);
    }
    let syncid = buf[1];
    if own_syncid != 0 && syncid != own_syncid {
        return Err(Drop::OtherSyncId);
    }
    if v1::is_v1(buf) { v1::decode(buf) } else { v0::decode(buf) }
}

/// Number of states of a protocol's table in the kernel (`pp->num_states`), `None` for a
/// protocol the backup cannot take.
pub fn protocol_states(protocol: u8) -> Option<u16> {
    match protocol {
        6 => Some(crate::proto::tcp::STATES as u16),
        17 => Some(1),
        132 => Some(crate::proto::sctp::STATES as u16),
        _ => None,
    }
}

/// The record checks common to both versions after parsing (protocol and state valid;
/// templates are not checked, as in the kernel).
fn check_record(c: &SyncConn) -> Option<Skip> {
    if c.is_template() {
        return None;
    }
    match protocol_states(c.protocol) {
        None => Some(Skip::Protocol),
        Some(n) if c.state >= n => Some(Skip::State),
        Some(_) => None,
    }
}
