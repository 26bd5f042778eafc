//! `docs/api/openapi.json` against the implementation: the real control server is started
//! in-process on a Unix socket, every operation of the spec is called (with the spec's own
//! request examples), status codes must be documented, and answers must carry the required
//! properties of their schema (a small checker over `serde_json::Value`: `$ref`, `oneOf`,
//! `anyOf`, `nullable`, object/array/string/integer/boolean, `enum`, `additionalProperties`,
//! `minimum`/`maximum`, tuple `items`, `format` ipv4/ipv6). Every route the server implements
//! must be in the spec and the other way round. The schema-driven fuzzer
//! (tests/e2e/test_api_schema.sh, schemathesis) checks the same description much harder.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use control::client::Client;
use serde_json::Value;

use crate::admin::Admin;
use crate::args::ConfigFormat;
use crate::operate::Operator;
use crate::rates::RateTable;
use crate::server::{self, Api, ROUTES};

const SPEC: &str = include_str!("../../../docs/api/openapi.json");

fn spec() -> Value {
    serde_json::from_str(SPEC).expect("openapi.json is JSON")
}

fn resolve<'a>(spec: &'a Value, s: &'a Value) -> Result<&'a Value, String> {
    match s.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.strip_prefix("#/components/schemas/").ok_or(format!("unsupported $ref {r}"))?;
            spec["components"]["schemas"].get(name).ok_or(format!("dangling $ref {r}"))
        }
        None => Ok(s),
    }
}

/// Does `v` conform to `schema` (as far as this checker understands schemas)?
fn check(spec: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(spec, schema)?;
    if v.is_null() && schema.get("nullable") == Some(&Value::Bool(true)) {
        return Ok(());
    }
    if let Some(alts) = schema.get("oneOf").and_then(Value::as_array) {
        let errs: Vec<String> = alts.iter().filter_map(|a| check(spec, a, v, at).err()).collect();
        return match alts.len() - errs.len() {
            1 => Ok(()),
            0 => Err(format!("{at}: matches no oneOf: {errs:?}")),
            n => Err(format!("{at}: matches {n} of oneOf")),
        };
    }
    if let Some(alts) = schema.get("anyOf").and_then(Value::as_array) {
        let errs: Vec<String> = alts.iter().filter_map(|a| check(spec, a, v, at).err()).collect();
        return if errs.len() < alts.len() { Ok(()) } else { Err(format!("{at}: matches no anyOf: {errs:?}")) };
    }
    if let Some(r) = schema.get("$ref") {
        return check(spec, &serde_json::json!({ "$ref": r }), v, at);
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array)
        && !e.contains(v)
    {
        return Err(format!("{at}: {v} not in {e:?}"));
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => {
            let o = v.as_object().ok_or(format!("{at}: expected an object, got {v}"))?;
            for r in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
                let r = r.as_str().ok_or("required entry is not a string")?;
                if !o.contains_key(r) {
                    return Err(format!("{at}: required property {r} missing in {v}"));
                }
            }
            let props = schema.get("properties").and_then(Value::as_object);
            for (k, x) in o {
                if let Some(p) = props.and_then(|p| p.get(k)) {
                    check(spec, p, x, &format!("{at}.{k}"))?;
                } else if let Some(ap) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                    check(spec, ap, x, &format!("{at}.{k}"))?;
                } else if schema.get("additionalProperties") == Some(&Value::Bool(false)) {
                    return Err(format!("{at}: property {k} is not in the schema"));
                }
            }
            Ok(())
        }
        Some("array") => {
            let a = v.as_array().ok_or(format!("{at}: expected an array, got {v}"))?;
            let n = |k: &str| schema.get(k).and_then(Value::as_u64).map(|n| n as usize);
            if n("minItems").is_some_and(|m| a.len() < m) || n("maxItems").is_some_and(|m| a.len() > m) {
                return Err(format!("{at}: {} items", a.len()));
            }
            for (i, x) in a.iter().enumerate() {
                match schema.get("items") {
                    // A tuple: one schema per position.
                    Some(Value::Array(each)) => {
                        let s = each.get(i).ok_or(format!("{at}[{i}]: beyond the tuple"))?;
                        check(spec, s, x, &format!("{at}[{i}]"))?;
                    }
                    Some(items) => check(spec, items, x, &format!("{at}[{i}]"))?,
                    None => {}
                }
            }
            Ok(())
        }
        Some("string") => {
            let s = v.as_str().ok_or(format!("{at}: expected a string, got {v}"))?;
            match schema.get("format").and_then(Value::as_str) {
                Some("ipv4") if s.parse::<std::net::Ipv4Addr>().is_err() => Err(format!("{at}: {s} is not ipv4")),
                Some("ipv6") if s.parse::<std::net::Ipv6Addr>().is_err() => Err(format!("{at}: {s} is not ipv6")),
                _ => Ok(()),
            }
        }
        Some("integer") => {
            let n = v.as_i64().map(i128::from).or(v.as_u64().map(i128::from));
            let n = n.ok_or(format!("{at}: expected an integer, got {v}"))?;
            let bound = |k: &str| schema.get(k).and_then(Value::as_i64).map(i128::from);
            if bound("minimum").is_some_and(|m| n < m) || bound("maximum").is_some_and(|m| n > m) {
                return Err(format!("{at}: {n} out of range"));
            }
            Ok(())
        }
        Some("boolean") if !v.is_boolean() => Err(format!("{at}: expected a boolean, got {v}")),
        _ => Ok(()),
    }
}

/// Checks an answer against the operation's documented responses.
fn check_response(spec: &Value, op: &Value, what: &str, status: u16, body: &[u8]) -> Result<(), String> {
    let r = op["responses"].get(status.to_string()).ok_or(format!("{what}: status {status} is not documented"))?;
    let Some(schema) = r.pointer("/content/application~1json/schema") else { return Ok(()) };
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("{what}: body is not JSON: {e}"))?;
    check(spec, schema, &v, what)
}

const CONFIG: &str = r#"
[[services]]
protocol = "tcp"
address = "10.0.0.100:80"
scheduler = "rr"
  [[services.real_servers]]
  address = "192.168.1.11:8080"
  method = "nat"
  [[services.real_servers]]
  address = "192.168.1.12:8080"
  method = "nat"
"#;

/// A daemon without packet workers, configured from a native file, serving on `sock`.
fn start(dir: &std::path::Path) -> (Client, Arc<Api>) {
    let file = dir.join("rvs.toml");
    std::fs::write(&file, CONFIG).unwrap();
    let node = node::Node::new(Arc::new(ipvs::Ipvs::new(100)), node::NetState::default());
    let sizes: Arc<[AtomicUsize]> = vec![AtomicUsize::new(0)].into();
    let admin =
        Arc::new(Admin::new(node, Arc::new(RateTable::default()), Box::new(|_| false), vec![], sizes, None, vec![]));
    let ops = Arc::new(Operator::new(admin.clone(), Some((ConfigFormat::Native, file.clone()))));
    ops.activate(crate::cfgload::load(ConfigFormat::Native, &file).unwrap(), &file).unwrap();
    let api = Arc::new(Api { admin, ops });
    let sock = dir.join("api.sock");
    let l = server::bind(&sock).unwrap();
    let (a, p) = (api.clone(), sock.clone());
    std::thread::spawn(move || server::serve(l, a, p));
    (Client::new(&sock), api)
}

#[test]
fn every_route_is_documented_and_every_documented_route_exists() {
    let spec = spec();
    let mut documented = BTreeSet::new();
    for (path, ops) in spec["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            documented.insert((method.to_ascii_uppercase(), path.clone()));
        }
    }
    let implemented: BTreeSet<(String, String)> =
        ROUTES.iter().map(|r| (r.method.to_string(), r.path.to_string())).collect();
    assert_eq!(documented, implemented);
    assert_eq!(spec["openapi"].as_str().map(|v| v.starts_with("3.0")), Some(true));
}

#[test]
fn every_operation_answers_as_the_spec_says() {
    let dir = std::env::temp_dir().join(format!("rvsd-openapi-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (c, _api) = start(&dir);
    let spec = spec();
    let mut calls = 0;
    for (path, ops) in spec["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let m = method.to_ascii_uppercase();
            let what = format!("{m} {path}");
            // Every operation documents its schemas completely.
            for (code, r) in op["responses"].as_object().unwrap() {
                if let Some(s) = r.pointer("/content/application~1json/schema") {
                    resolve(&spec, s).unwrap_or_else(|e| panic!("{what} {code}: {e}"));
                }
            }
            // The spec's own example request: 200 and a conforming body.
            let example = op.pointer("/requestBody/content/application~1json/example").map(|e| e.to_string());
            if let Some(ex) = &example {
                let schema = op.pointer("/requestBody/content/application~1json/schema").unwrap();
                check(&spec, schema, &serde_json::from_str(ex).unwrap(), &format!("{what} request example")).unwrap();
            }
            let (st, body) = c.request(&m, path, example.as_deref().map(str::as_bytes)).unwrap();
            assert_eq!(st, 200, "{what}: {}", String::from_utf8_lossy(&body));
            check_response(&spec, op, &what, st, &body).unwrap();
            calls += 1;
            // With every documented query parameter (their examples).
            if let Some(params) = op.get("parameters").and_then(Value::as_array) {
                let q: Vec<String> = params
                    .iter()
                    .map(|p| {
                        let v = p["example"].as_str().unwrap();
                        format!("{}={}", p["name"].as_str().unwrap(), control::ops::encode_component(v))
                    })
                    .collect();
                let target = format!("{path}?{}", q.join("&"));
                let (st, body) = c.request(&m, &target, None).unwrap();
                check_response(&spec, op, &target, st, &body).unwrap();
                assert_eq!(st, 200);
                let (st, body) = c.request(&m, &format!("{path}?nosuch=1"), None).unwrap();
                assert_eq!(st, 400, "{what}: a bad parameter");
                check_response(&spec, op, &what, st, &body).unwrap();
            }
            // A body that is not JSON: a documented 400 with an ApiError.
            if op.get("requestBody").is_some() {
                let (st, body) = c.request(&m, path, Some(b"{not json")).unwrap();
                assert_eq!(st, 400, "{what}");
                check_response(&spec, op, &what, st, &body).unwrap();
            }
            // Another method on the path: 405 with an ApiError.
            let other = if m == "GET" || ops.get("get").is_some() { "DELETE" } else { "GET" };
            let (st, body) = c.request(other, path, None).unwrap();
            assert_eq!(st, 405, "{other} {path}");
            check(
                &spec,
                &serde_json::json!({"$ref": "#/components/schemas/ApiError"}),
                &serde_json::from_slice(&body).unwrap(),
                path,
            )
            .unwrap();
        }
    }
    assert_eq!(calls, ROUTES.len());
    // The calls did what they say: the drain example is listed (drains outlive reloads),
    // and the reload (after the command, in path order) put the file's table back.
    let drains = c.draining().unwrap();
    assert_eq!(drains.len(), 1);
    assert_eq!((drains[0].addr.to_string(), drains[0].port), ("192.168.1.11".to_string(), 8080));
    assert!(drains[0].remaining_secs <= 60);
    let snap = c.snapshot().unwrap();
    assert_eq!(snap.services.len(), 1, "reload replaced the table, AddService example gone");
    let (st, _) = c.request("GET", "/v1/nosuch", None).unwrap();
    assert_eq!(st, 404);
    // A refused reload is a documented 422 whose message names file and line.
    std::fs::write(
        dir.join("rvs.toml"),
        "[[services]]\nprotocol = \"tcp\"\naddress = \"10.0.0.100:80\"\nscheduler = 7\n",
    )
    .unwrap();
    let (st, body) = c.request("POST", "/v1/reload", None).unwrap();
    assert_eq!(st, 422);
    check_response(&spec, &spec["paths"]["/v1/reload"]["post"], "reload", st, &body).unwrap();
    let e: control::api::ApiError = serde_json::from_slice(&body).unwrap();
    assert!(e.message.contains("rvs.toml:4: services[0].scheduler"), "{}", e.message);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_checker_finds_missing_properties_and_wrong_types() {
    let spec = spec();
    let s = serde_json::json!({"$ref": "#/components/schemas/DrainingView"});
    let good = serde_json::json!({"service": {"Tcp": {"addr": "10.0.0.1", "port": 80}}, "addr": "10.0.0.2", "port": 80,
        "active": 1, "inactive": 0, "persistent": 0, "remaining_secs": 5});
    check(&spec, &s, &good, "x").unwrap();
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("active");
    assert!(check(&spec, &s, &missing, "x").unwrap_err().contains("active"));
    let mut wrong = good.clone();
    wrong["service"] = serde_json::json!({"Icmp": {}});
    assert!(check(&spec, &s, &wrong, "x").is_err());
    let mut wrong = good;
    wrong["port"] = serde_json::json!("80");
    assert!(check(&spec, &s, &wrong, "x").is_err());
    assert!(check(&spec, &serde_json::json!({"$ref": "#/components/schemas/Nope"}), &Value::Null, "x").is_err());
    // What the server refuses, the description refuses: unknown properties, out-of-range
    // numbers, non-addresses, a tuple in the wrong order.
    let drain = serde_json::json!({"$ref": "#/components/schemas/DrainRequest"});
    let ok = serde_json::json!({"service": {"Tcp": {"addr": "::1", "port": 80}}, "addr": "10.0.0.2", "port": 80});
    check(&spec, &drain, &ok, "x").unwrap();
    for (field, value) in
        [("port", serde_json::json!(65536)), ("addr", serde_json::json!("10.0.0")), ("extra", 1.into())]
    {
        let mut bad = ok.clone();
        bad[field] = value;
        assert!(check(&spec, &drain, &bad, "x").is_err(), "{bad}");
        assert!(serde_json::from_value::<control::ops::DrainRequest>(bad).is_err(), "the server refuses it too");
    }
    let cmd = serde_json::json!({"$ref": "#/components/schemas/Command"});
    let dest = serde_json::json!({"addr": "10.0.0.2", "port": 80, "method": "Masq", "weight": 1});
    let key = serde_json::json!({"Tcp": {"addr": "10.0.0.1", "port": 80}});
    check(&spec, &cmd, &serde_json::json!({"AddDest": [key, dest]}), "x").unwrap();
    assert!(check(&spec, &cmd, &serde_json::json!({"AddDest": [dest, key]}), "x").is_err());
    assert!(check(&spec, &cmd, &serde_json::json!({"AddDest": [key, dest], "Clear": null}), "x").is_err());
}

/// The enums of the description are the server's lists: schedulers and state names.
#[test]
fn enums_are_the_servers_lists() {
    let spec = spec();
    let names =
        |v: &Value| -> Vec<String> { v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect() };
    let sched = names(&spec["components"]["schemas"]["ServiceSpec"]["properties"]["scheduler"]["enum"]);
    assert_eq!(sched, ipvs::sched::NAMES);
    let params = spec["paths"]["/v1/connections"]["get"]["parameters"].as_array().unwrap();
    let state = params.iter().find(|p| p["name"] == "state").unwrap();
    let mut documented = names(&state["schema"]["enum"]);
    let mut served: Vec<String> = control::api::state_names().map(str::to_string).collect();
    documented.sort();
    documented.dedup();
    served.sort();
    served.dedup();
    assert_eq!(documented, served);
}
