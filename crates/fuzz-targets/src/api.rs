//! Requests to the control API as the server reads them: the HTTP head and body
//! (`control::http`), then the body of each POST route as JSON and the connection filter of
//! the query string. An accepted body survives a JSON round trip unchanged.

use std::io::BufReader;

use control::api::Command;
use control::ops::{ConnFilter, DrainRequest, ReloadRequest};
use serde::Serialize;
use serde::de::DeserializeOwned;

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(body: &[u8]) {
    if let Ok(v) = serde_json::from_slice::<T>(body) {
        let text = serde_json::to_vec(&v).expect("an accepted value serialises");
        let back: T = serde_json::from_slice(&text).expect("what the server writes it reads");
        assert_eq!(v, back);
    }
}

pub fn run(data: &[u8]) {
    let mut r = BufReader::new(data);
    let Ok(req) = control::http::read_request(&mut r) else { return };
    let path = req.path.split('?').next().unwrap_or("");
    match path {
        "/v1/command" => round_trip::<Command>(&req.body),
        "/v1/drain" => round_trip::<DrainRequest>(&req.body),
        "/v1/reload" => round_trip::<ReloadRequest>(&req.body),
        "/v1/connections" => {
            let _ = ConnFilter::from_target(&req.path);
        }
        _ => {}
    }
}
