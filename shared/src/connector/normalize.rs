//! The one value-coercion function of the connectors ([`value_in`]) and record shaping.
//! Vendors format the same kind of value differently — epoch seconds here, epoch milliseconds
//! there, RFC 3339 text elsewhere, `2026-01-01 10:00:00` in ServiceNow, `…000+0000` in
//! Salesforce, `"TRUE"` in a Bulk CSV, ids as numbers or as strings — and transform-batch
//! decodes staged records strictly against the declared Arrow types. A connector names its
//! vendor's spelling as data (a [`Dialect`]: time formats, epoch unit, boolean words) and reads
//! every value through [`value_in`]; [`shape`] turns one vendor record into an object holding
//! exactly the declared fields, in declared order, each value in the form its declared type
//! decodes from (plain JSON, [`Dialect::JSON`]):
//!
//! | declared | accepted from the vendor | staged as |
//! |---|---|---|
//! | `timestamp` | RFC 3339 text, the dialect's time formats, epoch seconds or milliseconds (number or numeric text), Slack `ts` text (`"1512085950.000216"`) | RFC 3339 text, microseconds kept |
//! | `integer` | integer, integral float, numeric text | number |
//! | `decimal(p, s)` | number, numeric text, fitting `p` | exact text at scale `s` |
//! | `float` | number, numeric text | number |
//! | `boolean` | boolean, `"true"`/`"false"` and the dialect's words, 0/1 | boolean |
//! | `date` | `YYYY-MM-DD` (with the dialect's `date_prefix`, the start of longer text) | text |
//! | `string` | text; numbers and booleans as their text; objects/arrays as JSON text | text |
//! | `json` | anything | JSON text |
//! | `array` / `object` | array / object, items and fields shaped | array / object |
//!
//! Missing fields and JSON `null` become `null`; an empty string in a non-text column becomes
//! `null` too (vendors use `""` for "unset"). A value that cannot be read as its declared type
//! is an error naming the field and what the value is (never the value), not a silent null.

use super::{FieldInfo, FieldType};
pub use crate::time::{rfc3339, time, time_in, time_text, Dialect, Epoch};
use serde_json::{Map, Value};

/// Field constructors for fixed-schema connectors' field tables.
pub mod fields {
    use super::super::{FieldInfo, FieldType};

    pub fn s(n: &str) -> FieldInfo {
        FieldInfo::new(n, FieldType::String)
    }
    pub fn int(n: &str) -> FieldInfo {
        FieldInfo::new(n, FieldType::Integer)
    }
    pub fn boolean(n: &str) -> FieldInfo {
        FieldInfo::new(n, FieldType::Boolean)
    }
    pub fn ts(n: &str) -> FieldInfo {
        FieldInfo::new(n, FieldType::Timestamp)
    }
    pub fn json(n: &str) -> FieldInfo {
        FieldInfo::new(n, FieldType::Json)
    }
    pub fn strings(n: &str) -> FieldInfo {
        FieldInfo::new(
            n,
            FieldType::Array {
                item: Box::new(FieldType::String),
            },
        )
    }
    pub fn ints(n: &str) -> FieldInfo {
        FieldInfo::new(
            n,
            FieldType::Array {
                item: Box::new(FieldType::Integer),
            },
        )
    }
}

/// The entry of a fixed entity table named `entity`, or an error naming `source.entity` and the
/// entities there are.
pub fn find_entity<'a, T>(
    connector: &str,
    table: &'a [T],
    name: fn(&T) -> &str,
    entity: &str,
) -> Result<&'a T, super::SourceError> {
    table.iter().find(|e| name(e) == entity).ok_or_else(|| {
        super::SourceError::config(
            "source.entity",
            format!(
                "the {connector} connector has no entity '{entity}'; use one of: {}",
                table.iter().map(name).collect::<Vec<_>>().join(", ")
            ),
        )
    })
}

/// A record with exactly `fields`, shaped to their types (plain JSON). `Err` names the field.
pub fn shape(record: &Value, fields: &[FieldInfo]) -> Result<Value, String> {
    shape_in(record, fields, &Dialect::JSON)
}

/// [`shape`] in the vendor's `dialect`.
pub fn shape_in(record: &Value, fields: &[FieldInfo], d: &Dialect) -> Result<Value, String> {
    let mut out = Map::with_capacity(fields.len());
    for f in fields {
        let v = record.get(&f.name).unwrap_or(&Value::Null);
        let shaped =
            value_in(v, &f.data_type, d).map_err(|why| format!("field `{}`: {why}", f.name))?;
        out.insert(f.name.clone(), shaped);
    }
    Ok(Value::Object(out))
}

/// One value shaped to `t`, read as plain JSON ([`Dialect::JSON`]).
pub fn value(v: &Value, t: &FieldType) -> Result<Value, String> {
    value_in(v, t, &Dialect::JSON)
}

/// One value shaped to `t`, read in the vendor's `dialect`. `Err` says what the value is and
/// what was due, never the value itself (error messages never carry record values).
pub fn value_in(v: &Value, t: &FieldType, d: &Dialect) -> Result<Value, String> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    if v.as_str() == Some("")
        && (d.empty_text_is_null || !matches!(t, FieldType::String | FieldType::Json))
    {
        return Ok(Value::Null);
    }
    let bad = || format!("{} is not a {}", describe(v), type_label(t));
    // A whole number written as a float (`3.0`) is an integer.
    let whole = |x: Option<f64>| match x {
        Some(x) if x.fract() == 0.0 && x.abs() < 9.0e15 => Ok(Value::from(x as i64)),
        _ => Err(bad()),
    };
    Ok(match t {
        FieldType::Json => Value::String(v.to_string()),
        FieldType::String => match v {
            Value::String(_) => v.clone(),
            _ => Value::String(v.to_string()),
        },
        FieldType::Integer => match v {
            Value::Number(n) if n.is_i64() || n.is_u64() => v.clone(),
            Value::Number(n) => whole(n.as_f64())?,
            Value::String(s) => match s.trim().parse::<i64>() {
                Ok(i) => Value::from(i),
                Err(_) => whole(s.trim().parse::<f64>().ok())?,
            },
            _ => return Err(bad()),
        },
        // Decimals become their exact text at the column's scale (`1500.5` at scale 2 is
        // `"1500.50"`), which Arrow reads into the decimal column exactly, where a float
        // would round money (`"0.10"` is not 0.1 as f64).
        FieldType::Decimal { precision, scale } => match v {
            Value::Number(n) => decimal(&n.to_string(), *precision, *scale).ok_or_else(bad)?,
            Value::String(s) => decimal(s, *precision, *scale).ok_or_else(bad)?,
            _ => return Err(bad()),
        },
        FieldType::Float => match v {
            Value::Number(_) => v.clone(),
            Value::String(s) => {
                let x: f64 = s.trim().parse().map_err(|_| bad())?;
                serde_json::Number::from_f64(x)
                    .map(Value::Number)
                    .ok_or_else(bad)?
            }
            _ => return Err(bad()),
        },
        FieldType::Boolean => match v {
            Value::Bool(_) => v.clone(),
            Value::String(s) if s == "true" || d.true_words.contains(&s.as_str()) => {
                Value::Bool(true)
            }
            Value::String(s) if s == "false" || d.false_words.contains(&s.as_str()) => {
                Value::Bool(false)
            }
            Value::Number(n) if d.numeric_booleans && n.as_i64() == Some(0) => Value::Bool(false),
            Value::Number(n) if d.numeric_booleans && n.as_i64() == Some(1) => Value::Bool(true),
            _ => return Err(bad()),
        },
        FieldType::Timestamp => Value::String(rfc3339(time_in(v, d).ok_or_else(bad)?)),
        // With `date_prefix`, the first ten characters, on a char boundary: `s[..10]` panicked
        // on text such as "2026-01-0é" whose byte 10 falls inside a character.
        FieldType::Date => {
            let text = v.as_str().map(str::trim);
            let day = match text {
                Some(s) if d.date_prefix => s.get(..10),
                other => other,
            };
            match day {
                Some(day) if chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").is_ok() => {
                    Value::String(day.to_string())
                }
                _ => return Err(bad()),
            }
        }
        FieldType::Array { item } => match v {
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|x| value_in(x, item, d))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            _ => return Err(bad()),
        },
        FieldType::Object { fields } => match v {
            Value::Object(_) => shape_in(v, fields, d)?,
            _ => return Err(bad()),
        },
    })
}

/// A decimal's exact text at `scale`, parsed by Arrow's decimal parser (the one that later
/// reads it into Decimal128); `None` if it is not a number or does not fit `precision`.
fn decimal(text: &str, precision: u8, scale: i8) -> Option<Value> {
    use arrow::datatypes::{Decimal128Type, DecimalType};
    let v = arrow::compute::kernels::cast_utils::parse_decimal::<Decimal128Type>(
        text.trim(),
        precision,
        scale,
    )
    .ok()?;
    Some(Value::String(Decimal128Type::format_decimal(
        v, precision, scale,
    )))
}

/// What a value is, without its content.
pub(crate) fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => format!("a text value ({} characters)", s.chars().count()),
        Value::Number(_) => "a number".into(),
        Value::Bool(_) => "a boolean".into(),
        Value::Array(a) => format!("a list of {} items", a.len()),
        Value::Object(_) => "an object".into(),
        Value::Null => "null".into(),
    }
}

fn type_label(t: &FieldType) -> &'static str {
    match t {
        FieldType::String => "string",
        FieldType::Integer => "integer",
        FieldType::Float => "float",
        FieldType::Decimal { .. } => "decimal",
        FieldType::Boolean => "boolean",
        FieldType::Timestamp => "datetime",
        FieldType::Date => "date",
        FieldType::Object { .. } => "object",
        FieldType::Array { .. } => "array",
        FieldType::Json => "JSON value",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_take_their_declared_form() {
        let ts = FieldType::Timestamp;
        assert_eq!(
            value(&json!(1_700_000_000), &ts).unwrap(),
            json!("2023-11-14T22:13:20Z")
        );
        assert_eq!(
            value(&json!(1_700_000_000_123i64), &ts).unwrap(),
            json!("2023-11-14T22:13:20.123Z")
        );
        assert_eq!(
            value(&json!("1512085950.000216"), &ts).unwrap(),
            json!("2017-11-30T23:52:30.000216Z")
        );
        assert_eq!(
            value(&json!("2026-01-01T10:00:00+02:00"), &ts).unwrap(),
            json!("2026-01-01T08:00:00Z")
        );
        let e = value(&json!("yesterday"), &ts).unwrap_err();
        assert!(e.contains("datetime") && !e.contains("yesterday"), "{e}");
        assert_eq!(value(&json!("42"), &FieldType::Integer).unwrap(), json!(42));
        assert_eq!(value(&json!(""), &FieldType::Integer).unwrap(), Value::Null);
        assert_eq!(value(&json!(""), &FieldType::String).unwrap(), json!(""));
        assert_eq!(
            value(&json!({"a": 1}), &FieldType::Json).unwrap(),
            json!("{\"a\":1}")
        );
        assert_eq!(value(&json!(7), &FieldType::String).unwrap(), json!("7"));
        let arr = FieldType::Array {
            item: Box::new(FieldType::String),
        };
        assert_eq!(value(&json!(["a", 1]), &arr).unwrap(), json!(["a", "1"]));
        assert_eq!(value(&json!(1), &FieldType::Boolean).unwrap(), json!(true));
    }

    #[test]
    fn dates_are_cut_on_char_boundaries() {
        let d = FieldType::Date;
        assert_eq!(
            value(&json!("2026-01-02T10:00:00Z"), &d).unwrap(),
            json!("2026-01-02")
        );
        // Byte 10 inside a multi-byte character: an error, not a panic.
        assert!(value(&json!("2026-01-0é"), &d).is_err());
        assert!(value(&json!("日付2026-01-02"), &d).is_err());
        assert!(value(&json!("2026"), &d).is_err());
    }

    #[test]
    fn records_keep_exactly_the_declared_fields() {
        let fields = vec![
            FieldInfo::new("id", FieldType::Integer).key(),
            FieldInfo::new("when", FieldType::Timestamp),
            FieldInfo::new("meta", FieldType::Json),
        ];
        let r = shape(
            &json!({"id": "5", "when": 0, "extra": true, "meta": [1]}),
            &fields,
        )
        .unwrap();
        assert_eq!(
            r,
            json!({"id": 5, "when": "1970-01-01T00:00:00Z", "meta": "[1]"})
        );
        let keys: Vec<&String> = r.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 3);
        let e = shape(&json!({"id": "five"}), &fields).unwrap_err();
        assert!(e.contains("`id`") && e.contains("text value"), "{e}");
        assert!(!e.contains("five"), "no record value in errors: {e}");
    }
}
