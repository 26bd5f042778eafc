//! `rvsadm --sysctl [NAME=VALUE ...]` (rvs extension): without arguments, every run-time
//! setting the way `sysctl` prints them (`net.ipv4.vs.drop_entry = 0`); with arguments, sets
//! them all or none, then prints the ones set, as `sysctl -w` does.

use control::client::{Client, ClientError};
use control::sysctl;

/// Runs the command; returns the exit status (0, 1 refused, 2 no daemon).
pub fn run(client: &Client, words: &[String]) -> i32 {
    let set = match sysctl::parse_assignments(words) {
        Ok(s) => s,
        Err(m) => {
            eprintln!("{m}");
            return 2;
        }
    };
    let answer = if set.is_empty() { client.sysctls() } else { client.set_sysctls(&set) };
    match answer {
        Ok(list) if set.is_empty() => {
            print!("{}", sysctl::format(&list));
            0
        }
        Ok(list) => {
            let shown: Vec<_> = set
                .iter()
                .filter_map(|s| sysctl::full_name(&s.name))
                .filter_map(|n| list.iter().find(|v| v.name == n))
                .cloned()
                .collect();
            print!("{}", sysctl::format(&shown));
            0
        }
        Err(ClientError::Connect(e)) => {
            eprintln!("Can't initialize ipvs: {e} (socket {})", client.path().display());
            2
        }
        Err(e) => {
            eprintln!("rvsadm --sysctl: {e}");
            1
        }
    }
}
