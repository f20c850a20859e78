//! Payload templates (`Parameters`, `ResultSelector`).
//!
//! A payload template is a JSON object. Any field, however deeply nested (inside objects or
//! arrays), whose name ends with `.$` is replaced by a field without the suffix whose value
//! is: the node a Path selects from the template's input (`$...`), the node a Path selects
//! from the context object (`$$...`), or the result of an intrinsic function call. Everything
//! else is copied as is. A path that matches nothing is a `States.Runtime` error, as in AWS.

use super::context::{resolve, ContextObject};
use super::error::{join_field, FieldError, StateError};
use super::intrinsics::{self, Call};
use super::path::ReferencePath;
use serde_json::{Map, Value};
use std::collections::HashSet;

/// A compiled payload template.
#[derive(Debug, Clone, PartialEq)]
pub enum Template {
    Object(Vec<(String, Entry)>),
    Array(Vec<Template>),
    Literal(Value),
}

/// A field of an object template.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// A field without the `.$` suffix (possibly a nested template).
    Static(Template),
    /// `"name.$": "$.path"` or `"name.$": "$$.path"`.
    Path { key: String, path: ReferencePath },
    /// `"name.$": "States.Function(...)"`.
    Intrinsic { key: String, call: Call },
}

impl Template {
    /// Compiles the value of a `Parameters` / `ResultSelector` field. The value must be an
    /// object. Field names in errors are relative to that field (e.g. `MyDetails.size.$`).
    pub fn compile_payload(value: &Value) -> Result<Template, FieldError> {
        if !value.is_object() {
            return Err(FieldError::invalid(
                "",
                "a payload template must be a JSON object",
            ));
        }
        Template::compile(value, "")
    }

    fn compile(value: &Value, at: &str) -> Result<Template, FieldError> {
        match value {
            Value::Object(map) => {
                let mut entries = Vec::with_capacity(map.len());
                let mut names = HashSet::new();
                for (name, field) in map {
                    let field_at = join_field(at, name);
                    let entry = match name.strip_suffix(".$") {
                        Some(key) => compile_dynamic(key, field, &field_at)?,
                        None => Entry::Static(Template::compile(field, &field_at)?),
                    };
                    let output_name = match &entry {
                        Entry::Static(_) => name.as_str(),
                        Entry::Path { key, .. } | Entry::Intrinsic { key, .. } => key.as_str(),
                    };
                    if !names.insert(output_name.to_string()) {
                        return Err(FieldError::invalid(
                            field_at,
                            format!(
                                "duplicate field '{output_name}' after removing the '.$' suffix"
                            ),
                        ));
                    }
                    entries.push((name.clone(), entry));
                }
                Ok(Template::Object(entries))
            }
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| Template::compile(item, &format!("{at}[{i}]")))
                .collect::<Result<Vec<_>, _>>()
                .map(Template::Array),
            other => Ok(Template::Literal(other.clone())),
        }
    }

    /// Produces the payload for `input` (the effective input, or the task result for
    /// `ResultSelector`).
    pub(super) fn evaluate(
        &self,
        input: &Value,
        ctx: &ContextObject,
        field: &str,
    ) -> Result<Value, StateError> {
        match self {
            Template::Literal(value) => Ok(value.clone()),
            Template::Array(items) => items
                .iter()
                .map(|item| item.evaluate(input, ctx, field))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            Template::Object(entries) => {
                let mut out = Map::with_capacity(entries.len());
                for (name, entry) in entries {
                    match entry {
                        Entry::Static(template) => {
                            out.insert(name.clone(), template.evaluate(input, ctx, field)?);
                        }
                        Entry::Path { key, path } => {
                            let value = resolve(path, input, ctx).ok_or_else(|| {
                                StateError::runtime(format!(
                                    "The JSONPath '{path}' specified for the field '{name}' in {field} could not be found in the input '{}'",
                                    abbreviate(input)
                                ))
                            })?;
                            out.insert(key.clone(), value);
                        }
                        Entry::Intrinsic { key, call } => {
                            out.insert(key.clone(), call.evaluate(input, ctx)?);
                        }
                    }
                }
                Ok(Value::Object(out))
            }
        }
    }
}

fn compile_dynamic(key: &str, value: &Value, field_at: &str) -> Result<Entry, FieldError> {
    let Value::String(text) = value else {
        return Err(FieldError::invalid(
            field_at,
            "the value of a field whose name ends with '.$' must be a string (a path or an intrinsic function)",
        ));
    };
    if text.starts_with('$') {
        let path = ReferencePath::parse(text).map_err(|m| FieldError::unsupported(field_at, m))?;
        return Ok(Entry::Path {
            key: key.to_string(),
            path,
        });
    }
    let call = intrinsics::parse(text).map_err(|e| FieldError {
        field: field_at.to_string(),
        message: e.message,
        unsupported: e.unsupported,
    })?;
    Ok(Entry::Intrinsic {
        key: key.to_string(),
        call,
    })
}

/// A JSON rendering of `value` short enough for an error message.
pub(super) fn abbreviate(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 256 {
        let cut: String = text.chars().take(256).collect();
        format!("{cut}...")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::super::context::ExecutionContext;
    use super::*;
    use serde_json::json;

    fn run(template: Value, input: Value) -> Result<Value, StateError> {
        let exec = ExecutionContext::new("arn:aws:states:us-east-1:1:stateMachine:m", "e");
        let ctx = ContextObject {
            execution: &exec,
            execution_input: &input,
            state_name: "S",
            entered_time: "2024-01-01T00:00:00.000Z",
            retry_count: 0,
            map_item: None,
        };
        Template::compile_payload(&template)
            .unwrap()
            .evaluate(&input, &ctx, "Parameters")
    }

    #[test]
    fn processes_nested_objects_and_arrays() {
        let out = run(
            json!({"a": [{"x.$": "$.v"}, 1, [{"y.$": "States.Array($.v)"}]], "b": {"c": {"d.$": "$$.State.Name"}}, "plain": "$.v"}),
            json!({"v": 7}),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"a": [{"x": 7}, 1, [{"y": [7]}]], "b": {"c": {"d": "S"}}, "plain": "$.v"})
        );
    }

    #[test]
    fn missing_path_is_a_runtime_error() {
        let err = run(json!({"x.$": "$.nope"}), json!({"v": 1})).unwrap_err();
        assert_eq!(err.error, "States.Runtime");
        assert!(err.cause.contains("$.nope"), "{}", err.cause);
        assert!(err.cause.contains("x.$"), "{}", err.cause);
    }

    #[test]
    fn compile_errors_name_the_field() {
        let e = Template::compile_payload(&json!({"a": {"b.$": 3}})).unwrap_err();
        assert_eq!(e.field, "a.b.$");
        let e = Template::compile_payload(&json!({"a": [{"b.$": "$..x"}]})).unwrap_err();
        assert_eq!(e.field, "a[0].b.$");
        assert!(e.unsupported);
        let e = Template::compile_payload(&json!({"a": 1, "a.$": "$.x"})).unwrap_err();
        assert!(e.message.contains("duplicate"));
        let e = Template::compile_payload(&json!({"a.$": "States.Hash($.x, 'MD5')"})).unwrap_err();
        assert!(e.unsupported);
        assert!(Template::compile_payload(&json!([1])).is_err());
    }
}
