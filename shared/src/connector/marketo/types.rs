//! The marketo connector's entities and fields, and how its values are typed.

use super::*;

pub const ENTITIES: &[(&str, &str)] = &[
    ("leads", "Leads (bulk lead extract)"),
    ("activities", "Activities (bulk activity extract)"),
];

pub(super) fn entity_def(
    entity: &str,
) -> Result<&'static (&'static str, &'static str), SourceError> {
    normalize::find_entity("marketo", ENTITIES, |e| e.0, entity)
}

pub(super) fn activity_fields() -> Vec<FieldInfo> {
    vec![
        fields::s("marketoGUID").key(),
        fields::int("leadId").required(),
        fields::ts("activityDate").required().incremental(),
        fields::int("activityTypeId"),
        fields::int("campaignId"),
        fields::int("primaryAttributeValueId"),
        fields::s("primaryAttributeValue"),
        fields::json("attributes"),
    ]
}

/// The ferry type of a `describe2` `dataType`.
pub(super) fn lead_type(t: &str) -> FieldType {
    match t {
        "integer" | "score" => FieldType::Integer,
        "float" | "percent" => FieldType::Float,
        "currency" => FieldType::Decimal {
            precision: 38,
            scale: 6,
        },
        "boolean" => FieldType::Boolean,
        "date" => FieldType::Date,
        "datetime" => FieldType::Timestamp,
        _ => FieldType::String,
    }
}

/// A lead field of `describe2`: name, label, type.
pub(super) type LeadField = (String, String, FieldType);
/// A column of a job's file and its type.
#[derive(Debug, Clone)]
pub(super) struct Column {
    pub(super) name: String,
    pub(super) ty: FieldType,
}
