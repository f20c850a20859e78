//! The servicenow connector's entities and fields, and how its values are typed.

use super::*;

pub(super) const SN_TIME: &str = "%Y-%m-%d %H:%M:%S";
/// A column: name, type, and the table it is inherited from.
pub(super) type Column = (String, FieldType, Option<String>);

/// What `sys_dictionary` says about a table (read once per run: `fetch_metadata`).
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct TableMeta {
    /// Every column with its dictionary type, in output order.
    pub(super) columns: Vec<Column>,
    pub(super) types: HashMap<String, FieldType>,
}

pub(super) fn text(v: Option<&Value>) -> Option<&str> {
    match v? {
        Value::String(s) => Some(s),
        Value::Object(o) => o.get("value").and_then(Value::as_str),
        _ => None,
    }
}

/// The actual value of a field (`{display_value, value}` when both were asked for; a
/// `{link, value}` object for a reference whose link was not excluded).
pub(super) fn actual(v: &Value) -> &Value {
    match v {
        Value::Object(o) if o.contains_key("value") => &o["value"],
        other => other,
    }
}

pub(super) fn display(v: &Value) -> &Value {
    match v {
        Value::Object(o) if o.contains_key("display_value") => &o["display_value"],
        other => actual(other),
    }
}

/// The ferry type of a `sys_dictionary.internal_type`.
pub(super) fn sn_type(t: &str) -> FieldType {
    match t {
        "integer" | "longint" | "auto_increment" | "order_index" => FieldType::Integer,
        "float" | "decimal" | "percent_complete" => FieldType::Float,
        "boolean" => FieldType::Boolean,
        "glide_date_time" | "due_date" | "calendar_date_time" => FieldType::Timestamp,
        "glide_date" => FieldType::Date,
        _ => FieldType::String,
    }
}

/// Table API JSON carries text; type it. `""` is an empty value.
pub(super) fn coerce(v: &Value, ty: &FieldType) -> Value {
    // Lenient: a value that does not read as its column's type stays as sent, and
    // transform-batch rejects that record alone (with its line), not the whole page.
    super::normalize::value_in(v, ty, &DIALECT).unwrap_or_else(|_| v.clone())
}

/// How the Table API spells values: every value is text; datetimes `YYYY-MM-DD HH:MM:SS` in
/// UTC (or RFC 3339), booleans `true`/`false` or `1`/`0`.
pub(super) const DIALECT: super::normalize::Dialect = super::normalize::Dialect {
    time_formats: &[SN_TIME],
    epoch: super::normalize::Epoch::No,
    true_words: &["1"],
    false_words: &["0"],
    numeric_booleans: true,
    date_prefix: false,
    empty_text_is_null: true,
};

pub(super) fn parse_sn_time(s: &str) -> Option<DateTime<Utc>> {
    super::normalize::time_text(s, &DIALECT)
}
