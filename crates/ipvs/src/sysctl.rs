//! The run-time settings by their LVS names (`/proc/sys/net/ipv4/vs/*`, lvs-semantics.md §20),
//! as one table: name, range, getter, setter, meaning. `rvsadm --sysctl`, the `[sysctl]` table
//! of the configuration file and the API all go through [`set_many`] and [`list`], so a setting
//! added here is reachable everywhere at once.
//!
//! The values live in atomics of [`crate::ipvs::Sysctls`]: a worker reads one with a relaxed load (no lock,
//! no read-modify-write), the defences once a second, the rest where they decide. A change is
//! seen from the next packet (or the next defence tick).
//!
//! To add a setting: add its field to [`crate::ipvs::Sysctls`] (with its default), then one [`Sysctl`] row
//! to [`TABLE`] (keep the table sorted by name: the listing order is the kernel's directory
//! order). A setting with more than one number (`sync_threshold = 3 50`) sets `width: 2` and
//! gets/sets through its own two functions.

use std::sync::atomic::Ordering::Relaxed;

use crate::ipvs::Ipvs;

/// The prefix `sysctl` prints (and that `NAME=VALUE` may carry).
pub const PREFIX: &str = "net.ipv4.vs.";

/// One run-time setting.
#[derive(Clone, Copy)]
pub struct Sysctl {
    /// The name in `/proc/sys/net/ipv4/vs/`.
    pub name: &'static str,
    /// Inclusive range of every number of the value.
    pub min: u32,
    pub max: u32,
    /// How many numbers the value has (1 for all but a few sync settings).
    pub width: usize,
    pub get: fn(&Ipvs) -> [u32; 2],
    pub set: fn(&Ipvs, [u32; 2]),
    /// The kernel's meaning (or rvs's, for rvs's own settings), one line.
    pub meaning: &'static str,
}

impl std::fmt::Debug for Sysctl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sysctl").field("name", &self.name).field("min", &self.min).field("max", &self.max).finish()
    }
}

/// A plain single-number setting backed by one atomic field of [`Sysctls`].
macro_rules! one {
    ($field:ident, $min:expr, $max:expr, $meaning:expr) => {
        Sysctl {
            name: stringify!($field),
            min: $min,
            max: $max,
            width: 1,
            get: |i: &Ipvs| [i.sysctl.$field.load(Relaxed), 0],
            set: |i: &Ipvs, v: [u32; 2]| i.sysctl.$field.store(v[0], Relaxed),
            meaning: $meaning,
        }
    };
}

/// A single-number sync setting, backed by one atomic of [`crate::sync::SyncSysctls`].
macro_rules! sync_one {
    ($field:ident, $min:expr, $max:expr, $meaning:expr) => {
        Sysctl {
            name: stringify!($field),
            min: $min,
            max: $max,
            width: 1,
            get: |i: &Ipvs| [i.sync.sysctl.$field.load(Relaxed), 0],
            set: |i: &Ipvs, v: [u32; 2]| i.sync.sysctl.$field.store(v[0], Relaxed),
            meaning: $meaning,
        }
    };
}

/// The kernel's `proc_dointvec` settings accept any non-negative int here.
const INT_MAX: u32 = i32::MAX as u32;

/// Every setting rvs implements, sorted by name.
pub static TABLE: &[Sysctl] = &[
    one!(am_droprate, 0, INT_MAX, "drop_packet mode 3 drops one in am_droprate new-connection packets (0 counts as 1)"),
    one!(
        amemthresh,
        0,
        INT_MAX,
        "rvs: free connection-table entries per worker below which the automatic defences engage (0 = a sixteenth of the table; the kernel counts free pages)"
    ),
    one!(
        conn_reuse_mode,
        0,
        3,
        "bit 1: a SYN reusing a TIME_WAIT/CLOSE entry is rescheduled; bit 2: also FIN_WAIT of DR/TUN entries"
    ),
    one!(drop_entry, 0, 3, "defence: 0 off, 1/2 when the table is short, 3 always: drop half-open and idle entries"),
    one!(
        drop_packet,
        0,
        3,
        "defence: 0 off, 1/2 when the table is short, 3 always: drop a share of new-connection packets"
    ),
    one!(
        expire_nodest_conn,
        0,
        1,
        "expire an entry whose real server is gone (or has weight 0, for a new SYN) instead of dropping its packets"
    ),
    one!(expire_quiescent_template, 0, 1, "a persistence template of a weight-0 real server is invalid when next used"),
    one!(pmtu_disc, 0, 1, "answer DF packets over the path MTU with fragmentation needed (0: tunnel without DF)"),
    one!(
        secure_tcp,
        0,
        3,
        "defence: 0 off, 1/2 when the table is short, 3 always: the secure TCP state table (short half-open timeouts)"
    ),
    one!(sloppy_sctp, 0, 1, "create SCTP entries from any first chunk but ABORT (mid-stream pickup)"),
    one!(sloppy_tcp, 0, 1, "create TCP entries from any non-RST packet (mid-stream pickup)"),
    one!(
        stray_rst,
        0,
        1_000_000,
        "rvs: answer a TCP packet for a service that matches no entry and opens none with a RST, at most this many per second per worker (0 = silence)"
    ),
    one!(
        syn_proxy,
        0,
        1,
        "rvs: answer SYNs to IPv4 NAT services with SYN cookies; a connection is created only when the client's ACK proves its address"
    ),
    sync_one!(
        sync_persist_mode,
        0,
        1,
        "1: of persistent services only the templates are synced, not their connections"
    ),
    sync_one!(
        sync_qlen_max,
        1,
        INT_MAX,
        "rvs: sync messages waiting to be sent before more are dropped (the kernel counts buffers, default a share of RAM)"
    ),
    sync_one!(
        sync_refresh_period,
        0,
        INT_MAX,
        "seconds: an entry is sent again only when its expiry moved this much (or half its timeout); 0 off"
    ),
    sync_one!(sync_retries, 0, 3, "resends of an entry within sync_refresh_period, spaced a eighth of it"),
    sync_one!(
        sync_sock_size,
        0,
        INT_MAX,
        "send/receive buffer of the sync sockets in bytes, at daemon start (0 = system default)"
    ),
    Sysctl {
        name: "sync_threshold",
        min: 0,
        max: INT_MAX,
        width: 2,
        get: |i: &Ipvs| [i.sync.sysctl.sync_threshold.load(Relaxed), i.sync.sysctl.sync_period.load(Relaxed)],
        set: |i: &Ipvs, v: [u32; 2]| {
            i.sync.sysctl.sync_threshold.store(v[0], Relaxed);
            i.sync.sysctl.sync_period.store(v[1], Relaxed);
        },
        meaning: "\"T P\": an entry is synced when its packet count % P == T (P = 0: once, at T); T < P",
    },
    sync_one!(sync_version, 0, 1, "the sync message format the master sends (0: the legacy IPv4-only one)"),
];

/// The setting called `name`, with or without the `net.ipv4.vs.` prefix (or `/` separators,
/// as `sysctl` accepts them).
pub fn find(name: &str) -> Option<&'static Sysctl> {
    let n = name.trim();
    let n = n.strip_prefix(PREFIX).or_else(|| n.strip_prefix("net/ipv4/vs/")).unwrap_or(n);
    TABLE.iter().find(|s| s.name == n)
}

/// The value as `sysctl` prints it (numbers separated by a tab).
pub fn format_value(s: &Sysctl, v: [u32; 2]) -> String {
    v[..s.width].iter().map(u32::to_string).collect::<Vec<_>>().join("\t")
}

/// Every setting with its value as text, in the kernel's listing order.
pub fn list(ipvs: &Ipvs) -> Vec<(&'static Sysctl, String)> {
    TABLE.iter().map(|s| (s, format_value(s, (s.get)(ipvs)))).collect()
}

/// Parse `text` as a value of `s`: `width` decimal numbers, each within range.
pub fn parse(s: &Sysctl, text: &str) -> Result<[u32; 2], String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.len() != s.width {
        return Err(format!(
            "{PREFIX}{}: expected {} number{}, got {text:?}",
            s.name,
            s.width,
            if s.width == 1 { "" } else { "s" }
        ));
    }
    let mut v = [0u32; 2];
    for (slot, w) in v.iter_mut().zip(&words) {
        let n: i64 = w.parse().map_err(|_| format!("{PREFIX}{}: {w:?} is not a number", s.name))?;
        if n < s.min as i64 || n > s.max as i64 {
            return Err(format!("{PREFIX}{}: {n} is out of range {}..{}", s.name, s.min, s.max));
        }
        *slot = n as u32;
    }
    // The kernel refuses a sync threshold that the period can never reach.
    if s.name == "sync_threshold" && v[1] != 0 && v[0] >= v[1] {
        return Err(format!("{PREFIX}sync_threshold: {} {}: the threshold must be below the period", v[0], v[1]));
    }
    Ok(v)
}

/// Set several settings at once, all or nothing: every name and value is checked first; an
/// unknown name or a bad value is refused with a message naming it, and nothing changes.
pub fn set_many<N: AsRef<str>, V: AsRef<str>>(ipvs: &Ipvs, settings: &[(N, V)]) -> Result<(), String> {
    let mut checked = Vec::with_capacity(settings.len());
    for (name, value) in settings {
        let name = name.as_ref();
        let s = find(name).ok_or_else(|| format!("unknown setting {name:?} (rvsadm --sysctl lists them)"))?;
        checked.push((s, parse(s, value.as_ref())?));
    }
    let _w = ipvs.lock();
    for (s, v) in checked {
        (s.set)(ipvs, v);
    }
    Ok(())
}

/// The value of `name` as text.
pub fn value(ipvs: &Ipvs, name: &str) -> Option<String> {
    find(name).map(|s| format_value(s, (s.get)(ipvs)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_and_names_are_unique() {
        for w in TABLE.windows(2) {
            assert!(w[0].name < w[1].name, "{} before {}", w[0].name, w[1].name);
        }
    }

    #[test]
    fn defaults_are_the_kernels() {
        let i = Ipvs::new(100);
        let got: Vec<(String, String)> = list(&i).into_iter().map(|(s, v)| (s.name.to_string(), v)).collect();
        let want = [
            ("am_droprate", "10"),
            ("amemthresh", "0"),
            ("conn_reuse_mode", "1"),
            ("drop_entry", "0"),
            ("drop_packet", "0"),
            ("expire_nodest_conn", "0"),
            ("expire_quiescent_template", "0"),
            ("pmtu_disc", "1"),
            ("secure_tcp", "0"),
            ("sloppy_sctp", "0"),
            ("sloppy_tcp", "0"),
            ("stray_rst", "1000"),
            ("syn_proxy", "0"),
            ("sync_persist_mode", "0"),
            ("sync_qlen_max", "4096"),
            ("sync_refresh_period", "0"),
            ("sync_retries", "0"),
            ("sync_sock_size", "0"),
            ("sync_threshold", "3\t50"),
            ("sync_version", "1"),
        ];
        let want: Vec<(String, String)> = want.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn set_many_is_all_or_nothing() {
        let i = Ipvs::new(100);
        set_many(&i, &[("net.ipv4.vs.drop_entry", "1"), ("secure_tcp", " 3 ")]).unwrap();
        assert_eq!(i.sysctl.drop_entry.load(Relaxed), 1);
        assert_eq!(i.sysctl.secure_tcp.load(Relaxed), 3);
        let e = set_many(&i, &[("drop_entry", "0"), ("no_such", "1")]).unwrap_err();
        assert!(e.contains("\"no_such\""), "{e}");
        let e = set_many(&i, &[("drop_entry", "0"), ("drop_packet", "4")]).unwrap_err();
        assert!(e.contains("net.ipv4.vs.drop_packet") && e.contains("out of range 0..3"), "{e}");
        let e = set_many(&i, &[("drop_entry", "0"), ("amemthresh", "-1")]).unwrap_err();
        assert!(e.contains("amemthresh") && e.contains("out of range"), "{e}");
        let e = set_many(&i, &[("drop_entry", "0"), ("am_droprate", "ten")]).unwrap_err();
        assert!(e.contains("not a number"), "{e}");
        let e = set_many(&i, &[("drop_entry", "0 1")]).unwrap_err();
        assert!(e.contains("expected 1 number"), "{e}");
        // Nothing of the refused batches was applied.
        assert_eq!(i.sysctl.drop_entry.load(Relaxed), 1);
        assert_eq!(i.sysctl.drop_packet.load(Relaxed), 0);
        assert_eq!(value(&i, "net/ipv4/vs/drop_entry").as_deref(), Some("1"));
    }
}
