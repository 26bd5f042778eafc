//! The C conversions ipvsadm validates with, reproduced so the same strings are
//! accepted and rejected (ipvsadm-cli.md §4: "base-10 strtol, the whole string").

use std::net::Ipv4Addr;

fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Splits C-style leading blanks and sign; returns (negative, rest).
fn sign(s: &str) -> (bool, &str) {
    let s = s.trim_start_matches(|c: char| c.is_ascii() && is_c_space(c as u8));
    match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    }
}

/// ipvsadm's `string_to_number`: strtol base 10, whole string, `min..=max`.
pub fn string_to_number(s: &str, min: i64, max: i64) -> Option<i64> {
    let (neg, digits) = sign(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Anything longer than 18 digits is out of every range used here (and ERANGE
    // for long), so saturating is enough.
    let mut v: i64 = 0;
    for b in digits.bytes() {
        v = v.saturating_mul(10).saturating_add(i64::from(b - b'0'));
    }
    let v = if neg { -v } else { v };
    (min..=max).contains(&v).then_some(v)
}

/// ipvsadm's `parse_fwmark`: strtoul base 10, whole string, 1..=u32::MAX.
/// strtoul accepts a minus sign and negates, which always lands out of range here.
pub fn parse_fwmark(s: &str) -> Option<u32> {
    let (neg, digits) = sign(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || neg {
        return None;
    }
    let mut v: u64 = 0;
    for b in digits.bytes() {
        v = v.saturating_mul(10).saturating_add(u64::from(b - b'0'));
    }
    if v == 0 {
        return None;
    }
    u32::try_from(v).ok()
}

/// C `atoi` (used for the IPv6 `-M` prefix): leading number, garbage ignored.
pub fn atoi(s: &str) -> i64 {
    let (neg, rest) = sign(s);
    let mut v: i64 = 0;
    for b in rest.bytes().take_while(u8::is_ascii_digit) {
        v = v.saturating_mul(10).saturating_add(i64::from(b - b'0'));
    }
    if neg { -v } else { v }
}

/// True when every character is a decimal digit (ipvsadm's `str_is_digit`; true for "").
pub fn str_is_digit(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_digit())
}

/// One inet_aton part: decimal, octal (leading 0) or hex (0x).
fn aton_part(p: &str) -> Option<u64> {
    let (digits, radix) = if let Some(h) = p.strip_prefix("0x").or_else(|| p.strip_prefix("0X")) {
        (h, 16)
    } else if p.len() > 1 && p.starts_with('0') {
        (&p[1..], 8)
    } else {
        (p, 10)
    };
    if digits.is_empty() {
        // "0x" alone is 0 for glibc; a bare "" is invalid.
        return if radix == 16 { Some(0) } else { None };
    }
    let mut v: u64 = 0;
    for c in digits.chars() {
        let d = u64::from(c.to_digit(radix)?);
        v = v.checked_mul(u64::from(radix))?.checked_add(d)?;
        if v > u64::from(u32::MAX) {
            return None;
        }
    }
    Some(v)
}

/// glibc `inet_aton`: `a`, `a.b`, `a.b.c`, `a.b.c.d`, each part in C notation;
/// trailing whitespace (and anything after it) is ignored.
pub fn inet_aton(s: &str) -> Option<Ipv4Addr> {
    let end = s.bytes().position(|b| !b.is_ascii() || is_c_space(b)).unwrap_or(s.len());
    let s = &s[..end];
    if s.is_empty() {
        return None;
    }
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() > 4 {
        return None;
    }
    let vals: Vec<u64> = parts.iter().map(|p| aton_part(p)).collect::<Option<_>>()?;
    let (last, head) = vals.split_last()?;
    if head.iter().any(|&v| v > 255) {
        return None;
    }
    let last_max: u64 = match head.len() {
        0 => u64::from(u32::MAX),
        1 => 0xff_ffff,
        2 => 0xffff,
        _ => 0xff,
    };
    if *last > last_max {
        return None;
    }
    let mut v: u64 = 0;
    for (i, h) in head.iter().enumerate() {
        v |= h << (24 - 8 * i);
    }
    v |= last;
    u32::try_from(v).ok().map(Ipv4Addr::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strtol_rules() {
        assert_eq!(string_to_number("3", 0, 65535), Some(3));
        assert_eq!(string_to_number(" +7", 0, 65535), Some(7));
        assert_eq!(string_to_number("-1", 0, 65535), None);
        assert_eq!(string_to_number("65536", 0, 65535), None);
        assert_eq!(string_to_number("3x", 0, 65535), None);
        assert_eq!(string_to_number("", 0, 65535), None);
        assert_eq!(string_to_number("99999999999999999999999", 0, 65535), None);
    }

    #[test]
    fn fwmark_rules() {
        assert_eq!(parse_fwmark("7"), Some(7));
        assert_eq!(parse_fwmark("4294967295"), Some(u32::MAX));
        assert_eq!(parse_fwmark("4294967296"), None);
        assert_eq!(parse_fwmark("0"), None);
        assert_eq!(parse_fwmark("-1"), None);
        assert_eq!(parse_fwmark("x"), None);
    }

    #[test]
    fn aton_forms() {
        assert_eq!(inet_aton("10.0.0.1"), Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(inet_aton("10.1"), Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(inet_aton("0x7f.1"), Some(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(inet_aton("010.0.0.1"), Some(Ipv4Addr::new(8, 0, 0, 1)));
        assert_eq!(inet_aton("80"), Some(Ipv4Addr::new(0, 0, 0, 80)));
        assert_eq!(inet_aton("256.0.0.1"), None);
        assert_eq!(inet_aton("1.2.3.4.5"), None);
        assert_eq!(inet_aton("www"), None);
        assert_eq!(inet_aton("1.2.3.4 junk"), Some(Ipv4Addr::new(1, 2, 3, 4)));
        assert_eq!(inet_aton("09.1.1.1"), None);
    }

    #[test]
    fn atoi_rules() {
        assert_eq!(atoi("64abc"), 64);
        assert_eq!(atoi("abc"), 0);
        assert_eq!(atoi("-3"), -3);
    }
}
