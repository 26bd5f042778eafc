//! The run-time settings (`net.ipv4.vs.*`) over the API, `GET /v1/sysctl` and
//! `PUT|POST /v1/sysctl`, and `rvsadm --sysctl`'s command line and output (the way `sysctl`
//! prints them). The settings themselves are `ipvs::sysctl`'s table.

use serde::{Deserialize, Serialize};

use crate::api::{ApiError, ErrorKind};
use crate::client::{Client, ClientError};

/// The API path.
pub const PATH: &str = "/v1/sysctl";

/// One setting to change: name (with or without `net.ipv4.vs.`) and value as `sysctl` writes
/// it (numbers separated by blanks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SysctlSetting {
    pub name: String,
    pub value: String,
}

/// One setting as listed: its full name, value, range and meaning. A listing can be sent back
/// as a set request (the extra fields are ignored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SysctlView {
    pub name: String,
    pub value: String,
    pub min: u32,
    pub max: u32,
    pub meaning: String,
}

/// The full name (`net.ipv4.vs.NAME`) of a known setting, however it was written.
pub fn full_name(name: &str) -> Option<String> {
    ipvs::sysctl::find(name).map(|s| format!("{}{}", ipvs::sysctl::PREFIX, s.name))
}

/// Checks one `name = value` without applying it (configuration files); returns the full name.
pub fn check(name: &str, value: &str) -> Result<String, String> {
    let s = ipvs::sysctl::find(name).ok_or_else(|| format!("unknown setting {name:?} (rvsadm --sysctl lists them)"))?;
    ipvs::sysctl::parse(s, value)?;
    Ok(format!("{}{}", ipvs::sysctl::PREFIX, s.name))
}

/// Every setting of `ipvs`, in the kernel's order.
pub fn views(ipvs: &ipvs::Ipvs) -> Vec<SysctlView> {
    ipvs::sysctl::list(ipvs)
        .into_iter()
        .map(|(s, value)| SysctlView {
            name: format!("{}{}", ipvs::sysctl::PREFIX, s.name),
            value,
            min: s.min,
            max: s.max,
            meaning: s.meaning.to_string(),
        })
        .collect()
}

/// Apply a set request to `ipvs`, all or nothing (an `Invalid` error names the culprit).
pub fn apply(ipvs: &ipvs::Ipvs, set: &[SysctlSetting]) -> Result<Vec<SysctlView>, ApiError> {
    let pairs: Vec<(&str, &str)> = set.iter().map(|s| (s.name.as_str(), s.value.as_str())).collect();
    ipvs::sysctl::set_many(ipvs, &pairs).map_err(|m| ApiError::new(ErrorKind::Invalid, m))?;
    Ok(views(ipvs))
}

/// The listing as `sysctl` prints it: `net.ipv4.vs.drop_entry = 0`, one per line.
pub fn format(list: &[SysctlView]) -> String {
    list.iter().map(|v| format!("{} = {}\n", v.name, v.value)).collect()
}

/// `NAME=VALUE` words (as `sysctl -w` takes them; blanks around `=` are allowed when quoted).
pub fn parse_assignments<S: AsRef<str>>(words: &[S]) -> Result<Vec<SysctlSetting>, String> {
    words
        .iter()
        .map(|w| {
            let w = w.as_ref();
            match w.split_once('=') {
                Some((n, v)) if !n.trim().is_empty() && !v.trim().is_empty() => {
                    Ok(SysctlSetting { name: n.trim().to_string(), value: v.trim().to_string() })
                }
                _ => Err(format!("--sysctl: expected NAME=VALUE, got {w:?}")),
            }
        })
        .collect()
}

fn decode<T: serde::de::DeserializeOwned>(status: u16, body: &[u8]) -> Result<T, ClientError> {
    if status == 200 {
        return serde_json::from_slice(body).map_err(|e| ClientError::Transport(format!("bad reply from daemon: {e}")));
    }
    Err(ClientError::Api(serde_json::from_slice::<ApiError>(body).unwrap_or_else(|_| {
        ApiError::new(
            ErrorKind::Internal,
            format!("daemon answered {status}: {}", String::from_utf8_lossy(body).trim()),
        )
    })))
}

impl Client {
    /// `GET /v1/sysctl`.
    pub fn sysctls(&self) -> Result<Vec<SysctlView>, ClientError> {
        let (status, body) = self.request("GET", PATH, None)?;
        decode(status, &body)
    }

    /// `PUT /v1/sysctl`: all or nothing; answers the whole listing after the change.
    pub fn set_sysctls(&self, set: &[SysctlSetting]) -> Result<Vec<SysctlView>, ClientError> {
        let body = serde_json::to_vec(set).map_err(|e| ClientError::Transport(format!("cannot encode: {e}")))?;
        let (status, body) = self.request("PUT", PATH, Some(&body))?;
        decode(status, &body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_as_sysctl_prints_and_parses_assignments() {
        let i = ipvs::Ipvs::new(10);
        let text = format(&views(&i));
        assert!(text.starts_with("net.ipv4.vs.am_droprate = 10\nnet.ipv4.vs.amemthresh = 0\n"), "{text}");
        assert!(text.contains("\nnet.ipv4.vs.drop_entry = 0\n"));
        let set = parse_assignments(&["drop_entry=1", "net.ipv4.vs.secure_tcp = 3"]).unwrap();
        assert_eq!(set[1], SysctlSetting { name: "net.ipv4.vs.secure_tcp".into(), value: "3".into() });
        let after = apply(&i, &set).unwrap();
        assert!(format(&after).contains("net.ipv4.vs.drop_entry = 1\n"));
        assert!(parse_assignments(&["drop_entry"]).unwrap_err().contains("NAME=VALUE"));
        assert!(parse_assignments(&["=1"]).is_err());
        let e = apply(&i, &[SysctlSetting { name: "bogus".into(), value: "1".into() }]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Invalid);
        assert!(e.message.contains("bogus"));
    }
}
