//! Intrinsic functions (`States.Format(...)` and friends) for JSONPath states.
//!
//! Grammar (ASL specification, "Intrinsic Functions"): a function name made of
//! `A-Z a-z 0-9 . _`, then `(`, zero or more comma-separated arguments, `)`. An argument is
//! a string in apostrophes, a number, `true`/`false`, `null`, a Path (`$...` or `$$...`), or
//! a nested call (at most 10 nested calls). Inside a string literal the reserved characters
//! `' { } \` must be escaped with a backslash (`\'`, `\{`, `\}`, `\\`; in the JSON text of a
//! definition these are written `\\'`, `\\{`, `\\}`, `\\\\`); any other backslash is an
//! "open escape" and rejected.
//!
//! Supported: `States.Format`, `States.StringToJson`, `States.JsonToString`, `States.Array`,
//! `States.ArrayGetItem`, `States.ArrayLength`, `States.JsonMerge` (shallow), `States.MathAdd`,
//! `States.StringSplit`, `States.UUID`. Every other function is rejected when the definition
//! is parsed. Errors while evaluating are `States.Runtime` errors, as in AWS.

use super::context::{resolve, ContextObject};
use super::error::StateError;
use super::path::{type_name, ReferencePath};
use serde_json::{Number, Value};

/// The maximum number of nested intrinsic calls in one field (AWS limit).
const MAX_NESTING: usize = 10;

/// The functions this interpreter implements, for messages.
pub const SUPPORTED: &str = "States.Format, States.StringToJson, States.JsonToString, States.Array, States.ArrayGetItem, States.ArrayLength, States.JsonMerge, States.MathAdd, States.StringSplit, States.UUID";

/// Functions that exist in AWS but are not implemented here.
const KNOWN_UNSUPPORTED: &[&str] = &[
    "States.ArrayPartition",
    "States.ArrayContains",
    "States.ArrayRange",
    "States.ArrayUnique",
    "States.Base64Encode",
    "States.Base64Decode",
    "States.Hash",
    "States.MathRandom",
];

/// An implemented intrinsic function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Format,
    StringToJson,
    JsonToString,
    Array,
    ArrayGetItem,
    ArrayLength,
    JsonMerge,
    MathAdd,
    StringSplit,
    Uuid,
}

impl Func {
    fn from_name(name: &str) -> Option<Func> {
        Some(match name {
            "States.Format" => Func::Format,
            "States.StringToJson" => Func::StringToJson,
            "States.JsonToString" => Func::JsonToString,
            "States.Array" => Func::Array,
            "States.ArrayGetItem" => Func::ArrayGetItem,
            "States.ArrayLength" => Func::ArrayLength,
            "States.JsonMerge" => Func::JsonMerge,
            "States.MathAdd" => Func::MathAdd,
            "States.StringSplit" => Func::StringSplit,
            "States.UUID" => Func::Uuid,
            _ => return None,
        })
    }

    /// The function's name as written in a definition.
    pub fn name(self) -> &'static str {
        match self {
            Func::Format => "States.Format",
            Func::StringToJson => "States.StringToJson",
            Func::JsonToString => "States.JsonToString",
            Func::Array => "States.Array",
            Func::ArrayGetItem => "States.ArrayGetItem",
            Func::ArrayLength => "States.ArrayLength",
            Func::JsonMerge => "States.JsonMerge",
            Func::MathAdd => "States.MathAdd",
            Func::StringSplit => "States.StringSplit",
            Func::Uuid => "States.UUID",
        }
    }

    /// Allowed argument count (min, max).
    fn arity(self) -> (usize, usize) {
        match self {
            Func::Format => (1, usize::MAX),
            Func::StringToJson | Func::JsonToString | Func::ArrayLength => (1, 1),
            Func::Array => (0, usize::MAX),
            Func::ArrayGetItem | Func::MathAdd | Func::StringSplit => (2, 2),
            Func::JsonMerge => (3, 3),
            Func::Uuid => (0, 0),
        }
    }
}

/// A piece of a `States.Format` template.
#[derive(Debug, Clone, PartialEq)]
pub enum FormatPiece {
    Text(String),
    /// An unescaped `{}`.
    Hole,
}

/// A string literal argument: its value, and (for `States.Format`) its template pieces,
/// which keep escaped `\{\}` apart from placeholder `{}`.
#[derive(Debug, Clone, PartialEq)]
pub struct StringLiteral {
    pub value: String,
    pub pieces: Vec<FormatPiece>,
}

/// An argument of an intrinsic call.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    String(StringLiteral),
    Number(Number),
    Bool(bool),
    Null,
    Path(ReferencePath),
    Call(Box<Call>),
}

/// A parsed intrinsic call.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub func: Func,
    pub args: Vec<Arg>,
    /// The call as written, for messages.
    pub text: String,
}

/// Why an intrinsic could not be parsed. `unsupported` marks valid AWS constructs that this
/// interpreter does not implement.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    pub message: String,
    pub unsupported: bool,
}

/// Parses an intrinsic call (the whole string must be one call).
pub fn parse(text: &str) -> Result<Call, ParseError> {
    let mut parser = Parser {
        chars: text.chars().collect(),
        pos: 0,
        text,
    };
    parser.skip_ws();
    let call = parser.call(1)?;
    parser.skip_ws();
    if parser.pos != parser.chars.len() {
        return Err(parser.error(format!(
            "unexpected text after the closing ')' at position {}",
            parser.pos
        )));
    }
    Ok(call)
}

struct Parser<'a> {
    chars: Vec<char>,
    pos: usize,
    text: &'a str,
}

impl Parser<'_> {
    fn error(&self, message: impl Into<String>) -> ParseError {
        ParseError {
            message: format!("intrinsic function '{}': {}", self.text, message.into()),
            unsupported: false,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn identifier(&mut self) -> String {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_')
        {
            self.pos += 1;
        }
        self.chars[start..self.pos].iter().collect()
    }

    fn call(&mut self, depth: usize) -> Result<Call, ParseError> {
        if depth > MAX_NESTING {
            return Err(self.error(format!(
                "more than {MAX_NESTING} nested intrinsic functions"
            )));
        }
        let start = self.pos;
        let name = self.identifier();
        if name.is_empty() {
            return Err(self.error(format!(
                "expected an intrinsic function name at position {start} (a '.$' field value must be a path starting with '$' or an intrinsic function)"
            )));
        }
        self.skip_ws();
        if self.peek() != Some('(') {
            return Err(self.error(format!("expected '(' after '{name}'")));
        }
        let func = match Func::from_name(&name) {
            Some(func) => func,
            None if KNOWN_UNSUPPORTED.contains(&name.as_str()) => {
                return Err(ParseError {
                    message: format!(
                        "intrinsic function {name} is not supported by the local interpreter; supported: {SUPPORTED}"
                    ),
                    unsupported: true,
                })
            }
            None => {
                return Err(ParseError {
                    message: format!("unknown intrinsic function '{name}'; supported: {SUPPORTED}"),
                    unsupported: true,
                })
            }
        };
        self.pos += 1;
        let mut args = Vec::new();
        self.skip_ws();
        if self.peek() == Some(')') {
            self.pos += 1;
        } else {
            loop {
                args.push(self.arg(depth)?);
                self.skip_ws();
                match self.peek() {
                    Some(',') => self.pos += 1,
                    Some(')') => {
                        self.pos += 1;
                        break;
                    }
                    Some(c) => {
                        return Err(self.error(format!(
                            "expected ',' or ')' but found '{c}' at position {}",
                            self.pos
                        )))
                    }
                    None => return Err(self.error(format!("missing ')' to close {name}("))),
                }
            }
        }
        let text: String = self.chars[start..self.pos].iter().collect();
        let call = Call { func, args, text };
        check_call(&call).map_err(|m| self.error(m))?;
        Ok(call)
    }

    fn arg(&mut self, depth: usize) -> Result<Arg, ParseError> {
        self.skip_ws();
        match self.peek() {
            None => Err(self.error("unexpected end of text, expected an argument")),
            Some('\'') => self.string_literal().map(Arg::String),
            Some('$') => self.path().map(Arg::Path),
            Some(c) if c == '-' || c.is_ascii_digit() => self.number().map(Arg::Number),
            Some(c) if c.is_ascii_alphabetic() => {
                let start = self.pos;
                let word = self.identifier();
                self.skip_ws();
                if self.peek() == Some('(') {
                    self.pos = start;
                    return Ok(Arg::Call(Box::new(self.call(depth + 1)?)));
                }
                match word.as_str() {
                    "null" => Ok(Arg::Null),
                    "true" => Ok(Arg::Bool(true)),
                    "false" => Ok(Arg::Bool(false)),
                    _ => Err(self.error(format!(
                        "'{word}' is not a valid argument (expected a 'string', a number, true, false, null, a path or an intrinsic function)"
                    ))),
                }
            }
            Some(c) => Err(self.error(format!(
                "unexpected character '{c}' at position {}",
                self.pos
            ))),
        }
    }

    fn string_literal(&mut self) -> Result<StringLiteral, ParseError> {
        self.pos += 1; // opening '
        let mut value = String::new();
        let mut pieces = Vec::new();
        let mut text = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(self.error("unterminated string literal (missing closing ')"));
            };
            self.pos += 1;
            match c {
                '\'' => break,
                '\\' => match self.peek() {
                    Some(escaped @ ('\'' | '{' | '}' | '\\')) => {
                        self.pos += 1;
                        value.push(escaped);
                        text.push(escaped);
                    }
                    Some(other) => {
                        return Err(self.error(format!(
                            "open escape '\\{other}' in a string literal: only \\' \\{{ \\}} and \\\\ are escapes (write \\\\ for a backslash)"
                        )))
                    }
                    None => return Err(self.error("unterminated string literal")),
                },
                '{' if self.peek() == Some('}') => {
                    self.pos += 1;
                    value.push_str("{}");
                    pieces.push(FormatPiece::Text(std::mem::take(&mut text)));
                    pieces.push(FormatPiece::Hole);
                }
                '{' | '}' => {
                    return Err(self.error(format!(
                        "reserved character '{c}' must be escaped as \\{c} in a string literal"
                    )))
                }
                other => {
                    value.push(other);
                    text.push(other);
                }
            }
        }
        pieces.push(FormatPiece::Text(text));
        pieces.retain(|p| !matches!(p, FormatPiece::Text(t) if t.is_empty()));
        Ok(StringLiteral { value, pieces })
    }

    fn path(&mut self) -> Result<ReferencePath, ParseError> {
        let start = self.pos;
        let mut bracket_depth = 0usize;
        let mut quote: Option<char> = None;
        while let Some(c) = self.peek() {
            if let Some(q) = quote {
                if c == '\\' {
                    self.pos += 1;
                } else if c == q {
                    quote = None;
                }
            } else {
                match c {
                    '\\' => self.pos += 1,
                    '[' => bracket_depth += 1,
                    ']' => bracket_depth = bracket_depth.saturating_sub(1),
                    '\'' | '"' if bracket_depth > 0 => quote = Some(c),
                    ',' | ')' if bracket_depth == 0 => break,
                    _ => {}
                }
            }
            self.pos += 1;
        }
        self.pos = self.pos.min(self.chars.len());
        let text: String = self.chars[start..self.pos].iter().collect();
        ReferencePath::parse(text.trim_end()).map_err(|m| ParseError {
            message: format!("intrinsic function '{}': {m}", self.text),
            unsupported: true,
        })
    }

    fn number(&mut self) -> Result<Number, ParseError> {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E'))
        {
            self.pos += 1;
        }
        let text: String = self.chars[start..self.pos].iter().collect();
        serde_json::from_str::<Number>(&text)
            .map_err(|_| self.error(format!("'{text}' is not a valid number")))
    }
}

/// Parse-time checks: argument count, and the types of literal arguments.
fn check_call(call: &Call) -> Result<(), String> {
    let name = call.func.name();
    let (min, max) = call.func.arity();
    let n = call.args.len();
    if n < min || n > max {
        let expected = match (min, max) {
            (a, b) if a == b => format!("{a}"),
            (a, usize::MAX) => format!("at least {a}"),
            (a, b) => format!("{a} to {b}"),
        };
        return Err(format!("{name} takes {expected} argument(s), got {n}"));
    }
    let literal_kind = |arg: &Arg| -> Option<&'static str> {
        match arg {
            Arg::String(_) => Some("string"),
            Arg::Number(_) => Some("number"),
            Arg::Bool(_) => Some("boolean"),
            Arg::Null => Some("null"),
            Arg::Path(_) | Arg::Call(_) => None,
        }
    };
    let expect = |index: usize, want: &str| -> Result<(), String> {
        match literal_kind(&call.args[index]) {
            Some(kind) if kind != want => Err(format!(
                "argument {} of {name} must be a {want}, got a {kind} literal",
                index + 1
            )),
            _ => Ok(()),
        }
    };
    match call.func {
        Func::Format => {
            expect(0, "string")?;
            if let Arg::String(template) = &call.args[0] {
                let holes = template
                    .pieces
                    .iter()
                    .filter(|p| **p == FormatPiece::Hole)
                    .count();
                if holes != n - 1 {
                    return Err(format!(
                        "States.Format template has {holes} '{{}}' placeholder(s) but {} value argument(s)",
                        n - 1
                    ));
                }
            }
            for arg in &call.args[1..] {
                if let Arg::Call(inner) = arg {
                    if matches!(
                        inner.func,
                        Func::Array | Func::JsonMerge | Func::StringSplit
                    ) {
                        return Err(format!(
                            "States.Format arguments must be strings, numbers, booleans or null, but {} returns an array or object",
                            inner.func.name()
                        ));
                    }
                }
            }
        }
        Func::StringToJson => expect(0, "string")?,
        Func::JsonToString => {
            if !matches!(call.args[0], Arg::Path(_)) {
                return Err("the argument of States.JsonToString must be a path".into());
            }
        }
        Func::ArrayGetItem => {
            expect(1, "number")?;
            if let Arg::Number(n) = &call.args[1] {
                if n.as_u64().is_none() {
                    return Err(format!("the index argument of States.ArrayGetItem must be a non-negative integer, got {n}"));
                }
            }
        }
        Func::MathAdd => {
            for i in 0..2 {
                expect(i, "number")?;
                if let Arg::Number(n) = &call.args[i] {
                    if n.as_i64().is_none() {
                        return Err(format!("States.MathAdd takes integer arguments, got {n}"));
                    }
                }
            }
        }
        Func::StringSplit => {
            expect(0, "string")?;
            expect(1, "string")?;
        }
        Func::JsonMerge => {
            expect(2, "boolean")?;
            if let Arg::Bool(true) = call.args[2] {
                return Err("States.JsonMerge only supports shallow merging: its third argument must be false".into());
            }
        }
        Func::Array | Func::ArrayLength | Func::Uuid => {}
    }
    Ok(())
}

impl Call {
    /// Evaluates the call against the payload template's input and the context object.
    pub(super) fn evaluate(&self, input: &Value, ctx: &ContextObject) -> Result<Value, StateError> {
        let mut values = Vec::with_capacity(self.args.len());
        for arg in &self.args {
            values.push(self.eval_arg(arg, input, ctx)?);
        }
        let fail = |message: String| {
            StateError::runtime(format!(
                "The function '{}' had the following error: {message}",
                self.text
            ))
        };
        match self.func {
            Func::Format => {
                let owned_pieces;
                let pieces = match (&self.args[0], &values[0]) {
                    (Arg::String(literal), _) => &literal.pieces,
                    (_, Value::String(template)) => {
                        owned_pieces = split_template(template);
                        &owned_pieces
                    }
                    (_, other) => {
                        return Err(fail(format!(
                            "the template must be a string, got {}",
                            type_name(other)
                        )))
                    }
                };
                let holes = pieces.iter().filter(|p| **p == FormatPiece::Hole).count();
                if holes != values.len() - 1 {
                    return Err(fail(format!(
                        "the template has {holes} '{{}}' placeholder(s) but {} value argument(s) were given",
                        values.len() - 1
                    )));
                }
                let mut out = String::new();
                let mut next = values[1..].iter();
                for piece in pieces {
                    match piece {
                        FormatPiece::Text(t) => out.push_str(t),
                        FormatPiece::Hole => {
                            let Some(v) = next.next() else {
                                return Err(fail("more placeholders than values".into()));
                            };
                            match v {
                                Value::String(s) => out.push_str(s),
                                Value::Number(n) => out.push_str(&n.to_string()),
                                Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
                                Value::Null => out.push_str("null"),
                                other => {
                                    return Err(fail(format!(
                                        "a value to format must be a string, number, boolean or null, got {}",
                                        type_name(other)
                                    )))
                                }
                            }
                        }
                    }
                }
                Ok(Value::String(out))
            }
            Func::StringToJson => match &values[0] {
                Value::String(s) => serde_json::from_str(s)
                    .map_err(|e| fail(format!("the string is not valid JSON: {e}"))),
                other => Err(fail(format!(
                    "the argument must be a string, got {}",
                    type_name(other)
                ))),
            },
            Func::JsonToString => serde_json::to_string(&values[0])
                .map(Value::String)
                .map_err(|e| fail(e.to_string())),
            Func::Array => Ok(Value::Array(values)),
            Func::ArrayGetItem => {
                let Value::Array(items) = &values[0] else {
                    return Err(fail(format!(
                        "the first argument must be an array, got {}",
                        type_name(&values[0])
                    )));
                };
                let index = values[1].as_u64().ok_or_else(|| {
                    fail(format!(
                        "the index must be a non-negative integer, got {}",
                        values[1]
                    ))
                })?;
                usize::try_from(index)
                    .ok()
                    .and_then(|i| items.get(i))
                    .cloned()
                    .ok_or_else(|| {
                        fail(format!(
                            "index {index} is out of bounds for an array of length {}",
                            items.len()
                        ))
                    })
            }
            Func::ArrayLength => match &values[0] {
                Value::Array(items) => Ok(Value::from(items.len())),
                other => Err(fail(format!(
                    "the argument must be an array, got {}",
                    type_name(other)
                ))),
            },
            Func::JsonMerge => {
                let (Value::Object(left), Value::Object(right)) = (&values[0], &values[1]) else {
                    return Err(fail(format!(
                        "the first two arguments must be objects, got {} and {}",
                        type_name(&values[0]),
                        type_name(&values[1])
                    )));
                };
                match values[2] {
                    Value::Bool(false) => {}
                    Value::Bool(true) => {
                        return Err(fail(
                            "deep merging is not supported; the third argument must be false"
                                .into(),
                        ))
                    }
                    ref other => {
                        return Err(fail(format!(
                            "the third argument must be the boolean false, got {}",
                            type_name(other)
                        )))
                    }
                }
                let mut merged = left.clone();
                for (k, v) in right {
                    merged.insert(k.clone(), v.clone());
                }
                Ok(Value::Object(merged))
            }
            Func::MathAdd => {
                let mut sum: i64 = 0;
                for v in &values {
                    let n = v
                        .as_i64()
                        .ok_or_else(|| fail(format!("the arguments must be integers, got {v}")))?;
                    sum = sum
                        .checked_add(n)
                        .ok_or_else(|| fail("integer overflow".into()))?;
                }
                Ok(Value::from(sum))
            }
            Func::StringSplit => {
                let (Value::String(s), Value::String(delimiters)) = (&values[0], &values[1]) else {
                    return Err(fail(format!(
                        "both arguments must be strings, got {} and {}",
                        type_name(&values[0]),
                        type_name(&values[1])
                    )));
                };
                // Each character of the second argument is a delimiter; empty tokens are dropped.
                let parts = s
                    .split(|c: char| delimiters.contains(c))
                    .filter(|part| !part.is_empty())
                    .map(|part| Value::String(part.to_string()))
                    .collect();
                Ok(Value::Array(parts))
            }
            Func::Uuid => Ok(Value::String(uuid::Uuid::new_v4().to_string())),
        }
    }

    fn eval_arg(&self, arg: &Arg, input: &Value, ctx: &ContextObject) -> Result<Value, StateError> {
        Ok(match arg {
            Arg::String(s) => Value::String(s.value.clone()),
            Arg::Number(n) => Value::Number(n.clone()),
            Arg::Bool(b) => Value::Bool(*b),
            Arg::Null => Value::Null,
            Arg::Path(path) => resolve(path, input, ctx).ok_or_else(|| {
                StateError::runtime(format!(
                    "The function '{}' had the following error: the path '{path}' matches nothing in the input",
                    self.text
                ))
            })?,
            Arg::Call(call) => call.evaluate(input, ctx)?,
        })
    }
}

/// Splits a template that came from a path (not a literal) at each `{}`.
fn split_template(template: &str) -> Vec<FormatPiece> {
    let mut pieces = Vec::new();
    for (i, text) in template.split("{}").enumerate() {
        if i > 0 {
            pieces.push(FormatPiece::Hole);
        }
        if !text.is_empty() {
            pieces.push(FormatPiece::Text(text.to_string()));
        }
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::super::context::{ContextObject, ExecutionContext};
    use super::*;
    use serde_json::json;

    fn eval(text: &str, input: Value) -> Result<Value, StateError> {
        let exec = ExecutionContext::new("arn:aws:states:us-east-1:1:stateMachine:m", "e");
        let ctx = ContextObject {
            execution: &exec,
            execution_input: &input,
            state_name: "S",
            entered_time: "2024-01-01T00:00:00.000Z",
            retry_count: 0,
            map_item: None,
        };
        parse(text).expect("parses").evaluate(&input, &ctx)
    }

    #[test]
    fn format_spec_and_docs_examples() {
        let input = json!({"name": "Arnav", "template": "Hello, my name is {}."});
        assert_eq!(
            eval(
                "States.Format('Hello, my name is {}.', $.name)",
                input.clone()
            )
            .unwrap(),
            json!("Hello, my name is Arnav.")
        );
        assert_eq!(
            eval("States.Format($.template, $.name)", input).unwrap(),
            json!("Hello, my name is Arnav.")
        );
        assert_eq!(
            eval(
                "States.Format('Your name is {}, we are in the year {}', $.name, 2020)",
                json!({"name": "Foo", "zebra": "stripe"})
            )
            .unwrap(),
            json!("Your name is Foo, we are in the year 2020")
        );
        // The definition text "States.Format('Welcome to {} {}\\'s playlist.', ...)" is, after JSON decoding:
        assert_eq!(
            eval(
                "States.Format('Welcome to {} {}\\'s playlist.', $.firstName, $.lastName)",
                json!({"firstName": "Ada", "lastName": "L"})
            )
            .unwrap(),
            json!("Welcome to Ada L's playlist.")
        );
        assert_eq!(
            eval("States.Format('\\{\\} {} \\\\ {}', true, null)", json!({})).unwrap(),
            json!("{} true \\ null")
        );
        assert_eq!(
            eval("States.Format('x{}', 1.5)", json!({})).unwrap(),
            json!("x1.5")
        );
        let err = eval("States.Format('{}', $.o)", json!({"o": {"a": 1}})).unwrap_err();
        assert_eq!(err.error, "States.Runtime");
        let err = eval("States.Format($.t, 1)", json!({"t": "no holes"})).unwrap_err();
        assert_eq!(err.error, "States.Runtime");
    }

    #[test]
    fn json_string_conversions() {
        assert_eq!(
            eval(
                "States.StringToJson($.someString)",
                json!({"someString": "{\"number\": 20}", "zebra": "stripe"})
            )
            .unwrap(),
            json!({"number": 20})
        );
        assert_eq!(
            eval(
                "States.JsonToString($.someJson)",
                json!({"someJson": {"name": "Foo", "year": 2020}, "zebra": "stripe"})
            )
            .unwrap(),
            json!("{\"name\":\"Foo\",\"year\":2020}")
        );
        assert_eq!(
            eval("States.StringToJson($.s)", json!({"s": "nope{"}))
                .unwrap_err()
                .error,
            "States.Runtime"
        );
    }

    #[test]
    fn arrays() {
        assert_eq!(
            eval(
                "States.Array('Foo', 2020, $.someJson, null)",
                json!({"someJson": {"random": "abcdefg"}, "zebra": "stripe"})
            )
            .unwrap(),
            json!(["Foo", 2020, {"random": "abcdefg"}, null])
        );
        assert_eq!(
            eval("States.Array($.Id)", json!({"Id": 123456})).unwrap(),
            json!([123456])
        );
        assert_eq!(eval("States.Array()", json!({})).unwrap(), json!([]));
        assert_eq!(
            eval(
                "States.ArrayLength($.inputArray)",
                json!({"inputArray": [1,2,3,4,5,6,7,8,9]})
            )
            .unwrap(),
            json!(9)
        );
        assert_eq!(
            eval("States.ArrayLength($.x)", json!({"x": "s"}))
                .unwrap_err()
                .error,
            "States.Runtime"
        );
        assert_eq!(
            eval(
                "States.ArrayGetItem($.inputArray, $.index)",
                json!({"inputArray": [1,2,3,4,5,6,7,8,9], "index": 5})
            )
            .unwrap(),
            json!(6)
        );
        assert_eq!(
            eval("States.ArrayGetItem($.a, 3)", json!({"a": [1]}))
                .unwrap_err()
                .error,
            "States.Runtime"
        );
    }

    #[test]
    fn math_add_and_uuid() {
        assert_eq!(
            eval(
                "States.MathAdd($.value1, $.step)",
                json!({"value1": 111, "step": -1})
            )
            .unwrap(),
            json!(110)
        );
        assert_eq!(eval("States.MathAdd(-3, 5)", json!({})).unwrap(), json!(2));
        assert_eq!(
            eval("States.MathAdd($.a, 1)", json!({"a": 1.5}))
                .unwrap_err()
                .error,
            "States.Runtime"
        );
        let id = eval("States.UUID()", json!({})).unwrap();
        let parsed = uuid::Uuid::parse_str(id.as_str().unwrap()).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
    }

    #[test]
    fn json_merge_is_shallow() {
        let input = json!({"json1": {"a": {"a1": 1, "a2": 2}, "b": 2}, "json2": {"a": {"a3": 1, "a4": 2}, "c": 3}});
        assert_eq!(
            eval("States.JsonMerge($.json1, $.json2, false)", input).unwrap(),
            json!({"a": {"a3": 1, "a4": 2}, "b": 2, "c": 3})
        );
        assert_eq!(
            eval(
                "States.JsonMerge($.a, $.b, $.deep)",
                json!({"a": {}, "b": {}, "deep": true})
            )
            .unwrap_err()
            .error,
            "States.Runtime"
        );
    }

    #[test]
    fn string_split_uses_each_delimiter_character() {
        assert_eq!(
            eval(
                "States.StringSplit($.inputString, $.splitter)",
                json!({"inputString": "1,2,3,4,5", "splitter": ","})
            )
            .unwrap(),
            json!(["1", "2", "3", "4", "5"])
        );
        assert_eq!(
            eval(
                "States.StringSplit($.s, '.+,=')",
                json!({"s": "This.is+a,test=string"})
            )
            .unwrap(),
            json!(["This", "is", "a", "test", "string"])
        );
        assert_eq!(
            eval("States.StringSplit('a,,b', ',')", json!({})).unwrap(),
            json!(["a", "b"])
        );
    }

    #[test]
    fn nested_calls_and_context_paths() {
        let input = json!({"ImageRecipe": {"Arn": "arn:aws:imagebuilder:us-east-1:1:image-recipe/my.recipe/1.0.0"}});
        let text = "States.Format('{}.{}.{}', States.ArrayGetItem(States.StringSplit(States.ArrayGetItem(States.StringSplit($.ImageRecipe.Arn, '/'), 2), '.'), 0), States.ArrayGetItem(States.StringSplit(States.ArrayGetItem(States.StringSplit($.ImageRecipe.Arn, '/'), 2), '.'), 1), $$.State.Name)";
        assert_eq!(eval(text, input).unwrap(), json!("1.0.S"));
        assert_eq!(
            eval(
                "States.Array($['a,b'], $.c[0])",
                json!({"a,b": 1, "c": [2]})
            )
            .unwrap(),
            json!([1, 2])
        );
    }

    #[test]
    fn parse_errors() {
        let unsupported = |t: &str| {
            let e = parse(t).unwrap_err();
            assert!(e.unsupported, "{t}: {e:?}");
            e.message
        };
        let invalid = |t: &str| {
            let e = parse(t).unwrap_err();
            assert!(!e.unsupported, "{t}: {e:?}");
            e.message
        };
        assert!(unsupported("States.Hash($.a, 'SHA-1')").contains("not supported"));
        assert!(unsupported("States.Nope($.a)").contains("States.Format"));
        assert!(unsupported("States.Array($..a)").contains("deep scan"));
        assert!(invalid("States.MathAdd(1)").contains("takes 2"));
        assert!(invalid("States.UUID(1)").contains("takes 0"));
        assert!(invalid("States.Format('{} {}', 1)").contains("placeholder"));
        assert!(invalid("States.Format('a\\nb')").contains("open escape"));
        assert!(invalid("States.Format('a { b')").contains("escaped"));
        assert!(invalid("States.JsonToString('x')").contains("path"));
        assert!(invalid("States.JsonMerge($.a, $.b, true)").contains("shallow"));
        assert!(invalid("States.MathAdd(1.5, 1)").contains("integer"));
        assert!(invalid("States.Array(1) x").contains("unexpected text"));
        assert!(invalid("States.Array('x'").contains("missing ')'"));
        assert!(invalid("hello").contains("expected '('"));
        let deep = format!("{}1{}", "States.Array(".repeat(11), ")".repeat(11));
        assert!(invalid(&deep).contains("nested"));
        let ok = format!("{}1{}", "States.Array(".repeat(10), ")".repeat(10));
        assert!(parse(&ok).is_ok());
    }
}
