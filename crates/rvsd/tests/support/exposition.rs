//! Prometheus text-format checker shared by the unit tests (`src/metrics.rs`) and the
//! namespace tests (`tests/director_ns.rs`), so both validate scrapes the same way.
#![allow(dead_code)]

/// One sample: (name, labels in order, value).
pub type Sample = (String, Vec<(String, String)>, f64);
/// Samples in the order of the text.
pub type Samples = Vec<Sample>;

/// A checker of the text format for tests: every sample line is `name{labels} value`,
/// every family has exactly one HELP and one TYPE line before its samples, samples of one
/// family are contiguous. Returns (family → type, samples as (name, labels, value)).
pub fn parse_exposition(text: &str) -> Result<(std::collections::BTreeMap<String, String>, Samples), String> {
    use std::collections::BTreeMap;
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helps: BTreeMap<String, usize> = BTreeMap::new();
    let mut samples = Vec::new();
    let mut closed: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    let valid_name = |n: &str| {
        !n.is_empty()
            && n.chars()
                .enumerate()
                .all(|(i, c)| c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit()))
    };
    for (ln, line) in text.lines().enumerate() {
        let ln = ln + 1;
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or("");
            if !valid_name(name) {
                return Err(format!("line {ln}: bad HELP name"));
            }
            *helps.entry(name.into()).or_default() += 1;
            if helps[name] > 1 {
                return Err(format!("line {ln}: second HELP for {name}"));
            }
            if let Some(c) = current.replace(name.into()) {
                closed.push(c);
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut p = rest.split(' ');
            let (Some(name), Some(t), None) = (p.next(), p.next(), p.next()) else {
                return Err(format!("line {ln}: bad TYPE line"));
            };
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&t) {
                return Err(format!("line {ln}: bad type {t}"));
            }
            if types.insert(name.into(), t.into()).is_some() {
                return Err(format!("line {ln}: second TYPE for {name}"));
            }
            if current.as_deref() != Some(name) {
                return Err(format!("line {ln}: TYPE {name} without its HELP just before"));
            }
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (name, rest) = match line.find(['{', ' ']) {
            Some(i) => line.split_at(i),
            None => return Err(format!("line {ln}: no value")),
        };
        if !valid_name(name) {
            return Err(format!("line {ln}: bad metric name {name:?}"));
        }
        let mut labels = Vec::new();
        let value_text = if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices().peekable();
            let mut end = None;
            loop {
                // label name
                let start = match chars.peek() {
                    Some(&(i, '}')) => {
                        end = Some(i);
                        break;
                    }
                    Some(&(i, _)) => i,
                    None => break,
                };
                let eq = body[start..].find('=').ok_or(format!("line {ln}: label without ="))? + start;
                let lname = &body[start..eq];
                if !valid_name(lname) || lname.contains(':') {
                    return Err(format!("line {ln}: bad label name {lname:?}"));
                }
                while chars.peek().is_some_and(|&(i, _)| i <= eq) {
                    chars.next();
                }
                if chars.next().map(|(_, c)| c) != Some('"') {
                    return Err(format!("line {ln}: label value not quoted"));
                }
                let mut v = String::new();
                loop {
                    match chars.next() {
                        Some((_, '\\')) => match chars.next() {
                            Some((_, 'n')) => v.push('\n'),
                            Some((_, c @ ('\\' | '"'))) => v.push(c),
                            _ => return Err(format!("line {ln}: bad escape")),
                        },
                        Some((_, '"')) => break,
                        Some((_, c)) => v.push(c),
                        None => return Err(format!("line {ln}: unterminated label value")),
                    }
                }
                labels.push((lname.to_string(), v));
                match chars.peek() {
                    Some(&(_, ',')) => {
                        chars.next();
                    }
                    Some(&(_, '}')) => {}
                    _ => return Err(format!("line {ln}: expected , or }}")),
                }
            }
            let end = end.ok_or(format!("line {ln}: unterminated labels"))?;
            &body[end + 1..]
        } else {
            rest
        };
        let value_text = value_text.strip_prefix(' ').ok_or(format!("line {ln}: no space before value"))?;
        let value: f64 = value_text.parse().map_err(|_| format!("line {ln}: bad value {value_text:?}"))?;
        let family = types
            .keys()
            .filter(|f| {
                name == f.as_str()
                    || name.strip_prefix(f.as_str()).is_some_and(|s| ["_sum", "_count", "_bucket"].contains(&s))
            })
            .max_by_key(|f| f.len())
            .cloned()
            .ok_or(format!("line {ln}: sample {name} before its TYPE"))?;
        if closed.contains(&family) || current.as_deref() != Some(family.as_str()) {
            return Err(format!("line {ln}: samples of {family} not contiguous"));
        }
        samples.push((name.to_string(), labels, value));
    }
    if helps.len() != types.len() {
        return Err("HELP and TYPE lines do not pair up".into());
    }
    Ok((types, samples))
}

/// The first sample named `name` whose labels include all of `want`.
pub fn find<'a>(s: &'a Samples, name: &str, want: &[(&str, &str)]) -> Option<&'a Sample> {
    s.iter().find(|(n, l, _)| n == name && want.iter().all(|(k, v)| l.iter().any(|(a, b)| a == k && b == v)))
}
