//! Command line: `rvs-decap -i IFACE [--tun NAME] [--gue-port P] [--gre] [-v]
//! [--interval SECS]`. Parsing is pure (a list of strings in, [`Command`] or a
//! message out) so the exit-2 cases are unit-tested.

use std::time::Duration;

/// Default TUN device name.
pub const DEFAULT_TUN: &str = "rvsdecap0";
/// Default period of the `-v` counter lines.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

pub const USAGE: &str = "\
usage: rvs-decap -i IFACE [--tun NAME] [--gue-port PORT] [--gre] [-v] [--interval SECS]

Receives LVS TUN traffic addressed to this host on IFACE, strips the outer
header and writes the inner IPv4 packet into a TUN device, so the local stack
delivers it to the VIP configured on lo (for kernels without the ipip module).

  -i, --interface IFACE  interface the tunnelled packets arrive on (required)
      --tun NAME         TUN device to create (default rvsdecap0)
      --gue-port PORT    also accept GUE on this UDP port
      --gre              also accept GRE (IP protocol 47)
  -v, --verbose          print the counters every --interval seconds
      --interval SECS    period of the -v counter lines (default 10)
  -h, --help             this text
";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub iface: String,
    pub tun: String,
    pub gue_port: Option<u16>,
    pub gre: bool,
    pub verbose: bool,
    pub interval: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Run(Args),
    Help,
}

/// Parses the arguments after the program name. `--opt VALUE` and
/// `--opt=VALUE` are both accepted.
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Command, String> {
    let mut iface = None;
    let mut tun = None;
    let mut gue_port = None;
    let mut gre = false;
    let mut verbose = false;
    let mut interval = DEFAULT_INTERVAL;
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            match inline.clone().or_else(|| it.next()) {
                Some(v) => Ok(v),
                None => Err(format!("option {name} needs a value")),
            }
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-i" | "--interface" => iface = Some(ifname(&value(&flag)?, "interface")?),
            "--tun" => tun = Some(ifname(&value(&flag)?, "TUN device")?),
            "--gue-port" => {
                let v = value(&flag)?;
                match v.parse::<u16>() {
                    Ok(p) if p != 0 => gue_port = Some(p),
                    _ => return Err(format!("invalid GUE port '{v}': expected 1-65535")),
                }
            }
            "--interval" => {
                let v = value(&flag)?;
                match v.parse::<u64>() {
                    Ok(s) if s > 0 => interval = Duration::from_secs(s),
                    _ => return Err(format!("invalid interval '{v}': expected a whole number of seconds > 0")),
                }
            }
            "--gre" if inline.is_none() => gre = true,
            "-v" | "--verbose" if inline.is_none() => verbose = true,
            _ => return Err(format!("unknown argument '{arg}'")),
        }
    }
    let iface = iface.ok_or_else(|| "missing -i IFACE".to_string())?;
    let tun = tun.unwrap_or_else(|| DEFAULT_TUN.to_string());
    if tun == iface {
        return Err(format!("the TUN device name '{tun}' is the interface name"));
    }
    Ok(Command::Run(Args { iface, tun, gue_port, gre, verbose, interval }))
}

/// An interface name the kernel can take: 1-15 bytes, no '/', no whitespace,
/// not "." or "..".
fn ifname(v: &str, what: &str) -> Result<String, String> {
    let ok = !v.is_empty()
        && v.len() < libc::IFNAMSIZ
        && v != "."
        && v != ".."
        && !v.chars().any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
    if ok { Ok(v.to_string()) } else { Err(format!("invalid {what} name '{v}'")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Command, String> {
        parse(s.split_whitespace().map(String::from))
    }

    #[test]
    fn defaults_and_options() {
        assert_eq!(
            p("-i eth0"),
            Ok(Command::Run(Args {
                iface: "eth0".into(),
                tun: DEFAULT_TUN.into(),
                gue_port: None,
                gre: false,
                verbose: false,
                interval: DEFAULT_INTERVAL,
            }))
        );
        assert_eq!(
            p("--interface=eth1 --tun t0 --gue-port=6080 --gre -v --interval 3"),
            Ok(Command::Run(Args {
                iface: "eth1".into(),
                tun: "t0".into(),
                gue_port: Some(6080),
                gre: true,
                verbose: true,
                interval: Duration::from_secs(3),
            }))
        );
        assert_eq!(p("-i eth0 --help"), Ok(Command::Help));
    }

    #[test]
    fn bad_arguments_are_explained() {
        for (line, needle) in [
            ("", "missing -i"),
            ("-v", "missing -i"),
            ("-i", "needs a value"),
            ("-i eth0 --gue-port", "needs a value"),
            ("-i eth0 --gue-port 0", "invalid GUE port"),
            ("-i eth0 --gue-port 70000", "invalid GUE port"),
            ("-i eth0 --gue-port x", "invalid GUE port"),
            ("-i eth0 --interval 0", "invalid interval"),
            ("-i eth0 --bogus", "unknown argument '--bogus'"),
            ("-i eth0 --gre=1", "unknown argument"),
            ("-i a/b", "invalid interface name"),
            ("-i 0123456789abcdef", "invalid interface name"),
            ("-i eth0 --tun eth0", "is the interface name"),
        ] {
            let e = p(line).expect_err(line);
            assert!(e.contains(needle), "{line:?}: {e}");
        }
    }
}
