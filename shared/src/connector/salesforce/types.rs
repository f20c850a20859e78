//! The salesforce connector's entities and fields, and how its values are typed.

use super::*;

/// SOQL allows five levels of child-to-parent relationships (`Account.Owner.Manager.Name`).
pub(super) const MAX_RELATIONSHIP_DEPTH: usize = 5;
/// How a value of a Salesforce field type is written in the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Integer,
    Float,
    /// Money and percentages: exact decimals with the describe's precision and scale.
    Decimal {
        precision: u8,
        scale: i8,
    },
    Boolean,
    Timestamp,
    Date,
}

impl Kind {
    /// The kind of a describe field (`type`, and `precision`/`scale` for currency and percent).
    pub(super) fn of_field(f: &Value) -> Option<Kind> {
        let t = f.get("type").and_then(Value::as_str)?;
        match t {
            "currency" | "percent" => {
                // Salesforce: precision = total digits, scale = digits after the point
                // (currency defaults to 18, 2). Arrow's Decimal128 holds up to 38 digits.
                let p = f.get("precision").and_then(Value::as_u64).unwrap_or(0);
                let sc = f.get("scale").and_then(Value::as_u64).unwrap_or(2).min(37);
                let p = if p == 0 { 18 } else { p }.clamp(sc + 1, 38);
                Some(Kind::Decimal {
                    precision: p as u8,
                    scale: sc as i8,
                })
            }
            other => Kind::of(other),
        }
    }

    /// `None`: a field the connector leaves out (base64), or a compound (handled apart).
    pub(super) fn of(sf_type: &str) -> Option<Kind> {
        Some(match sf_type {
            "boolean" => Kind::Boolean,
            "int" | "long" => Kind::Integer,
            "currency" | "percent" => Kind::Decimal {
                precision: 18,
                scale: 2,
            },
            "double" => Kind::Float,
            "date" => Kind::Date,
            "datetime" => Kind::Timestamp,
            "base64" | "address" | "location" => return None,
            // id, reference, string, picklist, multipicklist, combobox, textarea, phone, url,
            // email, encryptedstring, time, anyType and types added later: text.
            _ => Kind::Text,
        })
    }

    pub(super) fn field_type(self) -> FieldType {
        match self {
            Kind::Text => FieldType::String,
            Kind::Integer => FieldType::Integer,
            Kind::Float => FieldType::Float,
            Kind::Decimal { precision, scale } => FieldType::Decimal { precision, scale },
            Kind::Boolean => FieldType::Boolean,
            Kind::Timestamp => FieldType::Timestamp,
            Kind::Date => FieldType::Date,
        }
    }
}

/// One output column and the SOQL fields it is read from.
#[derive(Debug, Clone)]
pub(super) enum Column {
    Plain {
        name: String,
        kind: Kind,
    },
    /// An address or location: a struct of its components.
    Compound {
        name: String,
        parts: Vec<(String, String, Kind)>,
    },
    /// A field of a related record (`Owner.Name`): a flat column named by its path, typed from
    /// the related object's describe; null when a relationship on the way is empty.
    Related {
        name: String,
        path: Vec<String>,
        kind: Kind,
    },
}

/// What `describe` found, shaped for reading.
#[derive(Debug, Clone)]
pub(super) struct Described {
    pub(super) desc: EntityDescription,
    pub(super) columns: Vec<Column>,
    /// Every SOQL field, in column order.
    pub(super) soql_fields: Vec<String>,
    /// Field API name -> kind, for the window field.
    pub(super) kinds: HashMap<String, Kind>,
}

/// Subfield name of a compound component: `BillingStreet` of `BillingAddress` -> `street`,
/// `Loc__Latitude__s` of `Loc__c` -> `latitude`.
pub(super) fn sub_name(compound: &str, component: &str) -> String {
    let prefix = compound
        .strip_suffix("__c")
        .map(|p| format!("{p}__"))
        .unwrap_or_else(|| {
            compound
                .strip_suffix("Address")
                .unwrap_or(compound)
                .to_string()
        });
    let rest = component.strip_prefix(prefix.as_str()).unwrap_or(component);
    let rest = rest.strip_suffix("__s").unwrap_or(rest);
    let mut c = rest.chars();
    match c.next() {
        Some(f) => f.to_ascii_lowercase().to_string() + c.as_str(),
        None => component.to_string(),
    }
}

/// How Salesforce spells values: datetimes REST `…000+0000`, Bulk `…000Z` or RFC 3339; Bulk
/// CSV booleans `true`/`TRUE`/`True`; no epoch numbers.
/// <https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/intro_valid_date_formats.htm>
pub(super) const DIALECT: super::normalize::Dialect = super::normalize::Dialect {
    time_formats: &["%Y-%m-%dT%H:%M:%S%.f%z"],
    epoch: super::normalize::Epoch::No,
    true_words: &["TRUE", "True"],
    false_words: &["FALSE", "False"],
    numeric_booleans: false,
    date_prefix: false,
    empty_text_is_null: true,
};

/// A datetime as Salesforce writes it.
pub(super) fn parse_sf_time(s: &str) -> Option<DateTime<Utc>> {
    super::normalize::time_text(s, &DIALECT)
}

/// A REST JSON value or a Bulk CSV cell as the output value of its kind, read through the one
/// coercion function in Salesforce's dialect.
pub(crate) fn typed(kind: Kind, field: &str, v: Cell<'_>) -> Result<Value, String> {
    let cell;
    let v = match v {
        Cell::Json(v) => v,
        Cell::Csv(s) => {
            cell = Value::String(s.clone());
            &cell
        }
    };
    super::normalize::value_in(v, &kind.field_type(), &DIALECT)
        .map_err(|why| format!("{field}: {why}"))
}

/// JSON text with every number literal turned into a string literal of the same text, so that
/// money survives parsing exactly: serde_json reads numbers as 64-bit floats, which cannot hold
/// `98765432109876.54`. Strings (with their escapes) are copied untouched.
pub fn numbers_as_text(json: &str) -> String {
    let b = json.as_bytes();
    let mut out = String::with_capacity(json.len() + 64);
    let mut i = 0;
    let mut last = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < b.len() && matches!(b[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                out.push_str(&json[last..start]);
                out.push('"');
                out.push_str(&json[start..i]);
                out.push('"');
                last = i;
            }
            _ => i += 1,
        }
    }
    out.push_str(&json[last.min(json.len())..]);
    out
}

pub(crate) enum Cell<'a> {
    Json(&'a Value),
    Csv(&'a String),
}

/// RFC 4180 CSV as Bulk API 2.0 writes it: a header row, `"` quoting with `""` escapes,
/// quoted commas and line breaks, LF or CRLF line endings (read by the `csv` crate). A body cut
/// inside a quoted value — an odd number of `"` — is refused as truncated instead of read as
/// a shorter last record.
pub fn parse_csv(text: &str) -> Result<Vec<Vec<String>>, String> {
    if text.bytes().filter(|b| *b == b'"').count() % 2 == 1 {
        return Err("a quoted value is not closed (truncated CSV?)".into());
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    reader
        .records()
        .map(|r| {
            r.map(|rec| rec.iter().map(str::to_string).collect())
                .map_err(|e| format!("not CSV: {e}"))
        })
        .collect()
}

pub(super) enum CellOwned {
    Json(Value),
    Csv(String),
}

/// How a message names a record: its position in the page, never a value of it (its `Id`
/// included: docs/security.md).
pub(super) fn row_at(n: usize) -> String {
    format!("record {n} of the page")
}
