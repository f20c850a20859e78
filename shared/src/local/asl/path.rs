//! Reference paths: the JSONPath subset ASL calls a "Reference Path", which can identify
//! only a single node: `$`, `$.a.b`, `$['a']`, `$["a"]`, `$.a[0]`, `$.store\.book` (escaped
//! dot), and the same rooted at the context object with `$$` (`$$.Execution.Id`).
//!
//! Not supported (rejected when the path is parsed): `..` deep scan, `*` wildcards, slices
//! (`[0:2]`), unions (`[0,1]`), filters (`[?(...)]`), `@`, negative indexes and functions
//! such as `length()`.

use serde_json::{Map, Value};
use std::fmt;

/// What a path is applied to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    /// `$`: the payload the field applies to (state input, task result, ...).
    Input,
    /// `$$`: the context object.
    Context,
}

/// One step of a reference path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// An object member (`.name` or `['name']`).
    Key(String),
    /// An array element (`[n]`).
    Index(usize),
}

/// A parsed reference path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferencePath {
    root: Root,
    segments: Vec<Segment>,
    text: String,
}

const UNSUPPORTED_HINT: &str =
    "only reference paths are supported ($, $.field, $['field'], $.array[0], $$.Context.Field)";

impl ReferencePath {
    /// `$`: the whole input.
    pub fn whole_input() -> ReferencePath {
        ReferencePath {
            root: Root::Input,
            segments: Vec::new(),
            text: "$".into(),
        }
    }

    /// Parses a reference path. The error message says what is wrong and what is supported.
    pub fn parse(text: &str) -> Result<ReferencePath, String> {
        let chars: Vec<char> = text.chars().collect();
        if chars.first() != Some(&'$') {
            return Err(format!(
                "'{text}' is not a path: a path must begin with '$'"
            ));
        }
        let (root, mut i) = if chars.get(1) == Some(&'$') {
            (Root::Context, 2)
        } else {
            (Root::Input, 1)
        };
        let mut segments = Vec::new();
        while i < chars.len() {
            match chars[i] {
                '.' => {
                    i += 1;
                    if chars.get(i) == Some(&'.') {
                        return Err(format!("'{text}': deep scan '..' is not supported; {UNSUPPORTED_HINT}"));
                    }
                    let mut name = String::new();
                    while i < chars.len() && chars[i] != '.' && chars[i] != '[' {
                        let c = chars[i];
                        if c == '\\' {
                            i += 1;
                            match chars.get(i) {
                                Some(&escaped) => name.push(escaped),
                                None => return Err(format!("'{text}': dangling escape '\\' at the end of the path")),
                            }
                            i += 1;
                            continue;
                        }
                        if matches!(c, '*' | '@' | ',' | ':' | '?' | '(' | ')' | ']') {
                            return Err(format!(
                                "'{text}': '{c}' is not supported in a reference path (escape it with '\\' if it is part of a field name); {UNSUPPORTED_HINT}"
                            ));
                        }
                        name.push(c);
                        i += 1;
                    }
                    if name.is_empty() {
                        return Err(format!("'{text}': empty field name after '.'"));
                    }
                    segments.push(Segment::Key(name));
                }
                '[' => {
                    i += 1;
                    match chars.get(i) {
                        Some(&quote) if quote == '\'' || quote == '"' => {
                            i += 1;
                            let mut name = String::new();
                            loop {
                                match chars.get(i) {
                                    None => return Err(format!("'{text}': unterminated quoted field name")),
                                    Some('\\') => {
                                        i += 1;
                                        match chars.get(i) {
                                            Some(&escaped) => name.push(escaped),
                                            None => return Err(format!("'{text}': unterminated quoted field name")),
                                        }
                                        i += 1;
                                    }
                                    Some(&c) if c == quote => {
                                        i += 1;
                                        break;
                                    }
                                    Some(&c) => {
                                        name.push(c);
                                        i += 1;
                                    }
                                }
                            }
                            if chars.get(i) != Some(&']') {
                                return Err(format!(
                                    "'{text}': expected ']' after a quoted field name (unions are not supported); {UNSUPPORTED_HINT}"
                                ));
                            }
                            i += 1;
                            segments.push(Segment::Key(name));
                        }
                        Some(c) if c.is_ascii_digit() => {
                            let start = i;
                            while i < chars.len() && chars[i].is_ascii_digit() {
                                i += 1;
                            }
                            let digits: String = chars[start..i].iter().collect();
                            if chars.get(i) != Some(&']') {
                                return Err(format!(
                                    "'{text}': only a single non-negative index is supported inside [] (no slices or unions); {UNSUPPORTED_HINT}"
                                ));
                            }
                            i += 1;
                            let index = digits
                                .parse::<usize>()
                                .map_err(|_| format!("'{text}': array index {digits} is too large"))?;
                            segments.push(Segment::Index(index));
                        }
                        _ => {
                            return Err(format!(
                                "'{text}': wildcards, slices, negative indexes and filters are not supported inside []; {UNSUPPORTED_HINT}"
                            ))
                        }
                    }
                }
                c => {
                    return Err(format!(
                        "'{text}': unexpected character '{c}' (expected '.' or '['); {UNSUPPORTED_HINT}"
                    ))
                }
            }
        }
        Ok(ReferencePath {
            root,
            segments,
            text: text.to_string(),
        })
    }

    /// `$` or `$$`.
    pub fn root(&self) -> Root {
        self.root
    }

    /// The steps after the root.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// True for `$` (the whole payload).
    pub fn is_whole(&self) -> bool {
        self.root == Root::Input && self.segments.is_empty()
    }

    /// Looks the path's segments up in `value` (the root kind is the caller's business).
    pub fn lookup<'a>(&self, value: &'a Value) -> Option<&'a Value> {
        lookup_segments(&self.segments, value)
    }

    /// Writes `new` at this path inside `target`, creating missing intermediate objects
    /// (ResultPath semantics). `$` replaces `target` entirely. Fails when an existing node
    /// on the way is not an object (or not an array for an index step), or an index is out
    /// of bounds.
    pub fn set(&self, target: &mut Value, new: Value) -> Result<(), String> {
        let Some((last, init)) = self.segments.split_last() else {
            *target = new;
            return Ok(());
        };
        let mut current = target;
        for segment in init {
            current = match (segment, current) {
                (Segment::Key(key), Value::Object(map)) => map
                    .entry(key.clone())
                    .or_insert_with(|| Value::Object(Map::new())),
                (Segment::Index(index), Value::Array(items)) => {
                    let len = items.len();
                    items.get_mut(*index).ok_or_else(|| {
                        format!("index {index} is out of bounds (array length {len})")
                    })?
                }
                (segment, other) => return Err(cannot_step(segment, other)),
            };
        }
        match (last, current) {
            (Segment::Key(key), Value::Object(map)) => {
                map.insert(key.clone(), new);
                Ok(())
            }
            (Segment::Index(index), Value::Array(items)) => {
                let len = items.len();
                let slot = items.get_mut(*index).ok_or_else(|| {
                    format!("index {index} is out of bounds (array length {len})")
                })?;
                *slot = new;
                Ok(())
            }
            (segment, other) => Err(cannot_step(segment, other)),
        }
    }
}

impl fmt::Display for ReferencePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Follows `segments` from `value`.
pub fn lookup_segments<'a>(segments: &[Segment], value: &'a Value) -> Option<&'a Value> {
    let mut current = value;
    for segment in segments {
        current = match (segment, current) {
            (Segment::Key(key), Value::Object(map)) => map.get(key)?,
            (Segment::Index(index), Value::Array(items)) => items.get(*index)?,
            _ => return None,
        };
    }
    Some(current)
}

/// The JSON type name of a value, for messages.
pub fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn cannot_step(segment: &Segment, value: &Value) -> String {
    match segment {
        Segment::Key(key) => format!(
            "cannot set field '{key}' inside a {} value",
            type_name(value)
        ),
        Segment::Index(index) => format!(
            "cannot set index [{index}] inside a {} value",
            type_name(value)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn keys(path: &str) -> Vec<Segment> {
        ReferencePath::parse(path).unwrap().segments().to_vec()
    }

    #[test]
    fn parses_the_spec_reference_path_examples() {
        let k = |s: &str| Segment::Key(s.to_string());
        assert_eq!(keys("$"), vec![]);
        assert_eq!(keys("$.store.book"), vec![k("store"), k("book")]);
        assert_eq!(keys("$.store\\.book"), vec![k("store.book")]);
        assert_eq!(keys("$.\\stor\\e.boo\\k"), vec![k("store"), k("book")]);
        assert_eq!(keys("$.foo.\\.bar"), vec![k("foo"), k(".bar")]);
        assert_eq!(
            keys("$.foo\\@bar.baz\\[\\[.\\?pretty"),
            vec![k("foo@bar"), k("baz[["), k("?pretty")]
        );
        // In a JSON definition "\uD800\uDF46" is decoded by the JSON parser before the path is.
        assert_eq!(keys("$.&Ж中.\u{10346}"), vec![k("&Ж中"), k("\u{10346}")]);
        assert_eq!(
            keys("$.ledgers.branch[0].pending.count"),
            vec![
                k("ledgers"),
                k("branch"),
                Segment::Index(0),
                k("pending"),
                k("count")
            ]
        );
        assert_eq!(
            keys("$.ledgers[0][22][315].foo"),
            vec![
                k("ledgers"),
                Segment::Index(0),
                Segment::Index(22),
                Segment::Index(315),
                k("foo")
            ]
        );
        assert_eq!(keys("$['store']['book']"), vec![k("store"), k("book")]);
        assert_eq!(
            keys("$['store'][0]['book']"),
            vec![k("store"), Segment::Index(0), k("book")]
        );
        assert_eq!(keys("$[\"a b\"]"), vec![k("a b")]);
        assert_eq!(keys("$.error-info"), vec![k("error-info")]);
        let ctx = ReferencePath::parse("$$.Execution.Id").unwrap();
        assert_eq!(ctx.root(), Root::Context);
        assert_eq!(ctx.segments(), &[k("Execution"), k("Id")]);
    }

    #[test]
    fn rejects_non_reference_paths() {
        for bad in [
            "a.b",
            "$..a",
            "$.a[*]",
            "$.*",
            "$.a[0:2]",
            "$.a[-1]",
            "$.a[0,1]",
            "$.a[?(@.x)]",
            "$.a.length()",
            "$.",
            "$x",
            "$['a'",
        ] {
            assert!(
                ReferencePath::parse(bad).is_err(),
                "{bad} should be rejected"
            );
        }
    }

    #[test]
    fn looks_up_the_spec_example_values() {
        let input = json!({"foo": 123, "bar": ["a", "b", "c"], "car": {"cdr": true}});
        let get = |p: &str| ReferencePath::parse(p).unwrap().lookup(&input).cloned();
        assert_eq!(get("$.foo"), Some(json!(123)));
        assert_eq!(get("$.bar"), Some(json!(["a", "b", "c"])));
        assert_eq!(get("$.car.cdr"), Some(json!(true)));
        assert_eq!(get("$.bar[1]"), Some(json!("b")));
        assert_eq!(get("$.bar[3]"), None);
        assert_eq!(get("$.missing"), None);
        assert_eq!(get("$.foo.x"), None);
        assert_eq!(get("$.car[0]"), None);
    }

    #[test]
    fn set_creates_intermediate_objects_and_overwrites() {
        let mut v = json!({"master": {"detail": [1, 2, 3]}});
        ReferencePath::parse("$.master.result.sum")
            .unwrap()
            .set(&mut v, json!(6))
            .unwrap();
        assert_eq!(
            v,
            json!({"master": {"detail": [1, 2, 3], "result": {"sum": 6}}})
        );
        ReferencePath::parse("$.master.detail")
            .unwrap()
            .set(&mut v, json!(6))
            .unwrap();
        assert_eq!(v, json!({"master": {"detail": 6, "result": {"sum": 6}}}));
        let mut arr = json!({"a": [1, 2]});
        ReferencePath::parse("$.a[1]")
            .unwrap()
            .set(&mut arr, json!("x"))
            .unwrap();
        assert_eq!(arr, json!({"a": [1, "x"]}));
        assert!(ReferencePath::parse("$.a[5]")
            .unwrap()
            .set(&mut arr, json!(1))
            .is_err());
        let mut s = json!("foo");
        assert!(ReferencePath::parse("$.x")
            .unwrap()
            .set(&mut s, json!(1))
            .is_err());
        ReferencePath::parse("$")
            .unwrap()
            .set(&mut s, json!(1))
            .unwrap();
        assert_eq!(s, json!(1));
    }
}
