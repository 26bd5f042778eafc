//! `GET|PUT|POST /v1/sysctl`: the run-time settings by their LVS names (control::sysctl,
//! ipvs::sysctl). A set is all or nothing and logged.

use control::api::{ApiError, ErrorKind};
use control::sysctl::{self, SysctlSetting};

use crate::server::{Answer, Api};

/// `GET /v1/sysctl`.
pub fn get(api: &Api, _query: &str, _body: &[u8]) -> Answer {
    answer(handle(api, "GET", b""))
}

/// `PUT|POST /v1/sysctl`.
pub fn set(api: &Api, _query: &str, body: &[u8]) -> Answer {
    answer(handle(api, "PUT", body))
}

fn answer((status, body): (u16, Vec<u8>)) -> Answer {
    Answer { status, headers: vec![], body, stream: None }
}

/// The body of a set: a JSON array of objects (not of arrays, which serde's derived structs
/// would also take).
fn setting_list(body: &[u8]) -> Result<Vec<SysctlSetting>, serde_json::Error> {
    let v: serde_json::Value = serde_json::from_slice(body)?;
    match v.as_array() {
        Some(items) if items.iter().all(serde_json::Value::is_object) => serde_json::from_value(v),
        _ => Err(serde::de::Error::custom("expected a JSON array of {\"name\", \"value\"} objects")),
    }
}

/// Answers a request on [`sysctl::PATH`] by method.
pub fn handle(api: &Api, method: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let ipvs = &api.admin.node.ipvs;
    let answer = match method {
        "GET" => Ok(sysctl::views(ipvs)),
        "PUT" | "POST" => match setting_list(body) {
            Ok(set) => sysctl::apply(ipvs, &set).inspect(|_| {
                let shown: Vec<String> = set.iter().map(|s| format!("{}={}", s.name, s.value)).collect();
                tracing::info!("sysctl: {}", shown.join(" "));
            }),
            Err(e) => Err(ApiError::new(ErrorKind::BadRequest, format!("bad sysctl request: {e}"))),
        },
        _ => {
            let e = ApiError::new(ErrorKind::BadRequest, format!("method {method} not allowed on {}", sysctl::PATH));
            return (405, serde_json::to_vec(&e).unwrap_or_default());
        }
    };
    match answer.map(|v| serde_json::to_vec(&v)) {
        Ok(Ok(b)) => (200, b),
        Ok(Err(e)) => (500, serde_json::to_vec(&ApiError::new(ErrorKind::Internal, e.to_string())).unwrap_or_default()),
        Err(e) => (e.kind.http_status(), serde_json::to_vec(&e).unwrap_or_default()),
    }
}

/// The `[sysctl]` table of a configuration being installed: the settings it names, and
/// nothing else (a reload keeps what the file does not name). Checked when the file was read.
pub fn apply_config(ipvs: &ipvs::Ipvs, settings: &[(String, String)]) {
    if settings.is_empty() {
        return;
    }
    match ipvs::sysctl::set_many(ipvs, settings) {
        Ok(()) => {
            let shown: Vec<String> = settings.iter().map(|(n, v)| format!("{n}={v}")).collect();
            tracing::info!("sysctl from the configuration: {}", shown.join(" "));
        }
        Err(e) => tracing::error!("sysctl from the configuration: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::ConfigFormat;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    fn test_api() -> Arc<Api> {
        let node = node::Node::new(Arc::new(ipvs::Ipvs::new(100)), node::NetState::default());
        let sizes: Arc<[AtomicUsize]> = vec![AtomicUsize::new(0)].into();
        let admin = Arc::new(crate::admin::Admin::new(
            node,
            Arc::new(crate::rates::RateTable::default()),
            Box::new(|_| false),
            vec![],
            sizes,
            None,
            vec![],
        ));
        let ops = Arc::new(crate::operate::Operator::new(admin.clone(), None));
        Arc::new(Api { admin, ops })
    }

    #[test]
    fn the_file_sets_what_it_names_and_a_reload_keeps_the_rest() {
        let dir = std::env::temp_dir().join(format!("rvsd-sysctl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("rvs.toml");
        std::fs::write(&file, "[sysctl]\ndrop_entry = 1\n\"net.ipv4.vs.amemthresh\" = 300\n").unwrap();
        let api = test_api();
        let ops = crate::operate::Operator::new(api.admin.clone(), Some((ConfigFormat::Native, file.clone())));
        ops.activate(crate::cfgload::load(ConfigFormat::Native, &file).unwrap(), &file).unwrap();
        let ipvs = &api.admin.node.ipvs;
        let get = |n: &str| ipvs::sysctl::value(ipvs, n).unwrap();
        assert_eq!((get("drop_entry"), get("amemthresh")), ("1".into(), "300".into()));
        // Changed at run time, then a reload of a file that names only secure_tcp.
        handle(&api, "PUT", br#"[{"name":"sloppy_tcp","value":"1"}]"#);
        std::fs::write(&file, "[sysctl]\nsecure_tcp = 3\n").unwrap();
        ops.reload(None).unwrap();
        assert_eq!(get("secure_tcp"), "3");
        assert_eq!((get("drop_entry"), get("amemthresh"), get("sloppy_tcp")), ("1".into(), "300".into(), "1".into()));
        // A file with a bad setting is refused whole: nothing of it is applied.
        std::fs::write(&file, "[sysctl]\nsecure_tcp = 0\ndrop_packet = 7\n").unwrap();
        let e = ops.reload(None).unwrap_err();
        assert!(e.message.contains("rvs.toml:3") && e.message.contains("drop_packet"), "{}", e.message);
        assert_eq!(get("secure_tcp"), "3");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn set_is_all_or_nothing_and_errors_name_the_setting() {
        let api = test_api();
        let (st, body) =
            handle(&api, "PUT", br#"[{"name":"drop_entry","value":"1"},{"name":"amemthresh","value":"500"}]"#);
        assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
        let (st, body) =
            handle(&api, "POST", br#"[{"name":"drop_entry","value":"0"},{"name":"drop_packet","value":"9"}]"#);
        assert_eq!(st, ErrorKind::Invalid.http_status());
        let e: ApiError = serde_json::from_slice(&body).unwrap();
        assert!(e.message.contains("net.ipv4.vs.drop_packet") && e.message.contains("out of range"), "{}", e.message);
        let (st, body) = handle(&api, "PUT", br#"[{"name":"no_such_thing","value":"0"}]"#);
        assert_eq!(st, ErrorKind::Invalid.http_status());
        assert!(String::from_utf8_lossy(&body).contains("no_such_thing"));
        let (st, _) = handle(&api, "PUT", b"{not json");
        assert_eq!(st, 400);
        let (st, body) = handle(&api, "GET", b"");
        assert_eq!(st, 200);
        let text = sysctl::format(&serde_json::from_slice::<Vec<sysctl::SysctlView>>(&body).unwrap());
        assert!(text.contains("net.ipv4.vs.drop_entry = 1\n") && text.contains("net.ipv4.vs.amemthresh = 500\n"));
        assert!(text.contains("net.ipv4.vs.drop_packet = 0\n"), "nothing of the refused set applied");
        assert_eq!(handle(&api, "DELETE", b"").0, 405);
    }
}
