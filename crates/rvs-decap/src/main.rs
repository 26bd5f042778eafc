//! `rvs-decap` process: arguments, setup (sockets, TUN device, sysctls), the
//! receive loop, counters at exit. Exit status: 0 after SIGTERM/SIGINT, 1 when
//! setup fails (privileges, interface, TUN), 2 for bad arguments.

use std::io;
use std::process::ExitCode;

use rvs_decap::args::{self, Args, Command, USAGE};
use rvs_decap::run::Loop;
use rvs_decap::socket::Source;
use rvs_decap::tun::Tun;
use rvs_decap::{Counters, Encap, signal, sys, sysctl};

fn main() -> ExitCode {
    match args::parse(std::env::args().skip(1)) {
        Err(msg) => {
            eprintln!("rvs-decap: {msg}\nTry 'rvs-decap --help' for usage.");
            ExitCode::from(2)
        }
        Ok(Command::Help) => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Ok(Command::Run(a)) => match run(&a) {
            Ok(()) => ExitCode::SUCCESS,
            Err(msg) => {
                eprintln!("rvs-decap: {msg}");
                ExitCode::from(1)
            }
        },
    }
}

/// Explains the usual setup failures instead of a bare errno.
fn explain(what: &str, e: io::Error, capability: &str) -> String {
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => {
            format!("{what}: {e}; this needs {capability} (run as root)")
        }
        _ => format!("{what}: {e}"),
    }
}

fn run(a: &Args) -> Result<(), String> {
    if sys::if_index(&a.iface).is_none() {
        return Err(format!("no such interface '{}'", a.iface));
    }
    // Before anything else: a stop request during setup is then kept pending.
    let stop = signal::stop_fd().map_err(|e| format!("signal setup: {e}"))?;

    let mut encaps = vec![Encap::Ipip];
    if a.gre {
        encaps.push(Encap::Gre);
    }
    if a.gue_port.is_some() {
        encaps.push(Encap::Gue);
    }
    let mut sources = Vec::new();
    for e in encaps {
        let s = Source::open(e, &a.iface, a.gue_port.unwrap_or(0)).map_err(|err| {
            let what = match e {
                Encap::Gue => format!("GUE socket on {} udp/{}", a.iface, a.gue_port.unwrap_or(0)),
                _ => format!("raw {} socket on {}", e.label(), a.iface),
            };
            explain(&what, err, "CAP_NET_RAW")
        })?;
        sources.push(s);
    }

    let tun = Tun::create(&a.tun).map_err(|e| match e.raw_os_error() {
        Some(libc::EBUSY) => format!("TUN device '{}' is in use (another rvs-decap?)", a.tun),
        Some(libc::ENOENT) | Some(libc::ENODEV) => format!("/dev/net/tun: {e} (no tun support?)"),
        _ => explain(&format!("creating TUN device '{}'", a.tun), e, "CAP_NET_ADMIN"),
    })?;
    // rp_filter off on the device before it comes up, so no packet meets the
    // default; the kernel takes max(all, dev), so `all` must allow it too.
    if let Err(e) = sysctl::write_ipv4(tun.name(), "rp_filter", 0) {
        eprintln!("rvs-decap: warning: cannot set rp_filter=0 on {}: {e}", tun.name());
    }
    let _ = sysctl::disable_ipv6(tun.name());
    tun.set_up().map_err(|e| explain(&format!("bringing {} up", tun.name()), e, "CAP_NET_ADMIN"))?;
    warn_about_sysctls(a, tun.name());

    let kinds: Vec<String> = sources
        .iter()
        .map(|s| match s.encap {
            Encap::Gue => format!("gue udp/{}", a.gue_port.unwrap_or(0)),
            e => e.label().to_string(),
        })
        .collect();
    eprintln!("rvs-decap: ready: {} on {} -> {}", kinds.join(", "), a.iface, tun.name());

    let mut counters = Counters::default();
    let lp = Loop { sources: &sources, tun: &tun, stop: &stop, report_every: a.verbose.then_some(a.interval) };
    let result = lp.run(&mut counters);
    match &result {
        Ok(sig) => eprintln!("rvs-decap: {sig}, stopping"),
        Err(e) => eprintln!("rvs-decap: poll: {e}"),
    }
    eprintln!("rvs-decap: {counters}");
    // Closing the TUN fd removes the (non-persistent) device.
    drop(tun);
    result.map(|_| ()).map_err(|e| format!("receive loop failed: {e}"))
}

/// Warnings for settings that silently break delivery or DR/TUN semantics.
fn warn_about_sysctls(a: &Args, tun: &str) {
    if let Ok(rp) = sysctl::effective_rp_filter(tun)
        && rp == 1
    {
        eprintln!(
            "rvs-decap: warning: net.ipv4.conf.all.rp_filter=1 (strict): decapsulated packets will be \
             dropped; set it to 0 or 2 (the kernel uses max(all, {tun}))"
        );
    }
    let max = |name: &str| -> Option<i64> {
        Some(sysctl::read_ipv4("all", name).ok()?.max(sysctl::read_ipv4(&a.iface, name).ok()?))
    };
    if max("arp_ignore").is_some_and(|v| v < 1) || max("arp_announce").is_some_and(|v| v < 2) {
        eprintln!(
            "rvs-decap: warning: arp_ignore<1 or arp_announce<2 on {}: this host may answer ARP for a VIP on lo",
            a.iface
        );
    }
    if sysctl::read_ipv4("all", "forwarding").is_ok_and(|v| v != 0) {
        eprintln!(
            "rvs-decap: warning: IPv4 forwarding is on: inner packets not addressed to this host will be routed on"
        );
    }
}
