//! Choice rules: Boolean expressions (`And`, `Or`, `Not`) and data-test expressions
//! (`Variable` + exactly one comparison operator).
//!
//! Semantics (ASL specification and the AWS developer guide):
//! - a comparison whose operands are not both of the operator's type is false (no coercion;
//!   a timestamp string can still be matched by a String operator);
//! - string comparisons are character-by-character as Java's `String.compareTo` (UTF-16 code
//!   units), with no case folding or normalization;
//! - numbers compare as IEEE 754 binary64;
//! - timestamps are RFC 3339 with an uppercase `T` and an uppercase `Z` or a numeric offset;
//! - `StringMatches`: `*` matches zero or more characters, `\*` is a literal `*`, `\\` a
//!   literal backslash, any other backslash is rejected when the definition is parsed;
//! - a `Variable` (or an `...Path` operand) that matches nothing is a `States.Runtime`
//!   error, except for `IsPresent`, which is then simply false.

use super::context::{resolve, ContextObject};
use super::error::{join_field, FieldError, StateError};
use super::path::ReferencePath;
use chrono::{DateTime, FixedOffset};
use serde_json::{Map, Value};
use std::cmp::Ordering;

/// A choice rule (without its `Next`, which the Choice state keeps).
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    And(Vec<Rule>),
    Or(Vec<Rule>),
    Not(Box<Rule>),
    Test {
        variable: ReferencePath,
        op: Operator,
        operand: Operand,
    },
}

/// A comparison operator (the `...Path` variants share the operator, with a path operand).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    StringEquals,
    StringLessThan,
    StringGreaterThan,
    StringLessThanEquals,
    StringGreaterThanEquals,
    StringMatches,
    NumericEquals,
    NumericLessThan,
    NumericGreaterThan,
    NumericLessThanEquals,
    NumericGreaterThanEquals,
    BooleanEquals,
    TimestampEquals,
    TimestampLessThan,
    TimestampGreaterThan,
    TimestampLessThanEquals,
    TimestampGreaterThanEquals,
    IsNull,
    IsPresent,
    IsNumeric,
    IsString,
    IsBoolean,
    IsTimestamp,
}

/// What the operator's operand is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    String,
    Number,
    Boolean,
    Timestamp,
    Pattern,
    /// The `Is*` type tests; their operand is a boolean.
    TypeTest,
}

const OPERATORS: &[(&str, Operator, Kind)] = &[
    ("StringEquals", Operator::StringEquals, Kind::String),
    ("StringLessThan", Operator::StringLessThan, Kind::String),
    (
        "StringGreaterThan",
        Operator::StringGreaterThan,
        Kind::String,
    ),
    (
        "StringLessThanEquals",
        Operator::StringLessThanEquals,
        Kind::String,
    ),
    (
        "StringGreaterThanEquals",
        Operator::StringGreaterThanEquals,
        Kind::String,
    ),
    ("StringMatches", Operator::StringMatches, Kind::Pattern),
    ("NumericEquals", Operator::NumericEquals, Kind::Number),
    ("NumericLessThan", Operator::NumericLessThan, Kind::Number),
    (
        "NumericGreaterThan",
        Operator::NumericGreaterThan,
        Kind::Number,
    ),
    (
        "NumericLessThanEquals",
        Operator::NumericLessThanEquals,
        Kind::Number,
    ),
    (
        "NumericGreaterThanEquals",
        Operator::NumericGreaterThanEquals,
        Kind::Number,
    ),
    ("BooleanEquals", Operator::BooleanEquals, Kind::Boolean),
    (
        "TimestampEquals",
        Operator::TimestampEquals,
        Kind::Timestamp,
    ),
    (
        "TimestampLessThan",
        Operator::TimestampLessThan,
        Kind::Timestamp,
    ),
    (
        "TimestampGreaterThan",
        Operator::TimestampGreaterThan,
        Kind::Timestamp,
    ),
    (
        "TimestampLessThanEquals",
        Operator::TimestampLessThanEquals,
        Kind::Timestamp,
    ),
    (
        "TimestampGreaterThanEquals",
        Operator::TimestampGreaterThanEquals,
        Kind::Timestamp,
    ),
    ("IsNull", Operator::IsNull, Kind::TypeTest),
    ("IsPresent", Operator::IsPresent, Kind::TypeTest),
    ("IsNumeric", Operator::IsNumeric, Kind::TypeTest),
    ("IsString", Operator::IsString, Kind::TypeTest),
    ("IsBoolean", Operator::IsBoolean, Kind::TypeTest),
    ("IsTimestamp", Operator::IsTimestamp, Kind::TypeTest),
];

/// One token of a `StringMatches` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatternToken {
    Char(char),
    Star,
}

/// The right-hand side of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// A literal of the operator's type (validated when parsed).
    Value(Value),
    /// A `...Path` operand, applied to the state's effective input.
    Path(ReferencePath),
    /// A `StringMatches` pattern.
    Pattern(Vec<PatternToken>),
}

/// Parses one Choice rule. `top_level` rules must have `Next` (returned); nested ones must not.
/// Field names in errors are relative to the rule (e.g. `And[0].Variable`).
pub fn parse_rule(value: &Value, top_level: bool) -> Result<(Rule, Option<String>), FieldError> {
    let Value::Object(map) = value else {
        return Err(FieldError::invalid(
            "",
            "a choice rule must be a JSON object",
        ));
    };
    let next =
        match map.get("Next") {
            Some(Value::String(next)) if top_level => Some(next.clone()),
            Some(_) if top_level => {
                return Err(FieldError::invalid(
                    "Next",
                    "must be a string naming a state",
                ))
            }
            Some(_) => return Err(FieldError::invalid(
                "Next",
                "only top-level choice rules may have 'Next' (rules inside And/Or/Not must not)",
            )),
            None if top_level => {
                return Err(FieldError::invalid(
                    "Next",
                    "a top-level choice rule must have 'Next'",
                ))
            }
            None => None,
        };
    if map.contains_key("Condition") {
        return Err(FieldError::unsupported(
            "Condition",
            "JSONata 'Condition' rules are not supported; use JSONPath rules (Variable + comparison operator, And, Or, Not)",
        ));
    }
    let boolean_ops: Vec<&str> = ["And", "Or", "Not"]
        .into_iter()
        .filter(|k| map.contains_key(*k))
        .collect();
    let rule = if let Some(&op) = boolean_ops.first() {
        if boolean_ops.len() > 1 || map.contains_key("Variable") {
            return Err(FieldError::invalid(
                op,
                "a choice rule must have exactly one of And, Or, Not, or Variable with a comparison operator",
            ));
        }
        check_fields(map, &[op, "Next", "Comment"])?;
        parse_boolean(op, &map[op])?
    } else {
        parse_data_test(map)?
    };
    Ok((rule, next))
}

fn check_fields(map: &Map<String, Value>, allowed: &[&str]) -> Result<(), FieldError> {
    for key in map.keys() {
        if !allowed.contains(&key.as_str()) {
            return Err(FieldError::invalid(
                key.as_str(),
                format!(
                    "unknown field in choice rule (allowed here: {})",
                    allowed.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

fn parse_boolean(op: &str, value: &Value) -> Result<Rule, FieldError> {
    match op {
        "Not" => {
            let (rule, _) = parse_rule(value, false).map_err(|e| e.within(op))?;
            Ok(Rule::Not(Box::new(rule)))
        }
        _ => {
            let Value::Array(items) = value else {
                return Err(FieldError::invalid(
                    op,
                    "must be a non-empty array of choice rules",
                ));
            };
            if items.is_empty() {
                return Err(FieldError::invalid(
                    op,
                    "must be a non-empty array of choice rules",
                ));
            }
            let mut rules = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let (rule, _) =
                    parse_rule(item, false).map_err(|e| e.within(&format!("{op}[{i}]")))?;
                rules.push(rule);
            }
            Ok(if op == "And" {
                Rule::And(rules)
            } else {
                Rule::Or(rules)
            })
        }
    }
}

fn parse_data_test(map: &Map<String, Value>) -> Result<Rule, FieldError> {
    let variable = match map.get("Variable") {
        Some(Value::String(text)) => {
            ReferencePath::parse(text).map_err(|m| FieldError::unsupported("Variable", m))?
        }
        Some(_) => return Err(FieldError::invalid("Variable", "must be a string path")),
        None => {
            return Err(FieldError::invalid(
                "Variable",
                "a choice rule must have And, Or, Not, or Variable with a comparison operator",
            ))
        }
    };
    let mut found = Vec::new();
    for key in map.keys() {
        if matches!(key.as_str(), "Variable" | "Next" | "Comment") {
            continue;
        }
        let (base, is_path) = match key.strip_suffix("Path") {
            Some(base) => (base, true),
            None => (key.as_str(), false),
        };
        match OPERATORS.iter().find(|(name, _, _)| *name == base) {
            Some(&(_, op, kind)) if !is_path || !matches!(kind, Kind::TypeTest | Kind::Pattern) => {
                found.push((key.as_str(), op, kind, is_path))
            }
            _ => {
                let names: Vec<&str> = OPERATORS.iter().map(|(n, _, _)| *n).collect();
                return Err(FieldError::invalid(
                    key.as_str(),
                    format!(
                        "unknown choice rule field; comparison operators are {} (and the ...Path variants of the String/Numeric/Boolean/Timestamp ones)",
                        names.join(", ")
                    ),
                ));
            }
        }
    }
    let (key, op, kind, is_path) = match found.as_slice() {
        [one] => *one,
        [] => {
            return Err(FieldError::invalid(
                "Variable",
                "the rule has no comparison operator",
            ))
        }
        [first, ..] => {
            return Err(FieldError::invalid(
                first.0,
                "a choice rule must have exactly one comparison operator",
            ))
        }
    };
    let value = &map[key];
    let operand = if is_path {
        let Value::String(text) = value else {
            return Err(FieldError::invalid(key, "must be a string path"));
        };
        Operand::Path(ReferencePath::parse(text).map_err(|m| FieldError::unsupported(key, m))?)
    } else {
        parse_literal(key, kind, value)?
    };
    Ok(Rule::Test {
        variable,
        op,
        operand,
    })
}

fn parse_literal(key: &str, kind: Kind, value: &Value) -> Result<Operand, FieldError> {
    let ok = match kind {
        Kind::String => value.is_string(),
        Kind::Number => value.is_number(),
        Kind::Boolean | Kind::TypeTest => value.is_boolean(),
        Kind::Timestamp => value.as_str().is_some_and(|s| parse_timestamp(s).is_some()),
        Kind::Pattern => {
            let Value::String(pattern) = value else {
                return Err(FieldError::invalid(key, "must be a string pattern"));
            };
            return parse_pattern(pattern)
                .map(Operand::Pattern)
                .map_err(|m| FieldError::invalid(key, m));
        }
    };
    if !ok {
        let want = match kind {
            Kind::String => "a string",
            Kind::Number => "a number",
            Kind::Boolean | Kind::TypeTest => "a boolean",
            Kind::Timestamp => "an RFC 3339 timestamp string such as 2016-03-14T01:59:00Z",
            Kind::Pattern => unreachable!(),
        };
        return Err(FieldError::invalid(
            key,
            format!("must be {want}, got {value}"),
        ));
    }
    Ok(Operand::Value(value.clone()))
}

fn parse_pattern(pattern: &str) -> Result<Vec<PatternToken>, String> {
    let mut tokens = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '*' => tokens.push(PatternToken::Star),
            '\\' => match chars.next() {
                Some(escaped @ ('*' | '\\')) => tokens.push(PatternToken::Char(escaped)),
                Some(other) => {
                    return Err(format!(
                        "open escape '\\{other}' in StringMatches pattern: only \\* and \\\\ are escapes"
                    ))
                }
                None => return Err("StringMatches pattern ends with an open escape '\\'".into()),
            },
            other => tokens.push(PatternToken::Char(other)),
        }
    }
    Ok(tokens)
}

/// Parses an ASL timestamp: RFC 3339 with an uppercase `T` separator and an uppercase `Z`
/// when there is no numeric offset.
pub fn parse_timestamp(text: &str) -> Option<DateTime<FixedOffset>> {
    if text.as_bytes().get(10) != Some(&b'T') || text.ends_with('z') {
        return None;
    }
    DateTime::parse_from_rfc3339(text).ok()
}

fn matches_pattern(text: &[char], pattern: &[PatternToken]) -> bool {
    // Iterative wildcard matching with backtracking to the last star.
    let (mut t, mut p) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(PatternToken::Char(c)) if *c == text[t] => {
                t += 1;
                p += 1;
            }
            Some(PatternToken::Star) => {
                star = Some((p, t));
                p += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|tok| *tok == PatternToken::Star)
}

/// Java `String.compareTo` order: lexicographic over UTF-16 code units.
fn compare_strings(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

fn ordering_holds(op: Operator, ordering: Ordering) -> bool {
    use Operator::*;
    match op {
        StringEquals | NumericEquals | TimestampEquals => ordering == Ordering::Equal,
        StringLessThan | NumericLessThan | TimestampLessThan => ordering == Ordering::Less,
        StringGreaterThan | NumericGreaterThan | TimestampGreaterThan => {
            ordering == Ordering::Greater
        }
        StringLessThanEquals | NumericLessThanEquals | TimestampLessThanEquals => {
            ordering != Ordering::Greater
        }
        StringGreaterThanEquals | NumericGreaterThanEquals | TimestampGreaterThanEquals => {
            ordering != Ordering::Less
        }
        _ => false,
    }
}

impl Rule {
    /// Evaluates the rule against the Choice state's effective input.
    pub(super) fn evaluate(&self, input: &Value, ctx: &ContextObject) -> Result<bool, StateError> {
        match self {
            Rule::And(rules) => {
                for rule in rules {
                    if !rule.evaluate(input, ctx)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            Rule::Or(rules) => {
                for rule in rules {
                    if rule.evaluate(input, ctx)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Rule::Not(rule) => Ok(!rule.evaluate(input, ctx)?),
            Rule::Test {
                variable,
                op,
                operand,
            } => {
                let value = resolve(variable, input, ctx);
                if *op == Operator::IsPresent {
                    let expected = matches!(operand, Operand::Value(Value::Bool(true)));
                    return Ok(value.is_some() == expected);
                }
                let Some(value) = value else {
                    return Err(StateError::runtime(format!(
                        "Invalid path '{variable}': The choice state's condition path references an invalid value."
                    )));
                };
                let other = match operand {
                    Operand::Value(v) => v.clone(),
                    Operand::Path(path) => resolve(path, input, ctx).ok_or_else(|| {
                        StateError::runtime(format!(
                            "Invalid path '{path}': The choice state's condition path references an invalid value."
                        ))
                    })?,
                    Operand::Pattern(pattern) => {
                        return Ok(match &value {
                            Value::String(s) => matches_pattern(&s.chars().collect::<Vec<_>>(), pattern),
                            _ => false,
                        })
                    }
                };
                Ok(compare(*op, &value, &other))
            }
        }
    }
}

fn compare(op: Operator, value: &Value, other: &Value) -> bool {
    use Operator::*;
    match op {
        StringEquals
        | StringLessThan
        | StringGreaterThan
        | StringLessThanEquals
        | StringGreaterThanEquals => match (value, other) {
            (Value::String(a), Value::String(b)) => ordering_holds(op, compare_strings(a, b)),
            _ => false,
        },
        NumericEquals
        | NumericLessThan
        | NumericGreaterThan
        | NumericLessThanEquals
        | NumericGreaterThanEquals => match (value.as_f64(), other.as_f64()) {
            (Some(a), Some(b)) if value.is_number() && other.is_number() => {
                a.partial_cmp(&b).is_some_and(|o| ordering_holds(op, o))
            }
            _ => false,
        },
        BooleanEquals => matches!((value, other), (Value::Bool(a), Value::Bool(b)) if a == b),
        TimestampEquals
        | TimestampLessThan
        | TimestampGreaterThan
        | TimestampLessThanEquals
        | TimestampGreaterThanEquals => {
            match (
                value.as_str().and_then(parse_timestamp),
                other.as_str().and_then(parse_timestamp),
            ) {
                (Some(a), Some(b)) => ordering_holds(op, a.cmp(&b)),
                _ => false,
            }
        }
        IsNull | IsNumeric | IsString | IsBoolean | IsTimestamp => {
            let is = match op {
                IsNull => value.is_null(),
                IsNumeric => value.is_number(),
                IsString => value.is_string(),
                IsBoolean => value.is_boolean(),
                _ => value.as_str().and_then(parse_timestamp).is_some(),
            };
            other.as_bool() == Some(is)
        }
        StringMatches | IsPresent => false,
    }
}

/// Prefixes rule-relative field names with `Choices[i]`.
pub(super) fn choice_field(index: usize, field: &str) -> String {
    join_field(&format!("Choices[{index}]"), field)
}

#[cfg(test)]
mod tests {
    use super::super::context::ExecutionContext;
    use super::*;
    use serde_json::json;

    fn eval(rule: Value, input: Value) -> Result<bool, StateError> {
        let exec = ExecutionContext::new("arn:aws:states:us-east-1:1:stateMachine:m", "e");
        let ctx = ContextObject {
            execution: &exec,
            execution_input: &input,
            state_name: "S",
            entered_time: "2024-01-01T00:00:00.000Z",
            retry_count: 0,
            map_item: None,
        };
        let (rule, _) = parse_rule(&rule, false).expect("rule parses");
        rule.evaluate(&input, &ctx)
    }

    fn t(rule: Value, input: Value) -> bool {
        eval(rule, input).unwrap()
    }

    #[test]
    fn string_operators() {
        let input = json!({"s": "b", "other": "c", "n": 1});
        assert!(t(
            json!({"Variable": "$.s", "StringEquals": "b"}),
            input.clone()
        ));
        assert!(!t(
            json!({"Variable": "$.s", "StringEquals": "B"}),
            input.clone()
        ));
        assert!(t(
            json!({"Variable": "$.s", "StringLessThan": "c"}),
            input.clone()
        ));
        assert!(!t(
            json!({"Variable": "$.s", "StringLessThan": "b"}),
            input.clone()
        ));
        assert!(t(
            json!({"Variable": "$.s", "StringGreaterThan": "a"}),
            input.clone()
        ));
        assert!(t(
            json!({"Variable": "$.s", "StringLessThanEquals": "b"}),
            input.clone()
        ));
        assert!(t(
            json!({"Variable": "$.s", "StringGreaterThanEquals": "b"}),
            input.clone()
        ));
        assert!(!t(
            json!({"Variable": "$.s", "StringGreaterThanEquals": "ba"}),
            input.clone()
        ));
        assert!(t(
            json!({"Variable": "$.s", "StringLessThanPath": "$.other"}),
            input.clone()
        ));
        assert!(t(
            json!({"Variable": "$.other", "StringEqualsPath": "$.other"}),
            input.clone()
        ));
        assert!(t(
            json!({"Variable": "$.other", "StringGreaterThanPath": "$.s"}),
            input.clone()
        ));
        assert!(t(
            json!({"Variable": "$.s", "StringLessThanEqualsPath": "$.s"}),
            input.clone()
        ));
        assert!(t(
            json!({"Variable": "$.s", "StringGreaterThanEqualsPath": "$.s"}),
            input.clone()
        ));
        // Type mismatch is false, not an error (and no coercion).
        assert!(!t(
            json!({"Variable": "$.n", "StringEquals": "1"}),
            input.clone()
        ));
        assert!(!t(
            json!({"Variable": "$.s", "StringEqualsPath": "$.n"}),
            input
        ));
        // Java compareTo order: U+FFFD (BMP) sorts after U+1F600 (a surrogate pair, 0xD83D...).
        assert!(t(
            json!({"Variable": "$.s", "StringGreaterThan": "\u{1F600}"}),
            json!({"s": "\u{FFFD}"})
        ));
    }

    #[test]
    fn string_matches_wildcards_and_escapes() {
        let m = |pattern: &str, s: &str| {
            t(
                json!({"Variable": "$.s", "StringMatches": pattern}),
                json!({"s": s}),
            )
        };
        assert!(m("foo*.log", "foo23.log"));
        assert!(m("*.log", "zebra.log"));
        assert!(m("foo*.*", "foobar.zebra"));
        assert!(!m("foo*.log", "foo23.txt"));
        assert!(m("*", ""));
        assert!(m("a*b*c", "aXbYbZc"));
        assert!(!m("a*b*c", "aXbYbZ"));
        assert!(m("log-\\*", "log-*"));
        assert!(!m("log-\\*", "log-1"));
        assert!(m("C:\\\\*", "C:\\dir"));
        assert!(!m("exact", "exactly"));
        assert!(!t(
            json!({"Variable": "$.n", "StringMatches": "*"}),
            json!({"n": 1})
        ));
        assert!(parse_rule(&json!({"Variable": "$.s", "StringMatches": "a\\b"}), false).is_err());
        assert!(parse_rule(
            &json!({"Variable": "$.s", "StringMatchesPath": "$.p"}),
            false
        )
        .is_err());
    }

    #[test]
    fn numeric_operators() {
        let input = json!({"v": 22, "f": 2.5, "limit": 30, "s": "22"});
        assert!(t(
            json!({"Variable": "$.v", "NumericEquals": 22}),
            input.clone()
        ));
        assert!(t(
            json!({"Variable": "$.v", "NumericEquals": 22.0}),
            input.clone()
        ));
        assert!(t(
            json!({"Variable": "$.v", "NumericLessThan": 30}),
            input.clone()
        ));
        assert!(!t(
            json!({"Variable": "$.v", "NumericLessThan": 22}),
            input.clone()
        ));
        assert!(t(
            json!({"Variable": "$.v", "NumericGreaterThan": 2.5}),
            input.clone()
        ));
        assert!(t(
            json!({"Variable": "$.v", "NumericLessThanEquals": 22}),
            input.clone()
        ));
        assert!(t(
            json!({"Variable": "$.v", "NumericGreaterThanEquals": 22}),
            input.clone()
        ));
        assert!(t(
            json!({"Variable": "$.f", "NumericLessThanPath": "$.v"}),
            input.clone()
        ));
        assert!(t(
            json!({"Variable": "$.v", "NumericLessThanPath": "$.limit"}),
            input.clone()
        ));
        assert!(t(
            json!({"Variable": "$.v", "NumericEqualsPath": "$.v"}),
            input.clone()
        ));
        assert!(t(
            json!({"Variable": "$.limit", "NumericGreaterThanPath": "$.v"}),
            input.clone()
        ));
        assert!(t(
            json!({"Variable": "$.v", "NumericLessThanEqualsPath": "$.limit"}),
            input.clone()
        ));
        assert!(t(
            json!({"Variable": "$.v", "NumericGreaterThanEqualsPath": "$.f"}),
            input.clone()
        ));
        assert!(!t(
            json!({"Variable": "$.s", "NumericEquals": 22}),
            input.clone()
        ));
        assert!(!t(
            json!({"Variable": "$.v", "NumericEqualsPath": "$.s"}),
            input
        ));
        assert!(parse_rule(&json!({"Variable": "$.v", "NumericEquals": "22"}), false).is_err());
    }

    #[test]
    fn boolean_operators() {
        let input = json!({"b": true, "c": false, "s": "true"});
        assert!(t(
            json!({"Variable": "$.b", "BooleanEquals": true}),
            input.clone()
        ));
        assert!(!t(
            json!({"Variable": "$.c", "BooleanEquals": true}),
            input.clone()
        ));
        assert!(!t(
            json!({"Variable": "$.s", "BooleanEquals": true}),
            input.clone()
        ));
        assert!(t(
            json!({"Variable": "$.b", "BooleanEqualsPath": "$.b"}),
            input.clone()
        ));
        assert!(!t(
            json!({"Variable": "$.b", "BooleanEqualsPath": "$.c"}),
            input
        ));
        assert!(parse_rule(&json!({"Variable": "$.b", "BooleanEquals": "true"}), false).is_err());
    }

    #[test]
    fn timestamp_operators() {
        let input = json!({"t": "2001-01-01T12:00:00Z", "later": "2001-01-01T13:00:00+01:00", "bad": "2001-01-01 12:00:00Z"});
        assert!(t(
            json!({"Variable": "$.t", "TimestampEquals": "2001-01-01T12:00:00Z"}),
            input.clone()
        ));
        assert!(t(
            json!({"Variable": "$.t", "TimestampEquals": "2001-01-01T12:00:00.000Z"}),
            input.clone()
        ));
        assert!(t(
            json!({"Variable": "$.t", "TimestampLessThan": "2001-01-01T12:00:01Z"}),
            input.clone()
        ));
        assert!(t(
            json!({"Variable": "$.t", "TimestampGreaterThan": "2000-12-31T23:59:59Z"}),
            input.clone()
        ));
        assert!(t(
            json!({"Variable": "$.t", "TimestampLessThanEquals": "2001-01-01T12:00:00Z"}),
            input.clone()
        ));
        assert!(t(
            json!({"Variable": "$.t", "TimestampGreaterThanEquals": "2001-01-01T12:00:00Z"}),
            input.clone()
        ));
        // 13:00+01:00 is 12:00Z.
        assert!(t(
            json!({"Variable": "$.t", "TimestampEqualsPath": "$.later"}),
            input.clone()
        ));
        assert!(!t(
            json!({"Variable": "$.t", "TimestampLessThanPath": "$.later"}),
            input.clone()
        ));
        assert!(t(
            json!({"Variable": "$.t", "TimestampLessThanEqualsPath": "$.later"}),
            input.clone()
        ));
        assert!(t(
            json!({"Variable": "$.t", "TimestampGreaterThanEqualsPath": "$.later"}),
            input.clone()
        ));
        assert!(!t(
            json!({"Variable": "$.t", "TimestampGreaterThanPath": "$.later"}),
            input.clone()
        ));
        // Not a valid ASL timestamp (space separator): false, not an error.
        assert!(!t(
            json!({"Variable": "$.bad", "TimestampEquals": "2001-01-01T12:00:00Z"}),
            input.clone()
        ));
        // A timestamp can still be compared as a string.
        assert!(t(
            json!({"Variable": "$.t", "StringEquals": "2001-01-01T12:00:00Z"}),
            input
        ));
        assert!(parse_rule(
            &json!({"Variable": "$.t", "TimestampEquals": "yesterday"}),
            false
        )
        .is_err());
        assert!(parse_rule(
            &json!({"Variable": "$.t", "TimestampEquals": "2001-01-01T12:00:00z"}),
            false
        )
        .is_err());
    }

    #[test]
    fn type_test_operators() {
        let input =
            json!({"n": null, "i": 1, "s": "x", "b": false, "ts": "2016-03-14T01:59:00Z", "o": {}});
        let is =
            |op: &str, var: &str, want: bool| t(json!({"Variable": var, op: want}), input.clone());
        assert!(is("IsNull", "$.n", true));
        assert!(is("IsNull", "$.i", false));
        assert!(is("IsNumeric", "$.i", true));
        assert!(!is("IsNumeric", "$.s", true));
        assert!(is("IsString", "$.s", true));
        assert!(is("IsString", "$.o", false));
        assert!(is("IsBoolean", "$.b", true));
        assert!(is("IsTimestamp", "$.ts", true));
        assert!(is("IsTimestamp", "$.s", false));
        assert!(is("IsPresent", "$.n", true));
        assert!(is("IsPresent", "$.missing", false));
        assert!(!is("IsPresent", "$.missing", true));
        // Other operators on a missing variable are a runtime error.
        let err = eval(
            json!({"Variable": "$.missing", "IsNull": true}),
            input.clone(),
        )
        .unwrap_err();
        assert_eq!(err.error, "States.Runtime");
        let err = eval(
            json!({"Variable": "$.i", "NumericEqualsPath": "$.missing"}),
            input,
        )
        .unwrap_err();
        assert_eq!(err.error, "States.Runtime");
    }

    #[test]
    fn and_or_not() {
        let input = json!({"type": "Private", "value": 22});
        let twenties = json!({"And": [
            {"Variable": "$.value", "IsPresent": true},
            {"Variable": "$.value", "IsNumeric": true},
            {"Variable": "$.value", "NumericGreaterThanEquals": 20},
            {"Variable": "$.value", "NumericLessThan": 30}]});
        assert!(t(twenties, input.clone()));
        assert!(!t(
            json!({"Not": {"Variable": "$.type", "StringEquals": "Private"}}),
            input.clone()
        ));
        assert!(t(
            json!({"Or": [{"Variable": "$.value", "NumericEquals": 0}, {"Variable": "$.type", "StringMatches": "Priv*"}]}),
            input.clone()
        ));
        assert!(!t(
            json!({"Or": [{"Variable": "$.value", "NumericEquals": 0}, {"Not": {"Variable": "$.value", "IsNumeric": true}}]}),
            input.clone()
        ));
        // Short-circuit: the second rule (a missing variable) is never evaluated.
        assert!(!t(
            json!({"And": [{"Variable": "$.value", "NumericEquals": 0}, {"Variable": "$.nope", "NumericEquals": 0}]}),
            input.clone()
        ));
        assert!(t(
            json!({"Or": [{"Variable": "$.value", "NumericEquals": 22}, {"Variable": "$.nope", "NumericEquals": 0}]}),
            input
        ));
    }

    #[test]
    fn rule_shape_errors_name_the_field() {
        let e = parse_rule(&json!({"And": []}), false).unwrap_err();
        assert_eq!(e.field, "And");
        let e = parse_rule(
            &json!({"And": [{"Variable": "$.a", "StringEquals": "x", "Next": "B"}]}),
            false,
        )
        .unwrap_err();
        assert_eq!(e.field, "And[0].Next");
        let e = parse_rule(&json!({"Variable": "$.a", "StringEquals": "x"}), true).unwrap_err();
        assert_eq!(e.field, "Next");
        let e = parse_rule(
            &json!({"Variable": "$.a", "StringEquals": "x", "NumericEquals": 1}),
            false,
        )
        .unwrap_err();
        assert!(e.message.contains("exactly one"));
        let e = parse_rule(&json!({"Variable": "$.a", "StringEqual": "x"}), false).unwrap_err();
        assert_eq!(e.field, "StringEqual");
        let e = parse_rule(&json!({"Condition": "{% true %}", "Next": "X"}), true).unwrap_err();
        assert!(e.unsupported);
        let e =
            parse_rule(&json!({"Not": {"Variable": "$..a", "IsNull": true}}), false).unwrap_err();
        assert_eq!(e.field, "Not.Variable");
        assert!(e.unsupported);
    }
}
