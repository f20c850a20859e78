//! The rest connector's entities and fields, and how its values are typed.

use super::*;

/// A record shaped to its endpoint's declared fields (exactly those, in order): timestamps
/// from epoch seconds or text to RFC 3339, numeric text to numbers, decimal text kept exact;
/// `json` fields stay as they came (the decoder writes them as JSON text).
pub(super) fn shape_declared(rec: &Value, fields: &[FieldInfo]) -> Result<Value, String> {
    let mut out = Map::with_capacity(fields.len());
    for f in fields {
        let v = rec.get(&f.name).unwrap_or(&Value::Null);
        out.insert(f.name.clone(), shape_value(v, &f.data_type)?);
    }
    Ok(Value::Object(out))
}

pub(super) fn shape_value(v: &Value, t: &FieldType) -> Result<Value, String> {
    match (t, v) {
        (_, Value::Null) | (FieldType::Json, _) => Ok(v.clone()),
        (FieldType::Object { fields }, Value::Object(_)) => shape_declared(v, fields),
        (FieldType::Array { item }, Value::Array(items)) => items
            .iter()
            .map(|x| shape_value(x, item))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        _ => super::normalize::value(v, t),
    }
}

pub(super) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

pub(super) const TYPE_NAMES: &str = "string, integer, float, decimal (with scale), boolean, timestamp, date, json, object (with fields) or array (with items)";

/// The type of a declared field; `field` is its path in the flow, for errors.
pub(super) fn declared_type(
    field: &str,
    t: &str,
    fields: Option<&[FieldDecl]>,
    items: Option<&ItemDecl>,
    digits: (Option<u8>, Option<i8>),
) -> Result<FieldType, SourceError> {
    if (digits.0.is_some() || digits.1.is_some()) && t != "decimal" {
        return Err(SourceError::config(
            format!("{field}.scale"),
            format!("only a `decimal` field has precision and scale; this one is `{t}` (set `type: decimal`, or remove them)"),
        ));
    }
    if fields.is_some() && t != "object" {
        return Err(SourceError::config(
            format!("{field}.fields"),
            format!("only an `object` field lists fields; this one is `{t}` (set `type: object`, or remove `fields`)"),
        ));
    }
    if items.is_some() && t != "array" {
        return Err(SourceError::config(
            format!("{field}.items"),
            format!("only an `array` field names its items; this one is `{t}` (set `type: array`, or remove `items`)"),
        ));
    }
    Ok(match t {
        "string" => FieldType::String,
        "integer" => FieldType::Integer,
        "float" => FieldType::Float,
        "boolean" => FieldType::Boolean,
        "timestamp" => FieldType::Timestamp,
        "date" => FieldType::Date,
        "json" => FieldType::Json,
        "decimal" => {
            let precision = digits.0.unwrap_or(38);
            let Some(scale) = digits.1 else {
                return Err(SourceError::config(
                    format!("{field}.scale"),
                    "a `decimal` field names its digits after the point, e.g. `scale: 2` for money in units with cents (and `precision`, default 38)",
                ));
            };
            if !(1..=38).contains(&precision) || scale < 0 || scale as u8 > precision {
                return Err(SourceError::config(
                    format!("{field}.scale"),
                    format!("precision {precision}, scale {scale}: precision is 1-38 digits and scale 0..=precision"),
                ));
            }
            FieldType::Decimal { precision, scale }
        }
        "object" => {
            let Some(fields) = fields.filter(|f| !f.is_empty()) else {
                return Err(SourceError::config(
                    format!("{field}.fields"),
                    "an `object` field lists its fields, e.g. `fields: [{name: city}, {name: zip, type: integer}]` (or use `type: json` to keep it as JSON text)",
                ));
            };
            FieldType::Object {
                fields: declared_fields(&format!("{field}.fields"), fields)?,
            }
        }
        "array" => {
            let item = match items {
                None => {
                    return Err(SourceError::config(
                        format!("{field}.items"),
                        "an `array` field names its items' type, e.g. `items: string` or `items: {type: object, fields: [{name: id, type: integer}]}`",
                    ))
                }
                Some(ItemDecl::Name(n)) => {
                    declared_type(&format!("{field}.items"), n, None, None, (None, None))?
                }
                Some(ItemDecl::Typed {
                    data_type,
                    fields,
                    items,
                }) => declared_type(
                    &format!("{field}.items"),
                    data_type,
                    fields.as_deref(),
                    items.as_deref(),
                    (None, None),
                )?,
            };
            FieldType::Array {
                item: Box::new(item),
            }
        }
        other => {
            return Err(SourceError::config(
                format!("{field}.type"),
                format!("unknown type '{other}'; use {TYPE_NAMES}"),
            ))
        }
    })
}

/// Declared fields as connector metadata; `path` is where they are in the flow.
pub(super) fn declared_fields(
    path: &str,
    decl: &[FieldDecl],
) -> Result<Vec<FieldInfo>, SourceError> {
    let mut names = std::collections::BTreeSet::new();
    decl.iter()
        .enumerate()
        .map(|(i, d)| {
            let at = format!("{path}[{i}]");
            if !names.insert(d.name.as_str()) {
                return Err(SourceError::config(
                    format!("{at}.name"),
                    format!("'{}' is declared twice", d.name),
                ));
            }
            declared_type(
                &at,
                &d.data_type,
                d.fields.as_deref(),
                d.items.as_deref(),
                (d.precision, d.scale),
            )
            .map(|t| FieldInfo::new(&d.name, t))
        })
        .collect()
}

/// A field's shape as seen in sample records, before it becomes a [`FieldType`].
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Shape {
    /// Only nulls (or empty arrays) so far.
    Unknown,
    Scalar(FieldType),
    Object(Vec<(String, Shape)>),
    Array(Box<Shape>),
    /// Seen in shapes that do not merge: kept as JSON text.
    Json,
}

impl Shape {
    pub(super) fn of(v: &Value) -> Shape {
        match v {
            Value::Null => Shape::Unknown,
            Value::Bool(_) => Shape::Scalar(FieldType::Boolean),
            Value::Number(n) if n.is_i64() || n.is_u64() => Shape::Scalar(FieldType::Integer),
            Value::Number(_) => Shape::Scalar(FieldType::Float),
            Value::String(s) if DateTime::parse_from_rfc3339(s).is_ok() => {
                Shape::Scalar(FieldType::Timestamp)
            }
            Value::String(_) => Shape::Scalar(FieldType::String),
            Value::Array(a) => Shape::Array(Box::new(a.iter().fold(Shape::Unknown, |acc, x| {
                // Conflicts inside one array are reported where the field is merged.
                acc.merge(Shape::of(x), "", &mut vec![])
            }))),
            Value::Object(o) => {
                Shape::Object(o.iter().map(|(k, v)| (k.clone(), Shape::of(v))).collect())
            }
        }
    }

    pub(super) fn name(&self) -> &'static str {
        match self {
            Shape::Unknown => "null",
            Shape::Scalar(FieldType::Boolean) => "a boolean",
            Shape::Scalar(FieldType::Integer | FieldType::Float) => "a number",
            Shape::Scalar(_) => "a string",
            Shape::Object(_) => "an object",
            Shape::Array(_) => "an array",
            Shape::Json => "JSON",
        }
    }

    /// Both shapes as one; shapes that do not merge widen to JSON text, with a warning naming
    /// the field (`path`).
    pub(super) fn merge(self, other: Shape, path: &str, warnings: &mut Vec<String>) -> Shape {
        use FieldType as F;
        match (self, other) {
            (a, b) if a == b => a,
            (Shape::Unknown, x) | (x, Shape::Unknown) => x,
            (Shape::Json, _) | (_, Shape::Json) => Shape::Json,
            (Shape::Scalar(F::Integer), Shape::Scalar(F::Float))
            | (Shape::Scalar(F::Float), Shape::Scalar(F::Integer)) => Shape::Scalar(F::Float),
            // Text of which only some values look like datetimes is text.
            (Shape::Scalar(F::Timestamp), Shape::Scalar(F::String))
            | (Shape::Scalar(F::String), Shape::Scalar(F::Timestamp)) => Shape::Scalar(F::String),
            (Shape::Object(mut a), Shape::Object(b)) => {
                for (k, vb) in b {
                    let sub = format!("{path}.{k}");
                    match a.iter_mut().find(|(ka, _)| *ka == k) {
                        Some((_, va)) => {
                            let v = std::mem::replace(va, Shape::Unknown);
                            *va = v.merge(vb, &sub, warnings);
                        }
                        None => a.push((k, vb)),
                    }
                }
                Shape::Object(a)
            }
            (Shape::Array(a), Shape::Array(b)) => {
                Shape::Array(Box::new(a.merge(*b, &format!("{path}[]"), warnings)))
            }
            (a, b) => {
                if !path.is_empty() {
                    warnings.push(format!(
                        "field '{}' arrived as {} and as {}; it is written as JSON text",
                        path.trim_start_matches('.'),
                        a.name(),
                        b.name()
                    ));
                }
                Shape::Json
            }
        }
    }

    pub(super) fn field_type(self) -> FieldType {
        match self {
            Shape::Unknown | Shape::Json => FieldType::Json,
            Shape::Scalar(t) => t,
            // An empty object carries nothing Arrow can hold as a struct: keep it as text.
            Shape::Object(f) if f.is_empty() => FieldType::Json,
            Shape::Object(f) => FieldType::Object {
                fields: f
                    .into_iter()
                    .map(|(k, s)| FieldInfo::new(&k, s.field_type()))
                    .collect(),
            },
            Shape::Array(i) => FieldType::Array {
                item: Box::new(i.field_type()),
            },
        }
    }
}

/// Fields inferred from sample records: objects become structs, arrays lists, and a field
/// whose shapes conflict becomes JSON text (with a warning naming it).
pub(super) fn infer_fields(records: &[Value], warnings: &mut Vec<String>) -> Vec<FieldInfo> {
    let mut shape = Shape::Unknown;
    for r in records.iter().filter(|r| r.is_object()) {
        shape = shape.merge(Shape::of(r), "", warnings);
    }
    // The top level merged as objects; its fields are the columns.
    match shape {
        Shape::Object(f) => f
            .into_iter()
            .map(|(k, s)| FieldInfo::new(&k, s.field_type()))
            .collect(),
        _ => vec![],
    }
}
