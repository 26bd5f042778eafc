//! `-S` output (§9.8), `-R` semantics (§10) and the runner's exit statuses (§1, §6).

use super::*;
use crate::ipvsadm::args::{Action, Parsed, parse};
use crate::ipvsadm::resolve::NoResolver;
use crate::ipvsadm::restore::line_to_argv;
use crate::ipvsadm::run::{Backend, BackendError, Io, error_text, main_status};
use crate::ipvsadm::save::save;

const SAVED: &str = "-A -t 10.0.0.100:80 -s wrr
-a -t 10.0.0.100:80 -r 192.168.1.2:8080 -m -w 1
-a -t 10.0.0.100:80 -r 192.168.1.11:8080 -m -w 3
-A -t 10.0.0.200:443 -s sh -p 600 -M 255.255.255.0 -b sh-fallback,sh-port
-a -t 10.0.0.200:443 -r 172.16.0.5:443 -g -w 1
-a -t 10.0.0.200:443 -r 172.16.0.6:443 -g -w 0
-A -u 10.0.0.100:53 -s rr -o
-a -u 10.0.0.100:53 -r 192.168.1.2:53 -m -w 2
-a -u 10.0.0.100:53 -r 192.168.1.11:53 -m -w 1
-A -f 7 -s mh -b mh-port
-a -f 7 -r 203.0.113.9:0 -i -w 1 --tun-type gue --tun-port 6080 --tun-csum
-a -f 7 -r 203.0.113.10:0 -i -w 1 --tun-type ipip
-a -f 7 -r 203.0.113.11:0 -i -w 1 --tun-type gre --tun-nocsum
";

#[test]
fn save_numeric() {
    assert_eq!(save(&worked_example(), true, &NoResolver), SAVED);
}

#[test]
fn save_with_names_and_extras() {
    let out = save(&worked_example(), false, &names());
    let want = "-A -t 10.0.0.100:http -s wrr
-a -t 10.0.0.100:http -r 192.168.1.2:http-alt -m -w 1
-a -t 10.0.0.100:http -r 192.168.1.11:http-alt -m -w 3
-A -t 10.0.0.200:https -s sh -p 600 -M 255.255.255.0 -b sh-fallback,sh-port
-a -t 10.0.0.200:https -r 172.16.0.5:https -g -w 1
-a -t 10.0.0.200:https -r 172.16.0.6:https -g -w 0
-A -u 10.0.0.100:domain -s rr -o
-a -u 10.0.0.100:domain -r 192.168.1.2:domain -m -w 2
-a -u 10.0.0.100:domain -r 192.168.1.11:domain -m -w 1
-A -f 7 -s mh -b mh-port
-a -f 7 -r 203.0.113.9:0 -i -w 1 --tun-type gue --tun-port 6080 --tun-csum
-a -f 7 -r 203.0.113.10:0 -i -w 1 --tun-type ipip
-a -f 7 -r 203.0.113.11:0 -i -w 1 --tun-type gre --tun-nocsum
";
    assert_eq!(out, want);

    let mut s = service(ServiceKey::Sctp { addr: ip("2001:db8::1"), port: 9 }, "wlc");
    s.spec.persistent = Some(60);
    s.spec.netmask = 64;
    s.spec.pe = Some("sip".into());
    let f = service(ServiceKey::Fwmark { mark: 3, ipv6: true }, "rr");
    let snap = Snapshot { services: vec![s, f], ..worked_example() };
    assert_eq!(
        save(&snap, true, &NoResolver),
        "-A --sctp-service [2001:db8::1]:9 -s wlc -p 60 -M 64 --pe sip\n-A -f 3 -6 -s rr\n"
    );
}

/// The -S output read back by the parser gives the table's commands again, minus
/// the thresholds that -S does not save.
#[test]
fn save_output_round_trips_through_the_parser() {
    let snap = worked_example();
    let mut want = Vec::new();
    for svc in crate::ipvsadm::sort::sorted(&snap.services, false) {
        want.push(Command::AddService(svc.spec.clone()));
        for d in &svc.dests {
            let mut spec = d.spec.clone();
            spec.u_threshold = 0;
            spec.l_threshold = 0;
            want.push(Command::AddDest(svc.spec.key, spec));
        }
    }
    let mut got = Vec::new();
    for line in save(&snap, true, &NoResolver).lines() {
        let argv = line_to_argv("ipvsadm", line);
        match parse(&argv, true, &NoResolver) {
            Ok(Parsed::Action(Action::Command(c))) => got.push(c),
            other => panic!("{line}: {other:?}"),
        }
    }
    assert_eq!(got, want);
}

#[test]
fn restore_tokenizer() {
    assert_eq!(line_to_argv("ipvsadm", "ipvsadm -A\t-t 1.2.3.4:80\r\n"), vec!["ipvsadm", "-A", "-t", "1.2.3.4:80"]);
    assert_eq!(line_to_argv("x", "   \n"), vec!["x"]);
}

/// Records commands; fails the ones listed in `fail`.
#[derive(Default)]
struct Fake {
    done: Vec<Command>,
    fail: Vec<(Command, ErrorKind)>,
    down: bool,
    snap: Option<Snapshot>,
}

impl Backend for Fake {
    fn command(&mut self, cmd: &Command) -> Result<(), BackendError> {
        if self.down {
            return Err(BackendError::Unavailable("Can't initialize ipvs: down\n".into()));
        }
        if let Some((_, k)) = self.fail.iter().find(|(c, _)| c == cmd) {
            return Err(BackendError::Api(ApiError::new(*k, "x")));
        }
        self.done.push(cmd.clone());
        Ok(())
    }
    fn snapshot(&mut self) -> Result<Snapshot, BackendError> {
        self.snap.clone().ok_or(BackendError::Unavailable("Can't initialize ipvs: down\n".into()))
    }
    fn connections(&mut self) -> Result<Vec<ConnView>, BackendError> {
        Ok(Vec::new())
    }
}

fn run_main(words: &[&str], stdin: &str, be: &mut Fake) -> (i32, String, String) {
    let argv: Vec<String> = std::iter::once("ipvsadm").chain(words.iter().copied()).map(String::from).collect();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut input = stdin.as_bytes();
    let code = {
        let mut io = Io { out: &mut out, err: &mut err, res: &NoResolver };
        main_status(&argv, be, &mut input, &mut io)
    };
    (code, String::from_utf8_lossy(&out).into(), String::from_utf8_lossy(&err).into())
}

#[test]
fn restore_applies_saved_rules() {
    let mut be = Fake::default();
    let (code, out, err) = run_main(&["-R"], SAVED, &mut be);
    assert_eq!((code, out.as_str(), err.as_str()), (0, "", ""));
    assert_eq!(be.done.len(), 13);
}

#[test]
fn restore_kernel_error_continues_and_last_status_wins() {
    let dup = Command::AddService(service(ServiceKey::Tcp { addr: ip("10.0.0.1"), port: 80 }, "wlc").spec);
    let mut be = Fake { fail: vec![(dup, ErrorKind::ServiceExists)], ..Default::default() };
    let input = "-A -t 10.0.0.1:80\n\n-C\n";
    let (code, _, err) = run_main(&["-R"], input, &mut be);
    assert_eq!((code, err.as_str()), (0, "Service already exists\n"));
    assert_eq!(be.done, vec![Command::Clear]);
    // Error on the last line: status 255.
    let (code, _, _) = run_main(&["-R"], "-C\n-A -t 10.0.0.1:80\n", &mut be);
    assert_eq!(code, 255);
}

#[test]
fn restore_aborts_on_parse_errors_and_comments() {
    let mut be = Fake::default();
    let (code, _, err) = run_main(&["-R"], "-C\n-A -t 10.0.0.1:0\n-C\n", &mut be);
    assert_eq!((code, err.as_str()), (2, "Zero port specified for non-persistent service\n"));
    assert_eq!(be.done, vec![Command::Clear]);
    let mut be = Fake::default();
    let (code, _, err) = run_main(&["-R"], "# saved\n-C\n", &mut be);
    assert_eq!(code, 255);
    assert_eq!(err, "Try `ipvsadm -h' or 'ipvsadm --help' for more information.\n");
    assert!(be.done.is_empty());
    let (code, _, _) = run_main(&["-R"], "-R\n", &mut be);
    assert_eq!(code, 255);
}

#[test]
fn exit_statuses() {
    let key = ServiceKey::Tcp { addr: ip("10.0.0.1"), port: 80 };
    let mut be = Fake {
        fail: vec![
            (Command::DeleteService(key), ErrorKind::NoSuchService),
            (Command::DeleteDest(key, ip("10.1.1.1"), 80), ErrorKind::ServiceNotDefined),
            (Command::DeleteDest(key, ip("10.1.1.2"), 80), ErrorKind::NoSuchService),
        ],
        snap: Some(worked_example()),
        ..Default::default()
    };
    assert_eq!(run_main(&["-D", "-t", "10.0.0.1:80"], "", &mut be), (255, "".into(), "No such service\n".into()));
    assert_eq!(
        run_main(&["-d", "-t", "10.0.0.1:80", "-r", "10.1.1.2"], "", &mut be),
        (255, "".into(), "Service not defined\n".into())
    );
    assert_eq!(run_main(&["-L", "-n", "-t", "10.0.0.1:80"], "", &mut be), (1, "".into(), "No such service\n".into()));
    let (code, out, _) = run_main(&["-Ln", "--timeout"], "", &mut be);
    assert_eq!((code, out.as_str()), (0, "Timeout (tcp tcpfin udp): 900 60 300\n"));
    let (code, out, _) = run_main(&["-Sn"], "", &mut be);
    assert_eq!((code, out.as_str()), (0, SAVED));
    let (code, out, _) = run_main(&["-h"], "", &mut be);
    assert!(code == 0 && out.starts_with("ipvsadm v1.31"));
    let mut down = Fake { down: true, ..Default::default() };
    assert_eq!(run_main(&["-C"], "", &mut down), (2, "".into(), "Can't initialize ipvs: down\n".into()));
    // Argument errors never need the daemon.
    assert_eq!(run_main(&["-A", "-t", "10.0.0.1:0"], "", &mut down).0, 2);
}

#[test]
fn kernel_error_texts() {
    let key = ServiceKey::Tcp { addr: ip("10.0.0.1"), port: 80 };
    let svc = Command::DeleteService(key);
    let dst = Command::AddDest(key, dest("10.1.1.1", 80, ForwardMethod::Route, 1).spec);
    let t = |c: &Command, k: ErrorKind| error_text(c, &ApiError::new(k, "detail"));
    assert_eq!(t(&svc, ErrorKind::NoSuchService), "No such service");
    assert_eq!(t(&dst, ErrorKind::NoSuchService), "Service not defined");
    assert_eq!(t(&dst, ErrorKind::DestExists), "Destination already exists");
    assert_eq!(t(&svc, ErrorKind::SchedulerNotFound), "Scheduler or persistence engine not found");
    assert_eq!(
        t(&svc, ErrorKind::Invalid),
        "Invalid operation.  Possibly wrong module version, address not unicast, ..."
    );
    assert_eq!(t(&svc, ErrorKind::Range), "Numerical result out of range");
    assert_eq!(t(&svc, ErrorKind::DaemonRunning), "Daemon has already run");
    assert_eq!(t(&svc, ErrorKind::NoDaemon), "No daemon is running");
    assert_eq!(t(&svc, ErrorKind::Internal), "detail");
}

#[test]
fn api_json_shapes() {
    let c = Command::AddDest(
        ServiceKey::Tcp { addr: ip("10.0.0.1"), port: 80 },
        dest("10.1.1.1", 80, ForwardMethod::Masq, 1).spec,
    );
    let j = serde_json::to_string(&c).expect("json");
    assert!(
        j.starts_with(
            r#"{"AddDest":[{"Tcp":{"addr":"10.0.0.1","port":80}},{"addr":"10.1.1.1","port":80,"method":"Masq""#
        ),
        "{j}"
    );
    let back: Command = serde_json::from_str(&j).expect("parse");
    assert_eq!(back, c);
    let snap = worked_example();
    let back: Snapshot = serde_json::from_str(&serde_json::to_string(&snap).expect("json")).expect("parse");
    assert_eq!(back, snap);
    assert_eq!(serde_json::to_string(&Command::Zero(None)).expect("json"), r#"{"Zero":null}"#);
}
