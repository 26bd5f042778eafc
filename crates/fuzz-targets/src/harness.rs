//! A fuzzer that runs on stable Rust and in CI: each target over its seed corpus, then random
//! mutations of corpus entries (bit flips, byte changes, inserts, deletes, copies, splices,
//! tokens of the target's dictionary) until a time or iteration budget is spent. No coverage
//! feedback: libFuzzer (`cargo fuzz`) is the tool for depth; this keeps every target running
//! on every change. A panic is caught, its input written to `target/fuzz-failures/`, and
//! reported with the seed that reproduces the run.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// xorshift64*: small, seedable, good enough to pick mutations.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next_u64() % n as u64) as usize }
    }
}

/// Values that sit on boundaries of lengths, counters and flags.
const INTERESTING: &[u8] = &[0, 1, 0x7f, 0x80, 0xff, 0x40, 0x20, 0x0a, 0x22, 0x7b, 0x7d, 0x3a, 0x2d];

/// Changes `buf` in place by one to four random edits (may also splice in `other`).
pub fn mutate(rng: &mut Rng, buf: &mut Vec<u8>, other: &[u8], dict: &[&[u8]], max_len: usize) {
    for _ in 0..1 + rng.below(4) {
        let len = buf.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                buf[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                buf[i] = rng.next_u64() as u8;
            }
            2 if len > 0 => {
                let i = rng.below(len);
                buf[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            3 => {
                let i = rng.below(len + 1);
                buf.insert(i, rng.next_u64() as u8);
            }
            4 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(16));
                buf.drain(i..i + n);
            }
            5 if len > 1 => {
                // Copy a chunk of itself elsewhere (repeats a header, a block, an option).
                let (a, n) = (rng.below(len), 1 + rng.below(32));
                let chunk: Vec<u8> = buf[a..(a + n).min(len)].to_vec();
                let at = rng.below(buf.len() + 1);
                buf.splice(at..at, chunk);
            }
            6 if !other.is_empty() => {
                // Splice: the head of this input, the tail of another.
                let at = rng.below(len + 1);
                let from = rng.below(other.len());
                buf.truncate(at);
                buf.extend_from_slice(&other[from..]);
            }
            7 if !dict.is_empty() => {
                let t = dict[rng.below(dict.len())];
                let at = rng.below(len + 1);
                buf.splice(at..at, t.iter().copied());
            }
            _ if len > 1 => {
                // Overwrite a 16-bit field with a boundary value (lengths, ports, counts).
                let i = rng.below(len - 1);
                let v: u16 = [0, 1, 0x7fff, 0x8000, 0xffff, 1500, 65535][rng.below(7)];
                buf[i..i + 2].copy_from_slice(&v.to_be_bytes());
            }
            _ => {}
        }
    }
    buf.truncate(max_len);
}

/// Tokens a target's inputs are made of: mutations insert them whole.
pub fn dictionary(target: &str) -> &'static [&'static [u8]] {
    match target {
        "keepalived" | "keepalived_lexer" => &[
            b"virtual_server ",
            b"real_server ",
            b"{\n",
            b"}\n",
            b"include ",
            b"\"",
            b"#",
            b"!",
            b"lb_algo ",
            b"lb_kind NAT\n",
            b"lb_kind DR\n",
            b"lb_kind TUN\n",
            b"protocol UDP\n",
            b"persistence_timeout ",
            b"HTTP_GET ",
            b"TCP_CHECK ",
            b"MISC_CHECK ",
            b"url ",
            b"path ",
            b"digest ",
            b"status_code ",
            b"weight ",
            b"virtual_server_group ",
            b"fwmark ",
            b"10.0.0.1 80 ",
            b"[::1]:80",
            b"quorum ",
            b"sorry_server ",
            b"delay_loop ",
            b"@",
            b"@^",
            b"$",
            b"=",
            b"\n",
            b" ",
            b"~",
        ],
        "config_toml" => &[
            b"[[services]]\n",
            b"[[services.real_servers]]\n",
            b"[[interfaces]]\n",
            b"[[fwmark]]\n",
            b"protocol = \"tcp\"\n",
            b"address = \"10.0.0.1:80\"\n",
            b"method = \"nat\"\n",
            b"weight = ",
            b"scheduler = \"",
            b"persistent = ",
            b"[[services.checks]]\n",
            b"type = \"http\"\n",
            b"= ",
            b"\"",
            b"[",
            b"]",
            b"{",
            b"}",
            b",",
            b"\n",
            b"0x",
            b"-1",
            b"1e9",
            b"true",
            b"inf",
            b"'''",
        ],
        "ipvsadm_args" => &[
            b"-A ",
            b"-E ",
            b"-D ",
            b"-a ",
            b"-e ",
            b"-d ",
            b"-L ",
            b"-C",
            b"-Z ",
            b"-S ",
            b"-R",
            b"-t ",
            b"-u ",
            b"-f ",
            b"--sctp-service ",
            b"-r ",
            b"-s ",
            b"-p ",
            b"-M ",
            b"-w ",
            b"-x ",
            b"-y ",
            b"-m",
            b"-g",
            b"-i",
            b"-6",
            b"-n",
            b"-c",
            b"--set ",
            b"--start-daemon ",
            b"--tun-type ",
            b"--tun-port ",
            b"--pe ",
            b"-b ",
            b"--",
            b"=",
            b"10.0.0.1:80 ",
            b"[2001:db8::1]:80 ",
            b"255.255.255.0 ",
            b"\n",
            b" ",
        ],
        "api_request" => &[
            b"POST /v1/command HTTP/1.1\r\n",
            b"Content-Length: ",
            b"\r\n",
            b"\r\n\r\n",
            b"{",
            b"}",
            b"[",
            b"]",
            b"\"AddService\"",
            b"\"AddDest\"",
            b"\"Tcp\"",
            b"\"addr\":",
            b"\"port\":",
            b"null",
            b"true",
            b":",
            b",",
            b"\"",
            b"?service=",
            b"&state=",
            b"%",
            b"Transfer-Encoding: chunked\r\n",
        ],
        _ => &[],
    }
}

/// Where the seeds of `target` live: `fuzz/seeds/<target>/` of the repository.
pub fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds").join(target)
}

/// The seeds, in name order (empty if the folder is missing).
pub fn load_corpus(dir: &Path) -> Vec<Vec<u8>> {
    let mut names: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

/// What a bounded run did.
#[derive(Debug)]
pub struct Report {
    pub target: &'static str,
    pub seeds: usize,
    pub execs: u64,
    pub elapsed: Duration,
    /// The input that panicked (saved at `saved`).
    pub failure: Option<(Vec<u8>, PathBuf)>,
}

impl Report {
    pub fn per_sec(&self) -> f64 {
        self.execs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

fn save_failure(target: &str, input: &[u8]) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/fuzz-failures");
    let _ = std::fs::create_dir_all(&dir);
    let h = input.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    let path = dir.join(format!("{target}-{h:016x}"));
    let _ = std::fs::write(&path, input);
    path
}

/// Runs `f` over every seed, then over mutations until `budget` or `max_execs` is reached.
pub fn run(
    target: &'static str,
    f: fn(&[u8]),
    seeds: &[Vec<u8>],
    seed: u64,
    budget: Duration,
    max_execs: u64,
) -> Report {
    let start = Instant::now();
    let mut rng = Rng::new(seed);
    let dict = dictionary(target);
    let max_len = seeds.iter().map(Vec::len).max().unwrap_or(0).max(256) * 2;
    let mut execs = 0u64;
    let try_one = |execs: &mut u64, input: &[u8]| -> Option<(Vec<u8>, PathBuf)> {
        *execs += 1;
        match catch_unwind(AssertUnwindSafe(|| f(input))) {
            Ok(()) => None,
            Err(_) => Some((input.to_vec(), save_failure(target, input))),
        }
    };
    let mut failure = None;
    for s in seeds {
        if let Some(x) = try_one(&mut execs, s) {
            failure = Some(x);
            break;
        }
    }
    let empty = Vec::new();
    let mut buf = Vec::with_capacity(max_len);
    while failure.is_none() && start.elapsed() < budget && execs < max_execs {
        let base = if seeds.is_empty() { &empty } else { &seeds[rng.below(seeds.len())] };
        let other = if seeds.is_empty() { &empty } else { &seeds[rng.below(seeds.len())] };
        buf.clear();
        buf.extend_from_slice(base);
        // Stack mutations now and then: deeper changes from one seed.
        for _ in 0..1 + rng.below(3) {
            mutate(&mut rng, &mut buf, other, dict, max_len);
        }
        failure = try_one(&mut execs, &buf);
    }
    Report { target, seeds: seeds.len(), execs, elapsed: start.elapsed(), failure }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_change_inputs_and_stay_bounded() {
        let mut rng = Rng::new(7);
        let mut changed = 0;
        for _ in 0..1000 {
            let mut b = b"virtual_server 10.0.0.1 80 {\n}\n".to_vec();
            mutate(&mut rng, &mut b, b"real_server", dictionary("keepalived"), 40);
            assert!(b.len() <= 40);
            changed += usize::from(b != b"virtual_server 10.0.0.1 80 {\n}\n");
        }
        assert!(changed > 900, "{changed} of 1000 mutations changed the input");
    }

    #[test]
    fn a_panic_is_caught_saved_and_reported() {
        fn picky(d: &[u8]) {
            assert!(!d.starts_with(b"X"), "boom");
        }
        let r = run("selftest", picky, &[b"a".to_vec(), b"Xb".to_vec()], 1, Duration::from_secs(1), 100);
        let (input, path) = r.failure.expect("the panic is reported");
        assert_eq!(input, b"Xb");
        assert_eq!(std::fs::read(&path).unwrap(), b"Xb");
        std::fs::remove_file(path).unwrap();
        assert_eq!(r.execs, 2, "stops at the first failure");
    }
}
