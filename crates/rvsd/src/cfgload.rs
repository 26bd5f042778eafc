//! The configuration file: loading it (native TOML or keepalived.conf, `rvs_config`) and
//! turning its table (at start, or after a reload with the health state carried over)
//! into the engine's types for one atomic `Ipvs::replace_table`, plus every global
//! timeout for `Ipvs::set_all_timeouts`. Errors keep the `file:line: field: message` form
//! of `rvs_config::ConfigError`.

use std::path::Path;

use control::api::{ApiError, ErrorKind};
use ipvs::proto::Timeouts;
use ipvs::{DestConfig, ServiceConfig};
use rvs_config::health::Carried;
use rvs_config::{Config, StateTimeouts};

use crate::args::ConfigFormat;
use crate::convert::{dest_config, service_config};

/// `--config-id`, set once at start: every load (start, reload) reads keepalived's
/// conditional lines with the same id.
static CONFIG_ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Sets the config id for keepalived files (`--config-id`); without it, the host name's
/// first label, as keepalived.
pub fn set_config_id(id: &str) {
    let _ = CONFIG_ID.set(id.to_owned());
}

/// The config id in force (`None`: keepalived's default, the host name's first label).
pub fn config_id() -> Option<&'static str> {
    CONFIG_ID.get().map(String::as_str)
}

/// Reads and validates a configuration file. The error is ready to show (`file:line: …`).
pub fn load(format: ConfigFormat, path: &Path) -> Result<Config, String> {
    match format {
        ConfigFormat::Native => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            rvs_config::native::parse(&text, &path.display().to_string()).map_err(|e| e.to_string())
        }
        ConfigFormat::Keepalived => {
            rvs_config::keepalived::import_file_as(path, config_id()).map_err(|e| e.to_string())
        }
    }
}

/// Applies state timeouts given by name (`ESTABLISHED`, `C-SENT`, …) on top of `t`.
fn apply_states(t: &mut Timeouts, st: &StateTimeouts) -> Result<(), String> {
    for (name, secs) in &st.tcp {
        let i = ipvs::proto::tcp::NAMES.iter().position(|n| n.eq_ignore_ascii_case(name));
        *t.tcp.get_mut(i.ok_or_else(|| format!("unknown TCP state {name}"))?).ok_or("state")? = *secs;
    }
    for (name, secs) in &st.sctp {
        let i = ipvs::proto::sctp::NAMES.iter().position(|n| n.eq_ignore_ascii_case(name));
        *t.sctp.get_mut(i.ok_or_else(|| format!("unknown SCTP state {name}"))?).ok_or("state")? = *secs;
    }
    if let Some(u) = st.udp {
        t.udp = u;
    }
    Ok(())
}

/// What a configuration asks of the engine.
pub struct Plan {
    pub table: Vec<(ServiceConfig, Vec<DestConfig>)>,
    /// Every global timeout (all TCP and SCTP states, UDP): the defaults with the file's
    /// `[timeouts]` applied. Installed whole, so a timeout removed from the file returns to
    /// its default at a reload.
    pub timeouts: Timeouts,
    /// The firewall-mark classifier's rules (`[[fwmark]]`), installed with the table.
    pub fwmark_rules: Vec<ipvs::fwmark::FwmarkRule>,
}

/// The configuration's table in the engine's types: health taken into account as
/// keepalived does (`Config::table_after`: at start `prior` is empty, which is
/// `Config::initial_table`; at a reload it is the old checkers' state, so kept servers
/// keep their state). Per-service timeouts are the defaults with the global states and
/// then the service's own applied; only services with timeouts of their own get them,
/// the others follow the global timeouts like ipvsadm services.
pub fn plan(cfg: &Config, prior: &Carried) -> Result<Plan, ApiError> {
    let invalid = |m: String| ApiError::new(ErrorKind::Invalid, m);
    let mut timeouts = Timeouts::default();
    apply_states(&mut timeouts, &cfg.timeouts).map_err(invalid)?;
    let states = cfg.states_after(prior);
    let mut table = Vec::new();
    for (vs, st) in cfg.services.iter().zip(&states) {
        let svc_timeouts = if !vs.timeouts.is_empty() {
            let mut t = Timeouts::default();
            apply_states(&mut t, &cfg.timeouts).map_err(invalid)?;
            apply_states(&mut t, &vs.timeouts).map_err(|e| invalid(format!("{}: {e}", vs.name)))?;
            Some(t)
        } else {
            None
        };
        for key in &vs.keys {
            let spec = vs.spec(key);
            let mut sc =
                service_config(&spec).map_err(|e| ApiError::new(e.kind, format!("{}: {}", vs.name, e.message)))?;
            sc.timeouts = svc_timeouts;
            let dests = st
                .dests(vs, key)
                .iter()
                .map(dest_config)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ApiError::new(e.kind, format!("{}: {}", vs.name, e.message)))?;
            table.push((sc, dests));
        }
    }
    let fwmark_rules = cfg
        .fwmark_rules
        .iter()
        .map(|r| ipvs::fwmark::FwmarkRule {
            daddr: r.daddr,
            dprefix: r.dprefix,
            saddr: r.saddr,
            protocol: r.protocol,
            dports: r.ports,
            mark: r.mark,
        })
        .collect();
    Ok(Plan { table, timeouts, fwmark_rules })
}

/// Checks `plan` exactly as the engine would, on a scratch engine, so a reload can be
/// refused before anything (health checkers included) is touched.
pub fn validate(plan: &Plan) -> Result<(), ApiError> {
    ipvs::Ipvs::new(1).replace_table(plan.table.clone()).map_err(crate::convert::admin_error)
}

/// Number of health checks a configuration starts.
pub fn check_count(cfg: &Config) -> usize {
    cfg.services.iter().flat_map(|vs| &vs.reals).map(|r| r.checks.len()).sum()
}

/// Warnings as `file:line: field: message`.
pub fn warnings(cfg: &Config) -> Vec<String> {
    cfg.warnings.iter().map(|w| w.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[timeouts]
tcp = 800
udp = 200
[[services]]
protocol = "tcp"
address = "10.0.0.100:80"
scheduler = "wrr"
  [[services.real_servers]]
  address = "192.168.1.11:8080"
  method = "nat"
  weight = 3
  [[services.real_servers]]
  address = "192.168.1.12:8080"
  method = "nat"
[[services]]
protocol = "udp"
address = "10.0.0.100:53"
scheduler = "rr"
[services.timeouts]
udp = 30
"#;

    fn write(name: &str, text: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("rvsd-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn native_file_becomes_an_engine_table() {
        let p = write("good.toml", GOOD);
        let cfg = load(ConfigFormat::Native, &p).unwrap();
        let plan = plan(&cfg, &Carried::default()).unwrap();
        validate(&plan).unwrap();
        let (est, fin) = (ipvs::proto::tcp::ESTABLISHED as usize, ipvs::proto::tcp::FIN_WAIT as usize);
        assert_eq!((plan.timeouts.tcp[est], plan.timeouts.tcp[fin], plan.timeouts.udp), (800, 60, 200));
        assert_eq!(plan.table.len(), 2);
        let (s, d) = &plan.table[0];
        assert_eq!(s.key, ipvs::ServiceKey::tcp("10.0.0.100".parse().unwrap(), 80));
        assert_eq!(s.scheduler, "wrr");
        assert!(s.timeouts.is_none(), "follows the global timeouts");
        assert_eq!(d.len(), 2);
        assert_eq!((d[0].port, d[0].weight, d[0].method), (8080, 3, ipvs::ForwardMethod::Masq));
        let (u, _) = &plan.table[1];
        let t = u.timeouts.expect("own timeouts");
        assert_eq!(t.udp, 30);
        assert_eq!(t.tcp[ipvs::proto::tcp::ESTABLISHED as usize], 800, "global states under the service's");
        // The engine takes it atomically.
        let e = ipvs::Ipvs::new(16);
        e.replace_table(plan.table).unwrap();
        assert_eq!(e.services_full().len(), 2);
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let p =
            write("bad.toml", "[[services]]\nprotocol = \"tcp\"\naddress = \"10.0.0.1:80\"\nscheduler = \"nosuch\"\n");
        let e = load(ConfigFormat::Native, &p).unwrap_err();
        assert!(e.contains("bad.toml:4: services[0].scheduler"), "{e}");
        let e = load(ConfigFormat::Native, Path::new("/nonexistent/rvs.toml")).unwrap_err();
        assert!(e.starts_with("/nonexistent/rvs.toml: "), "{e}");
        let k = write("k.conf", "virtual_server 10.0.0.1 80 {\n  lvs_sched rr\n  protocol TCP\n  delay_loop abc\n}\n");
        let e = load(ConfigFormat::Keepalived, &k).unwrap_err();
        assert!(e.contains("k.conf:4"), "{e}");
    }

    #[test]
    fn keepalived_warnings_carry_file_and_line() {
        let k = write(
            "w.conf",
            "vrrp_instance VI_1 {\n  state MASTER\n}\nvirtual_server 10.0.0.1 80 {\n  lb_algo rr\n  protocol TCP\n  real_server 192.168.1.2 80 {\n    weight 2\n  }\n}\n",
        );
        let cfg = load(ConfigFormat::Keepalived, &k).unwrap();
        let w = warnings(&cfg);
        assert!(w.iter().any(|w| w.contains("w.conf:1")), "{w:?}");
        let plan = plan(&cfg, &Carried::default()).unwrap();
        assert_eq!(plan.table.len(), 1);
        assert_eq!(plan.table[0].1[0].weight, 2);
    }

    /// An `Admin` over a fresh engine (no workers, no steering).
    fn admin() -> crate::admin::Admin {
        use std::sync::Arc;
        use std::sync::atomic::AtomicUsize;
        let node = node::Node::new(Arc::new(ipvs::Ipvs::new(100)), node::NetState::default());
        let sizes: Arc<[AtomicUsize]> = vec![AtomicUsize::new(0)].into();
        let rates = Arc::new(crate::rates::RateTable::default());
        crate::admin::Admin::new(node, rates, Box::new(|_: &std::net::IpAddr| false), vec![], sizes, None, vec![])
    }

    #[test]
    fn every_global_timeout_is_installed_and_removed_ones_return_to_the_default() {
        use ipvs::proto::{sctp, tcp};
        let text =
            |timeouts: &str| format!("{timeouts}[[services]]\nprotocol = \"tcp\"\naddress = \"10.0.0.100:80\"\n");
        let p = write(
            "all.toml",
            &text(
                "[timeouts]\ntcp = 800\ntcpfin = 50\nudp = 200\n\
                 [timeouts.tcp_states]\nSYN_RECV = 30\nTIME_WAIT = 7\nCLOSE_WAIT = 40\n\
                 [timeouts.sctp_states]\nC-SENT = 62\nESTABLISHED = 1200\n",
            ),
        );
        let cfg = load(ConfigFormat::Native, &p).unwrap();
        let plan1 = plan(&cfg, &Carried::default()).unwrap();
        let mut want = Timeouts::default();
        want.tcp[tcp::ESTABLISHED as usize] = 800;
        want.tcp[tcp::FIN_WAIT as usize] = 50;
        want.tcp[tcp::SYN_RECV as usize] = 30;
        want.tcp[tcp::TIME_WAIT as usize] = 7;
        want.tcp[tcp::CLOSE_WAIT as usize] = 40;
        want.sctp[sctp::COOKIE_SENT as usize] = 62;
        want.sctp[sctp::ESTABLISHED as usize] = 1200;
        want.udp = 200;
        assert_eq!(plan1.timeouts, want);
        assert!(plan1.table[0].0.timeouts.is_none(), "the service follows the global timeouts");

        // Installed whole at start (every state, not only --set's three) ...
        let a = admin();
        a.install(&plan1).unwrap();
        assert_eq!(*a.node.ipvs.timeouts(), want);

        // ... and at a reload, where what the file no longer names returns to the default.
        let p = write("some.toml", &text("[timeouts]\ntcp = 700\n[timeouts.tcp_states]\nSYN_RECV = 20\n"));
        let plan2 = plan(&load(ConfigFormat::Native, &p).unwrap(), &Carried::default()).unwrap();
        a.install(&plan2).unwrap();
        let mut want = Timeouts::default();
        want.tcp[tcp::ESTABLISHED as usize] = 700;
        want.tcp[tcp::SYN_RECV as usize] = 20;
        assert_eq!(*a.node.ipvs.timeouts(), want);
        let p = write("none.toml", &text(""));
        a.install(&plan(&load(ConfigFormat::Native, &p).unwrap(), &Carried::default()).unwrap()).unwrap();
        assert_eq!(*a.node.ipvs.timeouts(), Timeouts::default(), "no [timeouts]: all defaults");
    }
}
