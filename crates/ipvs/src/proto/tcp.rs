//! The TCP state machine exactly as IPVS runs it (lvs-semantics.md §11): three transition
//! tables (INPUT, OUTPUT, INPUT-ONLY), events by flag priority RST > SYN > FIN > ACK.

use super::Dir;

pub const NONE: u8 = 0;
pub const ESTABLISHED: u8 = 1;
pub const SYN_SENT: u8 = 2;
pub const SYN_RECV: u8 = 3;
pub const FIN_WAIT: u8 = 4;
pub const TIME_WAIT: u8 = 5;
pub const CLOSE: u8 = 6;
pub const CLOSE_WAIT: u8 = 7;
pub const LAST_ACK: u8 = 8;
pub const LISTEN: u8 = 9;
pub const SYNACK: u8 = 10;
pub const STATES: usize = 11;

/// Names as `ipvsadm -L -c` prints them.
pub const NAMES: [&str; STATES] = [
    "NONE",
    "ESTABLISHED",
    "SYN_SENT",
    "SYN_RECV",
    "FIN_WAIT",
    "TIME_WAIT",
    "CLOSE",
    "CLOSE_WAIT",
    "LAST_ACK",
    "LISTEN",
    "SYNACK",
];

/// Default timeouts (seconds) by state: the kernel's, except FIN_WAIT = 60 from the seed.
pub const DEFAULT_TIMEOUTS: [u32; STATES] = [2, 900, 120, 60, 60, 120, 10, 60, 30, 120, 120];

/// States counted in ActiveConn (modern kernels, §11).
#[inline]
pub fn is_active(state: u8) -> bool {
    matches!(state, ESTABLISHED | SYN_SENT | SYN_RECV | SYNACK)
}

/// Event index: syn 0, fin 1, ack 2, rst 3; `None` when no flag is set (→ CLOSE).
#[inline(always)]
pub fn event(flags: u8) -> Option<usize> {
    const FIN: u8 = 0x01;
    const SYN: u8 = 0x02;
    const RST: u8 = 0x04;
    const ACK: u8 = 0x10;
    if flags & RST != 0 {
        Some(3)
    } else if flags & SYN != 0 {
        Some(0)
    } else if flags & FIN != 0 {
        Some(1)
    } else if flags & ACK != 0 {
        Some(2)
    } else {
        None
    }
}

const ES: u8 = ESTABLISHED;
const SS: u8 = SYN_SENT;
const SR: u8 = SYN_RECV;
const FW: u8 = FIN_WAIT;
const TW: u8 = TIME_WAIT;
const CL: u8 = CLOSE;
const CW: u8 = CLOSE_WAIT;
const LA: u8 = LAST_ACK;
const LI: u8 = LISTEN;
const SA: u8 = SYNACK;

type Table = [[u8; STATES]; 4];

// Columns: NO ES SS SR FW TW CL CW LA LI SA. Rows: syn, fin, ack, rst.
const INPUT: Table = [
    [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
    [CL, CW, SS, TW, TW, TW, CL, CW, LA, LI, TW],
    [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
    [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, SR],
];
const OUTPUT: Table = [
    [SS, ES, SS, SR, SS, SS, SS, SS, SS, LI, SR],
    [TW, FW, SS, TW, FW, TW, CL, TW, LA, LI, TW],
    [ES, ES, SS, ES, FW, TW, CL, CW, LA, ES, ES],
    [CL, CL, SS, CL, CL, TW, CL, CL, CL, CL, CL],
];
const INPUT_ONLY: Table = [
    [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
    [CL, FW, SS, TW, FW, TW, CL, CW, LA, LI, TW],
    [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
    [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL],
];

// The secure_tcp variants differ only in the cells listed in §11.
const SECURE_INPUT: Table = [
    [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SA],
    [CL, CW, SS, TW, TW, TW, CL, CW, LA, LI, SA],
    [ES, ES, SS, SR, FW, TW, CL, CW, CL, LI, SA],
    [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL],
];
const SECURE_OUTPUT: Table = [
    [SS, ES, SS, SA, SS, SS, SS, SS, SS, LI, SA],
    [TW, FW, SS, TW, FW, TW, CL, TW, LA, LI, TW],
    [ES, ES, SS, ES, FW, TW, CL, CW, LA, ES, ES],
    [CL, CL, SS, CL, CL, TW, CL, CL, CL, CL, CL],
];
const SECURE_INPUT_ONLY: Table = [
    [SA, ES, ES, SR, SA, SA, SA, SA, SA, SA, SA],
    [CL, FW, SS, TW, FW, TW, CL, CW, LA, LI, TW],
    [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
    [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL],
];

/// The new state for a segment with `flags` (raw TCP flag byte) in `state`.
#[inline(always)]
pub fn transition(dir: Dir, state: u8, flags: u8, secure: bool) -> u8 {
    let Some(ev) = event(flags) else { return CLOSE };
    let table = match (dir, secure) {
        (Dir::Input, false) => &INPUT,
        (Dir::Output, false) => &OUTPUT,
        (Dir::InputOnly, false) => &INPUT_ONLY,
        (Dir::Input, true) => &SECURE_INPUT,
        (Dir::Output, true) => &SECURE_OUTPUT,
        (Dir::InputOnly, true) => &SECURE_INPUT_ONLY,
    };
    table[ev][(state as usize).min(STATES - 1)]
}

/// Does this segment open a new connection (§5): SYN without RST; with `sloppy_tcp` any
/// segment without RST.
#[inline]
pub fn schedules(flags: u8, sloppy: bool) -> bool {
    flags & 0x04 == 0 && (sloppy || flags & 0x02 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYN: u8 = 0x02;
    const FIN: u8 = 0x11; // FIN|ACK as stacks send it
    const ACK: u8 = 0x10;
    const RST: u8 = 0x04;
    const SYNACK_F: u8 = 0x12;

    /// Parse a reference row ("SR ES ...") into states.
    fn row(s: &str) -> Vec<u8> {
        s.split_whitespace().map(|n| NAMES.iter().position(|x| abbrev(x) == n).unwrap() as u8).collect()
    }
    fn abbrev(name: &str) -> &'static str {
        match name {
            "NONE" => "NO",
            "ESTABLISHED" => "ES",
            "SYN_SENT" => "SS",
            "SYN_RECV" => "SR",
            "FIN_WAIT" => "FW",
            "TIME_WAIT" => "TW",
            "CLOSE" => "CL",
            "CLOSE_WAIT" => "CW",
            "LAST_ACK" => "LA",
            "LISTEN" => "LI",
            "SYNACK" => "SA",
            _ => unreachable!(),
        }
    }

    /// Every cell of the three tables, transcribed independently from lvs-semantics.md §11 as
    /// text and checked through `transition` with real flag bytes (so event priority is tested
    /// too: SYN|FIN is a syn event, RST|ACK an rst event).
    #[test]
    fn tables_match_reference() {
        let reference = [
            (
                Dir::Input,
                [
                    "SR ES ES SR SR SR SR SR SR SR SR",
                    "CL CW SS TW TW TW CL CW LA LI TW",
                    "ES ES SS ES FW TW CL CW CL LI ES",
                    "CL CL CL SR CL CL CL CL LA LI SR",
                ],
            ),
            (
                Dir::Output,
                [
                    "SS ES SS SR SS SS SS SS SS LI SR",
                    "TW FW SS TW FW TW CL TW LA LI TW",
                    "ES ES SS ES FW TW CL CW LA ES ES",
                    "CL CL SS CL CL TW CL CL CL CL CL",
                ],
            ),
            (
                Dir::InputOnly,
                [
                    "SR ES ES SR SR SR SR SR SR SR SR",
                    "CL FW SS TW FW TW CL CW LA LI TW",
                    "ES ES SS ES FW TW CL CW CL LI ES",
                    "CL CL CL SR CL CL CL CL LA LI CL",
                ],
            ),
        ];
        let flags_for_event = [SYN | FIN, FIN, ACK, RST | ACK];
        for (dir, rows) in reference {
            for (ev, r) in rows.iter().enumerate() {
                for (st, want) in row(r).into_iter().enumerate() {
                    assert_eq!(
                        transition(dir, st as u8, flags_for_event[ev], false),
                        want,
                        "{dir:?} event {ev} state {}",
                        NAMES[st]
                    );
                }
            }
        }
    }

    #[test]
    fn secure_tables_differ_only_in_listed_cells() {
        let diffs = [
            (Dir::Input, 0, SYNACK, SYNACK),
            (Dir::Input, 1, SYNACK, SYNACK),
            (Dir::Input, 2, SYN_RECV, SYN_RECV),
            (Dir::Input, 2, SYNACK, SYNACK),
            (Dir::Input, 3, SYNACK, CLOSE),
            (Dir::Output, 0, SYN_RECV, SYNACK),
            (Dir::Output, 0, SYNACK, SYNACK),
        ];
        let io_syn_sa = [NONE, FIN_WAIT, TIME_WAIT, CLOSE, CLOSE_WAIT, LAST_ACK, LISTEN, SYNACK];
        let flags_for_event = [SYN, FIN, ACK, RST];
        for dir in [Dir::Input, Dir::Output, Dir::InputOnly] {
            for (ev, &fl) in flags_for_event.iter().enumerate() {
                for st in 0..STATES as u8 {
                    let normal = transition(dir, st, fl, false);
                    let secure = transition(dir, st, fl, true);
                    let listed = diffs.iter().find(|d| d.0 == dir && d.1 == ev && d.2 == st).map(|d| d.3);
                    let want = match listed {
                        Some(s) => s,
                        None if dir == Dir::InputOnly && ev == 0 && io_syn_sa.contains(&st) => SYNACK,
                        None => normal,
                    };
                    assert_eq!(secure, want, "{dir:?} ev {ev} state {}", NAMES[st as usize]);
                }
            }
        }
    }

    #[test]
    fn no_flags_closes() {
        assert_eq!(transition(Dir::Input, ESTABLISHED, 0x08, false), CLOSE);
    }

    #[test]
    fn typical_lives() {
        // NAT: SYN, SYN-ACK, ACK, FIN (client), FIN (server), ACK
        let mut s = NONE;
        for (d, f) in [(Dir::Input, SYN), (Dir::Output, SYNACK_F), (Dir::Input, ACK)] {
            s = transition(d, s, f, false);
        }
        assert_eq!(s, ESTABLISHED);
        s = transition(Dir::Input, s, FIN, false);
        assert_eq!(s, CLOSE_WAIT);
        s = transition(Dir::Output, s, FIN, false);
        assert_eq!(s, TIME_WAIT);
        // DR: SYN → SYN_RECV → ACK → ESTABLISHED → FIN → FIN_WAIT
        let mut s = NONE;
        for (f, want) in [(SYN, SYN_RECV), (ACK, ESTABLISHED), (FIN, FIN_WAIT), (ACK, FIN_WAIT)] {
            s = transition(Dir::InputOnly, s, f, false);
            assert_eq!(s, want);
        }
    }

    #[test]
    fn scheduling_trigger() {
        assert!(schedules(SYN, false));
        assert!(schedules(SYNACK_F, false));
        assert!(!schedules(SYN | RST, false));
        assert!(!schedules(ACK, false));
        assert!(schedules(ACK, true));
        assert!(!schedules(RST, true));
    }
}
