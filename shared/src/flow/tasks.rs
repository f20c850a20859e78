//! The `tasks` of a flow: which fields are pulled, how they are renamed, which records are kept,
//! what is masked. Each task is a one-key map: `- map_all: { exclude: [notes] }`.

use super::FieldError;
use serde::{Deserialize, Serialize};

/// One task as written in the flow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TaskSpec {
    /// Every source field, minus `exclude`.
    MapAll(MapAll),
    /// One source field to a destination name.
    Map(MapField),
    /// Keep only records matching a condition.
    Filter(FilterSpec),
    /// Hide all or part of a string field.
    Mask(MaskSpec),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct MapAll {
    #[serde(default)]
    pub exclude: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapField {
    pub from: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterOp {
    Equal,
    NotEqual,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterSpec {
    pub field: String,
    pub op: FilterOp,
    pub value: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskSpec {
    pub field: String,
    /// Keep this many trailing characters visible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<usize>,
    /// Keep this many leading characters visible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_first: Option<usize>,
    #[serde(default = "MaskSpec::default_char")]
    pub char: char,
}

impl MaskSpec {
    fn default_char() -> char {
        '*'
    }
}

impl TaskSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            TaskSpec::MapAll(_) => "map_all",
            TaskSpec::Map(_) => "map",
            TaskSpec::Filter(_) => "filter",
            TaskSpec::Mask(_) => "mask",
        }
    }

    /// Problems in this task, with paths under `at` (e.g. `tasks[2]`).
    pub fn validate(&self, at: &str, errs: &mut Vec<FieldError>) {
        let at = format!("{at}.{}", self.kind());
        let empty = |f: &str, errs: &mut Vec<FieldError>| {
            errs.push(FieldError::new(
                format!("{at}.{f}"),
                "is empty; name a source field",
            ))
        };
        match self {
            TaskSpec::MapAll(m) => {
                for (i, e) in m.exclude.iter().enumerate() {
                    if e.trim().is_empty() {
                        empty(&format!("exclude[{i}]"), errs);
                    }
                }
            }
            TaskSpec::Map(m) => {
                if m.from.trim().is_empty() {
                    empty("from", errs);
                }
                if m.to.as_deref().is_some_and(|t| t.trim().is_empty()) {
                    errs.push(FieldError::new(
                        format!("{at}.to"),
                        "is empty; name the destination field or remove `to`",
                    ));
                }
            }
            TaskSpec::Filter(f) => {
                if f.field.trim().is_empty() {
                    empty("field", errs);
                }
                if !(f.value.is_string() || f.value.is_number() || f.value.is_boolean()) {
                    errs.push(FieldError::new(
                        format!("{at}.value"),
                        "must be a string, number or boolean",
                    ));
                }
            }
            TaskSpec::Mask(m) => {
                if m.field.trim().is_empty() {
                    empty("field", errs);
                }
                if m.keep_first.is_some() && m.keep_last.is_some() {
                    errs.push(FieldError::new(
                        format!("{at}"),
                        "set at most one of keep_first and keep_last",
                    ));
                }
            }
        }
    }
}
