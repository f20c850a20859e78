//! The jira connector's entities and fields, and how its values are typed.

use super::*;

/// The entities: name, label.
pub const ENTITIES: &[(&str, &str)] = &[
    ("issues", "Issues (JQL search on `updated`)"),
    (
        "issue_changelogs",
        "Issue changelogs (histories of issues updated in the window)",
    ),
];

pub(super) fn entity_def(
    entity: &str,
) -> Result<&'static (&'static str, &'static str), SourceError> {
    normalize::find_entity("jira", ENTITIES, |e| e.0, entity)
}

/// A Jira field: id, label, ferry type.
#[derive(Debug, Clone)]
pub(super) struct JField {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) ty: FieldType,
    pub(super) navigable: bool,
}

/// The ferry type of a field's `schema`.
pub(super) fn field_type(schema: Option<&Value>) -> FieldType {
    let t = schema.and_then(|s| s.get("type")).and_then(Value::as_str);
    match t {
        Some("string") => FieldType::String,
        Some("number") => FieldType::Float,
        Some("datetime") => FieldType::Timestamp,
        Some("date") => FieldType::Date,
        Some("array")
            if schema.and_then(|s| s.get("items")).and_then(Value::as_str) == Some("string") =>
        {
            FieldType::Array {
                item: Box::new(FieldType::String),
            }
        }
        _ => FieldType::Json,
    }
}

/// How Jira spells values: datetimes `2026-02-01T10:15:30.123+0000` (or RFC 3339).
/// <https://developer.atlassian.com/cloud/jira/platform/rest/v3/api-group-issue-search/>
pub(super) const DIALECT: normalize::Dialect = normalize::Dialect {
    time_formats: &["%Y-%m-%dT%H:%M:%S%.f%z"],
    ..normalize::Dialect::JSON
};

/// A Jira datetime.
pub fn jira_time(s: &str) -> Option<DateTime<Utc>> {
    normalize::time_text(s, &DIALECT)
}

/// One value shaped to its type, in Jira's dialect.
pub(crate) fn shape_value(v: &Value, ty: &FieldType) -> Result<Value, String> {
    normalize::value_in(v, ty, &DIALECT)
}

pub(super) fn changelog_fields() -> Vec<FieldInfo> {
    vec![
        fields::s("id").key(),
        fields::s("issue_id").required(),
        fields::s("issue_key"),
        fields::s("author_account_id"),
        fields::s("author_display_name"),
        fields::ts("created").required().incremental(),
        fields::json("items"),
    ]
}
