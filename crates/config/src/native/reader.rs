//! Typed access to the spanned TOML tree: every getter names the field path and the
//! line in its error, and `finish` rejects keys nobody asked for (typos must not pass
//! silently).

use super::node::{Node, Value};
use crate::error::ConfigError;
use std::net::IpAddr;
use std::ops::Range;
use std::time::Duration;

/// The file being read: its name and where each line starts.
pub struct Source<'a> {
    pub file: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> Source<'a> {
    pub fn new(file: &'a str, text: &str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Source { file, line_starts }
    }

    /// 1-based line of a byte offset.
    pub fn line(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&s| s <= offset).max(1)
    }

    pub fn err(&self, span: &Range<usize>, field: &str, msg: impl Into<String>) -> ConfigError {
        ConfigError::at(self.file, self.line(span.start), field, msg)
    }
}

/// Result alias of the reader.
pub type R<T> = Result<T, ConfigError>;

/// A TOML table being read.
pub struct Tbl<'s, 'n> {
    pub src: &'s Source<'s>,
    pub path: String,
    pub span: Range<usize>,
    entries: &'n [(toml::Spanned<String>, Node)],
    used: Vec<bool>,
}

impl<'s, 'n> Tbl<'s, 'n> {
    pub fn new(src: &'s Source<'s>, node: &'n Node, path: String) -> R<Self> {
        match &node.value {
            Value::Table(entries) => {
                Ok(Tbl { src, path, span: node.span.clone(), entries, used: vec![false; entries.len()] })
            }
            v => Err(src.err(&node.span, &path, format!("expected a table, found {}", v.type_name()))),
        }
    }

    /// Field path of `key` inside this table.
    pub fn field(&self, key: &str) -> String {
        if self.path.is_empty() { key.to_owned() } else { format!("{}.{key}", self.path) }
    }

    /// Line of the table itself.
    pub fn line(&self) -> usize {
        self.src.line(self.span.start)
    }

    /// An error about the table as a whole.
    pub fn err(&self, msg: impl Into<String>) -> ConfigError {
        self.src.err(&self.span, &self.path, msg)
    }

    pub fn get(&mut self, key: &str) -> Option<&'n Node> {
        let i = self.entries.iter().position(|(k, _)| k.get_ref() == key)?;
        self.used[i] = true;
        Some(&self.entries[i].1)
    }

    /// An error about the value of `key` (or the table if `key` is absent).
    pub fn err_at(&self, key: &str, msg: impl Into<String>) -> ConfigError {
        let span = self.entries.iter().find(|(k, _)| k.get_ref() == key).map(|(_, n)| n.span.clone());
        self.src.err(&span.unwrap_or(self.span.clone()), &self.field(key), msg)
    }

    fn wrong(&self, key: &str, node: &Node, want: &str) -> ConfigError {
        self.src.err(&node.span, &self.field(key), format!("expected {want}, found {}", node.value.type_name()))
    }

    pub fn str(&mut self, key: &str) -> R<Option<String>> {
        match self.get(key) {
            None => Ok(None),
            Some(Node { value: Value::Str(s), .. }) => Ok(Some(s.clone())),
            Some(n) => Err(self.wrong(key, n, "a string")),
        }
    }

    pub fn bool(&mut self, key: &str) -> R<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(Node { value: Value::Bool(b), .. }) => Ok(Some(*b)),
            Some(n) => Err(self.wrong(key, n, "a boolean")),
        }
    }

    /// An integer in `min..=max`.
    pub fn int(&mut self, key: &str, min: i64, max: i64) -> R<Option<i64>> {
        match self.get(key) {
            None => Ok(None),
            Some(Node { value: Value::Int(i), span }) => {
                if (min..=max).contains(i) {
                    Ok(Some(*i))
                } else {
                    Err(self.src.err(span, &self.field(key), format!("{i} is out of range {min}..{max}")))
                }
            }
            Some(n) => Err(self.wrong(key, n, "an integer")),
        }
    }

    pub fn u32(&mut self, key: &str, min: u32, max: u32) -> R<Option<u32>> {
        Ok(self.int(key, i64::from(min), i64::from(max))?.map(|v| v as u32))
    }

    /// Seconds, integer or fractional (keepalived `<TIMER>`), at most one day.
    pub fn secs(&mut self, key: &str) -> R<Option<Duration>> {
        let (v, span) = match self.get(key) {
            None => return Ok(None),
            Some(Node { value: Value::Int(i), span }) => (*i as f64, span),
            Some(Node { value: Value::Float(f), span }) => (*f, span),
            Some(n) => return Err(self.wrong(key, n, "a number of seconds")),
        };
        if !(0.0..=86400.0).contains(&v) {
            return Err(self.src.err(span, &self.field(key), format!("{v} seconds is out of range 0..86400")));
        }
        Ok(Some(Duration::from_secs_f64(v)))
    }

    pub fn ip(&mut self, key: &str) -> R<Option<IpAddr>> {
        match self.str(key)? {
            None => Ok(None),
            Some(s) => s.parse().map(Some).map_err(|_| self.err_at(key, format!("invalid IP address \"{s}\""))),
        }
    }

    /// An array (a missing key is an empty array).
    pub fn array(&mut self, key: &str) -> R<&'n [Node]> {
        match self.get(key) {
            None => Ok(&[]),
            Some(Node { value: Value::Array(a), .. }) => Ok(a),
            Some(n) => Err(self.wrong(key, n, "an array")),
        }
    }

    /// Array of strings.
    pub fn strings(&mut self, key: &str) -> R<Vec<String>> {
        let arr = self.array(key)?;
        let mut out = Vec::new();
        for (i, n) in arr.iter().enumerate() {
            match &n.value {
                Value::Str(s) => out.push(s.clone()),
                v => {
                    return Err(self.src.err(
                        &n.span,
                        &format!("{}[{i}]", self.field(key)),
                        format!("expected a string, found {}", v.type_name()),
                    ));
                }
            }
        }
        Ok(out)
    }

    /// Sub-table (None when absent).
    pub fn table(&mut self, key: &str) -> R<Option<Tbl<'s, 'n>>> {
        let field = self.field(key);
        match self.get(key) {
            None => Ok(None),
            Some(n) => Tbl::new(self.src, n, field).map(Some),
        }
    }

    /// Array of tables, each with its path `key[i]`.
    pub fn tables(&mut self, key: &str) -> R<Vec<Tbl<'s, 'n>>> {
        let field = self.field(key);
        let src = self.src;
        self.array(key)?.iter().enumerate().map(|(i, n)| Tbl::new(src, n, format!("{field}[{i}]"))).collect()
    }

    /// Entries of this table not read yet (for free-form maps).
    pub fn rest(&mut self) -> Vec<(String, &'n Node)> {
        let mut out = Vec::new();
        for (i, (k, n)) in self.entries.iter().enumerate() {
            if !self.used[i] {
                self.used[i] = true;
                out.push((k.get_ref().clone(), n));
            }
        }
        out
    }

    /// Fails on the first key that was never read.
    pub fn finish(self) -> R<()> {
        match self.entries.iter().zip(&self.used).find(|(_, u)| !**u) {
            Some(((k, _), _)) => Err(self.src.err(&k.span(), &self.field(k.get_ref()), "unknown field")),
            None => Ok(()),
        }
    }
}
