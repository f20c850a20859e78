//! Shaping vendor records to the fields a connector declares, for connectors with a fixed
//! schema (zendesk, slack). Vendors format the same kind of value differently — epoch seconds
//! here, epoch milliseconds there, RFC 3339 text elsewhere, ids as numbers or as strings, nested
//! objects where a column is flat — and transform-batch decodes staged records strictly against
//! the declared Arrow types. [`shape`] turns one vendor record into an object holding exactly the
//! declared fields, in declared order, each value in the form its declared type decodes from:
//!
//! | declared | accepted from the vendor | staged as |
//! |---|---|---|
//! | `timestamp` | RFC 3339 text, epoch seconds or milliseconds (number or numeric text), Slack `ts` text (`"1512085950.000216"`) | RFC 3339 text, microseconds kept |
//! | `integer` | integer, integral float, numeric text | number |
//! | `float` | number, numeric text | number |
//! | `boolean` | boolean, `"true"`/`"false"`, 0/1 | boolean |
//! | `string` | text; numbers and booleans as their text; objects/arrays as JSON text | text |
//! | `json` | anything | JSON text |
//! | `array` of scalars | array | array, items shaped |
//!
//! Missing fields and JSON `null` become `null`; an empty string in a non-text column becomes
//! `null` too (vendors use `""` for "unset"). A value that cannot be read as its declared type
//! is an error naming the field and the record, not a silent null.

use super::{FieldInfo, FieldType};
use chrono::{DateTime, SecondsFormat, Utc};
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

/// A record with exactly `fields`, shaped to their types. `Err` names the field and the value.
pub fn shape(record: &Value, fields: &[FieldInfo]) -> Result<Value, String> {
    let mut out = Map::with_capacity(fields.len());
    for f in fields {
        let v = record.get(&f.name).unwrap_or(&Value::Null);
        let shaped = value(v, &f.data_type).map_err(|why| format!("field `{}`: {why}", f.name))?;
        out.insert(f.name.clone(), shaped);
    }
    Ok(Value::Object(out))
}

/// One value shaped to `t`.
pub fn value(v: &Value, t: &FieldType) -> Result<Value, String> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    if !matches!(t, FieldType::String | FieldType::Json) && v.as_str() == Some("") {
        return Ok(Value::Null);
    }
    // The value itself is not quoted: error messages never carry record values.
    let bad = || format!("{} is not a {}", describe(v), type_label(t));
    Ok(match t {
        FieldType::Json => Value::String(v.to_string()),
        FieldType::String => match v {
            Value::String(_) => v.clone(),
            Value::Number(_) | Value::Bool(_) => Value::String(v.to_string()),
            _ => Value::String(v.to_string()),
        },
        FieldType::Integer => match v {
            Value::Number(n) if n.is_i64() || n.is_u64() => v.clone(),
            Value::Number(n) => match n.as_f64() {
                Some(x) if x.fract() == 0.0 && x.abs() < 9.0e15 => Value::from(x as i64),
                _ => return Err(bad()),
            },
            Value::String(s) => Value::from(s.trim().parse::<i64>().map_err(|_| bad())?),
            _ => return Err(bad()),
        },
        // Decimal text stays text: Arrow reads it into the decimal column exactly, where a
        // float would round money (`"0.10"` is not 0.1 as f64).
        FieldType::Decimal { .. } => match v {
            Value::Number(_) => v.clone(),
            Value::String(s) => {
                let t = s.trim();
                arrow::compute::kernels::cast_utils::parse_decimal::<
                    arrow::datatypes::Decimal128Type,
                >(t, 38, 0)
                .or_else(|_| {
                    arrow::compute::kernels::cast_utils::parse_decimal::<
                        arrow::datatypes::Decimal128Type,
                    >(t, 38, 9)
                })
                .map_err(|_| bad())?;
                Value::String(t.to_string())
            }
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
            Value::String(s) if s == "true" => Value::Bool(true),
            Value::String(s) if s == "false" => Value::Bool(false),
            Value::Number(n) if n.as_i64() == Some(0) => Value::Bool(false),
            Value::Number(n) if n.as_i64() == Some(1) => Value::Bool(true),
            _ => return Err(bad()),
        },
        FieldType::Timestamp => Value::String(rfc3339(time(v).ok_or_else(bad)?)),
        // The first ten characters, on a char boundary: `s[..10]` panicked on text such as
        // "2026-01-0é" whose byte 10 falls inside a character.
        FieldType::Date => match v.as_str().and_then(|s| s.get(..10)) {
            Some(d) if chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").is_ok() => {
                Value::String(d.to_string())
            }
            _ => return Err(bad()),
        },
        FieldType::Array { item } => match v {
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|x| value(x, item))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            _ => return Err(bad()),
        },
        FieldType::Object { fields } => match v {
            Value::Object(_) => shape(v, fields)?,
            _ => return Err(bad()),
        },
    })
}

/// A datetime from RFC 3339 text, epoch seconds / milliseconds (numbers or numeric text, with
/// a fractional part kept to the microsecond, as in Slack's `ts`).
pub fn time(v: &Value) -> Option<DateTime<Utc>> {
    match v {
        Value::String(s) => DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .ok()
            .or_else(|| epoch_text(s)),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                if i.abs() > 100_000_000_000 {
                    DateTime::from_timestamp_millis(i)
                } else {
                    DateTime::from_timestamp(i, 0)
                }
            } else {
                epoch_text(&n.to_string())
            }
        }
        _ => None,
    }
}

/// `"1512085950.000216"` (seconds with up to 6 decimals) or `"1512085950"`.
fn epoch_text(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 9 {
        return None;
    }
    let secs: i64 = secs.parse().ok()?;
    let mut nanos_txt = frac.to_string();
    while nanos_txt.len() < 9 {
        nanos_txt.push('0');
    }
    let nanos: u32 = nanos_txt.parse().ok()?;
    if frac.is_empty() && secs > 100_000_000_000 {
        return DateTime::from_timestamp_millis(secs);
    }
    DateTime::from_timestamp(secs, nanos)
}

/// RFC 3339 in UTC with `Z`, sub-second digits only when present.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
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
