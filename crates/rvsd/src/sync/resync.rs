//! The bulk resync, an rvs addition beside the kernel's protocol (never instead of it): a
//! (re)starting director pulls its peer's whole connection table over unicast TCP before it
//! reports itself ready, so a director that comes back does not take the VIPs with an empty
//! table (the kernel protocol only sends entries as their packets flow).
//!
//! Wire, after the TCP handshake:
//! 1. server → client: `RVSR`, version 1, a 16-byte random nonce `ns`.
//! 2. client → server: its nonce `nc` (16) and `HMAC-SHA256(key, "client" ‖ ns ‖ nc)`.
//! 3. server → client: `HMAC-SHA256(key, "server" ‖ nc ‖ ns)`; each side has proven it holds
//!    the shared key, and a session key `HMAC(key, "session" ‖ ns ‖ nc)` follows.
//! 4. server → client: frames `len (be32) ‖ message ‖ tag (16)`, where the message is a kernel
//!    version 1 sync message (up to 255 records, `sync_maxlen` 65507) and the tag the first 16
//!    bytes of `HMAC(session, seq (be64) ‖ message)`; a message without records ends the
//!    stream. A bad tag ends the pull: what arrived before it stays (each frame was checked).

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use ipvs::sync::{SyncConn, v1};
use sha2::Sha256;

use super::{SnapReq, SyncDaemons};

const MAGIC: &[u8; 4] = b"RVSR";
const VERSION: u8 = 1;
const NONCE: usize = 16;
const TAG: usize = 16;
/// Frame payload bound: one UDP-sized sync message.
const MAX_MESSAGE: usize = 65507;
/// Slab positions a worker turns into records per request (its loop pauses that long).
pub const SNAP_SLICE: usize = 65536;

type HmacSha256 = Hmac<Sha256>;

fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC takes a key of any length.
    let mut m = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// Equal without an early exit (the tags are secrets until checked).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn nonce() -> io::Result<[u8; NONCE]> {
    let mut n = [0u8; NONCE];
    // SAFETY: the buffer is valid for its length.
    let got = unsafe { libc::getrandom(n.as_mut_ptr() as *mut libc::c_void, NONCE, 0) };
    if got != NONCE as isize {
        return Err(io::Error::other("getrandom failed"));
    }
    Ok(n)
}

fn denied(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, what.to_string())
}

/// The shared key from a file (its bytes, trailing newline dropped); at least 16 bytes.
pub fn read_key(path: &std::path::Path) -> Result<Vec<u8>, String> {
    let mut k = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    while k.last().is_some_and(|b| b.is_ascii_whitespace()) {
        k.pop();
    }
    if k.len() < 16 {
        return Err(format!("{}: the resync key must be at least 16 bytes", path.display()));
    }
    Ok(k)
}

/// Serves snapshots to peers until `stop`; one thread per peer.
pub fn serve(listener: TcpListener, key: Arc<Vec<u8>>, daemons: Arc<SyncDaemons>, stop: Arc<AtomicBool>) {
    if let Err(e) = listener.set_nonblocking(true) {
        tracing::error!("resync listener: {e}");
        return;
    }
    while !stop.load(Relaxed) {
        match listener.accept() {
            Ok((s, peer)) => {
                let (key, daemons) = (key.clone(), daemons.clone());
                let _ = std::thread::Builder::new().name("rvsd-resync-s".into()).spawn(move || {
                    let t0 = Instant::now();
                    match serve_one(s, &key, &daemons) {
                        Ok(n) => tracing::info!("resync: sent {n} entries to {peer} in {:?}", t0.elapsed()),
                        Err(e) => tracing::warn!("resync: peer {peer}: {e}"),
                    }
                });
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => {
                tracing::warn!("resync: accept: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Frames out: messages of up to 255 records, each tagged.
struct FrameWriter<W: Write> {
    out: W,
    session: [u8; 32],
    seq: u64,
    msg: v1::Writer,
}

impl<W: Write> FrameWriter<W> {
    fn push(&mut self, c: &SyncConn) -> io::Result<()> {
        if !self.msg.push(c) {
            self.flush_msg()?;
            self.msg.push(c);
        }
        Ok(())
    }

    fn flush_msg(&mut self) -> io::Result<()> {
        let m = self.msg.as_bytes();
        let tag = mac(&self.session, &[&self.seq.to_be_bytes(), m]);
        self.out.write_all(&(m.len() as u32).to_be_bytes())?;
        self.out.write_all(m)?;
        self.out.write_all(&tag[..TAG])?;
        self.seq += 1;
        self.msg.clear();
        Ok(())
    }

    fn finish(mut self) -> io::Result<()> {
        if !self.msg.is_empty() {
            self.flush_msg()?;
        }
        self.flush_msg()?; // the empty message: end of the table
        self.out.flush()
    }
}

fn serve_one(s: TcpStream, key: &[u8], daemons: &SyncDaemons) -> io::Result<u64> {
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_nodelay(true)?;
    let mut r = BufReader::new(s.try_clone()?);
    let mut w = BufWriter::with_capacity(1 << 18, s);
    let ns = nonce()?;
    w.write_all(MAGIC)?;
    w.write_all(&[VERSION])?;
    w.write_all(&ns)?;
    w.flush()?;
    let mut hello = [0u8; NONCE + 32];
    r.read_exact(&mut hello)?;
    let (nc, proof) = hello.split_at(NONCE);
    if !same(proof, &mac(key, &[b"client", &ns, nc])) {
        return Err(denied("the peer does not hold the resync key"));
    }
    w.write_all(&mac(key, &[b"server", nc, &ns]))?;
    let session = mac(key, &[b"session", &ns, nc]);
    let mut fw = FrameWriter { out: w, session, seq: 0, msg: v1::Writer::new(0, MAX_MESSAGE) };
    let mut sent = 0u64;
    // Every worker cuts its next slice while the slices already here are encoded and sent.
    let ask = |snap: &mpsc::SyncSender<SnapReq>, from: usize| {
        let (tx, rx) = mpsc::sync_channel(1);
        snap.send(SnapReq { from, reply: tx }).map(|_| rx).map_err(|_| io::Error::other("worker gone"))
    };
    let snaps = daemons.snap_senders();
    let mut pending = snaps.iter().map(|s| ask(s, 0).map(Some)).collect::<io::Result<Vec<_>>>()?;
    while pending.iter().any(Option::is_some) {
        for (i, slot) in pending.iter_mut().enumerate() {
            let Some(rx) = slot.take() else { continue };
            let (records, next) =
                rx.recv_timeout(Duration::from_secs(5)).map_err(|_| io::Error::other("worker did not answer"))?;
            if let Some(at) = next {
                *slot = Some(ask(&snaps[i], at)?);
            }
            for c in &records {
                fw.push(c)?;
            }
            sent += records.len() as u64;
        }
    }
    fw.finish()?;
    Ok(sent)
}

/// Pulls a peer's table into our workers; returns the entries received. Each entry goes to
/// the worker that owns its client, waiting for room (this is not the forwarding path).
pub fn pull(peer: SocketAddr, key: &[u8], daemons: &SyncDaemons, timeout: Duration) -> io::Result<u64> {
    let s = TcpStream::connect_timeout(&peer, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_nodelay(true)?;
    let mut r = BufReader::with_capacity(1 << 18, s.try_clone()?);
    let mut w = s;
    let mut head = [0u8; 4 + 1 + NONCE];
    r.read_exact(&mut head)?;
    if &head[..4] != MAGIC || head[4] != VERSION {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "not an rvs resync server (or another version)"));
    }
    let ns = &head[5..];
    let nc = nonce()?;
    let mut hello = nc.to_vec();
    hello.extend_from_slice(&mac(key, &[b"client", ns, &nc]));
    w.write_all(&hello)?;
    let mut proof = [0u8; 32];
    r.read_exact(&mut proof).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => denied("the peer refused our proof (not the same resync key?)"),
        _ => e,
    })?;
    if !same(&proof, &mac(key, &[b"server", &nc, ns])) {
        return Err(denied("the peer does not hold the resync key"));
    }
    let session = mac(key, &[b"session", ns, &nc]);
    let apply = daemons.apply_senders();
    let workers = apply.len().max(1);
    let mask = daemons.client_mask();
    let mut per_worker: Vec<Vec<SyncConn>> = vec![Vec::new(); workers];
    let mut buf = vec![0u8; MAX_MESSAGE + TAG];
    let mut got = 0u64;
    for seq in 0u64.. {
        let mut len = [0u8; 4];
        r.read_exact(&mut len)?;
        let len = u32::from_be_bytes(len) as usize;
        if !(v1::HEADER_LEN..=MAX_MESSAGE).contains(&len) {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("bad frame length {len}")));
        }
        r.read_exact(&mut buf[..len + TAG])?;
        let (m, tag) = buf[..len + TAG].split_at(len);
        if !same(tag, &mac(&session, &[&seq.to_be_bytes(), m])[..TAG]) {
            return Err(denied("a frame failed its check"));
        }
        let msg = ipvs::sync::decode(m, 0).map_err(|d| io::Error::new(io::ErrorKind::InvalidData, d.name()))?;
        if msg.conns.is_empty() && msg.skipped.is_empty() {
            break;
        }
        got += msg.conns.len() as u64;
        for c in msg.conns {
            per_worker[super::backup::owner(&c.caddr, mask, workers)].push(c);
        }
        for (w, v) in per_worker.iter_mut().enumerate() {
            if v.len() >= 1024 {
                apply[w].send(std::mem::take(v)).map_err(|_| io::Error::other("worker gone"))?;
            }
        }
    }
    for (w, v) in per_worker.into_iter().enumerate() {
        if !v.is_empty() {
            apply[w].send(v).map_err(|_| io::Error::other("worker gone"))?;
        }
    }
    Ok(got)
}

/// The readiness file for keepalived's `track_file`: "1" (not ready) until the table is
/// known, then "0". Written whole and renamed, so a reader never sees half a value.
pub fn write_ready(path: &std::path::Path, ready: bool) {
    let tmp = path.with_extension("tmp");
    let r = std::fs::write(&tmp, if ready { "0\n" } else { "1\n" }).and_then(|_| std::fs::rename(&tmp, path));
    if let Err(e) = r {
        tracing::error!("ready file {}: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::atomic::AtomicUsize;

    /// A director without packets: `workers` worker threads that only run their sync turn,
    /// publishing their table sizes.
    struct Director {
        ipvs: Arc<ipvs::Ipvs>,
        daemons: Arc<SyncDaemons>,
        sizes: Arc<Vec<AtomicUsize>>,
        stop: Arc<AtomicBool>,
        threads: Vec<std::thread::JoinHandle<()>>,
    }

    impl Director {
        /// With `per_worker` synced entries already in each worker's table.
        fn new(workers: usize, per_worker: usize, max: usize) -> Director {
            let ipvs = Arc::new(ipvs::Ipvs::new(max));
            let key = ipvs::ServiceKey::tcp("10.0.0.100".parse().unwrap(), 80);
            ipvs.add_service(ipvs::ServiceConfig::new(key, "rr")).unwrap();
            ipvs.add_dest(&key, ipvs::DestConfig::new("192.168.0.11".parse().unwrap(), 80)).unwrap();
            let (daemons, links) = SyncDaemons::new(ipvs.clone(), workers);
            let sizes: Arc<Vec<AtomicUsize>> = Arc::new((0..workers).map(|_| AtomicUsize::new(0)).collect());
            let stop = Arc::new(AtomicBool::new(false));
            let mut threads = Vec::new();
            for (i, link) in links.into_iter().enumerate() {
                let (ipvs, sizes, stop) = (ipvs.clone(), sizes.clone(), stop.clone());
                threads.push(std::thread::spawn(move || {
                    let mut w = ipvs::Worker::new(i, ipvs);
                    w.set_now(1000);
                    for n in 0..per_worker {
                        let c = entry(i, n);
                        w.sync_apply(&c, 3);
                    }
                    while !stop.load(Relaxed) {
                        super::super::worker_turn(&mut w, &link);
                        sizes[i].store(w.conns.len(), Relaxed);
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }));
            }
            Director { ipvs, daemons, sizes, stop, threads }
        }

        fn total(&self) -> usize {
            self.sizes.iter().map(|s| s.load(Relaxed)).sum()
        }

        fn wait_total(&self, n: usize, within: Duration) -> bool {
            let t0 = Instant::now();
            while t0.elapsed() < within {
                if self.total() == n {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            false
        }
    }

    impl Drop for Director {
        fn drop(&mut self) {
            self.stop.store(true, Relaxed);
            for t in self.threads.drain(..) {
                let _ = t.join();
            }
        }
    }

    /// Entry `n` of worker `i`: a distinct client per entry.
    fn entry(i: usize, n: usize) -> SyncConn {
        let client = Ipv4Addr::from(0x0a00_0000 | ((i as u32) << 22) | (n as u32 >> 14));
        SyncConn {
            protocol: 6,
            flags: 3,
            state: 1,
            cport: 1024 + (n & 0x3fff) as u16,
            vport: 80,
            dport: 80,
            fwmark: 0,
            timeout: 900,
            caddr: IpAddr::V4(client),
            vaddr: "10.0.0.100".parse().unwrap(),
            daddr: "192.168.0.11".parse().unwrap(),
            seq: None,
            pe_data: vec![],
            pe_name: vec![],
        }
    }

    fn server(d: &Director, key: &[u8]) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let (k, daemons, stop) = (Arc::new(key.to_vec()), d.daemons.clone(), d.stop.clone());
        std::thread::spawn(move || serve(l, k, daemons, stop));
        addr
    }

    #[test]
    fn a_restarting_director_pulls_the_whole_table_and_a_wrong_key_gets_nothing() {
        let key = b"0123456789abcdef-shared";
        let peer = Director::new(2, 3000, 10_000);
        assert!(peer.wait_total(6000, Duration::from_secs(5)));
        let addr = server(&peer, key);
        let fresh = Director::new(3, 0, 10_000);
        let e = pull(addr, b"0123456789abcdef-wrong!", &fresh.daemons, Duration::from_secs(5)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert_eq!(fresh.total(), 0);
        assert_eq!(pull(addr, key, &fresh.daemons, Duration::from_secs(5)).unwrap(), 6000);
        assert!(fresh.wait_total(6000, Duration::from_secs(5)), "got {}", fresh.total());
        let dest = fresh.ipvs.services().order()[0].dests[0].clone();
        assert_eq!(dest.activeconns(), 6000, "bound to our own real server, active as synced");
    }

    /// The bulk resync's rate: `RVS_RESYNC_BENCH=N cargo test --release -p rvsd resync_rate --
    /// --ignored --nocapture` (N entries over 2 workers, pulled by 2 workers over loopback).
    #[test]
    #[ignore]
    fn resync_rate() {
        let n: usize = std::env::var("RVS_RESYNC_BENCH").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
        let key = b"0123456789abcdef-shared";
        let peer = Director::new(2, n / 2, n);
        assert!(peer.wait_total(n / 2 * 2, Duration::from_secs(120)));
        let addr = server(&peer, key);
        let fresh = Director::new(2, 0, n);
        let cpu = || {
            // SAFETY: getrusage fills the struct given.
            let mut u: libc::rusage = unsafe { std::mem::zeroed() };
            unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
            let t = |v: libc::timeval| Duration::from_secs(v.tv_sec as u64) + Duration::from_micros(v.tv_usec as u64);
            t(u.ru_utime) + t(u.ru_stime)
        };
        let (t0, c0) = (Instant::now(), cpu());
        let got = pull(addr, key, &fresh.daemons, Duration::from_secs(30)).unwrap();
        let pulled = t0.elapsed();
        assert!(fresh.wait_total(n / 2 * 2, Duration::from_secs(60)));
        let (applied, used) = (t0.elapsed(), cpu() - c0);
        println!(
            "resync of {got} entries: received in {pulled:?}, in the tables after {applied:?}; \
             CPU time of both directors meanwhile {used:?} (1 ms idle sleeps of 4 worker threads included)"
        );
    }

    #[test]
    fn hmac_sha256_matches_rfc_4231_case_2() {
        let m = mac(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        let hex: String = m.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        assert!(same(&m, &m) && !same(&m, &[0; 32]) && !same(&m[..16], &m));
    }
}
