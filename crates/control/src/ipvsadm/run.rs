//! Runs parsed ipvsadm command lines against a backend (the daemon, or a fake in
//! tests), printing what ipvsadm prints and computing its exit status (§1, §6, §10).

use super::args::{self, Action, ListTarget, Parsed};
use super::format;
use super::resolve::Resolver;
use super::restore::line_to_argv;
use super::save;
use crate::api::{ApiError, Command, ConnView, ErrorKind, Snapshot};
use std::io::{BufRead, Write};

/// Why the backend could not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendError {
    /// The daemon could not be reached at all: the full stderr text (ipvsadm's
    /// "Can't initialize ipvs" case, exit 2).
    Unavailable(String),
    /// The daemon refused the operation.
    Api(ApiError),
}

/// What rvsadm needs from the daemon.
pub trait Backend {
    fn command(&mut self, cmd: &Command) -> Result<(), BackendError>;
    fn snapshot(&mut self) -> Result<Snapshot, BackendError>;
    fn connections(&mut self) -> Result<Vec<ConnView>, BackendError>;
    /// Several commands in order, one result each (`-R`). The daemon applies them as one
    /// batch; this default sends them one by one. After an `Unavailable` nothing more is
    /// sent (fewer results than commands).
    fn commands(&mut self, cmds: &[Command]) -> Vec<Result<(), BackendError>> {
        let mut out = Vec::with_capacity(cmds.len());
        for c in cmds {
            let r = self.command(c);
            let stop = matches!(r, Err(BackendError::Unavailable(_)));
            out.push(r);
            if stop {
                break;
            }
        }
        out
    }
}

/// Commands `-R` gathers before sending them as one batch.
const RESTORE_BATCH: usize = 10_000;

/// ipvsadm's `ipvs_strerror` for the daemon's error kinds (§6). ESRCH reads
/// "Service not defined" for dest commands and "No such service" otherwise.
pub fn error_text(cmd: &Command, err: &ApiError) -> String {
    let dest_cmd = matches!(cmd, Command::AddDest(..) | Command::EditDest(..) | Command::DeleteDest(..));
    match err.kind {
        ErrorKind::ServiceExists => "Service already exists".into(),
        ErrorKind::SchedulerNotFound => "Scheduler or persistence engine not found".into(),
        ErrorKind::NoSuchService | ErrorKind::ServiceNotDefined => {
            if dest_cmd {
                "Service not defined".into()
            } else {
                "No such service".into()
            }
        }
        ErrorKind::DestExists => "Destination already exists".into(),
        ErrorKind::NoSuchDest => "No such destination".into(),
        ErrorKind::DaemonRunning => "Daemon has already run".into(),
        ErrorKind::NoDaemon => "No daemon is running".into(),
        ErrorKind::PermissionDenied => "Permission denied (you must be root)".into(),
        ErrorKind::Invalid => "Invalid operation.  Possibly wrong module version, address not unicast, ...".into(),
        ErrorKind::Range => "Numerical result out of range".into(),
        ErrorKind::ProtocolNotAvailable => "Protocol not available".into(),
        ErrorKind::NoMemory => "Memory allocation problem".into(),
        ErrorKind::NotSupported => "Operation not supported with IPv6".into(),
        ErrorKind::AfNotSupported => "Operation not supported with specified address family".into(),
        ErrorKind::BadRequest
        | ErrorKind::Internal
        | ErrorKind::Unauthorized
        | ErrorKind::NotFound
        | ErrorKind::MethodNotAllowed
        | ErrorKind::Timeout
        | ErrorKind::TooLarge
        | ErrorKind::Unavailable
        | ErrorKind::Conflict => err.message.clone(),
    }
}

/// Result of one command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Finished with this status; a restore goes on with the next line.
    Done(i32),
    /// ipvsadm calls exit() here: stop everything with this status.
    Exit(i32),
}

/// Everything a run needs besides the backend.
pub struct Io<'a> {
    pub out: &'a mut dyn Write,
    pub err: &'a mut dyn Write,
    pub res: &'a dyn Resolver,
}

fn unavailable(io: &mut Io<'_>, msg: &str) -> Flow {
    let _ = io.err.write_all(msg.as_bytes());
    Flow::Exit(2)
}

fn list_failure(io: &mut Io<'_>, e: BackendError) -> Flow {
    match e {
        BackendError::Unavailable(m) => unavailable(io, &m),
        BackendError::Api(a) => {
            let text = match a.kind {
                ErrorKind::NoSuchService | ErrorKind::ServiceNotDefined => "No such service".to_string(),
                _ => error_text(&Command::Clear, &a),
            };
            let _ = writeln!(io.err, "{text}");
            Flow::Exit(1)
        }
    }
}

/// Runs one parsed action. `stdin` feeds `-R`.
pub fn run_action(
    action: &Action,
    program: &str,
    backend: &mut dyn Backend,
    stdin: &mut dyn BufRead,
    io: &mut Io<'_>,
) -> Flow {
    match action {
        Action::Command(cmd) => match backend.command(cmd) {
            Ok(()) => Flow::Done(0),
            Err(BackendError::Unavailable(m)) => unavailable(io, &m),
            Err(BackendError::Api(e)) => {
                let _ = writeln!(io.err, "{}", error_text(cmd, &e));
                Flow::Done(255)
            }
        },
        Action::List { target, format: f } => {
            if *target == ListTarget::Connections {
                let conns = match backend.connections() {
                    Ok(c) => c,
                    Err(e) => return list_failure(io, e),
                };
                let _ = io.out.write_all(format::list_connections(&conns, f, io.res).as_bytes());
                return Flow::Done(0);
            }
            let snap = match backend.snapshot() {
                Ok(s) => s,
                Err(e) => return list_failure(io, e),
            };
            match format::list(&snap, target, f, io.res) {
                Ok(text) => {
                    let _ = io.out.write_all(text.as_bytes());
                    Flow::Done(0)
                }
                Err(text) => {
                    let _ = io.err.write_all(text.as_bytes());
                    Flow::Exit(1)
                }
            }
        }
        Action::Save { numeric } => match backend.snapshot() {
            Ok(snap) => {
                let _ = io.out.write_all(save::save(&snap, *numeric, io.res).as_bytes());
                Flow::Done(0)
            }
            Err(e) => list_failure(io, e),
        },
        Action::Restore => restore(program, backend, stdin, io),
    }
}

/// `-R`: every stdin line is a command line; parse errors end the run at once,
/// daemon errors are reported and the run goes on; the status is the last line's.
/// Consecutive configuration commands go to the daemon as batches (one table publish per
/// batch instead of per line); a line of another kind (a listing) first sends what is
/// gathered, so output keeps the order of the lines.
pub fn restore(program: &str, backend: &mut dyn Backend, stdin: &mut dyn BufRead, io: &mut Io<'_>) -> Flow {
    let mut result = 0;
    let mut buf = Vec::new();
    let mut pending: Vec<Command> = Vec::new();
    loop {
        buf.clear();
        match stdin.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&buf);
        let argv = line_to_argv(program, &line);
        if argv.len() <= 1 {
            continue;
        }
        if let Ok(Parsed::Action(Action::Command(cmd))) = args::parse(&argv, true, io.res) {
            pending.push(cmd);
            if pending.len() >= RESTORE_BATCH {
                match send_batch(backend, &mut pending, io) {
                    Flow::Done(c) => result = c,
                    Flow::Exit(c) => return Flow::Exit(c),
                }
            }
            continue;
        }
        if !pending.is_empty()
            && let Flow::Exit(c) = send_batch(backend, &mut pending, io)
        {
            return Flow::Exit(c);
        }
        match run_argv(&argv, true, backend, stdin, io) {
            Flow::Done(c) => result = c,
            Flow::Exit(c) => return Flow::Exit(c),
        }
    }
    if !pending.is_empty() {
        return send_batch(backend, &mut pending, io);
    }
    Flow::Done(result)
}

/// Sends the gathered `-R` commands, printing each failure as the single command would;
/// the status is the last command's.
fn send_batch(backend: &mut dyn Backend, pending: &mut Vec<Command>, io: &mut Io<'_>) -> Flow {
    let cmds = std::mem::take(pending);
    let mut result = 0;
    let results = backend.commands(&cmds);
    for (cmd, r) in cmds.iter().zip(results) {
        result = match r {
            Ok(()) => 0,
            Err(BackendError::Unavailable(m)) => return unavailable(io, &m),
            Err(BackendError::Api(e)) => {
                let _ = writeln!(io.err, "{}", error_text(cmd, &e));
                255
            }
        };
    }
    Flow::Done(result)
}

/// Parses and runs one argv. `reading_stdin` is true for lines of `-R`.
pub fn run_argv(
    argv: &[String],
    reading_stdin: bool,
    backend: &mut dyn Backend,
    stdin: &mut dyn BufRead,
    io: &mut Io<'_>,
) -> Flow {
    let program = argv.first().map(String::as_str).unwrap_or("ipvsadm");
    match args::parse(argv, reading_stdin, io.res) {
        Err(f) => {
            let _ = io.err.write_all(f.stderr.as_bytes());
            Flow::Exit(f.code)
        }
        Ok(Parsed::Help(text)) | Ok(Parsed::Version(text)) => {
            let _ = io.out.write_all(text.as_bytes());
            Flow::Exit(0)
        }
        Ok(Parsed::Action(a)) => run_action(&a, program, backend, stdin, io),
    }
}

/// Whole-program entry: the exit status ipvsadm would return.
pub fn main_status(argv: &[String], backend: &mut dyn Backend, stdin: &mut dyn BufRead, io: &mut Io<'_>) -> i32 {
    match run_argv(argv, false, backend, stdin, io) {
        Flow::Done(c) | Flow::Exit(c) => c,
    }
}
