//! rvs extensions to the ipvsadm command line (not in ipvsadm; documented in
//! crates/rvsadm/README.md). They are taken off the argument list before the
//! ipvsadm parser sees it, so everything ipvsadm accepts keeps its meaning:
//!
//! - `-L -c` with `-t/-u/--sctp-service/-f SERVICE`, `--filter-server ADDR:PORT`,
//!   `--filter-state STATE`: the daemon filters the connection listing
//!   (ipvsadm refuses a service with `-c`).
//! - `--drain -t VIP:PORT -r RIP:PORT [--drain-timeout SECS]`: graceful removal.
//! - `top [--interval SECS] [--once]`: live rates (see `top.rs`).

use control::api::{Command, ServiceKey};
use control::ipvsadm::args::{self, Action, ListTarget, Parsed};
use control::ipvsadm::resolve::Resolver;
use control::ops::{ConnFilter, DrainRequest};

/// What the extensions found on the command line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Ext {
    /// Argument list left for the ipvsadm parser.
    pub argv: Vec<String>,
    pub filter: ConnFilter,
    /// `--drain` request, complete.
    pub drain: Option<DrainRequest>,
}

const SERVICE_OPTS: [&str; 8] =
    ["-t", "--tcp-service", "-u", "--udp-service", "--sctp-service", "-f", "--fwmark-service", "-6"];

/// Is this token the connection flag (`-c`, `--connection`, or in a cluster like `-Lnc`)?
fn is_connection_flag(t: &str) -> bool {
    t == "--connection"
        || (t.starts_with('-')
            && !t.starts_with("--")
            && t.len() > 1
            && t[1..].chars().all(|c| c.is_ascii_alphabetic())
            && t.contains('c'))
}

/// Removes `--name VALUE` / `--name=VALUE`; returns the value (error if it is missing).
fn take_value(argv: &mut Vec<String>, name: &str) -> Result<Option<String>, String> {
    let mut found = None;
    let mut i = 1;
    while i < argv.len() {
        if let Some(v) = argv[i].strip_prefix(&format!("{name}=")) {
            found = Some(v.to_string());
            argv.remove(i);
        } else if argv[i] == name {
            if i + 1 >= argv.len() {
                return Err(format!("option {name} needs a value"));
            }
            found = Some(argv.remove(i + 1));
            argv.remove(i);
        } else {
            i += 1;
        }
    }
    Ok(found)
}

/// Removes a flag without value; true if it was there.
fn take_flag(argv: &mut Vec<String>, name: &str) -> bool {
    let before = argv.len();
    argv.retain(|a| a != name);
    argv.len() != before
}

/// Splits off the service options (`-t X`, `--tcp-service=X`, `-6`, …) into their own list.
fn take_service(argv: &mut Vec<String>) -> Vec<String> {
    let mut svc = Vec::new();
    let mut i = 1;
    while i < argv.len() {
        let a = argv[i].clone();
        let long_eq = SERVICE_OPTS.iter().any(|o| o.starts_with("--") && a.starts_with(&format!("{o}=")));
        if a == "-6" || long_eq {
            svc.push(argv.remove(i));
        } else if SERVICE_OPTS.contains(&a.as_str()) && i + 1 < argv.len() {
            svc.push(argv.remove(i));
            svc.push(argv.remove(i));
        } else {
            i += 1;
        }
    }
    svc
}

/// The service key of service options, resolved by ipvsadm's own parser (`-L SERVICE`).
fn parse_service(program: &str, svc: &[String], res: &dyn Resolver) -> Result<ServiceKey, String> {
    let mut argv = vec![program.to_string(), "-L".to_string()];
    argv.extend(svc.iter().cloned());
    match args::parse(&argv, false, res) {
        Ok(Parsed::Action(Action::List { target: ListTarget::Service(k), .. })) => Ok(k),
        Ok(_) => Err("a service (-t/-u/--sctp-service/-f) is expected".into()),
        Err(f) => Err(f.stderr.trim().to_string()),
    }
}

/// Finds and removes the extensions. Errors are printed by the caller (exit 2).
pub fn split(mut argv: Vec<String>, res: &dyn Resolver) -> Result<Ext, String> {
    let program = argv.first().cloned().unwrap_or_else(|| "rvsadm".into());
    let mut filter = ConnFilter::default();
    if let Some(s) = take_value(&mut argv, "--filter-server")? {
        let a: std::net::SocketAddr = s.parse().map_err(|_| format!("--filter-server: '{s}' is not ADDR:PORT"))?;
        filter.server = Some((a.ip(), a.port()));
    }
    // The daemon takes state names as listings print them (upper case); the command line
    // is lenient.
    filter.state = take_value(&mut argv, "--filter-state")?.map(|s| s.to_ascii_uppercase());
    let drain_timeout = take_value(&mut argv, "--drain-timeout")?
        .map(|v| v.parse::<u32>().map_err(|_| format!("--drain-timeout: '{v}' is not a number of seconds")))
        .transpose()?;
    let drain = take_flag(&mut argv, "--drain");
    let connections = argv.iter().skip(1).any(|a| is_connection_flag(a));

    if drain {
        // `--drain` reads like `-d`: let ipvsadm's parser resolve service and server.
        let mut d = argv.clone();
        d.insert(1, "-d".into());
        let req = match args::parse(&d, false, res) {
            Ok(Parsed::Action(Action::Command(Command::DeleteDest(service, addr, port)))) => {
                DrainRequest { service, addr, port, timeout_secs: drain_timeout }
            }
            Ok(_) => return Err("--drain needs -t|-u|-f SERVICE and -r SERVER".into()),
            Err(f) => return Err(f.stderr.trim().to_string()),
        };
        return Ok(Ext { argv, filter, drain: Some(req) });
    }
    if drain_timeout.is_some() {
        return Err("--drain-timeout is only used with --drain".into());
    }
    if connections {
        let svc = take_service(&mut argv);
        if !svc.is_empty() {
            filter.service = Some(parse_service(&program, &svc, res)?);
        }
    } else if !filter.is_empty() {
        return Err("--filter-server and --filter-state need -L -c".into());
    }
    Ok(Ext { argv, filter, drain: None })
}

#[cfg(test)]
mod tests {
    use super::*;
    use control::ipvsadm::resolve::NoResolver;

    fn v(words: &[&str]) -> Vec<String> {
        words.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn plain_ipvsadm_lines_pass_through_untouched() {
        for line in [&["ipvsadm", "-L", "-n"][..], &["ipvsadm", "-Lnc"], &["ipvsadm", "-A", "-t", "10.0.0.1:80"]] {
            let e = split(v(line), &NoResolver).unwrap();
            assert_eq!(e.argv, v(line));
            assert!(e.filter.is_empty() && e.drain.is_none());
        }
    }

    #[test]
    fn connection_filters() {
        let e = split(
            v(&[
                "rvsadm",
                "-Lnc",
                "-t",
                "10.0.0.1:80",
                "--filter-server",
                "192.168.1.2:8080",
                "--filter-state=ESTABLISHED",
            ]),
            &NoResolver,
        )
        .unwrap();
        assert_eq!(e.argv, v(&["rvsadm", "-Lnc"]));
        assert_eq!(e.filter.service, Some(ServiceKey::Tcp { addr: "10.0.0.1".parse().unwrap(), port: 80 }));
        assert_eq!(e.filter.server, Some(("192.168.1.2".parse().unwrap(), 8080)));
        assert_eq!(e.filter.state.as_deref(), Some("ESTABLISHED"));
        let e = split(v(&["rvsadm", "-L", "--connection", "-f", "7", "-6"]), &NoResolver).unwrap();
        assert_eq!(e.filter.service, Some(ServiceKey::Fwmark { mark: 7, ipv6: true }));
        let e = split(v(&["rvsadm", "-L", "-c", "--udp-service=[2001:db8::1]:53"]), &NoResolver).unwrap();
        assert!(matches!(e.filter.service, Some(ServiceKey::Udp { port: 53, .. })));
        assert!(split(v(&["rvsadm", "-L", "--filter-state", "X"]), &NoResolver).unwrap_err().contains("need -L -c"));
        assert!(split(v(&["rvsadm", "-Lc", "--filter-server", "x"]), &NoResolver).unwrap_err().contains("ADDR:PORT"));
        assert!(split(v(&["rvsadm", "-Lc", "--filter-state"]), &NoResolver).unwrap_err().contains("needs a value"));
        // Without -c a service is ipvsadm's -L SERVICE, untouched.
        let e = split(v(&["rvsadm", "-L", "-t", "10.0.0.1:80"]), &NoResolver).unwrap();
        assert_eq!(e.argv.len(), 4);
    }

    #[test]
    fn drain_requests() {
        let e = split(
            v(&["rvsadm", "--drain", "-t", "10.0.0.1:80", "-r", "192.168.1.2:8080", "--drain-timeout", "30"]),
            &NoResolver,
        )
        .unwrap();
        assert_eq!(
            e.drain,
            Some(DrainRequest {
                service: ServiceKey::Tcp { addr: "10.0.0.1".parse().unwrap(), port: 80 },
                addr: "192.168.1.2".parse().unwrap(),
                port: 8080,
                timeout_secs: Some(30),
            })
        );
        let e = split(v(&["rvsadm", "--drain", "-u", "10.0.0.1:53", "-r", "192.168.1.2"]), &NoResolver).unwrap();
        assert_eq!(e.drain.as_ref().map(|d| (d.port, d.timeout_secs)), Some((53, None)));
        assert!(split(v(&["rvsadm", "--drain", "-t", "10.0.0.1:80"]), &NoResolver).is_err());
        assert!(
            split(v(&["rvsadm", "-L", "--drain-timeout", "3"]), &NoResolver).unwrap_err().contains("only used with")
        );
        assert!(split(v(&["rvsadm", "--drain", "--drain-timeout", "x"]), &NoResolver).unwrap_err().contains("seconds"));
    }
}
