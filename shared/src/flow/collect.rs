//! Deserialize a flow and report *every* problem in one pass.
//!
//! serde stops at the first error. To go on, the offending part of the (already parsed) JSON
//! value is repaired and deserialization is tried again: an unknown field or a value of the
//! wrong type is removed (the field's default takes over), and a required field that is missing
//! (or was removed) gets a stand-in value of whatever type fits. Each repaired path is reported
//! once, with serde's message rewritten to name the expected form and an example; semantic
//! checks on the repaired flow skip the repaired paths, so a stand-in never causes a message.

use super::FieldError;
use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_path_to_error::Segment;

/// One step of a path into a JSON value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// `source.incremental.lookback`, `tasks[2].map.from`.
pub fn display(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

fn segments(p: &serde_path_to_error::Path) -> Option<Vec<Seg>> {
    p.iter()
        .map(|s| match s {
            Segment::Seq { index } => Some(Seg::Index(*index)),
            Segment::Map { key } => Some(Seg::Key(key.clone())),
            Segment::Enum { variant } => Some(Seg::Key(variant.clone())),
            Segment::Unknown => None,
        })
        .collect()
}

fn get<'a>(v: &'a Value, path: &[Seg]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, s| match s {
        Seg::Key(k) => v.get(k.as_str()),
        Seg::Index(i) => v.get(*i),
    })
}

fn get_mut<'a>(v: &'a mut Value, path: &[Seg]) -> Option<&'a mut Value> {
    path.iter().try_fold(v, |v, s| match s {
        Seg::Key(k) => v.get_mut(k.as_str()),
        Seg::Index(i) => v.get_mut(*i),
    })
}

/// Remove the member at `path` from its object; false when it is not an object member.
fn remove(v: &mut Value, path: &[Seg]) -> bool {
    let Some((Seg::Key(k), parent)) = path.split_last() else {
        return false;
    };
    match get_mut(v, parent) {
        Some(Value::Object(m)) => m.shift_remove(k.as_str()).is_some(),
        _ => false,
    }
}

/// Put `new` at `path` (inserting an object member, or replacing a list element).
fn set(v: &mut Value, path: &[Seg], new: Value) -> bool {
    let Some((last, parent)) = path.split_last() else {
        return false;
    };
    match (get_mut(v, parent), last) {
        (Some(Value::Object(m)), Seg::Key(k)) => {
            m.insert(k.clone(), new);
            true
        }
        (Some(Value::Array(a)), Seg::Index(i)) if *i < a.len() => {
            a[*i] = new;
            true
        }
        _ => false,
    }
}

/// Stand-ins tried, in order, for a value that must be there.
fn candidates(path: &[Seg]) -> Vec<Value> {
    let mut c = vec![];
    if matches!(path, [Seg::Key(t), Seg::Index(_)] if t == "tasks") {
        c.push(serde_json::json!({ "map_all": {} }));
    }
    c.extend([
        Value::String("x".into()),
        Value::from(1),
        Value::Bool(true),
        Value::Object(Default::default()),
        Value::Array(vec![]),
        Value::Null,
    ]);
    c
}

/// The field serde says is missing (`missing field `name``).
fn missing_field(msg: &str) -> Option<String> {
    let rest = msg.strip_prefix("missing field `")?;
    Some(rest.split('`').next()?.to_string())
}

/// What [`deserialize_all`] found.
pub struct Collected<T> {
    /// The value, when it could be built (possibly with repaired parts).
    pub value: Option<T>,
    pub errors: Vec<FieldError>,
    /// Paths that were removed or stood in for: semantic checks under them are moot.
    pub repaired: Vec<String>,
}

impl<T> Collected<T> {
    /// Whether a semantic error at `path` is about a part that was repaired.
    pub fn is_repaired(&self, path: &str) -> bool {
        self.repaired.iter().any(|r| {
            path == r
                || path
                    .strip_prefix(r.as_str())
                    .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
        })
    }
}

/// Deserialize `v` as `T`, collecting every error. `explain(path, serde message, offending
/// value)` turns serde's message into one that says what to write.
pub fn deserialize_all<T: DeserializeOwned>(
    mut v: Value,
    explain: impl Fn(&str, &str, Option<&Value>) -> String,
) -> Collected<T> {
    let mut errors = vec![];
    let mut repaired: Vec<Vec<Seg>> = vec![];
    // A stand-in being tried: its path and the next candidate's index.
    let mut pending: Option<(Vec<Seg>, usize)> = None;
    let done = |errors, repaired: Vec<Vec<Seg>>, value| Collected {
        value,
        errors,
        repaired: repaired.iter().map(|p| display(p)).collect(),
    };
    for _ in 0..1000 {
        let err = match serde_path_to_error::deserialize::<_, T>(&v) {
            Ok(t) => return done(errors, repaired, Some(t)),
            Err(e) => e,
        };
        let msg = err.inner().to_string();
        let Some(mut path) = segments(err.path()) else {
            errors.push(FieldError::new(
                err.path().to_string(),
                explain(&err.path().to_string(), &msg, None),
            ));
            return done(errors, repaired, None);
        };
        let missing = missing_field(&msg);
        if let Some(f) = &missing {
            path.push(Seg::Key(f.clone()));
        }
        if let Some((p, next)) = &mut pending {
            if path.starts_with(p) {
                // The stand-in did not fit either: try the next one.
                let cs = candidates(p);
                match cs.get(*next) {
                    Some(c) => {
                        set(&mut v, p, c.clone());
                        *next += 1;
                        continue;
                    }
                    None => return done(errors, repaired, None),
                }
            }
            pending = None;
        }
        if !repaired.contains(&path) {
            let shown = display(&path);
            let offending = if missing.is_some() {
                None
            } else {
                get(&v, &path)
            };
            errors.push(FieldError::new(
                shown.clone(),
                explain(&shown, &msg, offending),
            ));
            repaired.push(path.clone());
        }
        let stand_in = missing.is_some() || matches!(path.last(), Some(Seg::Index(_)));
        if stand_in || !remove(&mut v, &path) {
            let cs = candidates(&path);
            if path.is_empty() || !set(&mut v, &path, cs[0].clone()) {
                return done(errors, repaired, None);
            }
            pending = Some((path, 1));
        }
    }
    done(errors, repaired, None)
}

/// Levenshtein distance, for "did you mean" hints.
pub fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// The closest of `options` to `word`, if it is close enough to be a typo.
pub fn closest<'a>(word: &str, options: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    options
        .into_iter()
        .map(|o| (distance(&word.to_lowercase(), &o.to_lowercase()), o))
        .filter(|(d, o)| *d <= 2.max(o.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, o)| o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        a: u32,
        #[serde(default)]
        b: bool,
    }

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        inner: Inner,
        #[serde(default)]
        list: Vec<u8>,
    }

    #[test]
    fn every_error_once_with_its_path() {
        let v = serde_json::json!({
            "name": 5, "inner": { "a": "big", "b": "yes", "c": 1 }, "list": [1, "x", 3], "extra": true
        });
        let c: Collected<Outer> = deserialize_all(v, |_, m, _| m.to_string());
        let paths: Vec<&str> = c.errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            ["name", "inner.a", "inner.b", "inner.c", "list[1]", "extra"]
        );
        assert!(c.value.is_some());
        assert!(c.is_repaired("inner.a") && c.is_repaired("list[1]"));
        assert!(!c.is_repaired("inner") && !c.is_repaired("names"));
    }

    #[test]
    fn missing_required_fields_are_reported_once() {
        let v = serde_json::json!({ "inner": {} });
        let c: Collected<Outer> = deserialize_all(v, |_, m, _| m.to_string());
        let paths: Vec<&str> = c.errors.iter().map(|e| e.path.as_str()).collect();
        // serde reports missing fields when a struct ends: the inner one first.
        assert_eq!(paths, ["inner.a", "name"], "{:?}", c.errors);
    }

    #[test]
    fn closest_match() {
        assert_eq!(
            closest("lookbak", ["lookback", "offset", "field"]),
            Some("lookback")
        );
        assert_eq!(closest("zzz", ["lookback", "offset"]), None);
    }
}
