//! The seed corpora stay meaningful: the valid seeds are accepted by the code they seed, so
//! mutations start from inputs that reach deep paths (a renamed key or a changed syntax that
//! turns every seed into an early error fails here, not silently in the fuzzer).

use std::io::BufReader;
use std::path::Path;

use rvs_fuzz_targets::harness::corpus_dir;

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(corpus_dir(target))
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    v.sort();
    v
}

fn text(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap()
}

#[test]
fn config_seeds_load() {
    for (name, data) in seeds("config_toml") {
        if let Err(e) = rvs_config::native::parse(text(&data), &name) {
            panic!("{name}: {e}");
        }
    }
}

#[test]
fn keepalived_seeds_import() {
    for (name, data) in seeds("keepalived").into_iter().filter(|(n, _)| !n.starts_with("lexer-")) {
        let read = move |_: &Path| Ok(String::from_utf8(data.clone()).unwrap());
        let loader = rvs_config::keepalived::Loader {
            read: Box::new(read),
            list: Box::new(|_| Ok(Vec::new())),
            warnings: Vec::new(),
            config_id: Some("main".into()),
        };
        if let Err(e) = rvs_config::keepalived::import_with(loader, Path::new(&name)) {
            panic!("{name}: {e}");
        }
    }
}

#[test]
fn ipvsadm_seeds_parse() {
    use control::ipvsadm::{args::parse, resolve::NoResolver, restore::line_to_argv};
    for (name, data) in seeds("ipvsadm_args").into_iter().filter(|(n, _)| n.starts_with("line-")) {
        let argv = line_to_argv("ipvsadm", text(&data));
        assert!(parse(&argv, false, &NoResolver).is_ok(), "{name}: {:?}", text(&data));
    }
}

#[test]
fn api_seeds_are_requests_the_server_takes() {
    for (name, data) in seeds("api_request") {
        let req =
            control::http::read_request(&mut BufReader::new(&data[..])).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let ok = match req.path.split('?').next().unwrap() {
            "/v1/command" => serde_json::from_slice::<control::api::Command>(&req.body).is_ok(),
            "/v1/drain" => serde_json::from_slice::<control::ops::DrainRequest>(&req.body).is_ok(),
            "/v1/reload" => {
                req.body.is_empty() || serde_json::from_slice::<control::ops::ReloadRequest>(&req.body).is_ok()
            }
            "/v1/connections" => control::ops::ConnFilter::from_target(&req.path).is_ok(),
            _ => true,
        };
        assert!(ok, "{name}: not accepted");
    }
}

#[test]
fn node_seeds_cover_both_legs() {
    let s = seeds("node_path");
    let legs = |bit: u8| s.iter().filter(|(_, d)| d[0] & 1 == bit).count();
    assert!(legs(0) >= 10 && legs(1) >= 5, "external {} internal {}", legs(0), legs(1));
}
