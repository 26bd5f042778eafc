//! A TOML document as a tree that remembers where every key and value is, so
//! that errors can name the line (toml's `Spanned` on a home-made value type).

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;
use std::ops::Range;
use toml::Spanned;

/// A value and its byte range in the text.
#[derive(Debug, Clone)]
pub struct Node {
    pub span: Range<usize>,
    pub value: Value,
}

#[derive(Debug, Clone)]
pub enum Value {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Array(Vec<Node>),
    /// Keys in file order, each with its own span.
    Table(Vec<(Spanned<String>, Node)>),
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "a string",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Bool(_) => "a boolean",
            Value::Array(_) => "an array",
            Value::Table(_) => "a table",
        }
    }
}

struct Raw(Value);

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a TOML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Raw, E> {
        Ok(Raw(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Raw, E> {
        Ok(Raw(Value::Int(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Raw, E> {
        i64::try_from(v).map(|v| Raw(Value::Int(v))).map_err(|_| E::custom("integer out of range"))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Raw, E> {
        Ok(Raw(Value::Float(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Raw, E> {
        Ok(Raw(Value::Str(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Raw, E> {
        Ok(Raw(Value::Str(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
        let mut v = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Raw>>()? {
            v.push(node(item));
        }
        Ok(Raw(Value::Array(v)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
        let mut v = Vec::new();
        while let Some(k) = map.next_key::<Spanned<String>>()? {
            let val = map.next_value::<Spanned<Raw>>()?;
            v.push((k, node(val)));
        }
        Ok(Raw(Value::Table(v)))
    }
}

fn node(s: Spanned<Raw>) -> Node {
    let span = s.span();
    Node { span, value: s.into_inner().0 }
}

/// Parses TOML text; on a syntax error returns the byte offset and the message.
pub fn parse(text: &str) -> Result<Node, (usize, String)> {
    match toml::from_str::<Spanned<Raw>>(text) {
        Ok(s) => Ok(node(s)),
        Err(e) => Err((e.span().map(|s| s.start).unwrap_or(0), e.message().to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_point_at_values_and_keys() {
        let text = "a = 1\n[t]\nb = \"x\"\n[[s]]\nc = [1, 2]\n";
        let root = parse(text).unwrap();
        let Value::Table(top) = &root.value else { panic!("not a table") };
        let (k, t) = &top[1];
        assert_eq!(k.get_ref(), "t");
        let Value::Table(inner) = &t.value else { panic!() };
        assert_eq!(&text[inner[0].1.span.clone()], "\"x\"");
        assert_eq!(&text[inner[0].0.span()], "b");
        let Value::Array(s) = &top[2].1.value else { panic!() };
        let Value::Table(s0) = &s[0].value else { panic!() };
        assert_eq!(&text[s0[0].1.span.clone()], "[1, 2]");
    }

    #[test]
    fn syntax_error_has_offset() {
        let (off, msg) = parse("a = 1\nb = = 2\n").unwrap_err();
        assert!(off >= 6, "{off} {msg}");
    }
}
