//! keepalived.conf block syntax (keepalived.md §1): one statement per line,
//! `keyword args… {` … `}` blocks, `#`/`!` comments, double-quoted words, and
//! `include PATTERN` of files relative to the including file (a `*`/`?` pattern in
//! the last path component is expanded in name order), and keepalived's conditional
//! lines (`@ID line`, `@^ID line`, see `conditional`). Every statement keeps its file and
//! line.

use crate::error::{ConfigError, Warning};
use std::path::{Path, PathBuf};

/// One statement: its words, where it is, and its block if it opened one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stmt {
    pub file: String,
    pub line: usize,
    pub words: Vec<String>,
    pub block: Option<Vec<Stmt>>,
}

impl Stmt {
    pub fn keyword(&self) -> &str {
        self.words.first().map(String::as_str).unwrap_or("")
    }
    pub fn args(&self) -> &[String] {
        self.words.get(1..).unwrap_or(&[])
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(String),
    Open,
    Close,
    Eol,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    file: String,
    line: usize,
}

/// Reads a whole file.
pub type ReadFn = Box<dyn Fn(&Path) -> std::io::Result<String>>;
/// Lists the names in a directory.
pub type ListFn = Box<dyn Fn(&Path) -> std::io::Result<Vec<String>>>;

/// Reads files, following includes.
pub struct Loader {
    /// Reads a file (tests substitute an in-memory table).
    pub read: ReadFn,
    /// Lists a directory (for include patterns).
    pub list: ListFn,
    pub warnings: Vec<Warning>,
    /// The config id that `@ID` lines are compared with (`keepalived -i`, `rvsd
    /// --config-id`); `None` keeps only `@^ID` lines, as keepalived with no id.
    pub config_id: Option<String>,
}

/// keepalived's default config id: the host name up to its first dot (uname's node name;
/// keepalived.conf(5) "Conditional configuration and configuration id").
pub fn default_config_id() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let first = name.trim().split('.').next().unwrap_or("");
    (!first.is_empty()).then(|| first.to_owned())
}

/// keepalived's conditional lines: a line whose first non-blank character is `@` is kept only
/// when the word glued to it equals the config id (`@^ID`: only when it does not), and then
/// without that word; a conditional with nothing after its id is dropped. With no config id,
/// `@ID` lines are dropped and `@^ID` lines kept. Applied to every line before anything else
/// (in blocks, in included files, to `include` lines themselves), as keepalived's reader does.
pub fn conditional<'a>(line: &'a str, config_id: Option<&str>) -> Option<&'a str> {
    let trimmed = line.trim_start();
    let Some(rest) = trimmed.strip_prefix('@') else { return Some(line) };
    let (negate, rest) = match rest.strip_prefix('^') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let end = rest.find([' ', '\t'])?;
    let (id, body) = (&rest[..end], rest[end..].trim_start_matches([' ', '\t']));
    let matches = config_id == Some(id);
    (matches != negate).then_some(body)
}

impl Default for Loader {
    fn default() -> Self {
        Loader {
            read: Box::new(|p| std::fs::read_to_string(p)),
            list: Box::new(|p| {
                std::fs::read_dir(p)?.map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned())).collect()
            }),
            warnings: Vec::new(),
            config_id: default_config_id(),
        }
    }
}

const MAX_INCLUDE_DEPTH: usize = 16;

impl Loader {
    /// Reads `path` and everything it includes into a statement tree.
    pub fn load(&mut self, path: &Path) -> Result<Vec<Stmt>, ConfigError> {
        let text = (self.read)(path)
            .map_err(|e| ConfigError::at(&path.display().to_string(), 0, "", format!("cannot read: {e}")))?;
        self.parse(&text, &path.display().to_string(), path.parent().map(Path::to_path_buf))
    }

    /// Parses `text` named `file`; includes are looked up relative to `dir`.
    pub fn parse(&mut self, text: &str, file: &str, dir: Option<PathBuf>) -> Result<Vec<Stmt>, ConfigError> {
        let mut toks = Vec::new();
        self.tokenize(text, file, dir.as_deref(), 0, &mut toks)?;
        let mut pos = 0;
        let stmts = build(&toks, &mut pos, None)?;
        Ok(stmts)
    }

    fn tokenize(
        &mut self,
        text: &str,
        file: &str,
        dir: Option<&Path>,
        depth: usize,
        out: &mut Vec<Token>,
    ) -> Result<(), ConfigError> {
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let Some(raw) = conditional(raw, self.config_id.as_deref()) else { continue };
            let words = split_line(raw).map_err(|m| ConfigError::at(file, line, "", m))?;
            if words.first().is_some_and(|w| w == &Tok::Word("include".into())) {
                let Some(Tok::Word(pattern)) = words.get(1) else {
                    return Err(ConfigError::at(file, line, "include", "missing file name"));
                };
                if depth >= MAX_INCLUDE_DEPTH {
                    return Err(ConfigError::at(file, line, "include", "includes nested too deeply"));
                }
                let base = dir.map(Path::to_path_buf).unwrap_or_default();
                let full = normalize(&if Path::new(pattern).is_absolute() {
                    PathBuf::from(pattern)
                } else {
                    base.join(pattern)
                });
                let files = self.expand(&full);
                if files.is_empty() {
                    self.warnings.push(ConfigError::at(
                        file,
                        line,
                        "include",
                        format!("no file matches \"{pattern}\""),
                    ));
                }
                for f in files {
                    let name = f.display().to_string();
                    let inc = (self.read)(&f)
                        .map_err(|e| ConfigError::at(file, line, "include", format!("cannot read {name}: {e}")))?;
                    self.tokenize(&inc, &name, f.parent(), depth + 1, out)?;
                }
                continue;
            }
            for w in words {
                out.push(Token { tok: w, file: file.to_owned(), line });
            }
            out.push(Token { tok: Tok::Eol, file: file.to_owned(), line });
        }
        Ok(())
    }

    /// The files an include names (a pattern only in the last component).
    fn expand(&self, full: &Path) -> Vec<PathBuf> {
        let name = full.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if !name.contains(['*', '?']) {
            return vec![full.to_path_buf()];
        }
        let dir = full.parent().unwrap_or(Path::new("."));
        let mut names: Vec<String> =
            (self.list)(dir).unwrap_or_default().into_iter().filter(|n| glob_match(&name, n)).collect();
        names.sort();
        names.into_iter().map(|n| dir.join(n)).collect()
    }
}

/// Folds `.` and `..` lexically, so messages name files plainly.
fn normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if out.file_name().is_some() => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

/// `*` and `?` wildcard match (no character classes); hidden files need an explicit dot.
fn glob_match(pat: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some('*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some('?'), Some(_)) => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    if name.starts_with('.') && !pat.starts_with('.') {
        return false;
    }
    go(&pat.chars().collect::<Vec<_>>(), &name.chars().collect::<Vec<_>>())
}

/// Splits one line into words and braces; a comment runs to the end of the line.
fn split_line(line: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '#' | '!' => break,
            '{' => {
                chars.next();
                out.push(Tok::Open);
            }
            '}' => {
                chars.next();
                out.push(Tok::Close);
            }
            '"' => {
                chars.next();
                let mut w = String::new();
                loop {
                    match chars.next() {
                        None => return Err("unterminated quoted string".into()),
                        Some('"') => break,
                        Some('\\') if chars.peek() == Some(&'"') => {
                            chars.next();
                            w.push('"');
                        }
                        Some(c) => w.push(c),
                    }
                }
                out.push(Tok::Word(w));
            }
            _ => {
                let mut w = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || c == '{' || c == '}' || c == '"' {
                        break;
                    }
                    w.push(c);
                    chars.next();
                }
                out.push(Tok::Word(w));
            }
        }
    }
    Ok(out)
}

/// Builds statements until the closing brace of `open` (or the end for the top level).
fn build(toks: &[Token], pos: &mut usize, open: Option<&Token>) -> Result<Vec<Stmt>, ConfigError> {
    let mut stmts: Vec<Stmt> = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut start: Option<&Token> = None;
    while let Some(t) = toks.get(*pos) {
        *pos += 1;
        match &t.tok {
            Tok::Word(w) => {
                start.get_or_insert(t);
                words.push(w.clone());
            }
            Tok::Eol => {
                if let Some(s) = start.take() {
                    stmts.push(Stmt {
                        file: s.file.clone(),
                        line: s.line,
                        words: std::mem::take(&mut words),
                        block: None,
                    });
                }
            }
            Tok::Open => {
                let block = build(toks, pos, Some(t))?;
                match start.take() {
                    Some(s) => stmts.push(Stmt {
                        file: s.file.clone(),
                        line: s.line,
                        words: std::mem::take(&mut words),
                        block: Some(block),
                    }),
                    // A brace on its own line opens the block of the previous statement.
                    None => match stmts.last_mut() {
                        Some(prev) if prev.block.is_none() => prev.block = Some(block),
                        _ => return Err(ConfigError::at(&t.file, t.line, "", "'{' without a keyword")),
                    },
                }
            }
            Tok::Close => {
                if let Some(s) = start.take() {
                    stmts.push(Stmt {
                        file: s.file.clone(),
                        line: s.line,
                        words: std::mem::take(&mut words),
                        block: None,
                    });
                }
                return match open {
                    Some(_) => Ok(stmts),
                    None => Err(ConfigError::at(&t.file, t.line, "", "unexpected '}'")),
                };
            }
        }
    }
    if let Some(s) = start.take() {
        stmts.push(Stmt { file: s.file.clone(), line: s.line, words, block: None });
    }
    match open {
        Some(o) => Err(ConfigError::at(&o.file, o.line, "", "block is never closed ('}' missing)")),
        None => Ok(stmts),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn loader(files: &[(&str, &str)]) -> Loader {
        let map: HashMap<PathBuf, String> = files.iter().map(|(p, t)| (PathBuf::from(p), t.to_string())).collect();
        let names: Vec<PathBuf> = map.keys().cloned().collect();
        Loader {
            read: Box::new(move |p| map.get(p).cloned().ok_or_else(|| std::io::Error::other("no such file"))),
            list: Box::new(move |d| {
                Ok(names
                    .iter()
                    .filter(|n| n.parent() == Some(d))
                    .filter_map(|n| n.file_name().map(|f| f.to_string_lossy().into_owned()))
                    .collect())
            }),
            warnings: Vec::new(),
            config_id: Some("main".into()),
        }
    }

    #[test]
    fn blocks_comments_quotes_and_lines() {
        let text =
            "# head\nvirtual_server 10.0.0.1 80 { ! comment\n  misc_path \"/bin/check a b\" # c\n  url { path / }\n}\n";
        let s = loader(&[]).parse(text, "k.conf", None).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].line, s[0].words.clone()), (2, vec!["virtual_server".into(), "10.0.0.1".into(), "80".into()]));
        let b = s[0].block.as_ref().unwrap();
        assert_eq!(b[0].args(), ["/bin/check a b"]);
        assert_eq!(b[0].line, 3);
        assert_eq!(b[1].keyword(), "url");
        assert_eq!(b[1].block.as_ref().unwrap()[0].words, ["path", "/"]);
    }

    #[test]
    fn brace_on_next_line() {
        let s = loader(&[]).parse("real_server 1.2.3.4 80\n{\n weight 2\n}\n", "f", None).unwrap();
        assert_eq!(s[0].block.as_ref().unwrap()[0].words, ["weight", "2"]);
    }

    #[test]
    fn unbalanced_braces_are_errors_with_lines() {
        let e = loader(&[]).parse("a {\n b\n", "f", None).unwrap_err();
        assert_eq!(e.to_string(), "f:1: block is never closed ('}' missing)");
        let e = loader(&[]).parse("a\n}\n", "f", None).unwrap_err();
        assert_eq!(e.to_string(), "f:2: unexpected '}'");
        let e = loader(&[]).parse("a \"b\n", "f", None).unwrap_err();
        assert_eq!(e.to_string(), "f:1: unterminated quoted string");
    }

    #[test]
    fn includes_are_relative_and_keep_lines() {
        let mut l = loader(&[
            ("/etc/k/keepalived.conf", "global_defs {\n}\ninclude conf.d/*.conf\n"),
            ("/etc/k/conf.d/b.conf", "\n\nvirtual_server fwmark 2 {\n}\n"),
            ("/etc/k/conf.d/a.conf", "virtual_server fwmark 1 {\n include ../rs.inc\n}\n"),
            ("/etc/k/rs.inc", "real_server 10.1.1.1 {\n}\n"),
        ]);
        let s = l.load(Path::new("/etc/k/keepalived.conf")).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(
            (s[1].file.as_str(), s[1].line, s[1].args()),
            ("/etc/k/conf.d/a.conf", 1, &["fwmark".into(), "1".into()][..])
        );
        let rs = &s[1].block.as_ref().unwrap()[0];
        assert_eq!((rs.file.as_str(), rs.line), ("/etc/k/rs.inc", 1));
        assert_eq!((s[2].file.as_str(), s[2].line), ("/etc/k/conf.d/b.conf", 3));
        let mut l = loader(&[("/k.conf", "include nothing*.conf\n")]);
        assert!(l.load(Path::new("/k.conf")).unwrap().is_empty());
        assert_eq!(l.warnings[0].to_string(), "/k.conf:1: include: no file matches \"nothing*.conf\"");
    }
}
