//! Hot restart: a new rvsd started on the control socket of a running one takes over its
//! connection table, so an upgrade or a restart breaks no established connection.
//!
//! The running daemon listens on `<control socket>.handover` (mode 0600, root's, like the
//! control socket). The new one, finding the control socket alive and this socket present,
//! first asks which I/O backend the running daemon serves with (`--io auto` keeps it), then:
//!
//! 1. sets its data path up: AF_PACKET opens its own rings (a fanout group of its own): from
//!    now on every frame is also queued in its rings, while its workers do not run yet; XDP
//!    loads its program, creates its UMEM and its sockets with their rings, but binds and
//!    attaches nothing (the old daemon holds the queues and the program slot);
//! 2. installs the configuration from its file (services, dests, steering; the XDP maps are
//!    filled while the program is not attached yet);
//! 3. discards what its rings hold so far (the old daemon has handled those) and asks;
//! 4. the old daemon closes the gate for every VIP (`Ipvs::freeze_vips`): from its workers'
//!    next batch on no VIP packet is taken, so no entry is created any more; one listing round
//!    trip to every worker is the barrier that this batch has begun, a second copies each
//!    worker's whole table, which is sent;
//! 5. the new daemon stashes each worker's records for the worker of the same number (both use
//!    the same steering, so with the same `--workers` the same client lands on the same
//!    worker; with another count records go by the steering hash of the client address);
//! 6. if the old daemon is on XDP, the new one asks it to let go (`FREE`): the old daemon
//!    stops its worker, which closes its AF_XDP sockets, drops its BPF link and answers
//!    (`GONE`); the new one then attaches its program, binds its sockets (retrying while the
//!    kernel still frees the old ones' queues), fills the rings and puts the sockets in its
//!    map. Frames of this gap go to the kernel and are dropped by the nftables isolation
//!    table (isolate.rs), which both daemons keep: TCP retransmits them;
//! 7. the new daemon starts its workers — they insert their share, then read the frames
//!    queued since step 3 —, replaces the control socket and acknowledges; the old daemon then
//!    exits without removing the sockets or the isolation table.
//!
//! On AF_PACKET nothing is lost in between: a frame is in the new rings from step 1, and
//! handled by the old daemon until step 4 and by the new from step 7. Frames of the few
//! milliseconds between 3 and 4 are handled by both: duplicates, which TCP and UDP peers
//! absorb. On XDP the frames of step 6's gap are lost (tens of ms, docs/design.md), as are new
//! connections' first packets from step 4 on (the gate is closed; their retransmission finds
//! the new daemon). If the new daemon goes away before step 6, the old one opens its gate
//! again and carries on; after step 6 it has no data path left and stops.
//!
//! The data-path sockets are not passed (SCM_RIGHTS): an AF_PACKET ring's position is state
//! of the process that mapped it, and an AF_XDP socket's frames live in the old process's
//! UMEM, whose free list is its worker's; re-attaching costs little. The record stream is
//! rvs's own (below), not the kernel's sync format: a hand-over wants every entry with the
//! time it has left, in one stream, and no datagram limits; each record carries its length,
//! so later fields can be appended without breaking an older reader.
//!
//! Stream (all integers big-endian):
//! - backend question: `RVSIO1\n`, answered `IOXDP1\n` or `IOAFP1\n` (a daemon that does not
//!   know it closes the connection: the asker connects again and assumes AF_PACKET)
//! - request: `RVSHO1\n`
//! - answer: `RVSTB1\n`, u32 number of workers, then per worker u32 count and that many
//!   records `u16 len | payload`, then `END\n`;
//!   payload: u8 protocol, u8 family (4 or 6), u8 state, u8 0, u32 flags, u32 fwmark,
//!   u32 ms left, u16 cport, u16 vport, u16 dport, then caddr, vaddr, daddr (4 or 16 bytes each)
//! - release (XDP, after the answer): `FREE\n`, answered `GONE\n` once the old daemon's
//!   sockets and link are gone
//! - acknowledgement: `DONE\n`

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ipvs::restore::Restored;

use crate::host::Refusal;
use crate::listing::ConnRecord;

const REQUEST: &[u8] = b"RVSHO1\n";
const ANSWER: &[u8] = b"RVSTB1\n";
const END: &[u8] = b"END\n";
const DONE: &[u8] = b"DONE\n";
/// The new daemon's question before it sets its I/O up, and the two answers.
const IO_QUERY: &[u8] = b"RVSIO1\n";
const IO_XDP: &[u8] = b"IOXDP1\n";
const IO_AFPACKET: &[u8] = b"IOAFP1\n";
/// After the table: "let your data path go" and "gone" (XDP: the queues and the program
/// slot can be held by one daemon only).
const FREE: &[u8] = b"FREE\n";
const GONE: &[u8] = b"GONE\n";
/// Bound on one worker's part: a corrupt count must not make the reader allocate wildly.
const MAX_PER_WORKER: u32 = 1 << 28;

/// The hand-over socket beside the control socket.
pub fn path_for(control: &Path) -> PathBuf {
    let mut p = control.as_os_str().to_owned();
    p.push(".handover");
    PathBuf::from(p)
}

/// The new daemon: a connection to the running daemon's hand-over socket, when the control
/// socket is alive and that daemon offers a hand-over.
pub fn probe(control: &Path) -> Option<UnixStream> {
    UnixStream::connect(control).ok()?;
    let s = UnixStream::connect(path_for(control)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    Some(s)
}

/// Encodes one record's payload.
pub fn encode(r: &Restored, out: &mut Vec<u8>) {
    let v6 = r.caddr.is_ipv6() || r.vaddr.is_ipv6() || r.daddr.is_ipv6();
    let mut p = Vec::with_capacity(24 + 48);
    p.extend_from_slice(&[r.protocol, if v6 { 6 } else { 4 }, r.state, 0]);
    p.extend_from_slice(&r.flags.to_be_bytes());
    p.extend_from_slice(&r.fwmark.to_be_bytes());
    p.extend_from_slice(&(r.expires_in_ms.min(u64::from(u32::MAX)) as u32).to_be_bytes());
    for port in [r.cport, r.vport, r.dport] {
        p.extend_from_slice(&port.to_be_bytes());
    }
    for a in [r.caddr, r.vaddr, r.daddr] {
        match (a, v6) {
            (IpAddr::V4(a), false) => p.extend_from_slice(&a.octets()),
            (IpAddr::V4(a), true) => p.extend_from_slice(&a.to_ipv6_mapped().octets()),
            (IpAddr::V6(a), _) => p.extend_from_slice(&a.octets()),
        }
    }
    out.extend_from_slice(&(p.len() as u16).to_be_bytes());
    out.extend_from_slice(&p);
}

/// Decodes one record's payload (`None`: malformed). Longer payloads are read as far as
/// this version knows.
pub fn decode(p: &[u8]) -> Option<Restored> {
    let be16 = |i: usize| p.get(i..i + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let be32 = |i: usize| p.get(i..i + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    let v6 = match *p.get(1)? {
        4 => false,
        6 => true,
        _ => return None,
    };
    let alen = if v6 { 16 } else { 4 };
    let addr = |k: usize| -> Option<IpAddr> {
        let b = p.get(22 + k * alen..22 + (k + 1) * alen)?;
        Some(if v6 {
            let a = Ipv6Addr::from(<[u8; 16]>::try_from(b).ok()?);
            a.to_ipv4_mapped().map_or(IpAddr::V6(a), IpAddr::V4)
        } else {
            IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(b).ok()?))
        })
    };
    Some(Restored {
        protocol: p[0],
        state: *p.get(2)?,
        flags: be32(4)?,
        fwmark: be32(8)?,
        expires_in_ms: u64::from(be32(12)?),
        cport: be16(16)?,
        vport: be16(18)?,
        dport: be16(20)?,
        caddr: addr(0)?,
        vaddr: addr(1)?,
        daddr: addr(2)?,
    })
}

/// A listed entry as it crosses: the listing has whole seconds left, so one more second is
/// given rather than one taken.
pub fn of_record(r: &ConnRecord) -> Restored {
    Restored {
        protocol: r.protocol,
        caddr: r.caddr,
        cport: r.cport,
        vaddr: r.vaddr,
        vport: r.vport,
        daddr: r.daddr,
        dport: r.dport,
        state: r.state,
        flags: r.flags,
        expires_in_ms: (u64::from(r.expires_secs) + 1) * 1000,
        fwmark: r.fwmark,
    }
}

/// Writes the answer for `tables` (one list per worker).
pub fn write_tables(w: &mut impl Write, tables: &[Vec<Restored>]) -> io::Result<()> {
    w.write_all(ANSWER)?;
    w.write_all(&(tables.len() as u32).to_be_bytes())?;
    let mut buf = Vec::with_capacity(64 * 1024);
    for t in tables {
        w.write_all(&(t.len() as u32).to_be_bytes())?;
        for r in t {
            encode(r, &mut buf);
            if buf.len() >= 60 * 1024 {
                w.write_all(&buf)?;
                buf.clear();
            }
        }
        w.write_all(&buf)?;
        buf.clear();
    }
    w.write_all(END)?;
    w.flush()
}

fn bad(m: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, m.into())
}

/// Reads an answer. Malformed records are skipped and counted; a malformed frame (magic,
/// counts, lengths, end) is an error.
pub fn read_tables(r: &mut impl Read) -> io::Result<(Vec<Vec<Restored>>, usize)> {
    let mut magic = [0u8; 7];
    r.read_exact(&mut magic)?;
    if magic != ANSWER {
        return Err(bad("not a hand-over answer"));
    }
    let mut n4 = [0u8; 4];
    r.read_exact(&mut n4)?;
    let workers = u32::from_be_bytes(n4);
    if workers == 0 || workers as usize > ipvs::stats::MAX_WORKERS {
        return Err(bad(format!("{workers} workers")));
    }
    let mut tables = Vec::with_capacity(workers as usize);
    let mut malformed = 0;
    let mut payload = Vec::with_capacity(256);
    for _ in 0..workers {
        r.read_exact(&mut n4)?;
        let count = u32::from_be_bytes(n4);
        if count > MAX_PER_WORKER {
            return Err(bad(format!("{count} records")));
        }
        let mut t = Vec::with_capacity(count.min(1 << 20) as usize);
        for _ in 0..count {
            let mut l2 = [0u8; 2];
            r.read_exact(&mut l2)?;
            payload.resize(u16::from_be_bytes(l2) as usize, 0);
            r.read_exact(&mut payload)?;
            match decode(&payload) {
                Some(x) => t.push(x),
                None => malformed += 1,
            }
        }
        tables.push(t);
    }
    let mut end = [0u8; 4];
    r.read_exact(&mut end)?;
    if end != END {
        return Err(bad("no end marker"));
    }
    Ok((tables, malformed))
}

/// Spreads the old daemon's tables over `workers` new workers: worker i's part to worker i
/// when the counts match, else by the steering hash of the client address (IPv6: worker 0).
pub fn distribute(tables: Vec<Vec<Restored>>, workers: usize) -> Vec<Vec<Restored>> {
    if tables.len() == workers {
        return tables;
    }
    let mut out = vec![Vec::new(); workers];
    for r in tables.into_iter().flatten() {
        let w = match r.caddr {
            IpAddr::V4(a) => crate::steer::worker_for(a, workers),
            IpAddr::V6(_) => 0,
        };
        out[w].push(r);
    }
    out
}

/// The new daemon's side: asks, reads the tables. The caller starts its workers with them,
/// then calls [`acknowledge`].
pub fn take(s: &mut UnixStream) -> Result<Vec<Vec<Restored>>, Refusal> {
    s.write_all(REQUEST).map_err(|e| Refusal(format!("hand-over request: {e}")))?;
    let mut r = BufReader::with_capacity(256 * 1024, &*s);
    let (tables, malformed) = read_tables(&mut r).map_err(|e| Refusal(format!("hand-over: {e}")))?;
    if malformed > 0 {
        tracing::warn!("hand-over: {malformed} malformed records skipped");
    }
    Ok(tables)
}

pub fn acknowledge(mut s: UnixStream) {
    if let Err(e) = s.write_all(DONE) {
        tracing::warn!("hand-over acknowledgement: {e}");
    }
}

/// Binds the hand-over socket (replacing a stale or the previous daemon's one).
pub fn bind(control: &Path) -> Result<UnixListener, Refusal> {
    let p = path_for(control);
    let _ = std::fs::remove_file(&p);
    let l = UnixListener::bind(&p).map_err(|e| Refusal(format!("cannot listen on {}: {e}", p.display())))?;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Refusal(format!("cannot chmod {}: {e}", p.display())))?;
    Ok(l)
}

/// Binds the control socket in place of the previous daemon's (after a hand-over).
pub fn replace_control(control: &Path) -> Result<UnixListener, Refusal> {
    let _ = std::fs::remove_file(control);
    let l = UnixListener::bind(control).map_err(|e| Refusal(format!("cannot listen on {}: {e}", control.display())))?;
    std::fs::set_permissions(control, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Refusal(format!("cannot chmod {}: {e}", control.display())))?;
    Ok(l)
}

/// The I/O backend of the daemon taken over from: a new daemon under `--io auto` keeps it, and
/// releasing an XDP data path is one more step of the hand-over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OldIo {
    Xdp,
    AfPacket,
}

/// The new daemon: which backend the running daemon serves with. `None`: it does not say (a
/// daemon from before the question existed closes the connection; it served AF_PACKET
/// hot restarts only), and the caller connects again with [`probe`].
pub fn ask_io(s: &mut UnixStream) -> Option<OldIo> {
    s.write_all(IO_QUERY).ok()?;
    let mut a = [0u8; IO_XDP.len()];
    s.read_exact(&mut a).ok()?;
    match &a {
        a if a == IO_XDP => Some(OldIo::Xdp),
        a if a == IO_AFPACKET => Some(OldIo::AfPacket),
        _ => None,
    }
}

/// The new daemon, table in hand: asks the old one to let its XDP data path go (its worker
/// stops and closes its AF_XDP sockets, its BPF link goes) and waits until it has.
pub fn release(s: &mut UnixStream) -> Result<(), Refusal> {
    s.write_all(FREE).map_err(|e| Refusal(format!("hand-over release request: {e}")))?;
    let mut a = [0u8; GONE.len()];
    s.read_exact(&mut a).map_err(|e| Refusal(format!("hand-over release: {e}")))?;
    if a != GONE {
        return Err(Refusal("hand-over release: unexpected answer".into()));
    }
    Ok(())
}

/// What the old daemon needs to hand over.
pub struct Giver {
    pub admin: Arc<crate::admin::Admin>,
    pub ipvs: Arc<ipvs::Ipvs>,
    pub io: OldIo,
    /// Stops the workers and lets the data path go (their sockets, the XDP link): after it
    /// the new daemon binds and attaches its own. Called at most once.
    pub release: Box<dyn Fn() + Send>,
    /// Called once the new daemon has acknowledged: this daemon stops.
    pub done: Box<dyn Fn() + Send>,
}

/// The running daemon's side: serves hand-over requests until one succeeds.
pub fn serve(l: UnixListener, g: Giver) {
    for conn in l.incoming() {
        let Ok(mut s) = conn else { continue };
        let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
        loop {
            let mut req = [0u8; REQUEST.len()];
            if s.read_exact(&mut req).is_err() {
                break;
            }
            if req == IO_QUERY {
                let a = if g.io == OldIo::Xdp { IO_XDP } else { IO_AFPACKET };
                if s.write_all(a).is_err() {
                    break;
                }
                continue;
            }
            if req != REQUEST {
                break;
            }
            tracing::info!("hot restart: a new rvsd takes over; handing the connection table over");
            let gate = g.ipvs.vip_gate();
            g.ipvs.freeze_vips(None);
            match give(&mut s, &g) {
                Ok(n) => {
                    tracing::info!("hot restart: {n} entries handed over; stopping");
                    (g.done)();
                    return;
                }
                Err((e, true)) => {
                    // The data path is gone: nothing to carry on with.
                    tracing::error!(
                        "hot restart: the new rvsd went away after the data path was released ({e}); stopping"
                    );
                    (g.done)();
                    return;
                }
                Err((e, false)) => {
                    tracing::error!("hot restart failed ({e}); carrying on");
                    g.ipvs.freeze_vips(Some(gate));
                    break;
                }
            }
        }
    }
}

/// Sends the table, releases the data path if asked, waits for the acknowledgement. The
/// error says whether the data path was released already (then it cannot be undone).
fn give(s: &mut UnixStream, g: &Giver) -> Result<usize, (io::Error, bool)> {
    // The barrier: every worker has finished the batch that may still have seen a VIP.
    g.admin.export_conns().map_err(|e| (io::Error::other(e), false))?;
    let tables: Vec<Vec<Restored>> = g
        .admin
        .export_conns()
        .map_err(|e| (io::Error::other(e), false))?
        .iter()
        .map(|t| t.iter().map(of_record).collect())
        .collect();
    let n = tables.iter().map(Vec::len).sum();
    write_tables(&mut BufWriter::with_capacity(256 * 1024, &*s), &tables).map_err(|e| (e, false))?;
    let mut ack = [0u8; DONE.len()];
    s.read_exact(&mut ack).map_err(|e| (e, false))?;
    if ack == FREE {
        let t0 = std::time::Instant::now();
        (g.release)();
        tracing::info!("hot restart: data path released in {} ms", t0.elapsed().as_millis());
        s.write_all(GONE).map_err(|e| (e, true))?;
        s.read_exact(&mut ack).map_err(|e| (e, true))?;
        if ack != DONE {
            return Err((bad("no acknowledgement"), true));
        }
        return Ok(n);
    }
    if ack != DONE {
        return Err((bad("no acknowledgement"), false));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(c: &str, v: &str, d: &str) -> Restored {
        Restored {
            protocol: 6,
            caddr: c.parse().unwrap(),
            cport: 40000,
            vaddr: v.parse().unwrap(),
            vport: 80,
            daddr: d.parse().unwrap(),
            dport: 8080,
            state: 1,
            flags: 0x0100,
            expires_in_ms: 899_000,
            fwmark: 7,
        }
    }

    #[test]
    fn stream_round_trip_v4_v6_mixed() {
        let tables = vec![
            vec![rec("198.51.100.2", "10.0.0.1", "192.168.1.11"), rec("2001:db8::2", "2001:db8::100", "fd00::11")],
            vec![],
            vec![rec("198.51.100.3", "10.0.0.1", "fd00::12")],
        ];
        let mut buf = Vec::new();
        write_tables(&mut buf, &tables).unwrap();
        let (back, malformed) = read_tables(&mut &buf[..]).unwrap();
        assert_eq!((back, malformed), (tables, 0));
    }

    #[test]
    fn truncated_or_garbage_streams_are_errors_not_panics() {
        let tables = vec![vec![rec("198.51.100.2", "10.0.0.1", "192.168.1.11"); 3]];
        let mut buf = Vec::new();
        write_tables(&mut buf, &tables).unwrap();
        for cut in 0..buf.len() {
            assert!(read_tables(&mut &buf[..cut]).is_err(), "cut at {cut}");
        }
        let mut x = 0x1234_5678u32;
        for _ in 0..2000 {
            let len = (x % 200) as usize;
            let mut g: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            if x.is_multiple_of(2) && g.len() > 11 {
                g[..7].copy_from_slice(ANSWER);
                g[7..11].copy_from_slice(&1u32.to_be_bytes());
            }
            let _ = read_tables(&mut &g[..]);
            let _ = decode(&g);
        }
    }

    #[test]
    fn a_malformed_record_is_skipped() {
        let mut buf = Vec::new();
        buf.extend_from_slice(ANSWER);
        buf.extend_from_slice(&1u32.to_be_bytes());
        buf.extend_from_slice(&2u32.to_be_bytes());
        buf.extend_from_slice(&[0, 3, 6, 9, 0]); // family 9
        encode(&rec("198.51.100.2", "10.0.0.1", "192.168.1.11"), &mut buf);
        buf.extend_from_slice(END);
        let (t, malformed) = read_tables(&mut &buf[..]).unwrap();
        assert_eq!((t[0].len(), malformed), (1, 1));
    }

    #[test]
    fn backend_question_and_release() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let old = std::thread::spawn(move || {
            let mut q = [0u8; 7];
            b.read_exact(&mut q).unwrap();
            assert_eq!(&q[..], IO_QUERY);
            b.write_all(IO_XDP).unwrap();
            let mut f = [0u8; 5];
            b.read_exact(&mut f).unwrap();
            assert_eq!(&f[..], FREE);
            b.write_all(GONE).unwrap();
        });
        assert_eq!(ask_io(&mut a), Some(OldIo::Xdp));
        assert!(release(&mut a).is_ok());
        old.join().unwrap();
        // A daemon that does not know the question closes the connection; one that answers
        // the release with anything else is an error.
        let (mut a, b) = UnixStream::pair().unwrap();
        drop(b);
        assert_eq!(ask_io(&mut a), None);
        let (mut a, mut b) = UnixStream::pair().unwrap();
        b.write_all(b"NOPE\n").unwrap();
        assert!(release(&mut a).is_err());
    }

    #[test]
    fn other_worker_count_goes_by_client_hash() {
        let r = rec("198.51.100.2", "10.0.0.1", "192.168.1.11");
        let out = distribute(vec![vec![r], vec![]], 4);
        let w = crate::steer::worker_for("198.51.100.2".parse().unwrap(), 4);
        assert_eq!(out[w], vec![r]);
        assert_eq!(out.iter().map(Vec::len).sum::<usize>(), 1);
        assert_eq!(distribute(vec![vec![r], vec![]], 2)[0], vec![r], "same count: same worker");
        assert!(path_for(Path::new("/run/rvs/rvsd.sock")).ends_with("rvsd.sock.handover"));
    }
}
