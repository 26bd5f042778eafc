//! `rvsadm status` (rvs extension): how the director moves its frames, from `GET /v1/stats`:
//! per served interface the I/O backend (`xdp` or `afpacket`), the XDP mode (native or
//! generic) and zero-copy or copy mode, and the XDP steering program's counters.

use serde_json::Value;

/// The status text of a `/v1/stats` answer.
pub fn render(stats: &Value) -> String {
    let mut out = String::new();
    out.push_str(&format!("{:<16} {:<9} {:<9} {:<10} {}\n", "Interface", "Backend", "XDP", "Mode", "Queues"));
    for i in stats.get("io").and_then(Value::as_array).into_iter().flatten() {
        let s = |k: &str| i.get(k).and_then(Value::as_str).unwrap_or("-").to_string();
        let mode = match i.get("zero_copy").and_then(Value::as_bool) {
            Some(true) => "zero-copy",
            Some(false) => "copy",
            None => "-",
        };
        let queues = i.get("queues").and_then(Value::as_u64).filter(|q| *q > 0).map_or("-".into(), |q| q.to_string());
        out.push_str(&format!("{:<16} {:<9} {:<9} {:<10} {}\n", s("name"), s("backend"), s("xdp_mode"), mode, queues));
    }
    if let Some(x) = stats.get("xdp").filter(|x| x.is_object()) {
        let n = |k: &str| x.get(k).and_then(Value::as_u64).unwrap_or(0);
        out.push_str(&format!(
            "XDP steering: {} frames to rvs, {} passed to the kernel, {} dropped (no socket on their queue)\n",
            n("steered"),
            n("passed"),
            n("no_socket")
        ));
    }
    let w = stats.get("workers").and_then(Value::as_u64).unwrap_or(0);
    out.push_str(&format!("Workers: {w}\n"));
    let per = stats.get("per_worker").and_then(Value::as_array).filter(|p| !p.is_empty());
    if let Some(per) = per {
        out.push_str(&format!(
            "{:<6} {:>12} {:>12} {:>12} {:>12} {:>10} {:>9}  {}\n",
            "Worker", "RxFrames", "TxFrames", "HandedOut", "HandedIn", "Drops", "Conns", "Queues"
        ));
        for p in per {
            let n = |k: &str| p.get(k).and_then(Value::as_u64).unwrap_or(0);
            let queues: Vec<&str> =
                p.get("queues").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
            out.push_str(&format!(
                "{:<6} {:>12} {:>12} {:>12} {:>12} {:>10} {:>9}  {}\n",
                n("id"),
                n("rx"),
                n("tx"),
                n("handed_out"),
                n("handed_in"),
                n("drops"),
                n("conns"),
                if queues.is_empty() { "-".to_string() } else { queues.join(" ") }
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xdp_and_afpacket_interfaces() {
        let v: Value = serde_json::from_str(
            r#"{"workers":1,"io":[{"name":"ext","backend":"xdp","xdp_mode":"native","zero_copy":false,"queues":1},
                {"name":"int","backend":"afpacket","xdp_mode":null,"zero_copy":null,"queues":0}],
                "xdp":{"steered":7,"no_socket":0,"passed":3}}"#,
        )
        .unwrap();
        let t = render(&v);
        assert!(t.lines().nth(1).unwrap().split_whitespace().eq(["ext", "xdp", "native", "copy", "1"]), "{t}");
        assert!(t.lines().nth(2).unwrap().split_whitespace().eq(["int", "afpacket", "-", "-", "-"]), "{t}");
        assert!(t.contains("7 frames to rvs, 3 passed to the kernel, 0 dropped"), "{t}");
        assert!(t.ends_with("Workers: 1\n"));
    }

    #[test]
    fn per_worker_lines() {
        let v = serde_json::json!({"workers": 2, "per_worker": [
            {"id": 0, "queues": ["ext:0", "int:0"], "rx": 10, "tx": 9, "handed_out": 3, "handed_in": 4, "drops": 1, "conns": 5},
            {"id": 1, "queues": [], "rx": 7, "tx": 7, "handed_out": 4, "handed_in": 3, "drops": 0, "conns": 2}]});
        let t = render(&v);
        let l: Vec<&str> = t.lines().collect();
        assert!(l[2].starts_with("Worker"), "{t}");
        assert!(l[3].split_whitespace().eq(["0", "10", "9", "3", "4", "1", "5", "ext:0", "int:0"]), "{t}");
        assert!(l[4].split_whitespace().eq(["1", "7", "7", "4", "3", "0", "2", "-"]), "{t}");
    }

    #[test]
    fn an_older_daemon_without_io_fields() {
        let t = render(&serde_json::json!({"workers": 2}));
        assert_eq!(t.lines().count(), 2, "{t}");
        assert!(!t.contains("XDP steering"));
    }
}
