//! Command-line arguments, parsed by hand (no clap: a handful of flags, and the workspace keeps
//! its dependency list short). Errors name the offending argument; `main` exits 2 on them.

use std::path::PathBuf;

/// Default control socket, shared with `rvsadm` (control/README.md).
pub const DEFAULT_SOCKET: &str = control::client::DEFAULT_SOCKET;
/// Environment variable naming the socket when `--socket` is not given.
pub const SOCKET_ENV: &str = control::client::SOCKET_ENV;

/// Log verbosity (`--log`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    fn parse(s: &str) -> Option<LogLevel> {
        Some(match s.to_ascii_lowercase().as_str() {
            "error" => LogLevel::Error,
            "warn" | "warning" => LogLevel::Warn,
            "info" => LogLevel::Info,
            "debug" => LogLevel::Debug,
            "trace" => LogLevel::Trace,
            _ => return None,
        })
    }
}

/// Which configuration file format was given (`--config` or `--keepalived`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigFormat {
    Native,
    Keepalived,
}

impl ConfigFormat {
    pub fn name(self) -> &'static str {
        match self {
            ConfigFormat::Native => "native",
            ConfigFormat::Keepalived => "keepalived",
        }
    }
}

/// Which I/O backend moves the frames (`--io`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoMode {
    /// XDP steering + AF_XDP when the program attaches, else AF_PACKET (logged).
    Auto,
    /// XDP steering + AF_XDP, or refuse to start.
    Xdp,
    /// AF_PACKET rings (no XDP).
    AfPacket,
}

impl IoMode {
    fn parse(s: &str) -> Option<IoMode> {
        Some(match s {
            "auto" => IoMode::Auto,
            "xdp" => IoMode::Xdp,
            "afpacket" => IoMode::AfPacket,
            _ => return None,
        })
    }
}

/// Where the packet workers run (`--worker-cpus`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum WorkerCpus {
    /// Worker i on the i-th CPU this process may run on, counted from the last (the default).
    #[default]
    Spread,
    /// Not pinned: the scheduler places them.
    Unpinned,
    /// Worker i on `cpus[i % len]`.
    List(Vec<usize>),
}

impl WorkerCpus {
    fn parse(v: &str) -> Result<WorkerCpus, String> {
        match v {
            "auto" => return Ok(WorkerCpus::Spread),
            "none" => return Ok(WorkerCpus::Unpinned),
            _ => {}
        }
        let mut cpus = Vec::new();
        for part in v.split(',') {
            let n: usize = part.trim().parse().map_err(|_| {
                format!("--worker-cpus: '{part}' is not a CPU number (give e.g. 1,0, or auto, or none)")
            })?;
            if n >= libc::CPU_SETSIZE as usize {
                return Err(format!("--worker-cpus: CPU {n} is out of range (0..{})", libc::CPU_SETSIZE));
            }
            cpus.push(n);
        }
        Ok(WorkerCpus::List(cpus))
    }
}

/// The daemon's configuration from its command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Args {
    /// Served interfaces, in the order given (no duplicates). Empty only with a
    /// configuration file, whose `[[interfaces]]` are used then.
    pub interfaces: Vec<String>,
    pub socket: PathBuf,
    /// Number of packet workers, 1..=`ipvs::stats::MAX_WORKERS`.
    pub workers: usize,
    /// Whether `--workers` was given (the AF_XDP backend's default is one worker).
    pub workers_given: bool,
    /// Connection-table limit per worker (`None`: from the configuration's
    /// `limits.max_connections`, else `ipvs::ipvs::DEFAULT_MAX_CONNS`).
    pub max_conns: Option<usize>,
    pub log: LogLevel,
    /// Configuration file loaded at start and on reload.
    pub config: Option<(ConfigFormat, PathBuf)>,
    /// Prometheus exposition listener (`--metrics`).
    pub metrics: Option<std::net::SocketAddr>,
    /// Optional TCP listener for the API (`--api-listen`); its bearer token comes from
    /// `api_token_file` or `$RVS_API_TOKEN` (control::token), never from the command line.
    pub api_listen: Option<std::net::SocketAddr>,
    /// `--api-token-file PATH`: the TCP listener's bearer token (mode 0600 or stricter).
    pub api_token_file: Option<PathBuf>,
    /// Use the established-flow shortcut (`--no-shortcut` turns it off: every packet through
    /// the hook chains).
    pub shortcut: bool,
    /// Which VIPs are active (`--vip-follow`, vipfollow.rs).
    pub vip_follow: crate::vipfollow::FollowArg,
    /// `--check`: check the configuration file and exit (`keepalived -t`).
    pub check: bool,
    /// `--config-id`: the id compared with keepalived's `@ID` lines (`keepalived -i`).
    pub config_id: Option<String>,
    /// `--procfs-dir`: keep the kernel's `/proc/net/ip_vs*` views under `DIR/net/`.
    pub procfs_dir: Option<PathBuf>,
    /// The bulk resync and the readiness file (`sync/resync.rs`).
    pub resync: Resync,
    /// I/O backend (`--io`, default auto).
    pub io: IoMode,
    /// AF_XDP workers spin on their rings instead of sleeping in poll() (`--busy-poll`).
    pub busy_poll: bool,
    /// Where the packet workers run (`--worker-cpus`).
    pub worker_cpus: WorkerCpus,
}

/// `--resync-listen`, `--resync-from`, `--resync-key`, `--ready-file`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resync {
    /// Serve this director's table to a peer that pulls it.
    pub listen: Option<std::net::SocketAddr>,
    /// Pull the peer's table at start, before the ready file says ready.
    pub from: Option<std::net::SocketAddr>,
    /// File holding the shared key of both directors.
    pub key: Option<PathBuf>,
    /// "1" until this director knows the table, then "0" (keepalived `track_file`).
    pub ready_file: Option<PathBuf>,
}

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // made once per run; boxing buys nothing
pub enum Parsed {
    Run(Args),
    Help,
    Version,
}

pub const USAGE: &str = "\
Usage: rvsd -i IFACE [-i IFACE ...] [options]
   or: rvsd --config FILE | --keepalived FILE [-i IFACE ...] [options]
   or: rvsd --check --config FILE | --keepalived FILE [--config-id ID]

rvs director daemon: load-balances the VIPs configured with rvsadm (or a configuration
file) over AF_PACKET rings on the given interfaces, and serves the control API on a Unix
socket.

Options:
  -i, --interface NAME  serve this interface (repeat for each; at least one, unless the
                        configuration file lists [[interfaces]])
      --config FILE     load the native (TOML) configuration; SIGHUP reloads it
      --keepalived FILE
                        load a keepalived.conf (virtual_server part); SIGHUP
                        reloads it
      --check           check the configuration file as the daemon would load it, print
                        every warning and error with file:line, and exit: 0 if it can be
                        used, 3 if not (keepalived -t); needs no root and no interface
      --config-id ID    id for keepalived's conditional lines (@ID, @^ID; keepalived -i);
                        default: the host name up to its first dot
      --procfs-dir DIR  keep DIR/net/ip_vs, ip_vs_conn, ip_vs_stats and ip_vs_conn_sync
                        current, as the kernel prints /proc/net/ip_vs* (for tools that
                        read them: --path.procfs=DIR)
      --metrics ADDR    serve Prometheus metrics at http://ADDR/metrics
      --api-listen ADDR
                        also serve the API on TCP (needs a bearer token: from
                        --api-token-file or $RVS_API_TOKEN)
      --api-token-file PATH
                        the TCP API's bearer token, read from PATH (mode 0600 or 0400;
                        never on the command line: --api-token is refused)
      --socket PATH     control socket (default: $RVS_SOCKET, else /run/rvs/rvsd.sock)
      --workers N       packet worker threads (default: number of CPUs, at most 32;
                        on AF_XDP: 1, and at most the fewest receive queues of the
                        served interfaces; worker i serves queues i, i+N, ...)
      --max-conns N     connection-table limit per worker (default: the configuration's
                        limits.max_connections / workers, else 1048576)
      --log LEVEL       error, warn, info (default), debug or trace
      --no-shortcut     run every packet through the hook chains (no established-flow
                        shortcut; slower, for comparison and debugging)
      --vip-follow MODE
                        which VIPs this director answers for and forwards: always (all),
                        interface (only those on its interfaces: keepalived's VRRP MASTER
                        puts them there), auto (default: interface if the keepalived file
                        has vrrp_instance blocks, else always)
      --resync-listen ADDR  serve this director's connection table to a restarting peer
      --resync-from ADDR    pull the peer's table at start (bulk resync), then say ready
      --resync-key FILE     shared key of the two directors (both resync options need it)
      --ready-file PATH     write 1 until the table is known, then 0 (keepalived track_file)
      --io MODE         I/O backend: auto (default: XDP steering + AF_XDP when the
                        program attaches, else AF_PACKET), xdp, or afpacket
      --busy-poll       AF_XDP workers spin on their rings (lower latency, a full CPU
                        each) instead of sleeping in poll(), driving the devices' NAPI
                        (SO_PREFER_BUSY_POLL)
      --worker-cpus LIST
                        where the packet workers run: worker i on the i-th CPU of LIST
                        (comma-separated, e.g. 1,0; reused round robin), auto (default:
                        worker i on the i-th CPU this process may use counted from the
                        last, so worker 0 avoids CPU 0), or none (not pinned)
  -h, --help            show this help
      --version         show the version

Host setup: the VIPs must not be configured on the director's kernel (except by
keepalived's VRRP, with --vip-follow), and net.ipv4.ip_forward must be 0. GRO/LRO are switched off on served interfaces.
";

fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, ipvs::stats::MAX_WORKERS)
}

fn number(flag: &str, v: &str, min: usize, max: usize) -> Result<usize, String> {
    let n: usize = v.parse().map_err(|_| format!("{flag}: '{v}' is not a number"))?;
    if n < min || n > max {
        return Err(format!("{flag}: {n} is out of range ({min}..={max})"));
    }
    Ok(n)
}

/// Parses the arguments after the program name. `env_socket` is the value of `RVS_SOCKET`.
pub fn parse<I, S>(args: I, env_socket: Option<String>) -> Result<Parsed, String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut interfaces: Vec<String> = Vec::new();
    let mut socket: Option<PathBuf> = None;
    let mut workers: Option<usize> = None;
    let mut max_conns = None;
    let mut log = LogLevel::Info;
    let mut config = None;
    let mut metrics = None;
    let mut api_listen = None;
    let mut api_token_file = None;
    let mut shortcut = true;
    let mut vip_follow = crate::vipfollow::FollowArg::Auto;
    let mut check = false;
    let mut config_id = None;
    let mut procfs_dir = None;
    let mut resync = Resync::default();
    let mut io = IoMode::Auto;
    let mut busy_poll = false;
    let mut worker_cpus = WorkerCpus::Spread;
    let addr = |flag: &str, v: String| -> Result<std::net::SocketAddr, String> {
        v.parse().map_err(|_| format!("{flag}: '{v}' is not ADDR:PORT"))
    };

    let mut it = args.into_iter().map(Into::into);
    while let Some(arg) = it.next() {
        // `--flag=value` as well as `--flag value`.
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let value = |it: &mut dyn Iterator<Item = String>| -> Result<String, String> {
            match inline.clone().or_else(|| it.next()) {
                Some(v) if !v.is_empty() => Ok(v),
                _ => Err(format!("{flag} needs a value")),
            }
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "--version" | "-V" => return Ok(Parsed::Version),
            "-i" | "--interface" => {
                let name = value(&mut it)?;
                if name.len() > 15 || name.contains('/') || name.contains(char::is_whitespace) {
                    return Err(format!("{flag}: '{name}' is not a valid interface name"));
                }
                if !interfaces.contains(&name) {
                    interfaces.push(name);
                }
            }
            "--socket" => socket = Some(PathBuf::from(value(&mut it)?)),
            "--workers" => workers = Some(number(&flag, &value(&mut it)?, 1, ipvs::stats::MAX_WORKERS)?),
            "--max-conns" => max_conns = Some(number(&flag, &value(&mut it)?, 1, 1 << 28)?),
            "--config" | "--keepalived" => {
                let format = if flag == "--config" { ConfigFormat::Native } else { ConfigFormat::Keepalived };
                let path = PathBuf::from(value(&mut it)?);
                if config.is_some() {
                    return Err("only one of --config and --keepalived may be given, once".into());
                }
                config = Some((format, path));
            }
            "--metrics" => metrics = Some(addr(&flag, value(&mut it)?)?),
            "--api-listen" => api_listen = Some(addr(&flag, value(&mut it)?)?),
            "--api-token-file" => api_token_file = Some(PathBuf::from(value(&mut it)?)),
            "--api-token" => return Err(control::token::ON_COMMAND_LINE.into()),
            "--no-shortcut" if inline.is_none() => shortcut = false,
            "--no-shortcut" => return Err("--no-shortcut takes no value".into()),
            "--vip-follow" => {
                let v = value(&mut it)?;
                vip_follow = crate::vipfollow::FollowArg::parse(&v)
                    .ok_or_else(|| format!("--vip-follow: unknown mode '{v}' (auto, always, interface)"))?;
            }
            "--check" | "-t" if inline.is_none() => check = true,
            "--check" => return Err("--check takes no value (give the file with --config or --keepalived)".into()),
            "--config-id" => {
                let id = value(&mut it)?;
                if id.contains(char::is_whitespace) {
                    return Err(format!("--config-id: '{id}' contains white space"));
                }
                config_id = Some(id);
            }
            "--procfs-dir" => procfs_dir = Some(PathBuf::from(value(&mut it)?)),
            "--resync-listen" => resync.listen = Some(addr(&flag, value(&mut it)?)?),
            "--resync-from" => resync.from = Some(addr(&flag, value(&mut it)?)?),
            "--resync-key" => resync.key = Some(PathBuf::from(value(&mut it)?)),
            "--ready-file" => resync.ready_file = Some(PathBuf::from(value(&mut it)?)),
            "--io" => {
                let v = value(&mut it)?;
                io = IoMode::parse(&v).ok_or_else(|| format!("--io: unknown backend '{v}' (auto, xdp, afpacket)"))?;
            }
            "--busy-poll" if inline.is_none() => busy_poll = true,
            "--busy-poll" => return Err("--busy-poll takes no value".into()),
            "--worker-cpus" => worker_cpus = WorkerCpus::parse(&value(&mut it)?)?,
            "--log" => {
                let v = value(&mut it)?;
                log = LogLevel::parse(&v)
                    .ok_or_else(|| format!("--log: unknown level '{v}' (error, warn, info, debug, trace)"))?;
            }
            other if other.starts_with('-') => return Err(format!("unknown option '{other}'")),
            other => return Err(format!("unexpected argument '{other}'")),
        }
    }
    if check && config.is_none() {
        return Err("--check needs the file to check: --config FILE or --keepalived FILE".into());
    }
    if interfaces.is_empty() && config.is_none() {
        return Err("no interface given (use -i NAME)".into());
    }
    if api_token_file.is_some() && api_listen.is_none() {
        return Err("--api-token-file is only used with --api-listen".into());
    }
    if (resync.listen.is_some() || resync.from.is_some()) && resync.key.is_none() {
        return Err("--resync-listen and --resync-from need --resync-key (the peers authenticate)".into());
    }
    if resync.key.is_some() && resync.listen.is_none() && resync.from.is_none() {
        return Err("--resync-key is only used with --resync-listen or --resync-from".into());
    }
    let socket = socket
        .or_else(|| env_socket.filter(|s| !s.is_empty()).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
    let workers_given = workers.is_some();
    let workers = workers.unwrap_or_else(default_workers);
    Ok(Parsed::Run(Args {
        interfaces,
        socket,
        workers,
        workers_given,
        max_conns,
        log,
        config,
        metrics,
        api_listen,
        api_token_file,
        shortcut,
        vip_follow,
        check,
        config_id,
        procfs_dir,
        resync,
        io,
        busy_poll,
        worker_cpus,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(a: &[&str]) -> Args {
        match parse(a.iter().copied(), None) {
            Ok(Parsed::Run(a)) => a,
            other => panic!("{a:?}: {other:?}"),
        }
    }

    fn err(a: &[&str]) -> String {
        parse(a.iter().copied(), None).expect_err("should fail")
    }

    #[test]
    fn defaults_and_repeated_interfaces() {
        let a = run(&["-i", "eth0", "--interface", "eth1", "-i", "eth0"]);
        assert_eq!(a.interfaces, ["eth0", "eth1"]);
        assert_eq!(a.socket, PathBuf::from("/run/rvs/rvsd.sock"));
        assert!((1..=ipvs::stats::MAX_WORKERS).contains(&a.workers));
        assert_eq!(a.max_conns, None);
        assert_eq!(a.log, LogLevel::Info);
        assert_eq!((a.config, a.metrics, a.api_listen, a.api_token_file), (None, None, None, None));
        assert!(a.shortcut, "the established-flow shortcut is on by default");
    }

    #[test]
    fn vip_follow() {
        use crate::vipfollow::FollowArg;
        assert_eq!(run(&["-i", "a0"]).vip_follow, FollowArg::Auto);
        assert_eq!(run(&["-i", "a0", "--vip-follow", "interface"]).vip_follow, FollowArg::Interface);
        assert_eq!(run(&["-i", "a0", "--vip-follow=always"]).vip_follow, FollowArg::Always);
        assert!(err(&["-i", "a0", "--vip-follow", "vrrp"]).contains("--vip-follow: unknown mode 'vrrp'"));
    }

    #[test]
    fn no_shortcut() {
        assert!(!run(&["-i", "a0", "--no-shortcut"]).shortcut);
        let e = err(&["-i", "a0", "--no-shortcut=yes"]);
        assert!(e.contains("--no-shortcut takes no value"), "{e}");
    }

    #[test]
    fn io_backend() {
        assert_eq!(run(&["-i", "a0"]).io, IoMode::Auto, "auto by default");
        assert_eq!(run(&["-i", "a0", "--io", "xdp"]).io, IoMode::Xdp);
        assert_eq!(run(&["-i", "a0", "--io=afpacket"]).io, IoMode::AfPacket);
        assert!(!run(&["-i", "a0"]).busy_poll);
        assert!(run(&["-i", "a0", "--busy-poll"]).busy_poll);
        assert_eq!(run(&["-i", "a0"]).worker_cpus, WorkerCpus::Spread);
        assert_eq!(run(&["-i", "a0", "--worker-cpus", "none"]).worker_cpus, WorkerCpus::Unpinned);
        assert_eq!(run(&["-i", "a0", "--worker-cpus=1,0"]).worker_cpus, WorkerCpus::List(vec![1, 0]));
        assert!(err(&["-i", "a0", "--io", "dpdk"]).contains("--io: unknown backend 'dpdk'"));
        assert!(err(&["-i", "a0", "--busy-poll=1"]).contains("takes no value"));
    }

    #[test]
    fn all_options() {
        let a = run(&["-i", "a0", "--socket", "/tmp/x.sock", "--workers", "3", "--max-conns=1000", "--log", "DEBUG"]);
        assert_eq!(a.socket, PathBuf::from("/tmp/x.sock"));
        assert_eq!(a.workers, 3);
        assert_eq!(a.max_conns, Some(1000));
        assert_eq!(a.log, LogLevel::Debug);
    }

    #[test]
    fn operation_options() {
        let a = run(&["--config", "/etc/rvs.toml", "--metrics", "127.0.0.1:9100"]);
        assert!(a.interfaces.is_empty(), "interfaces may come from the file");
        assert_eq!(a.config, Some((ConfigFormat::Native, PathBuf::from("/etc/rvs.toml"))));
        assert_eq!(a.metrics, Some("127.0.0.1:9100".parse().unwrap()));
        let a = run(&["-i", "x", "--keepalived=/k.conf", "--api-listen", "[::1]:8000", "--api-token-file", "/t"]);
        assert_eq!(a.config, Some((ConfigFormat::Keepalived, PathBuf::from("/k.conf"))));
        assert_eq!(a.api_listen, Some("[::1]:8000".parse().unwrap()));
        assert_eq!(a.api_token_file, Some(PathBuf::from("/t")));
        // The token itself never on the command line; the message names the two ways.
        for t in [&["-i", "x", "--api-listen", "127.0.0.1:1", "--api-token", "s3"][..], &["--api-token=s3", "-i", "x"]]
        {
            let e = err(t);
            assert!(e.contains("--api-token-file") && e.contains("RVS_API_TOKEN"), "{e}");
        }
        assert!(err(&["-i", "x", "--api-token-file", "/t"]).contains("only used with --api-listen"));
        assert!(err(&["--config", "a", "--keepalived", "b"]).contains("only one of"));
        assert!(err(&["-i", "x", "--metrics", "9100"]).contains("--metrics: '9100' is not ADDR:PORT"));
    }

    #[test]
    fn resync_options() {
        let a = run(&["-i", "x", "--resync-listen", "10.0.0.1:8849", "--resync-key", "/k", "--ready-file", "/r"]);
        assert_eq!(a.resync.listen, Some("10.0.0.1:8849".parse().unwrap()));
        assert_eq!((a.resync.key, a.resync.ready_file), (Some("/k".into()), Some("/r".into())));
        let a = run(&["-i", "x", "--resync-from=10.0.0.2:8849", "--resync-key=/k"]);
        assert_eq!(a.resync.from, Some("10.0.0.2:8849".parse().unwrap()));
        assert!(run(&["-i", "x", "--ready-file", "/r"]).resync.key.is_none());
        assert!(err(&["-i", "x", "--resync-from", "10.0.0.2:1"]).contains("need --resync-key"));
        assert!(err(&["-i", "x", "--resync-key", "/k"]).contains("only used with"));
        assert!(err(&["-i", "x", "--resync-listen", "8849", "--resync-key", "/k"]).contains("not ADDR:PORT"));
    }

    #[test]
    fn socket_from_env_unless_flag() {
        let env = Some("/tmp/env.sock".to_string());
        let Ok(Parsed::Run(a)) = parse(["-i", "x"], env.clone()) else { panic!() };
        assert_eq!(a.socket, PathBuf::from("/tmp/env.sock"));
        let Ok(Parsed::Run(a)) = parse(["-i", "x", "--socket", "/tmp/flag.sock"], env) else { panic!() };
        assert_eq!(a.socket, PathBuf::from("/tmp/flag.sock"));
    }

    /// help2man makes rvsd(8) from USAGE (scripts/build-deb.sh): an option's description
    /// must stand two spaces after it, or on the next line, to become its own entry.
    #[test]
    fn usage_is_help2man_shaped() {
        for line in USAGE.lines().filter(|l| l.trim_start().starts_with('-')) {
            let spec = line.trim();
            assert!(spec.contains("  ") || spec.split(' ').count() <= 3, "description needs two spaces: {line:?}");
        }
    }

    #[test]
    fn check_config_id_and_procfs_dir() {
        let a = run(&["--check", "--keepalived", "/k.conf", "--config-id", "lb1"]);
        assert!(a.check);
        assert_eq!(a.config_id.as_deref(), Some("lb1"));
        assert!(run(&["-t", "--config", "/r.toml"]).check, "keepalived's -t");
        assert!(!run(&["-i", "x"]).check);
        assert_eq!(run(&["-i", "x", "--procfs-dir=/tmp/p"]).procfs_dir, Some(PathBuf::from("/tmp/p")));
        assert!(err(&["--check"]).contains("--check needs the file to check"));
        assert!(err(&["--check=yes", "--config", "x"]).contains("--check takes no value"));
        assert!(err(&["-i", "x", "--config-id", "a b"]).contains("white space"));
        assert!(err(&["-i", "x", "--procfs-dir"]).contains("--procfs-dir needs a value"));
    }

    #[test]
    fn help_and_version() {
        assert_eq!(parse(["-i", "x", "-h"], None), Ok(Parsed::Help));
        assert_eq!(parse(["--help"], None), Ok(Parsed::Help));
        assert_eq!(parse(["--version"], None), Ok(Parsed::Version));
    }

    #[test]
    fn errors_name_the_problem() {
        assert!(err(&[]).contains("no interface"));
        assert!(err(&["-i"]).contains("-i needs a value"));
        assert!(err(&["-i", "x", "--workers", "0"]).contains("--workers: 0 is out of range"));
        assert!(err(&["-i", "x", "--workers", "33"]).contains("out of range"));
        assert!(err(&["-i", "x", "--workers", "many"]).contains("'many' is not a number"));
        assert!(err(&["-i", "x", "--worker-cpus", "1,x"]).contains("--worker-cpus: 'x' is not a CPU number"));
        assert!(err(&["-i", "x", "--worker-cpus", "1,,0"]).contains("--worker-cpus: '' is not a CPU number"));
        assert!(err(&["-i", "x", "--worker-cpus", "99999"]).contains("--worker-cpus: CPU 99999 is out of range"));
        assert!(err(&["-i", "x", "--max-conns", "0"]).contains("--max-conns"));
        assert!(err(&["-i", "x", "--log", "loud"]).contains("unknown level 'loud'"));
        assert!(err(&["-i", "x", "--bogus"]).contains("unknown option '--bogus'"));
        assert!(err(&["-i", "x", "stray"]).contains("unexpected argument 'stray'"));
        assert!(err(&["-i", "a/b"]).contains("not a valid interface name"));
        assert!(err(&["-i", "x", "--socket="]).contains("--socket needs a value"));
    }
}
