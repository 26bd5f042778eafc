//! The SCTP state machine exactly as IPVS runs it (lvs-semantics.md §13): fourteen states seen
//! from the real server's side, events taken from the first chunk, three transition tables
//! (INPUT, OUTPUT, INPUT-ONLY) chosen by direction and NOOUTPUT like TCP (§11).

use super::Dir;
use wire::sctp::{CHUNK_HEADER_LEN, chunk_type};

pub const NONE: u8 = 0;
/// First INIT from the client, no INIT-ACK yet (short timeout for dropped INITs).
pub const INIT1: u8 = 1;
/// A repeated INIT from the client.
pub const INIT: u8 = 2;
pub const COOKIE_SENT: u8 = 3;
pub const COOKIE_REPLIED: u8 = 4;
pub const COOKIE_WAIT: u8 = 5;
pub const COOKIE: u8 = 6;
pub const COOKIE_ECHOED: u8 = 7;
pub const ESTABLISHED: u8 = 8;
pub const SHUTDOWN_SENT: u8 = 9;
pub const SHUTDOWN_RECEIVED: u8 = 10;
pub const SHUTDOWN_ACK_SENT: u8 = 11;
/// An INIT answered with ABORT (short timeout).
pub const REJECTED: u8 = 12;
pub const CLOSED: u8 = 13;
pub const STATES: usize = 14;

/// Names as `ipvsadm -L -c` prints them: the kernel's `sctp_state_name_table`, which
/// abbreviates the COOKIE and SHUTDOWN states (§13).
pub const NAMES: [&str; STATES] = [
    "NONE",
    "INIT1",
    "INIT",
    "C-SENT",
    "C-REPLIED",
    "C-WAIT",
    "COOKIE",
    "C-ECHOED",
    "ESTABLISHED",
    "S-SENT",
    "S-RECEIVED",
    "S-ACK-SENT",
    "REJECTED",
    "CLOSED",
];

/// Default timeouts (seconds) by state (§13; 61 = maximum RTO 60 + 1).
pub const DEFAULT_TIMEOUTS: [u32; STATES] = [2, 4, 61, 61, 61, 61, 61, 61, 900, 61, 61, 61, 4, 61];

/// Only ESTABLISHED counts in ActiveConn (§13).
#[inline]
pub fn is_active(state: u8) -> bool {
    state == ESTABLISHED
}

/// A state-machine event; the discriminant is the row of the transition tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Event {
    /// DATA, SACK, HEARTBEAT, HEARTBEAT-ACK, ECNE, CWR and every unknown chunk type.
    Data = 0,
    Init = 1,
    InitAck = 2,
    CookieEcho = 3,
    CookieAck = 4,
    Shutdown = 5,
    ShutdownAck = 6,
    ShutdownComplete = 7,
    Error = 8,
    Abort = 9,
}

/// Number of events (table rows).
pub const EVENTS: usize = 10;

impl Event {
    /// The event of one chunk type (the kernel's `sctp_events`; unknown types are DATA).
    #[inline]
    /// The event from its `repr(u8)` value (as carried in the packet tuple).
    pub fn from_u8(v: u8) -> Option<Event> {
        use Event::*;
        [Data, Init, InitAck, CookieEcho, CookieAck, Shutdown, ShutdownAck, ShutdownComplete, Error, Abort]
            .get(v as usize)
            .copied()
    }

    pub fn from_chunk_type(t: u8) -> Event {
        match t {
            chunk_type::INIT => Event::Init,
            chunk_type::INIT_ACK => Event::InitAck,
            chunk_type::ABORT => Event::Abort,
            chunk_type::SHUTDOWN => Event::Shutdown,
            chunk_type::SHUTDOWN_ACK => Event::ShutdownAck,
            chunk_type::ERROR => Event::Error,
            chunk_type::COOKIE_ECHO => Event::CookieEcho,
            chunk_type::COOKIE_ACK => Event::CookieAck,
            chunk_type::SHUTDOWN_COMPLETE => Event::ShutdownComplete,
            _ => Event::Data,
        }
    }
}

/// The event of a packet, from `chunks` (the SCTP packet after its 12-byte common header, cut
/// at the end of the IP payload). The first chunk decides, except that a COOKIE_ECHO or
/// COOKIE_ACK directly followed by an ABORT chunk counts as ABORT (§13; RFC 9260 §3.3.7 lets
/// control chunks be bundled in front of an ABORT).
///
/// `None` when the first chunk header is missing: the kernel then leaves the state and the
/// timeout untouched.
#[inline]
pub fn event(chunks: &[u8]) -> Option<Event> {
    let [t, _, l0, l1, ..] = *chunks else { return None };
    if t == chunk_type::COOKIE_ECHO || t == chunk_type::COOKIE_ACK {
        let len = usize::from(u16::from_be_bytes([l0, l1]));
        if len >= CHUNK_HEADER_LEN {
            // The next chunk starts after the padded length; its whole header must be there.
            let next = (len + 3) & !3;
            if chunks.len() >= next + CHUNK_HEADER_LEN && chunks[next] == chunk_type::ABORT {
                return Some(Event::Abort);
            }
        }
    }
    Some(Event::from_chunk_type(t))
}

const I1: u8 = INIT1;
const IN: u8 = INIT;
const CS: u8 = COOKIE_SENT;
const CR: u8 = COOKIE_REPLIED;
const CW: u8 = COOKIE_WAIT;
const CO: u8 = COOKIE;
const CE: u8 = COOKIE_ECHOED;
const ES: u8 = ESTABLISHED;
const SS: u8 = SHUTDOWN_SENT;
const SR: u8 = SHUTDOWN_RECEIVED;
const SA: u8 = SHUTDOWN_ACK_SENT;
const RJ: u8 = REJECTED;
const CL: u8 = CLOSED;

type Table = [[u8; STATES]; EVENTS];

// Columns: NO I1 IN CS CR CW CO CE ES SS SR SA RJ CL. Rows: d i i_a c_e c_a s s_a s_c err ab.
const INPUT: Table = [
    [ES, I1, IN, CS, CR, CW, CO, CE, ES, SS, SR, SA, RJ, CL],
    [I1, IN, IN, CS, CR, CW, CO, CE, ES, SS, SR, SA, IN, IN],
    [CW, CW, CW, CS, CR, CO, CO, CE, ES, SS, SR, SA, RJ, CL],
    [CR, IN, IN, CR, CR, CW, CO, CE, ES, SS, SR, SA, RJ, CL],
    [ES, I1, IN, CS, CR, CW, CO, ES, ES, SS, SR, SA, RJ, CL],
    [SR, I1, IN, CS, CR, CW, CO, CE, SR, SS, SR, SA, RJ, CL],
    [CL, IN, IN, CS, CR, CW, CO, CE, ES, CL, SR, CL, RJ, CL],
    [CL, CL, CL, CS, CR, CW, CO, CE, ES, SS, SR, CL, RJ, CL],
    [CL, I1, IN, CS, CR, CW, CO, CL, ES, SS, SR, SA, RJ, CL],
    [CL, CL, CL, CL, CL, RJ, CL, CL, CL, CL, CL, CL, CL, CL],
];
const OUTPUT: Table = [
    [ES, I1, IN, CS, CR, CW, CO, CE, ES, SS, SR, SA, RJ, CL],
    [CW, CW, CW, CW, CW, CW, CW, CW, ES, CW, CW, CW, CW, CW],
    [CS, CS, CS, CS, CR, CW, CO, CE, ES, SS, SR, SA, RJ, CL],
    [CE, CE, CE, CE, CE, CE, CE, CE, ES, SS, SR, SA, RJ, CL],
    [ES, ES, ES, ES, ES, ES, ES, ES, ES, SS, SR, SA, RJ, CL],
    [SS, SS, SS, SS, SS, SS, SS, SS, SS, SS, SR, SA, RJ, CL],
    [SA, SA, SA, SA, SA, CW, CO, CE, ES, SA, SA, SA, RJ, CL],
    [CL, I1, IN, CS, CR, CW, CO, CE, ES, SS, SR, SA, RJ, CL],
    [CL, CL, CL, CL, CL, CW, CO, CE, ES, SS, SR, SA, RJ, CL],
    [CL, RJ, CL, CL, CL, CL, CL, CL, CL, CL, CL, CL, CL, CL],
];
const INPUT_ONLY: Table = [
    [ES, I1, IN, CS, CR, ES, CO, CE, ES, SS, SR, SA, RJ, CL],
    [I1, IN, IN, IN, IN, IN, CO, CE, ES, SS, SR, SA, IN, IN],
    [CE, CE, CE, CE, CE, CE, CO, CE, ES, SS, SR, SA, RJ, CL],
    [ES, ES, ES, ES, ES, ES, CO, CE, ES, SS, SR, SA, RJ, CL],
    [ES, I1, IN, ES, ES, CW, ES, ES, ES, SS, SR, SA, RJ, CL],
    [SR, I1, IN, CS, CR, CW, CO, CE, SR, SS, SR, SA, RJ, CL],
    [CL, IN, IN, CS, CR, CW, CO, CE, CL, CL, SR, CL, RJ, CL],
    [CL, CL, CL, CL, CL, CW, CO, CE, ES, SS, CL, CL, RJ, CL],
    [CL, I1, IN, CS, CR, CW, CO, CE, ES, SS, SR, SA, RJ, CL],
    [CL, CL, CL, CL, CL, RJ, CL, CL, CL, CL, CL, CL, CL, CL],
];

/// The new state after event `ev` in `state`. An out-of-range state is read as CLOSED.
#[inline]
pub fn transition(dir: Dir, state: u8, ev: Event) -> u8 {
    let table = match dir {
        Dir::Input => &INPUT,
        Dir::Output => &OUTPUT,
        Dir::InputOnly => &INPUT_ONLY,
    };
    table[ev as usize][(state as usize).min(STATES - 1)]
}

/// Does this packet open a new connection (§5): first chunk INIT; with `sloppy_sctp` any first
/// chunk but ABORT. A packet without a first chunk header never schedules (the kernel drops it).
#[inline]
pub fn schedules(chunks: &[u8], sloppy: bool) -> bool {
    match chunks {
        [t, _, _, _, ..] => *t == chunk_type::INIT || (sloppy && *t != chunk_type::ABORT),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Abbreviations of the reference tables, in state order.
    const ABBREV: [&str; STATES] = ["NO", "I1", "IN", "CS", "CR", "CW", "CO", "CE", "ES", "SS", "SR", "SA", "RJ", "CL"];

    fn row(s: &str) -> Vec<u8> {
        s.split_whitespace().map(|n| ABBREV.iter().position(|x| *x == n).unwrap() as u8).collect()
    }

    /// A chunk of `t` with `len` bytes of value, padded to 4.
    fn chunk(t: u8, value_len: usize) -> Vec<u8> {
        let len = (CHUNK_HEADER_LEN + value_len) as u16;
        let mut c = vec![t, 0];
        c.extend_from_slice(&len.to_be_bytes());
        c.resize((usize::from(len) + 3) & !3, 0xaa);
        c
    }

    /// A packet's chunks whose first chunk produces `ev`.
    fn chunks_for(ev: Event) -> Vec<u8> {
        match ev {
            Event::Data => chunk(chunk_type::DATA, 13),
            Event::Init => chunk(chunk_type::INIT, 16),
            Event::InitAck => chunk(chunk_type::INIT_ACK, 20),
            Event::CookieEcho => chunk(chunk_type::COOKIE_ECHO, 9),
            Event::CookieAck => chunk(chunk_type::COOKIE_ACK, 0),
            Event::Shutdown => chunk(chunk_type::SHUTDOWN, 4),
            Event::ShutdownAck => chunk(chunk_type::SHUTDOWN_ACK, 0),
            Event::ShutdownComplete => chunk(chunk_type::SHUTDOWN_COMPLETE, 0),
            Event::Error => chunk(chunk_type::ERROR, 8),
            Event::Abort => chunk(chunk_type::ABORT, 0),
        }
    }

    const ALL_EVENTS: [Event; EVENTS] = [
        Event::Data,
        Event::Init,
        Event::InitAck,
        Event::CookieEcho,
        Event::CookieAck,
        Event::Shutdown,
        Event::ShutdownAck,
        Event::ShutdownComplete,
        Event::Error,
        Event::Abort,
    ];

    /// Every cell of the three tables, transcribed from lvs-semantics.md §13 as text, checked
    /// through `event` + `transition` with real chunk bytes.
    #[test]
    fn tables_match_reference() {
        let reference = [
            (
                Dir::Input,
                [
                    "ES I1 IN CS CR CW CO CE ES SS SR SA RJ CL",
                    "I1 IN IN CS CR CW CO CE ES SS SR SA IN IN",
                    "CW CW CW CS CR CO CO CE ES SS SR SA RJ CL",
                    "CR IN IN CR CR CW CO CE ES SS SR SA RJ CL",
                    "ES I1 IN CS CR CW CO ES ES SS SR SA RJ CL",
                    "SR I1 IN CS CR CW CO CE SR SS SR SA RJ CL",
                    "CL IN IN CS CR CW CO CE ES CL SR CL RJ CL",
                    "CL CL CL CS CR CW CO CE ES SS SR CL RJ CL",
                    "CL I1 IN CS CR CW CO CL ES SS SR SA RJ CL",
                    "CL CL CL CL CL RJ CL CL CL CL CL CL CL CL",
                ],
            ),
            (
                Dir::Output,
                [
                    "ES I1 IN CS CR CW CO CE ES SS SR SA RJ CL",
                    "CW CW CW CW CW CW CW CW ES CW CW CW CW CW",
                    "CS CS CS CS CR CW CO CE ES SS SR SA RJ CL",
                    "CE CE CE CE CE CE CE CE ES SS SR SA RJ CL",
                    "ES ES ES ES ES ES ES ES ES SS SR SA RJ CL",
                    "SS SS SS SS SS SS SS SS SS SS SR SA RJ CL",
                    "SA SA SA SA SA CW CO CE ES SA SA SA RJ CL",
                    "CL I1 IN CS CR CW CO CE ES SS SR SA RJ CL",
                    "CL CL CL CL CL CW CO CE ES SS SR SA RJ CL",
                    "CL RJ CL CL CL CL CL CL CL CL CL CL CL CL",
                ],
            ),
            (
                Dir::InputOnly,
                [
                    "ES I1 IN CS CR ES CO CE ES SS SR SA RJ CL",
                    "I1 IN IN IN IN IN CO CE ES SS SR SA IN IN",
                    "CE CE CE CE CE CE CO CE ES SS SR SA RJ CL",
                    "ES ES ES ES ES ES CO CE ES SS SR SA RJ CL",
                    "ES I1 IN ES ES CW ES ES ES SS SR SA RJ CL",
                    "SR I1 IN CS CR CW CO CE SR SS SR SA RJ CL",
                    "CL IN IN CS CR CW CO CE CL CL SR CL RJ CL",
                    "CL CL CL CL CL CW CO CE ES SS CL CL RJ CL",
                    "CL I1 IN CS CR CW CO CE ES SS SR SA RJ CL",
                    "CL CL CL CL CL RJ CL CL CL CL CL CL CL CL",
                ],
            ),
        ];
        for (dir, rows) in reference {
            for (ev, r) in ALL_EVENTS.iter().zip(rows) {
                let cells = row(r);
                assert_eq!(cells.len(), STATES);
                let got = event(&chunks_for(*ev)).unwrap();
                assert_eq!(got, *ev);
                for (st, want) in cells.into_iter().enumerate() {
                    assert_eq!(transition(dir, st as u8, got), want, "{dir:?} {ev:?} in {}", NAMES[st]);
                }
            }
        }
    }

    #[test]
    fn names_and_timeouts() {
        assert_eq!(NAMES[COOKIE_SENT as usize], "C-SENT");
        assert_eq!(NAMES[SHUTDOWN_ACK_SENT as usize], "S-ACK-SENT");
        assert_eq!(NAMES[CLOSED as usize], "CLOSED");
        assert_eq!(DEFAULT_TIMEOUTS[NONE as usize], 2);
        assert_eq!(DEFAULT_TIMEOUTS[INIT1 as usize], 4);
        assert_eq!(DEFAULT_TIMEOUTS[REJECTED as usize], 4);
        assert_eq!(DEFAULT_TIMEOUTS[ESTABLISHED as usize], 900);
        for s in [INIT, COOKIE_SENT, COOKIE_REPLIED, COOKIE_WAIT, COOKIE, COOKIE_ECHOED] {
            assert_eq!(DEFAULT_TIMEOUTS[s as usize], 61, "{}", NAMES[s as usize]);
        }
        for s in [SHUTDOWN_SENT, SHUTDOWN_RECEIVED, SHUTDOWN_ACK_SENT, CLOSED] {
            assert_eq!(DEFAULT_TIMEOUTS[s as usize], 61, "{}", NAMES[s as usize]);
        }
        let active: Vec<u8> = (0..STATES as u8).filter(|&s| is_active(s)).collect();
        assert_eq!(active, [ESTABLISHED]);
    }

    #[test]
    fn event_per_chunk_type() {
        let expect = [
            (chunk_type::DATA, Event::Data),
            (chunk_type::INIT, Event::Init),
            (chunk_type::INIT_ACK, Event::InitAck),
            (chunk_type::SACK, Event::Data),
            (chunk_type::HEARTBEAT, Event::Data),
            (chunk_type::HEARTBEAT_ACK, Event::Data),
            (chunk_type::ABORT, Event::Abort),
            (chunk_type::SHUTDOWN, Event::Shutdown),
            (chunk_type::SHUTDOWN_ACK, Event::ShutdownAck),
            (chunk_type::ERROR, Event::Error),
            (chunk_type::COOKIE_ECHO, Event::CookieEcho),
            (chunk_type::COOKIE_ACK, Event::CookieAck),
            (12, Event::Data), // ECNE
            (13, Event::Data), // CWR
            (chunk_type::SHUTDOWN_COMPLETE, Event::ShutdownComplete),
            (15, Event::Data), // AUTH and everything unknown
            (0x80, Event::Data),
            (0xc1, Event::Data), // ASCONF
            (0xff, Event::Data),
        ];
        for (t, ev) in expect {
            assert_eq!(Event::from_chunk_type(t), ev, "type {t}");
            assert_eq!(event(&chunk(t, 4)), Some(ev), "type {t}");
        }
        // Only the header is needed; the chunk length is not checked for the first chunk.
        assert_eq!(event(&[chunk_type::INIT, 0, 0, 0]), Some(Event::Init));
        for short in [&[][..], &[1], &[1, 0, 0]] {
            assert_eq!(event(short), None);
        }
    }

    #[test]
    fn abort_after_cookie_counts_as_abort() {
        for first in [chunk_type::COOKIE_ECHO, chunk_type::COOKIE_ACK] {
            // Value lengths 0..=7 exercise the padding to 4 before the ABORT.
            for vlen in 0..8 {
                let mut p = chunk(first, vlen);
                p.extend(chunk(chunk_type::ABORT, 0));
                assert_eq!(event(&p), Some(Event::Abort), "type {first} value {vlen}");
                // The ABORT header must be complete.
                let cut = p.len() - 1;
                assert_ne!(event(&p[..cut]), Some(Event::Abort));
            }
            let plain = Event::from_chunk_type(first);
            // Any other second chunk: the first one decides.
            let mut p = chunk(first, 3);
            p.extend(chunk(chunk_type::DATA, 4));
            assert_eq!(event(&p), Some(plain));
            // ABORT not directly after the cookie chunk.
            let mut p = chunk(first, 3);
            p.extend(chunk(chunk_type::SACK, 12));
            p.extend(chunk(chunk_type::ABORT, 0));
            assert_eq!(event(&p), Some(plain));
            // A cookie chunk with a length below its header never looks further.
            let mut p = vec![first, 0, 0, 2];
            p.extend(chunk(chunk_type::ABORT, 0));
            assert_eq!(event(&p), Some(plain));
            // The ABORT must sit at the padded offset, not at the raw length.
            let mut p = vec![first, 0, 0, 5, 0xaa, chunk_type::ABORT, 0, 0, 4];
            assert_eq!(event(&p), Some(plain));
            p.truncate(4);
            assert_eq!(event(&p), Some(plain));
        }
        // The rule is for the cookie chunks only.
        for first in [chunk_type::SHUTDOWN, chunk_type::SACK, chunk_type::ERROR] {
            let mut p = chunk(first, 4);
            p.extend(chunk(chunk_type::ABORT, 0));
            assert_eq!(event(&p), Some(Event::from_chunk_type(first)));
        }
        // The practical effect: COOKIE-ECHO + ABORT from the client closes the entry.
        let mut p = chunk(chunk_type::COOKIE_ECHO, 8);
        p.extend(chunk(chunk_type::ABORT, 0));
        assert_eq!(transition(Dir::Input, COOKIE_SENT, event(&p).unwrap()), CLOSED);
    }

    #[test]
    fn typical_lives() {
        let step = |s: u8, dir: Dir, t: u8| transition(dir, s, event(&chunk(t, 8)).unwrap());
        // NAT: client INIT, server INIT-ACK, client COOKIE-ECHO, server COOKIE-ACK.
        let mut s = NONE;
        for (dir, t, want) in [
            (Dir::Input, chunk_type::INIT, INIT1),
            (Dir::Output, chunk_type::INIT_ACK, COOKIE_SENT),
            (Dir::Input, chunk_type::COOKIE_ECHO, COOKIE_REPLIED),
            (Dir::Output, chunk_type::COOKIE_ACK, ESTABLISHED),
            (Dir::Input, chunk_type::DATA, ESTABLISHED),
            (Dir::Input, chunk_type::SHUTDOWN, SHUTDOWN_RECEIVED),
            (Dir::Output, chunk_type::SHUTDOWN_ACK, SHUTDOWN_ACK_SENT),
            (Dir::Input, chunk_type::SHUTDOWN_COMPLETE, CLOSED),
        ] {
            s = step(s, dir, t);
            assert_eq!(s, want, "after {t} {dir:?}");
        }
        // DR: only the client side is seen; COOKIE-ECHO establishes.
        let mut s = NONE;
        for (t, want) in [
            (chunk_type::INIT, INIT1),
            (chunk_type::COOKIE_ECHO, ESTABLISHED),
            (chunk_type::DATA, ESTABLISHED),
            (chunk_type::SHUTDOWN, SHUTDOWN_RECEIVED),
            (chunk_type::SHUTDOWN_COMPLETE, CLOSED),
        ] {
            s = step(s, Dir::InputOnly, t);
            assert_eq!(s, want, "after {t}");
        }
        // INIT answered with ABORT by the server: REJECTED.
        assert_eq!(step(INIT1, Dir::Output, chunk_type::ABORT), REJECTED);
        // Out-of-range states read as CLOSED.
        assert_eq!(transition(Dir::Input, 200, Event::Init), INIT);
    }

    #[test]
    fn scheduling_trigger() {
        let init = chunk(chunk_type::INIT, 16);
        let data = chunk(chunk_type::DATA, 16);
        let abort = chunk(chunk_type::ABORT, 0);
        assert!(schedules(&init, false));
        assert!(schedules(&init, true));
        assert!(!schedules(&data, false));
        assert!(schedules(&data, true));
        assert!(!schedules(&abort, false));
        assert!(!schedules(&abort, true));
        // COOKIE-ECHO + ABORT: the first chunk is not ABORT, so sloppy schedules it.
        let mut ce = chunk(chunk_type::COOKIE_ECHO, 8);
        ce.extend(&abort);
        assert!(!schedules(&ce, false));
        assert!(schedules(&ce, true));
        for short in [&[][..], &[chunk_type::INIT, 0, 0]] {
            assert!(!schedules(short, false));
            assert!(!schedules(short, true));
        }
    }
}
