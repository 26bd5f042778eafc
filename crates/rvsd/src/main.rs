//! rvsd, the rvs director daemon: packet workers on AF_PACKET rings of the served interfaces
//! running the node (with IPVS on its hooks), the network state kept in step with the kernel,
//! rate estimators, the control API on a Unix socket, and the operation side: configuration
//! file with hot reload, health checkers, drains, Prometheus metrics (crates/rvsd/README.md).

mod admin;
mod args;
mod cfgload;
mod check;
mod convert;
mod handover;
mod host;
mod isolate;
mod listing;
mod metrics;
mod netstate;
mod notify;
#[cfg(test)]
mod openapi;
mod operate;
mod procfs;
mod rates;
mod server;
mod sync;
mod sysctl;
mod vipfollow;
mod xdpio;

use std::os::fd::{AsRawFd, BorrowedFd};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use node::io::fanout as steer;
use node::io::{AfPacket, FanoutMode, IoWorker, RingConfig, afpacket_worker};
use node::netlink;

use crate::args::{Args, LogLevel, Parsed};
use crate::host::Refusal;

fn init_logging(level: LogLevel) {
    let max = match level {
        LogLevel::Error => tracing::Level::ERROR,
        LogLevel::Warn => tracing::Level::WARN,
        LogLevel::Info => tracing::Level::INFO,
        LogLevel::Debug => tracing::Level::DEBUG,
        LogLevel::Trace => tracing::Level::TRACE,
    };
    tracing_subscriber::fmt().with_max_level(max).with_writer(std::io::stderr).with_target(false).init();
}

fn main() -> ExitCode {
    let parsed = args::parse(std::env::args().skip(1), std::env::var(args::SOCKET_ENV).ok());
    let args = match parsed {
        Ok(Parsed::Run(a)) => a,
        Ok(Parsed::Help) => {
            print!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Version) => {
            println!("rvsd {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("rvsd: {e}\nTry 'rvsd --help' for more information.");
            return ExitCode::from(2);
        }
    };
    if let Some(id) = &args.config_id {
        cfgload::set_config_id(id);
    }
    if args.check {
        let Some((format, path)) = &args.config else { return ExitCode::from(2) };
        let report = check::check(*format, path, args.config_id.as_deref());
        eprint!("{}", report.render(path));
        return ExitCode::from(report.exit_code());
    }
    // The TCP API's token, read while no other thread exists so that the variable can be
    // removed: nothing rvsd starts (health-check scripts) inherits it.
    let env_token = std::env::var(control::token::TOKEN_ENV).ok();
    // SAFETY: single-threaded here; nothing else reads the environment concurrently.
    unsafe { std::env::remove_var(control::token::TOKEN_ENV) };
    let api_token = match api_token(&args, env_token.as_deref()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("rvsd: {e}");
            return ExitCode::from(1);
        }
    };
    init_logging(args.log);
    match run(&args, api_token) {
        Ok(()) => ExitCode::SUCCESS,
        Err(r) => {
            eprintln!("rvsd: {r}");
            ExitCode::from(1)
        }
    }
}

/// The bearer token of `--api-listen` (control::token): refused without one, or when its file
/// is open to others. Without `--api-listen` a `$RVS_API_TOKEN` (set for rvsadm) is ignored.
fn api_token(args: &Args, env: Option<&str>) -> Result<Option<String>, String> {
    if args.api_listen.is_none() {
        return Ok(None);
    }
    match control::token::resolve(args.api_token_file.as_deref(), env)? {
        Some(t) => Ok(Some(t)),
        None => Err(format!(
            "--api-listen needs a bearer token: give it with --api-token-file PATH (mode 0600) or in the \
             environment variable {}",
            control::token::TOKEN_ENV
        )),
    }
}

/// SIGTERM, SIGINT (stop) and SIGHUP (reload), blocked in every thread and taken by the
/// signal thread with sigwait.
fn handled_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset before use.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGHUP);
        set
    }
}

/// Why the main thread wakes up.
enum Event {
    Signal(i32),
    Reload,
    Fatal(String),
    /// A new rvsd took the table over (handover.rs): stop, leaving the sockets to it.
    HandedOver,
}

/// The configuration file at start: loaded before anything else, so a bad file stops the
/// daemon with its `file:line: field: message` (exit 1).
fn load_config(args: &Args) -> Result<Option<(rvs_config::Config, std::path::PathBuf)>, Refusal> {
    let Some((format, path)) = &args.config else { return Ok(None) };
    let cfg = cfgload::load(*format, path).map_err(Refusal)?;
    tracing::info!("loaded {} configuration {}", format.name(), path.display());
    Ok(Some((cfg, path.clone())))
}

/// Connection-table limit per worker: `--max-conns`, else the file's total divided among
/// the workers, else the default.
fn max_conns_per_worker(args: &Args, cfg: Option<&rvs_config::Config>) -> usize {
    if let Some(n) = args.max_conns {
        return n;
    }
    match cfg.and_then(|c| c.limits.max_connections) {
        Some(total) => (total.div_ceil(args.workers as u64) as usize).clamp(1, 1 << 28),
        None => ipvs::ipvs::DEFAULT_MAX_CONNS,
    }
}

/// The largest MTU of the served interfaces (1500 if none is known).
fn max_served_mtu(net: &node::NetState, served: &[String]) -> u32 {
    net.interfaces.iter().filter(|i| served.contains(&i.name)).map(|i| u32::from(i.mtu)).max().unwrap_or(1500)
}

/// Fanout group id of interface `k`: distinct per daemon (groups are per network namespace,
/// and a second daemon in the same namespace must not join ours).
fn group_id(k: usize) -> u16 {
    ((std::process::id() as u16).wrapping_mul(8)).wrapping_add(k as u16)
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<std::thread::JoinHandle<()>, Refusal> {
    std::thread::Builder::new().name(name.into()).spawn(f).map_err(|e| Refusal(format!("cannot start {name}: {e}")))
}

/// How long a daemon taking over waits for the old one's XDP link and sockets to go once it
/// has said it released them (the kernel frees a socket's queue from a work queue).
const TAKEOVER_ATTACH_WAIT: Duration = Duration::from_secs(2);

/// How long a starting director tries to pull its peer's table before it says ready anyway
/// (the peer may be down: the first director of a pair to start has nobody to ask).
const RESYNC_DEADLINE: Duration = Duration::from_secs(10);

/// The bulk resync: serve our table to peers, and pull the peer's before saying ready.
fn start_resync(
    r: &args::Resync,
    key: Option<Arc<Vec<u8>>>,
    daemons: &Arc<sync::SyncDaemons>,
    stop: &Arc<AtomicBool>,
) -> Result<(), Refusal> {
    if let (Some(addr), Some(k)) = (r.listen, key.clone()) {
        let l = std::net::TcpListener::bind(addr).map_err(|e| Refusal(format!("--resync-listen {addr}: {e}")))?;
        tracing::info!("resync: serving the table on {addr}");
        let (d, st) = (daemons.clone(), stop.clone());
        spawn("rvsd-resync", move || sync::resync::serve(l, k, d, st))?;
    }
    let ready = r.ready_file.clone();
    match (r.from, key) {
        (Some(peer), Some(k)) => {
            let d = daemons.clone();
            spawn("rvsd-resync-c", move || {
                let t0 = Instant::now();
                loop {
                    match sync::resync::pull(peer, &k, &d, Duration::from_secs(2)) {
                        Ok(n) => {
                            tracing::info!("resync: {n} entries from {peer} in {:?}", t0.elapsed());
                            break;
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                            // The peer's host answers but no rvsd listens: it has no table.
                            tracing::info!("resync from {peer}: {e}; nobody to pull from, ready");
                            break;
                        }
                        Err(e) if t0.elapsed() < RESYNC_DEADLINE => {
                            tracing::warn!("resync from {peer}: {e}; retrying");
                            std::thread::sleep(Duration::from_millis(500));
                        }
                        Err(e) => {
                            tracing::error!("resync from {peer}: {e}; ready without the peer's table");
                            break;
                        }
                    }
                }
                if let Some(p) = ready {
                    sync::resync::write_ready(&p, true);
                }
            })?;
        }
        _ => {
            if let Some(p) = ready {
                sync::resync::write_ready(&p, true);
            }
        }
    }
    Ok(())
}

fn run(args: &Args, api_token: Option<String>) -> Result<(), Refusal> {
    let clock = Instant::now();
    let set = handled_signals();
    // Block before any thread exists so every thread inherits the mask.
    // SAFETY: valid set; the old mask is not needed.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };

    if let args::WorkerCpus::List(l) = &args.worker_cpus {
        let allowed = afpacket_worker::allowed_cpus();
        if let Some(c) = l.iter().find(|c| !allowed.contains(c)) {
            return Err(Refusal(format!(
                "--worker-cpus: CPU {c} is not one this process may run on (allowed: {allowed:?})"
            )));
        }
    }
    let config = load_config(args)?;
    // Not ready until the table is known (keepalived's track_file keeps the VIPs away).
    if let Some(p) = &args.resync.ready_file {
        sync::resync::write_ready(p, false);
    }
    let resync_key = args.resync.key.as_deref().map(sync::resync::read_key).transpose().map_err(Refusal)?.map(Arc::new);
    let mut args = args.clone();
    if let Some((cfg, _)) = &config
        && args.interfaces.is_empty()
    {
        args.interfaces = cfg.interfaces.iter().map(|i| i.name.clone()).collect();
    }
    if args.interfaces.is_empty() {
        return Err(Refusal("no interface to serve: give -i NAME or [[interfaces]] in the configuration".into()));
    }
    tracing::info!(
        "rvsd {} starting: interfaces {:?}, socket {}",
        env!("CARGO_PKG_VERSION"),
        args.interfaces,
        args.socket.display()
    );
    host::check_ip_forward_sysctl()?;
    // Monitor first, then dump: no change can fall between them.
    let monitor = netlink::Monitor::new().map_err(|e| Refusal(format!("netlink monitor: {e}")))?;
    let snap = netlink::dump().map_err(|e| Refusal(format!("netlink dump: {e}")))?;
    host::check_interfaces(&snap, &args.interfaces)?;
    for name in &args.interfaces {
        match host::offloads_off(name) {
            Ok(c) if c.is_empty() => tracing::info!("{name}: GRO/LRO already off"),
            Ok(c) => tracing::info!("{name}: switched off {}", c.join(", ")),
            Err(e) => return Err(Refusal(format!("{name}: cannot switch GRO/LRO off: {e}"))),
        }
    }
    let net = netstate::build(&snap, &args.interfaces);
    netstate::log_initial(&net);

    // Another rvsd on this control socket offering a hand-over: take over from it (hot
    // restart); its sockets are replaced once its table is here. Asked first: which backend
    // it serves with decides how ours starts.
    let mut takeover = handover::probe(&args.socket);
    let old_io = match takeover.as_mut().map(handover::ask_io) {
        None => None,
        Some(Some(io)) => Some(io),
        Some(None) => {
            // A daemon that does not answer the question closed the connection.
            takeover = handover::probe(&args.socket);
            takeover.as_ref().map(|_| handover::OldIo::AfPacket)
        }
    };
    // The I/O backend (`--io`): XDP steering + AF_XDP, or AF_PACKET rings. AF_XDP runs one
    // worker unless --workers asks for more (docs/design.md "AF_XDP: workers by queue").
    let xdp_workers = || {
        let (n, why) = xdpio::worker_count(&args.interfaces, if args.workers_given { args.workers } else { 1 });
        if let Some(why) = why {
            tracing::warn!("AF_XDP: {why}: {n} worker(s)");
        }
        n
    };
    // Taking over from
    // a daemon on XDP, ours is prepared now and attached once the old one has let go (it
    // holds the interfaces' queues and program slot until then): `--io auto` keeps the old
    // daemon's backend, never falling back to AF_PACKET because the old one holds XDP.
    let xdp_started = match (args.io, old_io) {
        (args::IoMode::AfPacket, _) => {
            tracing::info!("I/O: AF_PACKET rings (--io afpacket)");
            None
        }
        (args::IoMode::Xdp, Some(_)) | (args::IoMode::Auto, Some(handover::OldIo::Xdp)) => {
            let s = xdpio::prepare_takeover(&args.interfaces, args.busy_poll, xdp_workers()).map_err(|e| {
                Refusal(format!("--io {}: taking over: {e}", if args.io == args::IoMode::Xdp { "xdp" } else { "auto" }))
            })?;
            tracing::info!("I/O: XDP steering + AF_XDP, attached once the running rvsd has handed over");
            Some(s)
        }
        (args::IoMode::Auto, Some(handover::OldIo::AfPacket)) => {
            tracing::info!("I/O: AF_PACKET rings (--io auto, taking over from an rvsd on AF_PACKET)");
            None
        }
        (args::IoMode::Xdp, None) => Some(
            xdpio::start(&args.interfaces, args.busy_poll, xdp_workers())
                .map_err(|e| Refusal(format!("--io xdp: {e}")))?,
        ),
        (args::IoMode::Auto, None) => match xdpio::start(&args.interfaces, args.busy_poll, xdp_workers()) {
            Ok(s) => {
                tracing::info!("I/O: XDP steering + AF_XDP (--io auto: the program attached)");
                Some(s)
            }
            Err(e) => {
                tracing::warn!("I/O: AF_PACKET rings (--io auto: XDP not available: {e})");
                None
            }
        },
    };
    if let Some(s) = &xdp_started {
        args.workers = s.worker_count();
        tracing::info!(
            "AF_XDP: {} worker(s), worker i serving receive queues i (mod {}) of every interface",
            args.workers,
            args.workers
        );
    }
    let max_conns = max_conns_per_worker(&args, config.as_ref().map(|(c, _)| c));
    let args = &args;
    tracing::info!("{} workers, {} connections per worker", args.workers, max_conns);

    let ipvs = Arc::new(ipvs::Ipvs::new(max_conns));
    let follow = args.vip_follow.follows(config.as_ref().map(|(c, _)| c));
    if follow {
        // Before any service is published: a VIP not on an interface never answers.
        ipvs.set_vip_gate(Some(vipfollow::kernel_addrs(&snap)));
        tracing::info!("VIP follow-up: a VIP is active only while it is on one of this director's interfaces");
    }
    let node = node::Node::new(ipvs.clone(), net);
    node.set_shortcut(args.shortcut);
    // Unresolved next hops are asked of the director's kernel (node/src/neighq.rs).
    node.set_kernel_resolution(true);
    if !args.shortcut {
        tracing::info!("established-flow shortcut off (--no-shortcut): every packet through the hook chains");
    }

    // Sockets: for each interface, workers join its fanout group in worker order, so member
    // i of every group is worker i (node/src/io/fanout.rs).
    // TX slots hold a frame of the largest served MTU (a jumbo frame must not be dropped as
    // "does not fit"); RX blocks (128 KiB) already hold any frame up to 64 KiB.
    let max_mtu = max_served_mtu(&node.net(), &args.interfaces);
    // VIPs in a BPF map where the kernel allows it (steer.rs), else a classic program.
    // Worker ids are 0..workers: readers of the counters sum only those slots.
    ipvs::stats::set_workers(args.workers);
    let vip_map = match steer::ebpf_available(args.workers) {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::warn!(
                "eBPF fanout unavailable ({e}): classic BPF steering, NAT replies steered for at most {} VIPs",
                steer::MAX_VIPS
            );
            None
        }
    };
    let mode = if vip_map.is_some() { FanoutMode::Ebpf } else { FanoutMode::Cbpf };
    let ring = |k: usize| {
        RingConfig { rx_block_count: 32, fanout: Some((group_id(k), mode)), ..RingConfig::default() }
            .with_tx_mtu(max_mtu, node::io::afpacket::page_size_bytes())
    };
    tracing::info!("TX slots sized for MTU {max_mtu} ({} bytes)", ring(0).tx_frame_size);
    let (xdp_hooks, xdp_workers) = match xdp_started {
        Some(s) => {
            let (h, w) = s.hooks(node.clone());
            (Some(h), w)
        }
        None => (None, Vec::new()),
    };
    let afpacket_workers = if xdp_hooks.is_some() { 0 } else { args.workers };
    let mut per_worker: Vec<Vec<AfPacket>> = Vec::with_capacity(afpacket_workers);
    for w in 0..afpacket_workers {
        let mut socks = Vec::with_capacity(args.interfaces.len());
        for (k, name) in args.interfaces.iter().enumerate() {
            let s = AfPacket::open(name, &ring(k))
                .map_err(|e| Refusal(format!("{name}: cannot open AF_PACKET ring for worker {w}: {e}")))?;
            socks.push(s);
        }
        per_worker.push(socks);
    }
    let mut groups = Vec::new();
    for (k, name) in args.interfaces.iter().enumerate().filter(|_| !per_worker.is_empty()) {
        // SAFETY: the socket is open (owned by `per_worker`) for the duration of the borrow.
        let fd = unsafe { BorrowedFd::borrow_raw(per_worker[0][k].as_raw_fd()) }
            .try_clone_to_owned()
            .map_err(|e| Refusal(format!("dup: {e}")))?;
        groups.push(Box::new(steer::Group { name: name.clone(), fd }) as Box<dyn steer::Target>);
    }
    let steering = if per_worker.is_empty() {
        None
    } else {
        let mut steering = match vip_map {
            Some(m) => steer::Steering::with_map(groups, args.workers, m),
            None => steer::Steering::new(groups, args.workers),
        };
        steering.update(&steer::SteerSet::default()).map_err(|e| Refusal(format!("steering program: {e}")))?;
        Some(steering)
    };
    // The kernel must not act on the frames rvs owns (isolate.rs). On XDP the steering program
    // keeps them from it while rvsd runs, but its BPF link dies with the process: the table,
    // which outlives a killed rvsd, keeps a crashed director's kernel (still holding the VIP
    // keepalived gave it) from answering the clients' packets with RSTs until the peer takes over.
    let isolation = Some(isolate::start(&args.interfaces));

    let mut listener = match takeover {
        Some(_) => {
            tracing::info!("another rvsd serves {}: taking over from it (hot restart)", args.socket.display());
            None
        }
        None => {
            let l = server::bind(&args.socket)?;
            tracing::info!("control API on {}", args.socket.display());
            Some(l)
        }
    };
    let mut handover_listener = match takeover {
        Some(_) => None,
        None => Some(handover::bind(&args.socket)?),
    };
    let metrics_listener = match args.metrics {
        Some(a) => Some(std::net::TcpListener::bind(a).map_err(|e| Refusal(format!("--metrics {a}: {e}")))?),
        None => None,
    };
    let api_tcp = match (&args.api_listen, api_token) {
        (Some(a), Some(token)) => {
            Some((std::net::TcpListener::bind(a).map_err(|e| Refusal(format!("--api-listen {a}: {e}")))?, token))
        }
        _ => None,
    };

    let stop = Arc::new(AtomicBool::new(false));
    // The packet workers' own stop: a hand-over stops them before the rest (handover.rs).
    let io_stop = Arc::new(AtomicBool::new(false));
    let (ev_tx, ev_rx) = mpsc::channel::<Event>();
    let table_sizes: Arc<[AtomicUsize]> = (0..args.workers).map(|_| AtomicUsize::new(0)).collect();
    let mut conn_txs = Vec::with_capacity(args.workers);
    let workers: Arc<std::sync::Mutex<Vec<std::thread::JoinHandle<()>>>> = Arc::default();
    let mut procfs_thread = None;
    let (sync_daemons, sync_links) = sync::SyncDaemons::new(ipvs.clone(), args.workers);
    // Daemons bound to a VRRP instance switch with its addresses, seen by the VIP follow-up.
    let instance_sync =
        follow.then(|| sync::follow::InstanceSync::new(sync_daemons.clone(), vipfollow::kernel_addrs(&snap)));
    let result = (|| {
        // The workers of the chosen I/O backend (node::io::IoWorker): the daemon gives each
        // its housekeeping (table size, connection listings) and starts it.
        let mut setups: Vec<(Box<dyn IoWorker>, mpsc::Receiver<listing::ConnRequest>, sync::WorkerLink)> =
            Vec::with_capacity(args.workers);
        let mut io_workers: Vec<Box<dyn IoWorker>> = Vec::with_capacity(args.workers);
        for (id, socks) in per_worker.into_iter().enumerate() {
            io_workers.push(Box::new(afpacket_worker::WorkerSetup { id, socks }));
        }
        let xdp_worker_of = |setup: xdp::worker::Setup| -> Box<dyn IoWorker> {
            let mut resolver = xdp::neigh::KernelResolver::new().ok();
            let resolver: xdp::worker::Resolver = Box::new(move |ifindex, ip| {
                if let Some(r) = resolver.as_mut()
                    && let Err(e) = r.resolve(ifindex, ip)
                {
                    tracing::debug!("asking the kernel to resolve {ip}: {e}");
                }
            });
            Box::new(xdp::worker::XdpWorker { setup, resolver })
        };
        for setup in xdp_workers {
            io_workers.push(xdp_worker_of(setup));
        }
        let mut links = sync_links.into_iter();
        for w in io_workers {
            let (tx, rx) = mpsc::channel::<listing::ConnRequest>();
            conn_txs.push(tx);
            setups.push((w, rx, links.next().ok_or_else(|| Refusal("no sync link for a worker".into()))?));
        }
        // Taking over on XDP: the workers come once the old daemon has let go; their listing
        // channels and sync links are made now, for the admin to know them.
        let mut deferred_xdp = Vec::new();
        if xdp_hooks.is_some() && setups.is_empty() {
            for _ in 0..args.workers {
                let (tx, rx) = mpsc::channel::<listing::ConnRequest>();
                conn_txs.push(tx);
                deferred_xdp.push((rx, links.next().ok_or_else(|| Refusal("no sync link for an XDP worker".into()))?));
            }
        }
        let worker_cpus = args.worker_cpus.clone();
        let start_worker =
            |(w, rx, link): (Box<dyn IoWorker>, mpsc::Receiver<listing::ConnRequest>, sync::WorkerLink)| {
                let id = w.id();
                let (node, stop, sizes) = (node.clone(), io_stop.clone(), table_sizes.clone());
                let housekeeping: node::io::Housekeeping = Box::new(move |cx: &mut node::WorkerCtx| {
                    if let Some(n) = sizes.get(id) {
                        n.store(cx.ipvs.conns.len(), Ordering::Relaxed);
                    }
                    while let Ok(req) = rx.try_recv() {
                        let list = listing::collect(&cx.ipvs.conns, cx.ipvs.now(), &req.filter, req.from, req.limit);
                        let _ = req.reply.send(list);
                    }
                    // Connection sync: this turn's records out, the backup's in (never blocks).
                    sync::worker_turn(&mut cx.ipvs, &link);
                });
                let name = format!("rvsd-{}{id}", if w.backend() == "xdp" { "xdp" } else { "w" });
                let cpus = worker_cpus.clone();
                spawn(&name, move || {
                    let pinned = match &cpus {
                        args::WorkerCpus::Spread => afpacket_worker::pin_to_cpu(id),
                        args::WorkerCpus::Unpinned => None,
                        args::WorkerCpus::List(l) => {
                            let cpu = l[id % l.len()];
                            afpacket_worker::pin_to_exact(cpu).then_some(cpu)
                        }
                    };
                    match pinned {
                        Some(cpu) => tracing::info!("{} worker {id} on CPU {cpu}", w.backend()),
                        None => tracing::info!("{} worker {id} not pinned", w.backend()),
                    }
                    w.run(node, clock, stop, housekeeping)
                })
            };
        // Taking over, the workers wait for the old table; their rings queue frames meanwhile.
        if takeover.is_none() {
            for setup in std::mem::take(&mut setups) {
                workers.lock().unwrap_or_else(|e| e.into_inner()).push(start_worker(setup)?);
            }
        }

        let (n, names, st) = (node.clone(), args.interfaces.clone(), stop.clone());
        let follower = follow.then(|| vipfollow::Follower::new(args.interfaces.clone(), instance_sync.clone()));
        spawn("rvsd-net", move || netstate::watch(n, names, monitor, st, follower))?;

        let rates = Arc::new(rates::RateTable::default());
        let (r, i, st) = (rates.clone(), ipvs.clone(), stop.clone());
        spawn("rvsd-est", move || {
            let mut next = Instant::now() + rates::TICK;
            while !st.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                if Instant::now() >= next {
                    next += rates::TICK;
                    r.tick(&i);
                }
            }
        })?;

        // Following VIPs, keepalived puts them on the kernel: no mistake then. The kernel's
        // addresses are dumped at most every 200 ms: a restore of 100 000 services asks
        // 100 000 times (one dump each took most of its time).
        let dumped: std::sync::Mutex<Option<(std::time::Instant, netlink::Snapshot)>> = std::sync::Mutex::new(None);
        let kernel_local = Box::new(move |a: &std::net::IpAddr| {
            if follow {
                return false;
            }
            let mut d = dumped.lock().unwrap_or_else(|e| e.into_inner());
            if d.as_ref().is_none_or(|(t, _)| t.elapsed() > Duration::from_millis(200)) {
                *d = match netlink::dump() {
                    Ok(s) => Some((std::time::Instant::now(), s)),
                    Err(e) => {
                        tracing::warn!("netlink dump for the VIP check: {e}");
                        None
                    }
                };
            }
            d.as_ref().is_some_and(|(_, s)| host::kernel_has_addr(s, a))
        });
        let admin = Arc::new(
            admin::Admin::new(
                node.clone(),
                rates,
                kernel_local,
                std::mem::take(&mut conn_txs),
                table_sizes.clone(),
                steering,
                args.interfaces.clone(),
            )
            .with_sync(sync_daemons.clone()),
        );
        match &xdp_hooks {
            Some(h) => {
                admin.set_io(h.clone());
                // Addresses of the director change without a command: follow them.
                let (h, st, adm) = (h.clone(), stop.clone(), admin.clone());
                spawn("rvsd-xdpmaps", move || {
                    while !st.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(500));
                        adm.between_commands(|| h.tick());
                    }
                })?;
            }
            None => admin.set_io(Arc::new(xdpio::AfPacketIo(args.interfaces.clone()))),
        }
        let ops = Arc::new(operate::Operator::new(admin.clone(), args.config.clone()));
        if let Some((cfg, path)) = config {
            // The configuration's sync daemons (`[[sync_daemon]]`, keepalived's lvs_sync_daemon)
            // start with it; a reload leaves running daemons alone.
            let refused =
                |e: control::api::ApiError| Refusal(format!("{}: sync daemon: {}", path.display(), e.message));
            for d in &cfg.sync_daemons {
                sync_daemons.start(d).map_err(refused)?;
            }
            // keepalived's `lvs_sync_daemon IFACE VI_1`: the role follows the instance.
            for d in &cfg.instance_daemons {
                let vips = cfg.vrrp_instance(&d.instance).map(|i| i.vips.clone()).unwrap_or_default();
                match &instance_sync {
                    Some(s) => s.bind(&d.instance, vips, &d.daemon).map_err(refused)?,
                    None => {
                        tracing::info!(
                            "sync daemon of vrrp_instance {}: VIPs not followed (--vip-follow always), master and backup at once",
                            d.instance
                        );
                        for role in [control::api::SyncRole::Master, control::api::SyncRole::Backup] {
                            sync_daemons
                                .start(&control::api::DaemonConfig { role, ..d.daemon.clone() })
                                .map_err(refused)?;
                        }
                    }
                }
            }
            ops.activate(cfg, &path).map_err(|e| Refusal(format!("{}: {}", path.display(), e.message)))?;
        }
        if let Some(mut conn) = takeover.take() {
            // Frames queued so far were the old daemon's to handle (handover.rs, step 3).
            for (w, _, _) in &mut setups {
                w.discard_received();
            }
            let t0 = Instant::now();
            let tables = handover::take(&mut conn)?;
            let n: usize = tables.iter().map(Vec::len).sum();
            ipvs.stash_restored(handover::distribute(tables, args.workers));
            // An XDP data path is the old daemon's until it lets go; from its release to our
            // attachment, frames go to the kernel, whose isolation table drops them.
            let t1 = Instant::now();
            let released = match old_io {
                Some(handover::OldIo::Xdp) => {
                    handover::release(&mut conn)?;
                    Some(t1.elapsed())
                }
                _ => None,
            };
            if let Some(h) = &xdp_hooks
                && !deferred_xdp.is_empty()
            {
                let ws = h.activate(TAKEOVER_ATTACH_WAIT).map_err(|e| Refusal(format!("hot restart: XDP: {e}")))?;
                for (setup, (rx, link)) in ws.into_iter().zip(std::mem::take(&mut deferred_xdp)) {
                    setups.push((xdp_worker_of(setup), rx, link));
                }
            }
            for setup in std::mem::take(&mut setups) {
                workers.lock().unwrap_or_else(|e| e.into_inner()).push(start_worker(setup)?);
            }
            if let Some(r) = released {
                tracing::info!(
                    "hot restart: data path gap {} ms (the old daemon released it in {} ms, ours served after)",
                    t1.elapsed().as_millis(),
                    r.as_millis()
                );
            }
            listener = Some(handover::replace_control(&args.socket)?);
            handover_listener = Some(handover::bind(&args.socket)?);
            handover::acknowledge(conn);
            tracing::info!(
                "hot restart: {n} connection entries taken over in {} ms; control API on {}",
                t0.elapsed().as_millis(),
                args.socket.display()
            );
        }
        if let Some(l) = handover_listener.take() {
            let tx = ev_tx.clone();
            let (ws, io_st, x) = (workers.clone(), io_stop.clone(), xdp_hooks.clone());
            let giver = handover::Giver {
                admin: admin.clone(),
                ipvs: ipvs.clone(),
                io: if xdp_hooks.is_some() { handover::OldIo::Xdp } else { handover::OldIo::AfPacket },
                release: Box::new(move || {
                    // The workers close their sockets as they return; then the link goes.
                    io_st.store(true, Ordering::Relaxed);
                    for w in ws.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
                        let _ = w.join();
                    }
                    if let Some(x) = &x {
                        x.release();
                    }
                }),
                done: Box::new(move || {
                    let _ = tx.send(Event::HandedOver);
                }),
            };
            spawn("rvsd-handover", move || handover::serve(l, giver))?;
        }
        let api = Arc::new(server::Api { admin: admin.clone(), ops: ops.clone() });
        if let Some(dir) = args.procfs_dir.clone() {
            tracing::info!("procfs views in {}/net, refreshed every second", dir.display());
            let (a, st) = (admin.clone(), stop.clone());
            procfs_thread = Some(spawn("rvsd-procfs", move || procfs::run(a, dir, st))?);
        }
        start_resync(&args.resync, resync_key.clone(), &sync_daemons, &stop)?;

        // Drains finish (every second) and health events are logged and counted.
        let (i, o, st) = (ipvs.clone(), ops.clone(), stop.clone());
        spawn("rvsd-ops", move || {
            let mut next_drain = Instant::now();
            while !st.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(250));
                o.pump_events();
                if Instant::now() >= next_drain {
                    next_drain += Duration::from_secs(1);
                    for d in i.drain_tick(Instant::now()) {
                        tracing::info!(
                            "drain of {}:{} finished ({} active, {} inactive left)",
                            d.dest.addr,
                            d.dest.port,
                            d.dest.activeconns(),
                            d.dest.inactconns()
                        );
                    }
                }
            }
        })?;

        if let Some(l) = metrics_listener {
            tracing::info!("metrics on http://{}/metrics", args.metrics.map(|a| a.to_string()).unwrap_or_default());
            let a = api.clone();
            spawn("rvsd-metrics", move || metrics::serve(l, Arc::new(move || metrics::render(&metrics::gather(&a)))))?;
        }
        if let Some((l, token)) = api_tcp {
            tracing::info!("control API also on TCP {:?} (bearer token required)", l.local_addr().ok());
            let a = api.clone();
            spawn("rvsd-api-tcp", move || server::serve_tcp(l, a, token))?;
        }
        let path = args.socket.clone();
        let a = api.clone();
        let listener = listener.take().ok_or_else(|| Refusal("no control socket".into()))?;
        spawn("rvsd-api", move || server::serve(listener, a, path))?;

        let tx = ev_tx.clone();
        spawn("rvsd-sig", move || {
            loop {
                let mut sig: libc::c_int = 0;
                // SAFETY: valid set and out-pointer.
                let rc = unsafe { libc::sigwait(&set, &mut sig) };
                let ev = match rc {
                    0 if sig == libc::SIGHUP => Event::Reload,
                    0 => Event::Signal(sig),
                    _ => Event::Fatal(format!("sigwait failed: {rc}")),
                };
                let last = !matches!(ev, Event::Reload);
                if tx.send(ev).is_err() || last {
                    return;
                }
            }
        })?;
        // systemd (Type=notify): ready now; the watchdog pings while every worker answers.
        let a = admin.clone();
        notify::ready(stop.clone(), move || a.workers_alive(Duration::from_secs(5)))
            .map_err(|e| Refusal(format!("cannot start the watchdog thread: {e}")))?;
        Ok::<Arc<operate::Operator>, Refusal>(ops)
    })();

    let mut handed_over = false;
    let outcome = match &result {
        Ok(ops) => {
            tracing::info!("running");
            loop {
                match ev_rx.recv() {
                    Ok(Event::Reload) => {
                        tracing::info!("SIGHUP: reloading the configuration");
                        // Errors are logged by the operator; the running table stays.
                        let _ = notify::reload(|| ops.reload(None));
                    }
                    Ok(Event::Signal(s)) => {
                        tracing::info!("signal {s}: stopping");
                        break Ok(());
                    }
                    Ok(Event::Fatal(m)) => break Err(Refusal(m)),
                    Ok(Event::HandedOver) => {
                        handed_over = true;
                        break Ok(());
                    }
                    Err(_) => break Err(Refusal("event channel closed".into())),
                }
            }
        }
        Err(e) => Err(Refusal(e.0.clone())),
    };
    notify::send("STOPPING=1");
    if let Ok(ops) = &result {
        ops.stop();
    }
    stop.store(true, Ordering::Relaxed);
    io_stop.store(true, Ordering::Relaxed);
    for w in workers.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
        let _ = w.join();
    }
    // A new daemon that took over has installed its own table (isolate.rs): leave it.
    if let Some(isolation) = isolation {
        if handed_over {
            isolation.keep();
        } else {
            drop(isolation);
        }
    }
    if let Some(h) = procfs_thread {
        // After the workers: its last listing fails at once.
        let _ = h.join();
    }
    if let (Some(dir), false) = (&args.procfs_dir, handed_over) {
        procfs::remove(dir);
    }
    // After a hand-over the sockets at these paths are the new daemon's.
    if !handed_over {
        if let Err(e) = std::fs::remove_file(&args.socket) {
            tracing::warn!("cannot remove {}: {e}", args.socket.display());
        }
        let _ = std::fs::remove_file(handover::path_for(&args.socket));
    }
    let c = node.counters.read();
    tracing::info!("stopped: rx {} tx {} local {} dropped {}", c.rx, c.tx, c.local, c.total_drops());
    outcome
}
