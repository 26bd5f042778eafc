//! ipvsadm command-line parsing and validation, in ipvsadm's own order
//! (ipvsadm-cli.md §1, §4, §5): per-option checks while scanning, then `--set`
//! values, leftover words, scheduler flags, the command × option table, and the
//! per-command checks. Every message and exit code is ipvsadm's.

use super::numbers::{atoi, inet_aton, parse_fwmark, str_is_digit, string_to_number};
use super::popt::{ArgKind, Next, OptDef, Popt};
use super::resolve::Resolver;
use crate::api::{
    Command, DaemonConfig, DestSpec, ForwardMethod, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, SchedFlags, ServiceKey,
    ServiceSpec, SyncRole, Timeouts, TunnelCsum, TunnelType,
};
use std::net::{IpAddr, Ipv6Addr};

/// ipvsadm's version line.
pub const VERSION_LINE: &str = "ipvsadm v1.31 2019/12/24 (compiled with popt and IPVS v1.2.1)";
/// Default scheduler.
pub const DEF_SCHED: &str = "wlc";
/// Default `-p` timeout when the value is omitted (the man page's 300 is wrong).
pub const DEF_PERSISTENT: u32 = 360;
/// Largest timeout accepted by `-p` and `--set` (31 days).
pub const MAX_TIMEOUT: i64 = 86400 * 31;
/// Default multicast interface of `--start-daemon`.
pub const DEF_MCAST_IFN: &str = "eth0";

/// Which listing `-L` asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListTarget {
    All,
    Service(ServiceKey),
    Connections,
    Timeout,
    Daemon,
}

/// Listing flags (ipvsadm's FMT_*).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListFormat {
    pub numeric: bool,
    pub stats: bool,
    pub rate: bool,
    pub thresholds: bool,
    pub persistent_conn: bool,
    pub tun_info: bool,
    pub nosort: bool,
    pub exact: bool,
}

/// What a parsed command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A change sent to the daemon.
    Command(Command),
    List {
        target: ListTarget,
        format: ListFormat,
    },
    Save {
        numeric: bool,
    },
    Restore,
}

/// Successful parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// `-h`: print this to stdout, exit 0.
    Help(String),
    /// `-v`: print this to stdout, exit 0.
    Version(String),
    Action(Action),
}

/// A parse that ends the program: `stderr` is written as is, then exit `code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: i32,
    pub stderr: String,
}

fn fail<T>(msg: impl Into<String>) -> Result<T, Failure> {
    let mut stderr = msg.into();
    stderr.push('\n');
    Err(Failure { code: 2, stderr })
}

/// The try-help message (stderr, exit 255).
pub fn tryhelp(program: &str) -> Failure {
    Failure { code: 255, stderr: format!("Try `{program} -h' or '{program} --help' for more information.\n") }
}

/// The `-h` text.
pub fn usage(program: &str) -> String {
    let p = program;
    let mut s = format!("{VERSION_LINE}\n");
    s.push_str(&format!(
        "Usage:\n\
         \x20 {p} -A|E virtual-service [-s scheduler] [-p [timeout]] [-M netmask] [--pe persistence_engine] [-b sched-flags]\n\
         \x20 {p} -D virtual-service\n\
         \x20 {p} -C\n\
         \x20 {p} -R\n\
         \x20 {p} -S [-n]\n\
         \x20 {p} -a|e virtual-service -r server-address [options]\n\
         \x20 {p} -d virtual-service -r server-address\n\
         \x20 {p} -L|l [virtual-service] [options]\n\
         \x20 {p} -Z [virtual-service]\n\
         \x20 {p} --set tcp tcpfin udp\n\
         \x20 {p} --start-daemon {{master|backup}} [daemon-options]\n\
         \x20 {p} --stop-daemon {{master|backup}}\n\
         \x20 {p} -h\n\n"
    ));
    s.push_str(
        "Commands:\n\
         Either long or short options are allowed.\n\
         \x20 --add-service     -A        add virtual service with options\n\
         \x20 --edit-service    -E        edit virtual service with options\n\
         \x20 --delete-service  -D        delete virtual service\n\
         \x20 --clear           -C        clear the whole table\n\
         \x20 --restore         -R        restore rules from stdin\n\
         \x20 --save            -S        save rules to stdout\n\
         \x20 --add-server      -a        add real server with options\n\
         \x20 --edit-server     -e        edit real server with options\n\
         \x20 --delete-server   -d        delete real server\n\
         \x20 --list            -L|-l     list the table\n\
         \x20 --zero            -Z        zero counters in a service or all services\n\
         \x20 --set tcp tcpfin udp        set connection timeout values\n\
         \x20 --start-daemon              start connection sync daemon\n\
         \x20 --stop-daemon               stop connection sync daemon\n\
         \x20 --help            -h        display this help message\n\n",
    );
    s.push_str(
        "virtual-service:\n\
         \x20 --tcp-service|-t  service-address   service-address is host[:port]\n\
         \x20 --udp-service|-u  service-address   service-address is host[:port]\n\
         \x20 --sctp-service    service-address   service-address is host[:port]\n\
         \x20 --fwmark-service|-f fwmark          fwmark is an integer greater than zero\n\n",
    );
    s.push_str(
        "Options:\n\
         \x20 --ipv6         -6                   fwmark entry uses IPv6\n\
         \x20 --scheduler    -s scheduler         one of rr|wrr|lc|wlc|lblc|lblcr|dh|sh|sed|nq|fo|ovf|mh,\n\
         \x20                                     the default scheduler is wlc.\n\
         \x20 --pe            engine              alternate persistence engine may be sip,\n\
         \x20                                     not set by default.\n\
         \x20 --persistent   -p [timeout]         persistent service\n\
         \x20 --netmask      -M netmask           persistent granularity mask\n\
         \x20 --real-server  -r server-address    server-address is host (and port)\n\
         \x20 --gatewaying   -g                   gatewaying (direct routing) (default)\n\
         \x20 --ipip         -i                   ipip encapsulation (tunneling)\n\
         \x20 --masquerading -m                   masquerading (NAT)\n\
         \x20 --tun-type      type                one of ipip|gue|gre,\n\
         \x20                                     the default tunnel type is ipip.\n\
         \x20 --tun-port      port                tunnel destination port\n\
         \x20 --tun-nocsum                        tunnel encapsulation without checksum\n\
         \x20 --tun-csum                          tunnel encapsulation with checksum\n\
         \x20 --tun-remcsum                       tunnel encapsulation with remote checksum\n\
         \x20 --weight       -w weight            capacity of real server\n\
         \x20 --u-threshold  -x uthreshold        upper threshold of connections\n\
         \x20 --l-threshold  -y lthreshold        lower threshold of connections\n\
         \x20 --connection   -c                   output of current IPVS connections\n\
         \x20 --timeout                           output of timeout (tcp tcpfin udp)\n\
         \x20 --daemon                            output of daemon information\n\
         \x20 --stats                             output of statistics information\n\
         \x20 --rate                              output of rate information\n\
         \x20 --exact                             expand numbers (display exact values)\n\
         \x20 --thresholds                        output of thresholds information\n\
         \x20 --persistent-conn                   output of persistent connection info\n\
         \x20 --tun-info                          output of tunnel information\n\
         \x20 --nosort                            disable sorting output of service/server entries\n\
         \x20 --sort                              does nothing, for backwards compatibility\n\
         \x20 --ops          -o                   one-packet scheduling\n\
         \x20 --numeric      -n                   numeric output of addresses and ports\n\
         \x20 --sched-flags  -b flags             scheduler flags (comma-separated)\n",
    );
    s.push_str(
        "Daemon Options:\n\
         \x20 --syncid sid                        syncid for connection sync (default=255)\n\
         \x20 --sync-maxlen length                Max sync message length (default=1472)\n\
         \x20 --mcast-interface interface         multicast interface for connection sync\n\
         \x20 --mcast-group address               IPv4/IPv6 group (default=224.0.0.81)\n\
         \x20 --mcast-port port                   UDP port (default=8848)\n\
         \x20 --mcast-ttl ttl                     Multicast TTL (default=1)\n",
    );
    s
}

/// Option tags (ipvsadm's short letters and TAG_* values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    Add,
    Edit,
    Del,
    Clear,
    List,
    Zero,
    AddDest,
    EditDest,
    DelDest,
    Restore,
    Save,
    Set,
    StartDaemon,
    StopDaemon,
    Help,
    Version,
    Tcp,
    Udp,
    Sctp,
    Fwmark,
    Scheduler,
    Persistent,
    Netmask,
    RealServer,
    Masq,
    Ipip,
    Gate,
    Weight,
    UThreshold,
    LThreshold,
    Numeric,
    Connection,
    McastIfn,
    SyncId,
    Timeout,
    Daemon,
    Stats,
    Rate,
    Thresholds,
    PersistentConn,
    NoSort,
    Sort,
    Exact,
    Ipv6,
    Ops,
    Pe,
    SchedFlags,
    McastGroup,
    McastPort,
    McastTtl,
    SyncMaxlen,
    TunInfo,
    TunType,
    TunPort,
    TunNoCsum,
    TunCsum,
    TunRemCsum,
}

const fn o(long: &'static str, short: Option<char>, arg: ArgKind, tag: Tag) -> OptDef<Tag> {
    OptDef { long: Some(long), short, arg, tag }
}

use ArgKind::{None as N, Optional as O, Required as R};

/// ipvsadm 1.31's popt option table.
const OPTIONS: &[OptDef<Tag>] = &[
    o("add-service", Some('A'), N, Tag::Add),
    o("edit-service", Some('E'), N, Tag::Edit),
    o("delete-service", Some('D'), N, Tag::Del),
    o("clear", Some('C'), N, Tag::Clear),
    o("list", Some('L'), N, Tag::List),
    OptDef { long: None, short: Some('l'), arg: N, tag: Tag::List },
    o("zero", Some('Z'), N, Tag::Zero),
    o("add-server", Some('a'), N, Tag::AddDest),
    o("edit-server", Some('e'), N, Tag::EditDest),
    o("delete-server", Some('d'), N, Tag::DelDest),
    o("restore", Some('R'), N, Tag::Restore),
    o("save", Some('S'), N, Tag::Save),
    o("set", None, N, Tag::Set),
    o("start-daemon", None, R, Tag::StartDaemon),
    o("stop-daemon", None, R, Tag::StopDaemon),
    o("help", Some('h'), N, Tag::Help),
    o("version", Some('v'), N, Tag::Version),
    o("tcp-service", Some('t'), R, Tag::Tcp),
    o("udp-service", Some('u'), R, Tag::Udp),
    o("sctp-service", None, R, Tag::Sctp),
    o("fwmark-service", Some('f'), R, Tag::Fwmark),
    o("scheduler", Some('s'), R, Tag::Scheduler),
    o("persistent", Some('p'), O, Tag::Persistent),
    o("netmask", Some('M'), R, Tag::Netmask),
    o("real-server", Some('r'), R, Tag::RealServer),
    o("masquerading", Some('m'), N, Tag::Masq),
    o("ipip", Some('i'), N, Tag::Ipip),
    o("gatewaying", Some('g'), N, Tag::Gate),
    o("weight", Some('w'), R, Tag::Weight),
    o("u-threshold", Some('x'), R, Tag::UThreshold),
    o("l-threshold", Some('y'), R, Tag::LThreshold),
    o("numeric", Some('n'), N, Tag::Numeric),
    o("connection", Some('c'), N, Tag::Connection),
    o("mcast-interface", None, R, Tag::McastIfn),
    o("syncid", None, R, Tag::SyncId),
    o("timeout", None, N, Tag::Timeout),
    o("daemon", None, N, Tag::Daemon),
    o("stats", None, N, Tag::Stats),
    o("rate", None, N, Tag::Rate),
    o("thresholds", None, N, Tag::Thresholds),
    o("persistent-conn", None, N, Tag::PersistentConn),
    o("nosort", None, N, Tag::NoSort),
    o("sort", None, N, Tag::Sort),
    o("exact", Some('X'), N, Tag::Exact),
    o("ipv6", Some('6'), N, Tag::Ipv6),
    o("ops", Some('o'), N, Tag::Ops),
    o("pe", None, R, Tag::Pe),
    o("sched-flags", Some('b'), R, Tag::SchedFlags),
    o("mcast-group", None, R, Tag::McastGroup),
    o("mcast-port", None, R, Tag::McastPort),
    o("mcast-ttl", None, R, Tag::McastTtl),
    o("sync-maxlen", None, R, Tag::SyncMaxlen),
    o("tun-info", None, N, Tag::TunInfo),
    o("tun-type", None, R, Tag::TunType),
    o("tun-port", None, R, Tag::TunPort),
    o("tun-nocsum", None, N, Tag::TunNoCsum),
    o("tun-csum", None, N, Tag::TunCsum),
    o("tun-remcsum", None, N, Tag::TunRemCsum),
];

// Option bits, in ipvsadm's order (its optnames[] table).
const OPT_NUMERIC: usize = 0;
const OPT_CONNECTION: usize = 1;
const OPT_SERVICE: usize = 2;
const OPT_SCHEDULER: usize = 3;
const OPT_PERSISTENT: usize = 4;
const OPT_NETMASK: usize = 5;
const OPT_SERVER: usize = 6;
const OPT_FORWARD: usize = 7;
const OPT_WEIGHT: usize = 8;
const OPT_UTHRESHOLD: usize = 9;
const OPT_LTHRESHOLD: usize = 10;
const OPT_MCAST: usize = 11;
const OPT_TIMEOUT: usize = 12;
const OPT_DAEMON: usize = 13;
const OPT_STATS: usize = 14;
const OPT_RATE: usize = 15;
const OPT_THRESHOLDS: usize = 16;
const OPT_PERSISTENTCONN: usize = 17;
const OPT_NOSORT: usize = 18;
const OPT_SYNCID: usize = 19;
const OPT_EXACT: usize = 20;
const OPT_ONEPACKET: usize = 21;
const OPT_PE: usize = 22;
const OPT_SCHED_FLAGS: usize = 23;
const OPT_MCAST_GROUP: usize = 24;
const OPT_MCAST_PORT: usize = 25;
const OPT_MCAST_TTL: usize = 26;
const OPT_SYNC_MAXLEN: usize = 27;
const OPT_TUN_INFO: usize = 28;
const OPT_TUN_TYPE: usize = 29;
const OPT_TUN_PORT: usize = 30;
const OPT_TUN_NOCSUM: usize = 31;
const OPT_TUN_CSUM: usize = 32;
const OPT_TUN_REMCSUM: usize = 33;
const NUMBER_OF_OPT: usize = 34;

const OPTNAMES: [&str; NUMBER_OF_OPT] = [
    "numeric",
    "connection",
    "service-address",
    "scheduler",
    "persistent",
    "netmask",
    "real-server",
    "forwarding-method",
    "weight",
    "u-threshold",
    "l-threshold",
    "mcast-interface",
    "timeout",
    "daemon",
    "stats",
    "rate",
    "thresholds",
    "persistent-conn",
    "nosort",
    "syncid",
    "exact",
    "ops",
    "pe",
    "sched-flags",
    "mcast-group",
    "mcast-port",
    "mcast-ttl",
    "sync-maxlen",
    "tun-info",
    "tun-type",
    "tun-port",
    "tun-nocsum",
    "tun-csum",
    "tun-remcsum",
];

/// Commands, in ipvsadm's cmdnames[] order (the row index of `COMMANDS_V_OPTIONS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmd {
    Add = 0,
    Edit,
    Del,
    Flush,
    List,
    AddDest,
    DelDest,
    EditDest,
    Timeout,
    StartDaemon,
    StopDaemon,
    Restore,
    Save,
    Zero,
}

const CMDNAMES: [&str; 14] = [
    "add-service",
    "edit-service",
    "delete-service",
    "flush",
    "list",
    "add-server",
    "delete-server",
    "edit-server",
    "set",
    "start-daemon",
    "stop-daemon",
    "restore",
    "save",
    "zero",
];

/// Command × option legality, columns in option-bit order: '+' required, 'x'
/// illegal, '1' at most one of the '1's, ' ' optional (ipvsadm-cli.md §5).
const COMMANDS_V_OPTIONS: [&[u8; NUMBER_OF_OPT]; 14] = [
    b"xx+   xxxxxxxxxxxxxxx   xxxxxxxxxx", // add-service
    b"xx+   xxxxxxxxxxxxxxx   xxxxxxxxxx", // edit-service
    b"xx+xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", // delete-service
    b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", // flush
    b" 11xxxxxxxxx11       xxxxxxx xxxxx", // list
    b"xx+xxx+    xxxxxxxxxxxxxxxxxx     ", // add-server
    b"xx+xxx+xxxxxxxxxxxxxxxxxxxxxxxxxxx", // delete-server
    b"xx+xxx+    xxxxxxxxxxxxxxxxxx     ", // edit-server
    b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", // set
    b"xxxxxxxxxxx xxxxxxx xxxx    xxxxxx", // start-daemon
    b"xxxxxxxxxxxxxxxxxxx xxxxxxxxxxxxxx", // stop-daemon
    b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", // restore
    b" xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", // save
    b"xx xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", // zero
];

const TUNNAMES: [&str; 3] = ["ipip", "gue", "gre"];
const TUNOPTS: [usize; 4] = [OPT_TUN_PORT, OPT_TUN_NOCSUM, OPT_TUN_CSUM, OPT_TUN_REMCSUM];
/// Tunnel type × tunnel option legality, same key as `COMMANDS_V_OPTIONS`.
const TUNNEL_TYPES_V_OPTIONS: [&[u8; 4]; 3] = [b"xxxx", b"+111", b"x11x"];

/// ipvsadm's command entry while parsing (its `struct ipvs_command_entry`).
struct Ce {
    options: u64,
    // service
    protocol: u8,
    svc_v6: bool,
    svc_addr: Option<IpAddr>,
    svc_port: u16,
    fwmark: u32,
    sched: String,
    persistent: Option<u32>,
    netmask: u32,
    ops: bool,
    pe: Option<String>,
    sched_flags_arg: String,
    // dest
    dest_addr: Option<IpAddr>,
    dest_port: u16,
    method: ForwardMethod,
    weight: u32,
    u_threshold: u32,
    l_threshold: u32,
    tun_type: TunnelType,
    tun_port: u16,
    tun_csum: TunnelCsum,
    // daemon
    role: SyncRole,
    mcast_ifn: Option<String>,
    syncid: u8,
    sync_maxlen: u16,
    mcast_group: Option<IpAddr>,
    mcast_port: u16,
    mcast_ttl: u8,
    timeouts: Timeouts,
    format: ListFormat,
}

impl Ce {
    fn new() -> Self {
        Ce {
            options: 0,
            protocol: 0,
            svc_v6: false,
            svc_addr: None,
            svc_port: 0,
            fwmark: 0,
            sched: String::new(),
            persistent: None,
            netmask: u32::MAX,
            ops: false,
            pe: None,
            sched_flags_arg: String::new(),
            dest_addr: None,
            dest_port: 0,
            method: ForwardMethod::Route,
            weight: 1,
            u_threshold: 0,
            l_threshold: 0,
            tun_type: TunnelType::Ipip,
            tun_port: 0,
            tun_csum: TunnelCsum::NoCsum,
            role: SyncRole::Master,
            mcast_ifn: None,
            syncid: 0,
            sync_maxlen: 0,
            mcast_group: None,
            mcast_port: 0,
            mcast_ttl: 0,
            timeouts: Timeouts::default(),
            format: ListFormat::default(),
        }
    }

    fn set_option(&mut self, opt: usize) -> Result<(), Failure> {
        if self.options & (1 << opt) != 0 {
            return fail(format!("multiple '{}' options specified", OPTNAMES[opt]));
        }
        self.options |= 1 << opt;
        Ok(())
    }

    fn has(&self, opt: usize) -> bool {
        self.options & (1 << opt) != 0
    }

    fn service_key(&self) -> Option<ServiceKey> {
        if self.fwmark != 0 {
            return Some(ServiceKey::Fwmark { mark: self.fwmark, ipv6: self.svc_v6 });
        }
        let addr = self.svc_addr?;
        let port = self.svc_port;
        Some(match self.protocol {
            IPPROTO_UDP => ServiceKey::Udp { addr, port },
            IPPROTO_SCTP => ServiceKey::Sctp { addr, port },
            _ => ServiceKey::Tcp { addr, port },
        })
    }
}

/// Result of ipvsadm's `parse_service`: the address, and the port if one was given.
struct ParsedService {
    addr: IpAddr,
    port: Option<u16>,
}

/// ipvsadm's `parse_service` (ipvsadm-cli.md §4 address rules), including its
/// quirks: `[v6]` needs a port, a purely numeric word is rejected, and
/// `[1.2.3.4]:80` silently drops the port.
fn parse_service(buf: &str, proto: u8, res: &dyn Resolver) -> Option<ParsedService> {
    if str_is_digit(buf) {
        return None;
    }
    let mut host = buf;
    let mut port_str: Option<&str> = None;
    if let Some(inner) = buf.strip_prefix('[') {
        let close = inner.find(']')?;
        let after = &inner[close + 1..];
        let p = after.strip_prefix(':')?;
        host = &inner[..close];
        port_str = Some(p);
    }
    let addr: IpAddr = if let Ok(v6) = host.parse::<Ipv6Addr>() {
        IpAddr::V6(v6)
    } else {
        if port_str.is_some() {
            // Bracketed but not IPv6: ipvsadm looks for a ':' inside the brackets
            // only, and loses the port it had split off.
            port_str = None;
        }
        if let Some(i) = host.rfind(':') {
            port_str = Some(&host[i + 1..]);
            host = &host[..i];
        }
        let v4 = inet_aton(host).or_else(|| res.host_addr(host))?;
        IpAddr::V4(v4)
    };
    let port = match port_str {
        None => None,
        Some(p) => Some(match string_to_number(p, 0, 65535) {
            Some(n) => n as u16,
            None => res.service_port(p, proto)?,
        }),
    };
    Some(ParsedService { addr, port })
}

/// ipvsadm's `parse_sched_flags`, checked against the scheduler given anywhere on
/// the line (or wlc).
fn parse_sched_flags(sched: &str, arg: &str) -> Result<SchedFlags, Failure> {
    let sched = if sched.is_empty() { DEF_SCHED } else { sched };
    let mut f = SchedFlags::default();
    for flag in arg.split(',').filter(|s| !s.is_empty()) {
        let only = match flag {
            "flag-1" => {
                f.flag1 = true;
                None
            }
            "flag-2" => {
                f.flag2 = true;
                None
            }
            "flag-3" => {
                f.flag3 = true;
                None
            }
            "sh-fallback" => {
                f.flag1 = true;
                Some("sh")
            }
            "sh-port" => {
                f.flag2 = true;
                Some("sh")
            }
            "mh-fallback" => {
                f.flag1 = true;
                Some("mh")
            }
            "mh-port" => {
                f.flag2 = true;
                Some("mh")
            }
            _ => return fail(format!("invalid scheduler flag `{flag}'")),
        };
        if let Some(s) = only
            && s != sched
        {
            return fail(format!("incompatible scheduler flag `{flag}'"));
        }
    }
    Ok(f)
}

/// ipvsadm's `generic_opt_check`: first offending option in bit order wins.
fn generic_opt_check(cmd: Cmd, options: u64) -> Result<(), Failure> {
    let row = COMMANDS_V_OPTIONS[cmd as usize];
    let cname = CMDNAMES[cmd as usize];
    let mut last = 0;
    let mut count = 0;
    for (j, &rule) in row.iter().enumerate() {
        if options & (1 << j) == 0 {
            if rule == b'+' {
                return fail(format!("You need to supply the '{}' option for the '{cname}' command", OPTNAMES[j]));
            }
        } else {
            if rule == b'x' {
                return fail(format!("Illegal '{}' option with the '{cname}' command", OPTNAMES[j]));
            }
            if rule == b'1' {
                count += 1;
                if count == 1 {
                    last = j;
                    continue;
                }
                return fail(format!(
                    "The option '{}' conflicts with the '{}' option in the '{cname}' command",
                    OPTNAMES[j], OPTNAMES[last]
                ));
            }
        }
    }
    Ok(())
}

/// ipvsadm's `tunnel_opt_check` against the tunnel table.
fn tunnel_opt_check(tun: TunnelType, options: u64) -> Result<(), Failure> {
    let t = tun as usize;
    let row = TUNNEL_TYPES_V_OPTIONS[t];
    let tname = TUNNAMES[t];
    let mut last = 0;
    let mut count = 0;
    for (i, &j) in TUNOPTS.iter().enumerate() {
        if options & (1 << j) == 0 {
            if row[i] == b'+' {
                return fail(format!("You need to supply the '{}' option for the '{tname}' tunnel type", OPTNAMES[j]));
            }
        } else {
            if row[i] == b'x' {
                return fail(format!("Illegal '{}' option with the '{tname}' tunnel type", OPTNAMES[j]));
            }
            if row[i] == b'1' {
                count += 1;
                if count == 1 {
                    last = j;
                    continue;
                }
                return fail(format!(
                    "The option '{}' conflicts with the '{}' option in the '{tname}' tunnel type",
                    OPTNAMES[j], OPTNAMES[last]
                ));
            }
        }
    }
    Ok(())
}

fn parse_timeout(v: Option<&str>, min: i64) -> Result<u32, Failure> {
    let Some(v) = v else {
        return Ok(DEF_PERSISTENT);
    };
    match string_to_number(v, min, MAX_TIMEOUT) {
        Some(n) => Ok(n as u32),
        None => fail(format!("invalid timeout value `{v}' specified")),
    }
}

/// Truncates like ipvsadm's fixed-size `strncpy` buffers.
fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// Parses one ipvsadm command line. `argv[0]` is the program name as typed.
/// `reading_stdin` is set for lines of `-R` (a nested `-R` is refused).
pub fn parse(argv: &[String], reading_stdin: bool, res: &dyn Resolver) -> Result<Parsed, Failure> {
    let program = argv.first().map(String::as_str).unwrap_or("ipvsadm");
    if argv.len() <= 1 {
        return Ok(Parsed::Action(Action::List { target: ListTarget::All, format: ListFormat::default() }));
    }
    let mut popt = Popt::new(OPTIONS, argv);

    // The first option must be a command.
    let (cmd, first_arg) = match popt.next_opt() {
        Next::Opt(tag, arg) => {
            let cmd = match tag {
                Tag::Add => Cmd::Add,
                Tag::Edit => Cmd::Edit,
                Tag::Del => Cmd::Del,
                Tag::Clear => Cmd::Flush,
                Tag::List => Cmd::List,
                Tag::Zero => Cmd::Zero,
                Tag::AddDest => Cmd::AddDest,
                Tag::EditDest => Cmd::EditDest,
                Tag::DelDest => Cmd::DelDest,
                Tag::Restore => Cmd::Restore,
                Tag::Save => Cmd::Save,
                Tag::Set => Cmd::Timeout,
                Tag::StartDaemon => Cmd::StartDaemon,
                Tag::StopDaemon => Cmd::StopDaemon,
                Tag::Help => return Ok(Parsed::Help(usage(program))),
                Tag::Version => return Ok(Parsed::Version(format!("{VERSION_LINE}\n"))),
                _ => return Err(tryhelp(program)),
            };
            (cmd, arg)
        }
        _ => return Err(tryhelp(program)),
    };
    let mut ce = Ce::new();
    match cmd {
        Cmd::StartDaemon => match first_arg.as_deref() {
            Some("master") => ce.role = SyncRole::Master,
            Some("backup") => ce.role = SyncRole::Backup,
            _ => return fail("illegal start-daemon parameter specified"),
        },
        Cmd::StopDaemon => match first_arg.as_deref() {
            Some("master") => ce.role = SyncRole::Master,
            Some("backup") => ce.role = SyncRole::Backup,
            _ => return fail("illegal start_daemon specified"),
        },
        _ => {}
    }

    loop {
        let (tag, arg) = match popt.next_opt() {
            Next::Opt(t, a) => (t, a),
            Next::End => break,
            Next::Error { word, reason } => {
                // popt errors after the command: ipvsadm returns -1 (exit 255).
                return Err(Failure { code: 255, stderr: format!("{word}: {reason}\n") });
            }
        };
        let a = arg.as_deref().unwrap_or("");
        match tag {
            Tag::Tcp | Tag::Udp | Tag::Sctp => {
                ce.set_option(OPT_SERVICE)?;
                ce.protocol = match tag {
                    Tag::Udp => IPPROTO_UDP,
                    Tag::Sctp => IPPROTO_SCTP,
                    _ => IPPROTO_TCP,
                };
                let Some(p) = parse_service(a, ce.protocol, res) else {
                    return fail("illegal virtual server address[:port] specified");
                };
                ce.svc_v6 = p.addr.is_ipv6();
                if ce.svc_v6 {
                    ce.netmask = 128;
                }
                ce.svc_addr = Some(p.addr);
                ce.svc_port = p.port.unwrap_or(0);
            }
            Tag::Fwmark => {
                ce.set_option(OPT_SERVICE)?;
                ce.svc_v6 = false;
                ce.protocol = IPPROTO_TCP;
                match parse_fwmark(a) {
                    Some(m) => ce.fwmark = m,
                    None => return fail(format!("invalid fwmark value `{a}' specified")),
                }
            }
            Tag::Scheduler => {
                ce.set_option(OPT_SCHEDULER)?;
                ce.sched = truncate(a, 15);
            }
            Tag::Persistent => {
                ce.set_option(OPT_PERSISTENT)?;
                ce.persistent = Some(parse_timeout(arg.as_deref(), 1)?);
            }
            Tag::Netmask => {
                ce.set_option(OPT_NETMASK)?;
                if !ce.svc_v6 {
                    match inet_aton(a).or_else(|| res.host_addr(a)) {
                        Some(m) => ce.netmask = u32::from(m),
                        None => return fail("illegal virtual server persistent mask specified"),
                    }
                } else {
                    let n = atoi(a);
                    if !(1..=128).contains(&n) {
                        return fail("illegal ipv6 netmask specified");
                    }
                    ce.netmask = n as u32;
                }
            }
            Tag::RealServer => {
                ce.set_option(OPT_SERVER)?;
                let Some(p) = parse_service(a, ce.protocol, res) else {
                    return fail("illegal real server address[:port] specified");
                };
                ce.dest_addr = Some(p.addr);
                // No port: the service port as known at this point of the line.
                ce.dest_port = p.port.unwrap_or(ce.svc_port);
            }
            Tag::Ipip | Tag::Gate | Tag::Masq => {
                ce.set_option(OPT_FORWARD)?;
                ce.method = match tag {
                    Tag::Ipip => ForwardMethod::Tunnel,
                    Tag::Masq => ForwardMethod::Masq,
                    _ => ForwardMethod::Route,
                };
            }
            Tag::Weight => {
                ce.set_option(OPT_WEIGHT)?;
                match string_to_number(a, 0, 65535) {
                    Some(n) => ce.weight = n as u32,
                    None => return fail("illegal weight specified"),
                }
            }
            Tag::UThreshold => {
                ce.set_option(OPT_UTHRESHOLD)?;
                match string_to_number(a, 0, i64::from(i32::MAX)) {
                    Some(n) => ce.u_threshold = n as u32,
                    None => return fail("illegal u_threshold specified"),
                }
            }
            Tag::LThreshold => {
                ce.set_option(OPT_LTHRESHOLD)?;
                match string_to_number(a, 0, i64::from(i32::MAX)) {
                    Some(n) => ce.l_threshold = n as u32,
                    None => return fail("illegal l_threshold specified"),
                }
            }
            Tag::Connection => ce.set_option(OPT_CONNECTION)?,
            Tag::Numeric => {
                ce.set_option(OPT_NUMERIC)?;
                ce.format.numeric = true;
            }
            Tag::McastIfn => {
                ce.set_option(OPT_MCAST)?;
                ce.mcast_ifn = Some(truncate(a, 15));
            }
            Tag::SyncId => {
                ce.set_option(OPT_SYNCID)?;
                match string_to_number(a, 0, 255) {
                    Some(n) => ce.syncid = n as u8,
                    None => return fail("illegal syncid specified"),
                }
            }
            Tag::Timeout => ce.set_option(OPT_TIMEOUT)?,
            Tag::Daemon => ce.set_option(OPT_DAEMON)?,
            Tag::Stats => {
                ce.set_option(OPT_STATS)?;
                ce.format.stats = true;
            }
            Tag::Rate => {
                ce.set_option(OPT_RATE)?;
                ce.format.rate = true;
            }
            Tag::Thresholds => {
                ce.set_option(OPT_THRESHOLDS)?;
                ce.format.thresholds = true;
            }
            Tag::PersistentConn => {
                ce.set_option(OPT_PERSISTENTCONN)?;
                ce.format.persistent_conn = true;
            }
            Tag::NoSort => {
                ce.set_option(OPT_NOSORT)?;
                ce.format.nosort = true;
            }
            Tag::Sort => {}
            Tag::Exact => {
                ce.set_option(OPT_EXACT)?;
                ce.format.exact = true;
            }
            Tag::Ipv6 => {
                if ce.fwmark != 0 {
                    ce.svc_v6 = true;
                    ce.netmask = 128;
                } else {
                    return fail("-6 used before -f\n");
                }
            }
            Tag::Ops => {
                ce.set_option(OPT_ONEPACKET)?;
                ce.ops = true;
            }
            Tag::Pe => {
                ce.set_option(OPT_PE)?;
                ce.pe = Some(truncate(a, 16));
            }
            Tag::SchedFlags => {
                ce.set_option(OPT_SCHED_FLAGS)?;
                ce.sched_flags_arg = truncate(a, 127);
            }
            Tag::McastGroup => {
                ce.set_option(OPT_MCAST_GROUP)?;
                if a.contains(':') {
                    match a.parse::<Ipv6Addr>() {
                        Ok(g) if g.is_multicast() => ce.mcast_group = Some(IpAddr::V6(g)),
                        _ => return fail(format!("invalid IPv6 mcast-group `{a}'")),
                    }
                } else {
                    match a.parse::<std::net::Ipv4Addr>() {
                        Ok(g) if g.is_multicast() => ce.mcast_group = Some(IpAddr::V4(g)),
                        _ => return fail(format!("invalid IPv4 mcast-group `{a}'")),
                    }
                }
            }
            Tag::McastPort => {
                ce.set_option(OPT_MCAST_PORT)?;
                match string_to_number(a, 1, 65535) {
                    Some(n) => ce.mcast_port = n as u16,
                    None => return fail("illegal mcast-port specified"),
                }
            }
            Tag::McastTtl => {
                ce.set_option(OPT_MCAST_TTL)?;
                match string_to_number(a, 1, 255) {
                    Some(n) => ce.mcast_ttl = n as u8,
                    None => return fail("illegal mcast-ttl specified"),
                }
            }
            Tag::SyncMaxlen => {
                ce.set_option(OPT_SYNC_MAXLEN)?;
                match string_to_number(a, 1, 65535 - 20 - 8) {
                    Some(n) => ce.sync_maxlen = n as u16,
                    None => return fail("illegal sync-maxlen specified"),
                }
            }
            Tag::TunInfo => {
                ce.set_option(OPT_TUN_INFO)?;
                ce.format.tun_info = true;
            }
            Tag::TunType => {
                ce.set_option(OPT_TUN_TYPE)?;
                ce.tun_type = match a {
                    "ipip" => TunnelType::Ipip,
                    "gue" => TunnelType::Gue,
                    "gre" => TunnelType::Gre,
                    _ => return fail("illegal tunnel type specified"),
                };
            }
            Tag::TunPort => {
                ce.set_option(OPT_TUN_PORT)?;
                match string_to_number(a, 1, 65535) {
                    Some(n) => ce.tun_port = n as u16,
                    None => return fail("illegal tunnel port specified"),
                }
            }
            Tag::TunNoCsum => {
                ce.set_option(OPT_TUN_NOCSUM)?;
            }
            Tag::TunCsum => {
                ce.set_option(OPT_TUN_CSUM)?;
                ce.tun_csum = TunnelCsum::Csum;
            }
            Tag::TunRemCsum => {
                ce.set_option(OPT_TUN_REMCSUM)?;
                ce.tun_csum = TunnelCsum::RemCsum;
            }
            // A second command, -h or -v after the command.
            _ => return fail(format!("invalid option `{}'", popt.bad_option())),
        }
    }
    popt.finish();
    let mut leftovers = popt.leftovers.clone().into_iter();

    if cmd == Cmd::Timeout {
        let (Some(t), Some(f), Some(u)) = (leftovers.next(), leftovers.next(), leftovers.next()) else {
            return fail("--set option requires 3 timeout values");
        };
        ce.timeouts = Timeouts {
            tcp: parse_timeout(Some(&t), 0)?,
            tcpfin: parse_timeout(Some(&f), 0)?,
            udp: parse_timeout(Some(&u), 0)?,
        };
    }
    if let Some(extra) = leftovers.next() {
        return fail(format!("unexpected argument {extra}"));
    }
    let sched_flags = if ce.sched_flags_arg.is_empty() {
        SchedFlags::default()
    } else {
        parse_sched_flags(&ce.sched, &ce.sched_flags_arg)?
    };

    generic_opt_check(cmd, ce.options)?;

    if matches!(cmd, Cmd::Add | Cmd::Edit) {
        if ce.fwmark == 0 && ce.svc_port == 0 && ce.persistent.is_none() {
            return fail("Zero port specified for non-persistent service");
        }
        if ce.ops && ce.fwmark == 0 && ce.protocol != IPPROTO_UDP {
            return fail("One-Packet Scheduling is only for UDP virtual services");
        }
        if ce.sched.is_empty() {
            ce.sched = DEF_SCHED.to_string();
        }
    }

    if matches!(cmd, Cmd::AddDest | Cmd::EditDest) {
        if ce.fwmark == 0 && matches!(ce.method, ForwardMethod::Tunnel | ForwardMethod::Route) {
            ce.dest_port = ce.svc_port;
        }
        let dest_v6 = ce.dest_addr.is_some_and(|a| a.is_ipv6());
        if dest_v6 != ce.svc_v6 && ce.method != ForwardMethod::Tunnel {
            return fail("Different address family is allowed only for tunneling servers");
        }
        let tun_opts = [OPT_TUN_TYPE, OPT_TUN_PORT, OPT_TUN_NOCSUM, OPT_TUN_CSUM, OPT_TUN_REMCSUM];
        if tun_opts.iter().any(|&o| ce.has(o)) && ce.method != ForwardMethod::Tunnel {
            return fail("Tunnel options conflict with forward method");
        }
        tunnel_opt_check(ce.tun_type, ce.options)?;
    }

    let mut target = ListTarget::All;
    if cmd == Cmd::List {
        let any = |opts: &[usize]| opts.iter().any(|&o| ce.has(o));
        if (any(&[OPT_CONNECTION, OPT_TIMEOUT, OPT_DAEMON]) && any(&[OPT_STATS, OPT_RATE, OPT_THRESHOLDS]))
            || (any(&[OPT_TIMEOUT, OPT_DAEMON]) && ce.has(OPT_PERSISTENTCONN))
        {
            return fail("options conflicts in the list command");
        }
        target = if ce.has(OPT_CONNECTION) {
            ListTarget::Connections
        } else if ce.has(OPT_TIMEOUT) {
            ListTarget::Timeout
        } else if ce.has(OPT_DAEMON) {
            ListTarget::Daemon
        } else if let Some(k) = ce.service_key() {
            ListTarget::Service(k)
        } else {
            ListTarget::All
        };
    }

    let key = ce.service_key();
    let need_key = |k: Option<ServiceKey>| -> Result<ServiceKey, Failure> {
        // The option table guarantees a service here; stay total anyway.
        k.map_or_else(|| fail("You need to supply the 'service-address' option"), Ok)
    };
    let spec = |ce: &Ce, key: ServiceKey| ServiceSpec {
        key,
        scheduler: ce.sched.clone(),
        sched_flags,
        persistent: ce.persistent,
        netmask: ce.netmask,
        ops: ce.ops,
        pe: ce.pe.clone(),
    };
    let dest = |ce: &Ce| -> Result<DestSpec, Failure> {
        let Some(addr) = ce.dest_addr else {
            return fail("You need to supply the 'real-server' option");
        };
        Ok(DestSpec {
            addr,
            port: ce.dest_port,
            method: ce.method,
            weight: ce.weight,
            u_threshold: ce.u_threshold,
            l_threshold: ce.l_threshold,
            tun_type: ce.tun_type,
            tun_port: ce.tun_port,
            tun_csum: ce.tun_csum,
        })
    };
    let action = match cmd {
        Cmd::Add => Action::Command(Command::AddService(spec(&ce, need_key(key)?))),
        Cmd::Edit => Action::Command(Command::EditService(spec(&ce, need_key(key)?))),
        Cmd::Del => Action::Command(Command::DeleteService(need_key(key)?)),
        Cmd::Flush => Action::Command(Command::Clear),
        Cmd::List => Action::List { target, format: ce.format },
        Cmd::AddDest => Action::Command(Command::AddDest(need_key(key)?, dest(&ce)?)),
        Cmd::EditDest => Action::Command(Command::EditDest(need_key(key)?, dest(&ce)?)),
        Cmd::DelDest => {
            let d = dest(&ce)?;
            Action::Command(Command::DeleteDest(need_key(key)?, d.addr, d.port))
        }
        Cmd::Timeout => Action::Command(Command::SetTimeouts(ce.timeouts)),
        Cmd::StartDaemon => Action::Command(Command::StartDaemon(DaemonConfig {
            role: ce.role,
            mcast_ifn: ce.mcast_ifn.clone().unwrap_or_else(|| DEF_MCAST_IFN.to_string()),
            syncid: ce.syncid,
            sync_maxlen: ce.sync_maxlen,
            mcast_group: ce.mcast_group,
            mcast_port: ce.mcast_port,
            mcast_ttl: ce.mcast_ttl,
        })),
        Cmd::StopDaemon => Action::Command(Command::StopDaemon { role: ce.role, syncid: ce.syncid }),
        Cmd::Restore => {
            if reading_stdin {
                return Err(tryhelp(program));
            }
            Action::Restore
        }
        Cmd::Save => Action::Save { numeric: ce.format.numeric },
        Cmd::Zero => Action::Command(Command::Zero(key)),
    };
    Ok(Parsed::Action(action))
}
