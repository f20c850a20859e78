//! The hubspot connector's entities and fields, and how its values are typed.

use super::*;

/// The objects this connector reads: name, label, last-modified property.
pub const OBJECTS: &[(&str, &str, &str)] = &[
    ("contacts", "Contacts", "lastmodifieddate"),
    ("companies", "Companies", "hs_lastmodifieddate"),
    ("deals", "Deals", "hs_lastmodifieddate"),
    ("tickets", "Tickets", "hs_lastmodifieddate"),
];

/// Columns every record has besides its properties.
pub(super) const TOP_LEVEL: &[&str] = &["id", "createdAt", "updatedAt", "archived", "archivedAt"];

pub(super) fn object(entity: &str) -> Option<&'static (&'static str, &'static str, &'static str)> {
    OBJECTS.iter().find(|o| o.0 == entity)
}

/// Properties of an object: name -> type, in output order (read once per run:
/// `fetch_metadata`).
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct ObjectMeta {
    pub(super) props: Vec<(String, FieldType, Option<String>)>,
    pub(super) types: HashMap<String, FieldType>,
}

pub(super) fn to_value(c: HsCursor) -> Result<Value, SourceError> {
    super::cursor_json(&c)
}

/// The ferry type of a HubSpot property `type`.
pub(super) fn hs_type(t: &str) -> FieldType {
    match t {
        "number" => FieldType::Float,
        "bool" => FieldType::Boolean,
        "datetime" => FieldType::Timestamp,
        "date" => FieldType::Date,
        _ => FieldType::String,
    }
}

/// Property values are text; type them. `""` is an empty value.
pub(super) fn coerce(v: &Value, ty: &FieldType) -> Value {
    // Lenient: a value HubSpot sends that does not read as its property's type stays as sent,
    // and transform-batch rejects that record alone (with its line), not the whole page.
    normalize::value_in(v, ty, &DIALECT).unwrap_or_else(|_| v.clone())
}

/// How HubSpot spells values: property values are text; datetimes RFC 3339 or epoch
/// milliseconds; dates `YYYY-MM-DD` or midnight UTC of that day.
/// <https://developers.hubspot.com/docs/api-reference/latest/crm/properties/guide.md>
pub(super) const DIALECT: normalize::Dialect = normalize::Dialect {
    time_formats: &[],
    epoch: normalize::Epoch::Millis,
    true_words: &[],
    false_words: &[],
    numeric_booleans: false,
    date_prefix: true,
    empty_text_is_null: true,
};
