//! `rvsadm`: a drop-in for `ipvsadm` that talks to `rvsd` over its Unix socket.
//! All ipvsadm behaviour lives in `control::ipvsadm`; this file only wires the
//! process (argv, environment, stdio, exit status) to it.

mod ext;
mod resolver;
mod status;
mod sysctl;
mod top;

use control::api::{ApiError, Command, ConnView, ErrorKind, Snapshot};
use control::client::{ADDR_ENV, Client, ClientError, DEFAULT_SOCKET, SOCKET_ENV};
use control::ipvsadm::run::{Backend, BackendError, Io, main_status};
use control::ops::ConnFilter;
use std::io::Write;

/// The daemon behind the API client, with errors mapped to ipvsadm's cases.
struct Daemon {
    client: Client,
    /// rvs extension: connection listings filtered by the daemon.
    filter: ConnFilter,
}

impl Daemon {
    fn map(&self, e: ClientError) -> BackendError {
        match e {
            // ipvsadm: "Can't initialize ipvs: <reason>" + hint, exit 2 (§1).
            ClientError::Connect(io) => BackendError::Unavailable(format!(
                "Can't initialize ipvs: {io} (socket {})\n\
                 Are you sure that the rvs daemon (rvsd) is running?\n",
                self.client.path().display()
            )),
            ClientError::Transport(m) => BackendError::Api(ApiError::new(ErrorKind::Internal, m)),
            ClientError::Api(a) => BackendError::Api(a),
            refused @ ClientError::Refused { .. } => BackendError::Unavailable(format!("rvsadm: {refused}\n")),
        }
    }
}

impl Backend for Daemon {
    fn command(&mut self, cmd: &Command) -> Result<(), BackendError> {
        self.client.command(cmd).map(|_| ()).map_err(|e| self.map(e))
    }
    fn snapshot(&mut self) -> Result<Snapshot, BackendError> {
        self.client.snapshot().map_err(|e| self.map(e))
    }
    fn commands(&mut self, cmds: &[Command]) -> Vec<Result<(), BackendError>> {
        match self.client.commands(cmds) {
            Ok(rs) => rs.into_iter().map(|r| r.map_or(Ok(()), |e| Err(BackendError::Api(e)))).collect(),
            Err(e) => vec![Err(self.map(e))],
        }
    }
    fn connections(&mut self) -> Result<Vec<ConnView>, BackendError> {
        let (conns, truncated) = self.client.connections_listing(&self.filter).map_err(|e| self.map(e))?;
        if truncated {
            // Never a silent partial listing: say so (stderr) and exit non-zero.
            return Err(BackendError::Api(ApiError::new(
                ErrorKind::Internal,
                "rvsadm: the daemon's connection listing is incomplete; nothing printed",
            )));
        }
        Ok(conns)
    }
}

/// Removes `--socket PATH` / `--socket=PATH` (anywhere on the line) before
/// ipvsadm parsing; returns the path given, if any. A trailing `--socket`
/// without a value is left for the parser to reject.
fn take_socket_flag(argv: &mut Vec<String>) -> Option<String> {
    take_flag(argv, "--socket")
}

/// Removes `NAME VALUE` / `NAME=VALUE` (anywhere on the line); returns the last value.
fn take_flag(argv: &mut Vec<String>, name: &str) -> Option<String> {
    let mut found = None;
    let mut i = 1;
    while i < argv.len() {
        if let Some(p) = argv[i].strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
            found = Some(p.to_string());
            argv.remove(i);
        } else if argv[i] == name && i + 1 < argv.len() {
            found = Some(argv.remove(i + 1));
            argv.remove(i);
        } else {
            i += 1;
        }
    }
    found
}

/// The client the command line asks for: the TCP API with `--api-addr HOST:PORT` (or
/// `$RVS_API_ADDR`) and its token from `--api-token-file PATH` or `$RVS_API_TOKEN` (never on
/// the command line), else the Unix socket.
fn client_from(argv: &mut Vec<String>) -> Result<Client, String> {
    if argv.iter().skip(1).any(|a| a == "--api-token" || a.starts_with("--api-token=")) {
        return Err(control::token::ON_COMMAND_LINE.to_string());
    }
    let socket = take_socket_flag(argv);
    let addr = take_flag(argv, "--api-addr").or_else(|| std::env::var(ADDR_ENV).ok().filter(|s| !s.is_empty()));
    let file = take_flag(argv, "--api-token-file");
    let Some(addr) = addr else {
        if file.is_some() {
            return Err("--api-token-file is only used with --api-addr (or RVS_API_ADDR)".into());
        }
        let socket = socket
            .or_else(|| std::env::var(SOCKET_ENV).ok().filter(|s| !s.is_empty()))
            .unwrap_or_else(|| DEFAULT_SOCKET.to_string());
        return Ok(Client::new(socket));
    };
    if socket.is_some() {
        return Err("--socket and --api-addr name two ways to the daemon; give one".into());
    }
    let env = std::env::var(control::token::TOKEN_ENV).ok();
    match control::token::resolve(file.as_deref().map(std::path::Path::new), env.as_deref())? {
        Some(t) => Ok(Client::tcp(addr, t)),
        None => Err(format!(
            "--api-addr needs the API token: --api-token-file PATH or the environment variable {}",
            control::token::TOKEN_ENV
        )),
    }
}

fn main() {
    let mut argv: Vec<String> = std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect();
    if argv.is_empty() {
        argv.push("rvsadm".into());
    }
    let client = match client_from(&mut argv) {
        Ok(c) => c,
        Err(m) => {
            eprintln!("rvsadm: {m}");
            std::process::exit(2);
        }
    };
    let res = resolver::SystemResolver::new();
    if argv.get(1).map(String::as_str) == Some("top") {
        std::process::exit(run_top(&client, &argv[2..]));
    }
    if argv.get(1).map(String::as_str) == Some("--sysctl") {
        std::process::exit(sysctl::run(&client, &argv[2..]));
    }
    if argv.get(1).map(String::as_str) == Some("status") {
        std::process::exit(run_status(&client));
    }
    let ext = match ext::split(argv, &res) {
        Ok(e) => e,
        Err(m) => {
            eprintln!("{m}");
            std::process::exit(2);
        }
    };
    let argv = ext.argv;
    let mut daemon = Daemon { client, filter: ext.filter };
    if let Some(req) = ext.drain {
        let code = match daemon.client.drain(&req) {
            Ok(_) => 0,
            Err(e) => {
                let cmd = Command::DeleteDest(req.service, req.addr, req.port);
                match daemon.map(e) {
                    BackendError::Unavailable(m) => {
                        eprint!("{m}");
                        2
                    }
                    BackendError::Api(a) => {
                        eprintln!("{}", control::ipvsadm::run::error_text(&cmd, &a));
                        255
                    }
                }
            }
        };
        std::process::exit(code);
    }
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut err = std::io::stderr();
    let code = {
        let mut io = Io { out: &mut out, err: &mut err, res: &res };
        main_status(&argv, &mut daemon, &mut input, &mut io)
    };
    let _ = out.flush();
    std::process::exit(code);
}

/// `rvsadm status`: the I/O backend per interface (status.rs).
fn run_status(client: &Client) -> i32 {
    match client.request("GET", "/v1/stats", None) {
        Ok((200, body)) => match serde_json::from_slice(&body) {
            Ok(v) => {
                print!("{}", status::render(&v));
                0
            }
            Err(e) => {
                eprintln!("rvsadm: status: bad answer from the daemon: {e}");
                1
            }
        },
        Ok((code, _)) => {
            eprintln!("rvsadm: status: the daemon answered {code}");
            1
        }
        Err(e) => {
            eprintln!("rvsadm: status: cannot reach the daemon at {}: {e:?}", client.path().display());
            2
        }
    }
}

/// `rvsadm top`: redraws every interval until interrupted; `--once` prints one frame.
fn run_top(client: &Client, words: &[String]) -> i32 {
    let t = match top::parse(words) {
        Ok(t) => t,
        Err(m) => {
            eprint!("{}{}", if m.is_empty() { String::new() } else { format!("{m}\n") }, top::USAGE);
            return if m.is_empty() { 0 } else { 2 };
        }
    };
    loop {
        let snap = match client.snapshot() {
            Ok(s) => s,
            Err(ClientError::Connect(e)) => {
                eprintln!("Can't initialize ipvs: {e} (socket {})", client.path().display());
                return 2;
            }
            Err(e) => {
                eprintln!("{e}");
                return 1;
            }
        };
        let mut out = std::io::stdout().lock();
        let frame = top::frame(&snap);
        let _ = if t.once { write!(out, "{frame}") } else { write!(out, "{}{frame}", top::CLEAR) };
        let _ = out.flush();
        if t.once {
            return 0;
        }
        std::thread::sleep(std::time::Duration::from_secs_f64(t.interval));
    }
}

#[cfg(test)]
mod tests {
    use super::take_socket_flag;

    fn v(words: &[&str]) -> Vec<String> {
        words.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn socket_flag_is_removed_anywhere() {
        let mut a = v(&["ipvsadm", "-L", "--socket", "/tmp/s", "-n"]);
        assert_eq!(take_socket_flag(&mut a).as_deref(), Some("/tmp/s"));
        assert_eq!(a, v(&["ipvsadm", "-L", "-n"]));
        let mut a = v(&["ipvsadm", "--socket=/x", "-C"]);
        assert_eq!(take_socket_flag(&mut a).as_deref(), Some("/x"));
        assert_eq!(a, v(&["ipvsadm", "-C"]));
        let mut a = v(&["ipvsadm", "-C", "--socket"]);
        assert_eq!(take_socket_flag(&mut a), None);
        assert_eq!(a.len(), 3);
    }
}
