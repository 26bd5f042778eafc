//! The SIP persistence engine (`--pe sip`, the kernel's ip_vs_pe_sip): on a persistent UDP
//! service, the persistence template of a new flow is found by the SIP Call-ID of the flow's
//! first datagram (with the client network, virtual address and port, as the kernel's
//! `ip_vs_sip_ct_match`), so every flow of one call reaches the same real server whatever
//! port or address it comes from within the persistence netmask.
//!
//! The Call-ID is read as the kernel's netfilter SIP helper reads a header
//! (`ct_sip_get_header` with `callid_len`): a header line (never the request or status line;
//! continuation lines skipped) named `Call-ID` or, compact, `i` not followed by a letter,
//! case-insensitive, then optional blanks, a colon, optional blanks, and a word
//! (`word[@word]`, the SIP helper's word characters). An empty value moves the search to the
//! next header. The value must be at most 255 bytes and end the line (CR or LF follows it).
//! Anything else — no Call-ID, a non-UDP packet — means the engine cannot place the packet,
//! and the kernel drops it (`ip_vs_sched_persist` returns `ignored = -1`).

/// `IP_VS_PEDATA_MAXLEN`: longer Call-IDs are refused.
pub const PEDATA_MAXLEN: usize = 255;

/// The name the engine has in ipvsadm's `--pe` and in the listings.
pub const NAME: &str = "sip";

/// `iswordc` of the kernel's SIP helper.
fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'!' | b'"'
                | b'%'
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b':'
                | b'<'
                | b'='
                | b'>'
                | b'?'
                | b'['
                | b'\\'
                | b']'
                | b'_'
                | b'`'
                | b'{'
                | b'}'
                | b'~'
                | b'-'
                | b'.'
                | b'/'
                | b'\''
        )
}

fn word_len(s: &[u8]) -> usize {
    s.iter().take_while(|&&c| is_word(c)).count()
}

/// `callid_len`: `word` or `word@word` (0 when the part after `@` is empty).
fn callid_len(s: &[u8]) -> usize {
    let len = word_len(s);
    if len == 0 || s.get(len) != Some(&b'@') {
        return len;
    }
    match word_len(&s[len + 1..]) {
        0 => 0,
        d => len + 1 + d,
    }
}

/// Skips blanks (and, as the kernel's `sip_skip_whitespace`, a CRLF or LF followed by a
/// blank: a folded line); `None` at the end of the data or at a real line end.
fn skip_blanks(s: &[u8], mut i: usize) -> Option<usize> {
    loop {
        match s.get(i)? {
            b' ' | b'\t' => i += 1,
            b'\r' | b'\n' => {
                let mut j = i + 1;
                if s[i] == b'\r' && s.get(j) == Some(&b'\n') {
                    j += 1;
                }
                match s.get(j) {
                    Some(b' ' | b'\t') => i = j,
                    _ => return None,
                }
            }
            _ => return Some(i),
        }
    }
}

/// The first header named `Call-ID` / `i` at or after `from`: `Some(Ok((offset, len)))`,
/// `Some(Err(next))` for an empty value (search again from `next`), `None` when there is none.
fn find_header(s: &[u8], from: usize) -> Option<Result<(usize, usize), usize>> {
    let mut i = from;
    while i < s.len() {
        // The beginning of a line: just after CR, LF or CRLF.
        if s[i] != b'\r' && s[i] != b'\n' {
            i += 1;
            continue;
        }
        i += 1;
        if i >= s.len() {
            break;
        }
        if s[i - 1] == b'\r' && s[i] == b'\n' {
            i += 1;
            if i >= s.len() {
                break;
            }
        }
        // A continuation line is not a header.
        if s[i] == b' ' || s[i] == b'\t' {
            continue;
        }
        let rest = &s[i..];
        let name_len = if rest.len() >= 7 && rest[..7].eq_ignore_ascii_case(b"Call-ID") {
            7
        } else if rest.len() >= 2 && rest[0].eq_ignore_ascii_case(&b'i') && !rest[1].is_ascii_alphabetic() {
            1
        } else {
            continue;
        };
        let Some(colon) = skip_blanks(s, i + name_len) else { break };
        if s[colon] != b':' || colon + 1 >= s.len() {
            break;
        }
        let Some(value) = skip_blanks(s, colon + 1) else { break };
        return Some(match callid_len(&s[value..]) {
            0 => Err(value),
            n => Ok((value, n)),
        });
    }
    None
}

/// The Call-ID of a SIP message (the UDP payload), as the kernel's `get_callid` accepts it.
pub fn call_id(payload: &[u8]) -> Option<&[u8]> {
    let mut from = 0;
    let (off, len) = loop {
        match find_header(payload, from)? {
            Ok(found) => break found,
            Err(next) => from = next,
        }
    };
    if len > PEDATA_MAXLEN {
        return None;
    }
    // A SIP header always ends its line.
    match payload.get(off + len) {
        Some(b'\r' | b'\n') => Some(&payload[off..off + len]),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &[u8] = b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Content-Length: 0\r\n\r\n";

    #[test]
    fn the_call_id_of_an_rfc3261_invite() {
        assert_eq!(call_id(INVITE), Some(&b"a84b4c76e66710@pc33.atlanta.example.com"[..]));
    }

    #[test]
    fn compact_form_case_and_blanks() {
        assert_eq!(call_id(b"BYE sip:x SIP/2.0\r\ni: abc123\r\n\r\n"), Some(&b"abc123"[..]));
        assert_eq!(call_id(b"BYE sip:x SIP/2.0\ncall-id :\t f81d4fae-7dec@host\n\n"), Some(&b"f81d4fae-7dec@host"[..]));
        assert_eq!(call_id(b"BYE sip:x SIP/2.0\rCALL-ID: Q\r"), Some(&b"Q"[..]), "CR alone ends a line (RFC 2543)");
        // `i` must not be followed by a letter: `If-Match` is another header.
        assert_eq!(call_id(b"OPTIONS sip:x SIP/2.0\r\nIf: 1\r\nIn-Reply-To: z\r\nI: real\r\n"), Some(&b"real"[..]));
    }

    #[test]
    fn what_is_not_a_call_id() {
        assert_eq!(call_id(b""), None);
        assert_eq!(call_id(b"Call-ID: first-line-is-the-request-line\r\n"), None, "never the first line");
        assert_eq!(call_id(b"INVITE sip:x SIP/2.0\r\nTo: x\r\n\r\n"), None, "no header");
        assert_eq!(call_id(b"INVITE sip:x SIP/2.0\r\nCall-ID: abc"), None, "the line must end");
        assert_eq!(call_id(b"INVITE sip:x SIP/2.0\r\nCall-ID: abc def\r\n"), None, "a word then a blank");
        assert_eq!(call_id(b"INVITE sip:x SIP/2.0\r\nCall-ID: abc@\r\n"), None, "nothing after @");
        assert_eq!(call_id(b"INVITE sip:x SIP/2.0\r\n Call-ID: folded\r\n"), None, "a continuation line");
        let long = format!("INVITE sip:x SIP/2.0\r\nCall-ID: {}\r\n", "a".repeat(256));
        assert_eq!(call_id(long.as_bytes()), None, "longer than IP_VS_PEDATA_MAXLEN");
        let max = format!("INVITE sip:x SIP/2.0\r\nCall-ID: {}\r\n", "a".repeat(255));
        assert_eq!(call_id(max.as_bytes()).map(<[u8]>::len), Some(255));
    }

    #[test]
    fn an_empty_value_moves_to_the_next_header() {
        assert_eq!(call_id(b"INVITE sip:x SIP/2.0\r\nCall-ID: ;\r\ni: second\r\n"), Some(&b"second"[..]));
    }

    #[test]
    fn garbage_never_panics() {
        let mut x: u32 = 0x1234_5678;
        for n in 0..2000 {
            let mut buf = Vec::new();
            for _ in 0..(n % 64) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                const ALPHABET: &[u8] = b"iI:C\r\n @-a\tl;D";
                buf.push(ALPHABET[x as usize % ALPHABET.len()]);
            }
            let _ = call_id(&buf);
        }
    }
}
