//! Types of the rvs extensions to the API (not ipvsadm's): connection filters, graceful
//! drain, configuration reload, health status. Endpoints are listed in
//! `docs/api/openapi.json`; JSON uses the same serde conventions as `api`.

use crate::api::{ConnView, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, ServiceKey};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};

/// Server-side filter of `GET /v1/connections?service=…&server=…&state=…`. Every field
/// given must match; an empty filter lists everything (what `-L -c` asks for).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnFilter {
    pub service: Option<ServiceKey>,
    /// Real server address and port (`RIP:PORT`, `[V6]:PORT`).
    pub server: Option<(IpAddr, u16)>,
    /// State name as `-c` prints it, compared case-insensitively.
    pub state: Option<String>,
}

/// `tcp:VIP:PORT`, `udp:[V6]:PORT`, `sctp:VIP:PORT`, `fwm:MARK` or `fwm6:MARK`.
pub fn service_text(k: &ServiceKey) -> String {
    let sa = |a: IpAddr, p: u16| SocketAddr::new(a, p).to_string();
    match *k {
        ServiceKey::Tcp { addr, port } => format!("tcp:{}", sa(addr, port)),
        ServiceKey::Udp { addr, port } => format!("udp:{}", sa(addr, port)),
        ServiceKey::Sctp { addr, port } => format!("sctp:{}", sa(addr, port)),
        ServiceKey::Fwmark { mark, ipv6: false } => format!("fwm:{mark}"),
        ServiceKey::Fwmark { mark, ipv6: true } => format!("fwm6:{mark}"),
    }
}

/// Inverse of [`service_text`]; the protocol is case-insensitive.
pub fn parse_service_text(s: &str) -> Result<ServiceKey, String> {
    let (proto, rest) =
        s.split_once(':').ok_or_else(|| format!("service '{s}': expected PROTO:VIP:PORT or fwm:MARK"))?;
    let addr = || rest.parse::<SocketAddr>().map_err(|_| format!("service '{s}': '{rest}' is not ADDR:PORT"));
    Ok(match proto.to_ascii_lowercase().as_str() {
        "tcp" => addr().map(|a| ServiceKey::Tcp { addr: a.ip(), port: a.port() })?,
        "udp" => addr().map(|a| ServiceKey::Udp { addr: a.ip(), port: a.port() })?,
        "sctp" => addr().map(|a| ServiceKey::Sctp { addr: a.ip(), port: a.port() })?,
        "fwm" | "fwm6" => ServiceKey::Fwmark {
            mark: Some(rest)
                .filter(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|r| r.parse().ok())
                .ok_or_else(|| format!("service '{s}': '{rest}' is not a mark (0..=4294967295)"))?,
            ipv6: proto.eq_ignore_ascii_case("fwm6"),
        },
        other => return Err(format!("service '{s}': unknown protocol '{other}' (tcp, udp, sctp, fwm, fwm6)")),
    })
}

/// Percent-encodes a query value (everything but unreserved characters).
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` and `+` (space); bad escapes are an error.
pub fn decode_component(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
                let v =
                    hex.and_then(|h| u8::from_str_radix(h, 16).ok()).ok_or_else(|| format!("bad escape in '{s}'"))?;
                out.push(v);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| format!("'{s}' is not UTF-8"))
}

/// The `key=value` pairs of a request target's query, decoded.
pub fn query_pairs(target: &str) -> Result<Vec<(String, String)>, String> {
    let Some((_, q)) = target.split_once('?') else { return Ok(Vec::new()) };
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Ok((decode_component(k)?, decode_component(v)?))
        })
        .collect()
}

impl ConnFilter {
    pub fn is_empty(&self) -> bool {
        self.service.is_none() && self.server.is_none() && self.state.is_none()
    }

    /// The query string (with its `?`, empty when there is no filter).
    pub fn to_query(&self) -> String {
        let mut parts = Vec::new();
        if let Some(k) = &self.service {
            parts.push(format!("service={}", encode_component(&service_text(k))));
        }
        if let Some((a, p)) = self.server {
            parts.push(format!("server={}", encode_component(&SocketAddr::new(a, p).to_string())));
        }
        if let Some(s) = &self.state {
            // The daemon takes state names exactly as listings print them (upper case);
            // `matches` compares without case, so the client may be lenient.
            parts.push(format!("state={}", encode_component(&s.to_ascii_uppercase())));
        }
        if parts.is_empty() { String::new() } else { format!("?{}", parts.join("&")) }
    }

    /// Parses the query of a request target; unknown keys are an error (a typo must not
    /// silently list everything).
    pub fn from_target(target: &str) -> Result<ConnFilter, String> {
        let mut f = ConnFilter::default();
        for (k, v) in query_pairs(target)? {
            match k.as_str() {
                "service" => f.service = Some(parse_service_text(&v)?),
                "server" => {
                    let a: SocketAddr = v.parse().map_err(|_| format!("server '{v}': expected ADDR:PORT"))?;
                    f.server = Some((a.ip(), a.port()));
                }
                "state" if crate::api::state_names().any(|n| n == v) => f.state = Some(v),
                "state" => {
                    let names: Vec<&str> = crate::api::state_names().collect();
                    return Err(format!("state '{v}': not a state name ({})", names.join(", ")));
                }
                other => return Err(format!("unknown filter '{other}' (service, server, state)")),
            }
        }
        Ok(f)
    }

    pub fn matches(&self, c: &ConnView) -> bool {
        let service_ok = self.service.is_none_or(|k| match k {
            ServiceKey::Fwmark { mark, .. } => c.fwmark == mark,
            ServiceKey::Tcp { addr, port } => c.proto == IPPROTO_TCP && c.vaddr == addr && c.vport == port,
            ServiceKey::Udp { addr, port } => c.proto == IPPROTO_UDP && c.vaddr == addr && c.vport == port,
            ServiceKey::Sctp { addr, port } => c.proto == IPPROTO_SCTP && c.vaddr == addr && c.vport == port,
        });
        let server_ok = self.server.is_none_or(|(a, p)| c.daddr == a && c.dport == p);
        let state_ok = self.state.as_ref().is_none_or(|s| c.state.eq_ignore_ascii_case(s));
        service_ok && server_ok && state_ok
    }
}

/// `POST /v1/drain`: take a real server out of scheduling, let its connections finish,
/// cut what is left after `timeout_secs` (lvs-semantics.md §21.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrainRequest {
    pub service: ServiceKey,
    pub addr: IpAddr,
    pub port: u16,
    /// Seconds until remaining connections are cut; `None` = the daemon's default (300).
    #[serde(default)]
    pub timeout_secs: Option<u32>,
}

/// One entry of `GET /v1/draining`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainingView {
    pub service: ServiceKey,
    pub addr: IpAddr,
    pub port: u16,
    pub active: u32,
    pub inactive: u32,
    pub persistent: u32,
    /// Whole seconds until the remaining connections are cut.
    pub remaining_secs: u64,
}

/// `POST /v1/reload` body (optional): another file to load, in the format given at start.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReloadRequest {
    #[serde(default)]
    pub path: Option<String>,
}

/// Answer of a successful reload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadReply {
    pub file: String,
    /// IPVS services installed.
    pub services: usize,
    /// Health checks started.
    pub checks: usize,
    /// Accepted-but-fixed or ignored items, `file:line: field: message`.
    pub warnings: Vec<String>,
}

/// `GET /v1/config`: where the configuration comes from and how reloads went.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigStatus {
    /// File loaded last (None when the daemon runs without a configuration file).
    pub file: Option<String>,
    /// `native` or `keepalived`.
    pub format: Option<String>,
    /// Successful loads, the one at start included.
    pub loads: u64,
    pub failures: u64,
    /// The last refusal, `file:line: field: message`.
    pub last_error: Option<String>,
    pub warnings: Vec<String>,
}

/// One real server in `GET /v1/health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RealHealth {
    pub addr: IpAddr,
    pub port: Option<u16>,
    pub up: bool,
    pub weight: u32,
    /// Check types (`tcp`, `http`, …); empty = no check, always up.
    pub checkers: Vec<String>,
    pub transitions_up: u64,
    pub transitions_down: u64,
    pub checks_ok: u64,
    pub checks_failed: u64,
}

/// One virtual service in `GET /v1/health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceHealth {
    pub name: String,
    pub quorum_up: bool,
    pub live_weight: u64,
    pub sorry_active: bool,
    pub reals: Vec<RealHealth>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(proto: u8, v: &str, vport: u16, d: &str, dport: u16, state: &str) -> ConnView {
        ConnView {
            proto,
            caddr: "198.51.100.1".parse().unwrap(),
            cport: 1000,
            vaddr: v.parse().unwrap(),
            vport,
            daddr: d.parse().unwrap(),
            dport,
            state: state.into(),
            expires_secs: 1,
            template: false,
            one_packet: false,
            fwmark: 0,
            pe_name: None,
            pe_data: None,
            synced: false,
        }
    }

    #[test]
    fn service_text_round_trips() {
        for k in [
            ServiceKey::Tcp { addr: "10.0.0.1".parse().unwrap(), port: 80 },
            ServiceKey::Udp { addr: "2001:db8::1".parse().unwrap(), port: 53 },
            ServiceKey::Sctp { addr: "10.0.0.1".parse().unwrap(), port: 9 },
            ServiceKey::Fwmark { mark: 7, ipv6: false },
            ServiceKey::Fwmark { mark: 8, ipv6: true },
        ] {
            assert_eq!(parse_service_text(&service_text(&k)), Ok(k));
        }
        assert_eq!(
            service_text(&ServiceKey::Udp { addr: "2001:db8::1".parse().unwrap(), port: 53 }),
            "udp:[2001:db8::1]:53"
        );
        assert!(parse_service_text("icmp:1.2.3.4:1").unwrap_err().contains("unknown protocol"));
        assert!(parse_service_text("tcp:1.2.3.4").is_err());
        assert!(parse_service_text("fwm:x").is_err());
    }

    #[test]
    fn filters_round_trip_through_the_query_and_match() {
        let f = ConnFilter {
            service: Some(ServiceKey::Tcp { addr: "2001:db8::1".parse().unwrap(), port: 80 }),
            server: Some(("2001:db8::2".parse().unwrap(), 8080)),
            state: Some("ESTABLISHED".into()),
        };
        let q = f.to_query();
        assert!(!q.contains('['), "{q}");
        assert_eq!(ConnFilter::from_target(&format!("/v1/connections{q}")), Ok(f));
        assert_eq!(ConnFilter::from_target("/v1/connections"), Ok(ConnFilter::default()));
        assert_eq!(ConnFilter::default().to_query(), "");
        assert!(ConnFilter::from_target("/x?sevice=tcp:1.1.1.1:1").unwrap_err().contains("unknown filter"));
        assert!(ConnFilter::from_target("/x?server=1.1.1.1").is_err());
        assert!(ConnFilter::from_target("/x?state=%zz").is_err());

        // State names exactly as listings print them; marks in decimal digits.
        for bad in
            ["state=established", "state=", "state=ERR!", "service=fwm:+5", "service=fwm:", "service=fwm:4294967296"]
        {
            assert!(ConnFilter::from_target(&format!("/x?{bad}")).is_err(), "{bad}");
        }
        assert!(ConnFilter::from_target("/x?state=C-SENT&service=fwm6:7").is_ok());
        let f = ConnFilter::from_target("/x?service=tcp:10.0.0.1:80&state=ESTABLISHED").unwrap();
        assert!(f.matches(&conn(6, "10.0.0.1", 80, "192.168.1.1", 80, "ESTABLISHED")));
        assert!(!f.matches(&conn(17, "10.0.0.1", 80, "192.168.1.1", 80, "ESTABLISHED")), "protocol");
        assert!(!f.matches(&conn(6, "10.0.0.1", 81, "192.168.1.1", 80, "ESTABLISHED")), "port");
        assert!(!f.matches(&conn(6, "10.0.0.1", 80, "192.168.1.1", 80, "FIN_WAIT")), "state");
        let f = ConnFilter::from_target("/x?server=192.168.1.1:8080").unwrap();
        assert!(f.matches(&conn(6, "10.0.0.1", 80, "192.168.1.1", 8080, "SYN_RECV")));
        assert!(!f.matches(&conn(6, "10.0.0.1", 80, "192.168.1.1", 80, "SYN_RECV")));
        let f = ConnFilter { service: Some(ServiceKey::Fwmark { mark: 3, ipv6: false }), ..Default::default() };
        let mut c = conn(6, "10.0.0.1", 80, "192.168.1.1", 80, "ESTABLISHED");
        assert!(!f.matches(&c));
        c.fwmark = 3;
        assert!(f.matches(&c));
    }

    #[test]
    fn percent_coding() {
        assert_eq!(encode_component("a b:[x]"), "a%20b%3A%5Bx%5D");
        assert_eq!(decode_component("a%20b%3a+c").unwrap(), "a b: c");
        assert!(decode_component("%4").is_err());
        assert_eq!(query_pairs("/p?a=1&&b").unwrap(), vec![("a".into(), "1".into()), ("b".into(), "".into())]);
    }
}
