//! The slice of libpopt's behaviour ipvsadm relies on: short bundles (`-lnc`),
//! attached values (`-w3`, `-w=3`, `--weight=3`), optional values (`-p [N]`: the
//! next word is taken unless it starts with `-`), leftover words collected for
//! later, `--` ending options, and the error strings popt prints.

/// Whether an option takes a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgKind {
    None,
    Required,
    Optional,
}

/// One entry of the option table: long name, short letter, value kind, tag.
#[derive(Debug, Clone, Copy)]
pub struct OptDef<T: Copy> {
    pub long: Option<&'static str>,
    pub short: Option<char>,
    pub arg: ArgKind,
    pub tag: T,
}

/// What `next` returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next<T> {
    /// An option with its value (if any).
    Opt(T, Option<String>),
    /// No more options.
    End,
    /// A popt error: `"<word>: <reason>"` is what ipvsadm prints.
    Error { word: String, reason: &'static str },
}

/// Iterator state over argv (argv[0] is the program name and is skipped).
pub struct Popt<'a, T: Copy> {
    table: &'a [OptDef<T>],
    argv: &'a [String],
    next: usize,
    /// Current short bundle: (word index, byte offset of the next letter).
    bundle: Option<(usize, usize)>,
    only_args: bool,
    /// Non-option words, in order.
    pub leftovers: Vec<String>,
    /// Index of the last word consumed (what poptBadOption reports).
    last: usize,
}

impl<'a, T: Copy> Popt<'a, T> {
    pub fn new(table: &'a [OptDef<T>], argv: &'a [String]) -> Self {
        Popt { table, argv, next: 1, bundle: None, only_args: false, leftovers: Vec::new(), last: 0 }
    }

    /// The word poptBadOption(…, POPT_BADOPTION_NOALIAS) names: the last one consumed.
    pub fn bad_option(&self) -> &str {
        self.argv.get(self.last).map(String::as_str).unwrap_or("")
    }

    fn take_word(&mut self) -> Option<&'a str> {
        let w = self.argv.get(self.next)?;
        self.last = self.next;
        self.next += 1;
        Some(w.as_str())
    }

    /// Value for an option whose own word carried none.
    fn value_from_next(&mut self, kind: ArgKind) -> Result<Option<String>, &'static str> {
        match (kind, self.argv.get(self.next)) {
            (ArgKind::None, _) => Ok(None),
            (ArgKind::Required, None) => Err("missing argument"),
            (ArgKind::Optional, None) => Ok(None),
            (ArgKind::Optional, Some(w)) if w.starts_with('-') => Ok(None),
            (_, Some(_)) => Ok(self.take_word().map(str::to_string)),
        }
    }

    fn error(&self, word: usize, reason: &'static str) -> Next<T> {
        Next::Error { word: self.argv.get(word).cloned().unwrap_or_default(), reason }
    }

    /// Next option, skipping (and collecting) plain words.
    pub fn next_opt(&mut self) -> Next<T> {
        loop {
            if let Some((w, off)) = self.bundle {
                let word = self.argv[w].as_str();
                let Some(ch) = word[off..].chars().next() else {
                    self.bundle = None;
                    continue;
                };
                let rest_off = off + ch.len_utf8();
                let Some(def) = self.table.iter().find(|d| d.short == Some(ch)) else {
                    self.bundle = None;
                    return self.error(w, "unknown option");
                };
                if def.arg == ArgKind::None {
                    self.bundle = if rest_off < word.len() { Some((w, rest_off)) } else { None };
                    return Next::Opt(def.tag, None);
                }
                self.bundle = None;
                if rest_off < word.len() {
                    let rest = &word[rest_off..];
                    let rest = rest.strip_prefix('=').unwrap_or(rest);
                    return Next::Opt(def.tag, Some(rest.to_string()));
                }
                return match self.value_from_next(def.arg) {
                    Ok(v) => Next::Opt(def.tag, v),
                    Err(reason) => self.error(w, reason),
                };
            }
            let Some(word) = self.take_word() else {
                return Next::End;
            };
            if self.only_args || word == "-" || !word.starts_with('-') {
                self.leftovers.push(word.to_string());
                continue;
            }
            if word == "--" {
                self.only_args = true;
                continue;
            }
            let idx = self.last;
            if let Some(long) = word.strip_prefix("--") {
                let (name, value) = match long.split_once('=') {
                    Some((n, v)) => (n, Some(v.to_string())),
                    None => (long, None),
                };
                let Some(def) = self.table.iter().find(|d| d.long == Some(name)) else {
                    return self.error(idx, "unknown option");
                };
                return match (def.arg, value) {
                    (ArgKind::None, Some(_)) => self.error(idx, "option does not take an argument"),
                    (_, Some(v)) => Next::Opt(def.tag, Some(v)),
                    (kind, None) => match self.value_from_next(kind) {
                        Ok(v) => Next::Opt(def.tag, v),
                        Err(reason) => self.error(idx, reason),
                    },
                };
            }
            self.bundle = Some((idx, 1));
        }
    }

    /// Drains the remaining words (after options ended) into the leftovers.
    pub fn finish(&mut self) {
        while let Some(w) = self.take_word() {
            self.leftovers.push(w.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &[OptDef<char>] = &[
        OptDef { long: Some("list"), short: Some('L'), arg: ArgKind::None, tag: 'L' },
        OptDef { long: Some("numeric"), short: Some('n'), arg: ArgKind::None, tag: 'n' },
        OptDef { long: Some("weight"), short: Some('w'), arg: ArgKind::Required, tag: 'w' },
        OptDef { long: Some("persistent"), short: Some('p'), arg: ArgKind::Optional, tag: 'p' },
    ];

    fn all(words: &[&str]) -> (Vec<Next<char>>, Vec<String>) {
        let argv: Vec<String> = std::iter::once("prog").chain(words.iter().copied()).map(String::from).collect();
        let mut p = Popt::new(T, &argv);
        let mut out = Vec::new();
        loop {
            let n = p.next_opt();
            let stop = !matches!(n, Next::Opt(..));
            out.push(n);
            if stop {
                break;
            }
        }
        (out, p.leftovers)
    }

    #[test]
    fn bundles_values_and_leftovers() {
        let (o, left) = all(&["-Ln", "x", "-w3", "--weight=4", "-w", "-5", "-p", "-w=6", "--", "-n"]);
        assert_eq!(
            o,
            vec![
                Next::Opt('L', None),
                Next::Opt('n', None),
                Next::Opt('w', Some("3".into())),
                Next::Opt('w', Some("4".into())),
                Next::Opt('w', Some("-5".into())),
                Next::Opt('p', None),
                Next::Opt('w', Some("6".into())),
                Next::End
            ]
        );
        assert_eq!(left, vec!["x".to_string(), "-n".to_string()]);
    }

    #[test]
    fn optional_takes_plain_word() {
        let (o, _) = all(&["-p", "600"]);
        assert_eq!(o[0], Next::Opt('p', Some("600".into())));
    }

    #[test]
    fn errors() {
        let (o, _) = all(&["-Lz"]);
        assert_eq!(o[1], Next::Error { word: "-Lz".into(), reason: "unknown option" });
        let (o, _) = all(&["-w"]);
        assert_eq!(o[0], Next::Error { word: "-w".into(), reason: "missing argument" });
        let (o, _) = all(&["--nope"]);
        assert_eq!(o[0], Next::Error { word: "--nope".into(), reason: "unknown option" });
    }
}
