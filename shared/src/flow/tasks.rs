//! The `tasks` of a flow: which fields are pulled, how they are renamed and typed, which records
//! are kept, what is masked, truncated, computed or checked. Each task is a one-key map:
//! `- map_all: { exclude: [notes] }`. Tasks run top to bottom; each sees the values the tasks
//! above it left. The semantics (nulls, overflow, division by zero, ...) are documented in
//! `docs/flows.md` (section "Tasks") and implemented in [`crate::transform`].

use super::FieldError;
use serde::{Deserialize, Serialize};

/// One task as written in the flow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TaskSpec {
    /// Output exactly these fields (source names or dotted paths), in this order.
    Project(Vec<String>),
    /// Every source field, minus `exclude`.
    MapAll(MapAll),
    /// One source field (or dotted path) to a destination name, optionally cast.
    Map(MapField),
    /// Keep only records matching a condition.
    Filter(FilterSpec),
    /// Hide all or part of a string field.
    Mask(MaskSpec),
    /// Cut a string field to at most `length` characters.
    Truncate(TruncateSpec),
    /// `to = left <op> right`, right a field or a constant.
    Arithmetic(ArithmeticSpec),
    /// `to = format` with `{field}` placeholders.
    Merge(MergeSpec),
    /// Check a field; drop the record or fail the run when the check fails.
    Validate(ValidateSpec),
    /// Refused with a pointer to `destination.layout.partition_by` (where partition keys live).
    Partition(serde_json::Value),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct MapAll {
    #[serde(default)]
    pub exclude: Vec<String>,
}

/// The types a `map` can cast to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CastType {
    String,
    Integer,
    Float,
    Decimal,
    Boolean,
    Date,
    Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapField {
    pub from: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Cast to this type; values that do not convert become null.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub cast: Option<CastType>,
    /// strftime format: parsing text into a date/timestamp, or printing one as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// Decimal precision (1-38, default 38) and scale (default 9), for `type: decimal`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<i8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterOp {
    Equal,
    NotEqual,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
    /// `min <= v <= max`.
    Between,
    /// Substring (strings only, case-sensitive).
    Contains,
    /// One of `values`.
    In,
    IsNull,
    IsNotNull,
}

impl FilterOp {
    pub fn as_str(self) -> &'static str {
        match self {
            FilterOp::Equal => "equal",
            FilterOp::NotEqual => "not_equal",
            FilterOp::Less => "less",
            FilterOp::LessOrEqual => "less_or_equal",
            FilterOp::Greater => "greater",
            FilterOp::GreaterOrEqual => "greater_or_equal",
            FilterOp::Between => "between",
            FilterOp::Contains => "contains",
            FilterOp::In => "in",
            FilterOp::IsNull => "is_null",
            FilterOp::IsNotNull => "is_not_null",
        }
    }
}

/// A condition: a leaf (`field`, `op`, `value`/`values`/`min`+`max`) or a combination
/// (`any: [...]` = or, `all: [...]` = and). Several `filter` tasks are and-ed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FilterSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<FilterOp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub any: Option<Vec<FilterSpec>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all: Option<Vec<FilterSpec>>,
}

impl FilterSpec {
    /// A leaf condition.
    pub fn leaf(field: &str, op: FilterOp, value: Option<serde_json::Value>) -> Self {
        FilterSpec {
            field: Some(field.into()),
            op: Some(op),
            value,
            ..Default::default()
        }
    }

    fn validate(&self, at: &str, errs: &mut Vec<FieldError>) {
        let scalar = |v: &serde_json::Value| v.is_string() || v.is_number() || v.is_boolean();
        match (&self.any, &self.all) {
            (Some(_), Some(_)) => errs.push(FieldError::new(
                at,
                "has both `any` and `all`; nest one inside the other",
            )),
            (Some(list), None) | (None, Some(list)) => {
                let key = if self.any.is_some() { "any" } else { "all" };
                if self.field.is_some()
                    || self.op.is_some()
                    || self.value.is_some()
                    || self.values.is_some()
                    || self.min.is_some()
                    || self.max.is_some()
                {
                    errs.push(FieldError::new(
                        at,
                        format!("has `{key}` and a condition; put the condition inside `{key}`"),
                    ));
                }
                if list.is_empty() {
                    errs.push(FieldError::new(
                        format!("{at}.{key}"),
                        "is empty; list at least one condition",
                    ));
                }
                for (i, c) in list.iter().enumerate() {
                    c.validate(&format!("{at}.{key}[{i}]"), errs);
                }
            }
            (None, None) => {
                match &self.field {
                    None => errs.push(FieldError::new(
                        format!("{at}.field"),
                        "is missing; name the field to test (or use `any:`/`all:`)",
                    )),
                    Some(f) if f.trim().is_empty() => errs.push(FieldError::new(
                        format!("{at}.field"),
                        "is empty; name a source field",
                    )),
                    _ => {}
                }
                let Some(op) = self.op else {
                    errs.push(FieldError::new(
                        format!("{at}.op"),
                        "is missing; use equal, not_equal, less, less_or_equal, greater, \
                         greater_or_equal, between, contains, in, is_null or is_not_null",
                    ));
                    return;
                };
                let needs = |k: &str, present: bool, errs: &mut Vec<FieldError>| {
                    if !present {
                        errs.push(FieldError::new(
                            format!("{at}.{k}"),
                            format!("is missing; `op: {}` needs `{k}`", op.as_str()),
                        ));
                    }
                };
                let forbid = |k: &str, present: bool, errs: &mut Vec<FieldError>| {
                    if present {
                        errs.push(FieldError::new(
                            format!("{at}.{k}"),
                            format!("is not used by `op: {}`; remove it", op.as_str()),
                        ));
                    }
                };
                let (v, vs, lo, hi) = (
                    self.value.is_some(),
                    self.values.is_some(),
                    self.min.is_some(),
                    self.max.is_some(),
                );
                match op {
                    FilterOp::Between => {
                        needs("min", lo, errs);
                        needs("max", hi, errs);
                        forbid("value", v, errs);
                        forbid("values", vs, errs);
                    }
                    FilterOp::In => {
                        needs("values", vs, errs);
                        forbid("value", v, errs);
                        forbid("min", lo, errs);
                        forbid("max", hi, errs);
                        if self.values.as_ref().is_some_and(|l| l.is_empty()) {
                            errs.push(FieldError::new(
                                format!("{at}.values"),
                                "is empty; list at least one value",
                            ));
                        }
                    }
                    FilterOp::IsNull | FilterOp::IsNotNull => {
                        forbid("value", v, errs);
                        forbid("values", vs, errs);
                        forbid("min", lo, errs);
                        forbid("max", hi, errs);
                    }
                    _ => {
                        needs("value", v, errs);
                        forbid("values", vs, errs);
                        forbid("min", lo, errs);
                        forbid("max", hi, errs);
                    }
                }
                let mut check = |k: &str, x: &serde_json::Value| {
                    if !scalar(x) {
                        errs.push(FieldError::new(
                            format!("{at}.{k}"),
                            "must be a string, number or boolean",
                        ));
                    }
                };
                if let Some(x) = &self.value {
                    check("value", x);
                }
                if let Some(x) = &self.min {
                    check("min", x);
                }
                if let Some(x) = &self.max {
                    check("max", x);
                }
                for (i, x) in self.values.iter().flatten().enumerate() {
                    check(&format!("values[{i}]"), x);
                }
                if op == FilterOp::Contains && !self.value.as_ref().is_none_or(|x| x.is_string()) {
                    errs.push(FieldError::new(
                        format!("{at}.value"),
                        "must be a string for `op: contains`",
                    ));
                }
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskSpec {
    pub field: String,
    /// Keep this many trailing characters visible (mask the rest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<usize>,
    /// Keep this many leading characters visible (mask the rest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_first: Option<usize>,
    /// Mask only the first n characters (AppFlow MASK_FIRST_N).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first: Option<usize>,
    /// Mask only the last n characters (AppFlow MASK_LAST_N).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<usize>,
    #[serde(default = "MaskSpec::default_char")]
    pub char: char,
}

impl MaskSpec {
    fn default_char() -> char {
        '*'
    }
    /// A mask of every character.
    pub fn all(field: &str) -> Self {
        MaskSpec {
            field: field.into(),
            keep_last: None,
            keep_first: None,
            first: None,
            last: None,
            char: '*',
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TruncateSpec {
    pub field: String,
    /// Characters (Unicode scalar values) kept.
    pub length: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArithmeticOp {
    Add,
    Subtract,
    Multiply,
    Divide,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArithmeticSpec {
    /// The destination field.
    pub to: String,
    /// A field name.
    pub left: String,
    pub op: ArithmeticOp,
    /// A field name (string) or a constant (number).
    pub right: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MergeSpec {
    pub to: String,
    /// Text with `{field}` placeholders (`{{` and `}}` for literal braces).
    pub format: String,
}

impl MergeSpec {
    /// The format split into literal text and field names, or why it cannot be.
    pub fn parts(&self) -> Result<Vec<MergePart>, String> {
        parse_format(&self.format)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergePart {
    Text(String),
    Field(String),
}

fn parse_format(f: &str) -> Result<Vec<MergePart>, String> {
    let mut parts = vec![];
    let mut text = String::new();
    let mut chars = f.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                text.push('}');
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => name.push(c),
                        None => return Err(format!("'{{{name}' is not closed; add `}}`")),
                    }
                }
                if name.trim().is_empty() {
                    return Err("has an empty `{}`; name a field inside the braces".into());
                }
                if !text.is_empty() {
                    parts.push(MergePart::Text(std::mem::take(&mut text)));
                }
                parts.push(MergePart::Field(name.trim().to_string()));
            }
            '}' => return Err("has a lone `}`; write `}}` for a literal brace".into()),
            c => text.push(c),
        }
    }
    if !text.is_empty() {
        parts.push(MergePart::Text(text));
    }
    if !parts.iter().any(|p| matches!(p, MergePart::Field(_))) {
        return Err("names no field; write e.g. \"{first_name} {last_name}\"".into());
    }
    Ok(parts)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValidateCheck {
    NonNull,
    NonZero,
    NonNegative,
    Numeric,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ValidateAction {
    /// Drop the record; it goes to the error location with the reason.
    #[default]
    DropRecord,
    /// Fail the run: nothing is written and the watermark stays.
    TerminateRun,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidateSpec {
    pub field: String,
    /// One of the built-in checks ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<ValidateCheck>,
    /// ... or a regular expression the (text of the) value must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matches: Option<String>,
    #[serde(default)]
    pub action: ValidateAction,
}

impl TaskSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            TaskSpec::Project(_) => "project",
            TaskSpec::MapAll(_) => "map_all",
            TaskSpec::Map(_) => "map",
            TaskSpec::Filter(_) => "filter",
            TaskSpec::Mask(_) => "mask",
            TaskSpec::Truncate(_) => "truncate",
            TaskSpec::Arithmetic(_) => "arithmetic",
            TaskSpec::Merge(_) => "merge",
            TaskSpec::Validate(_) => "validate",
            TaskSpec::Partition(_) => "partition",
        }
    }

    /// Problems in this task, with paths under `at` (e.g. `tasks[2]`). These checks need no
    /// schema; [`crate::transform::Plan::compile`] checks field names and types.
    pub fn validate(&self, at: &str, errs: &mut Vec<FieldError>) {
        let at = format!("{at}.{}", self.kind());
        let name = |f: &str, v: &str, errs: &mut Vec<FieldError>| {
            if v.trim().is_empty() {
                errs.push(FieldError::new(
                    format!("{at}.{f}"),
                    "is empty; name a field",
                ))
            }
        };
        match self {
            TaskSpec::Project(fields) => {
                if fields.is_empty() {
                    errs.push(FieldError::new(
                        &at,
                        "lists no field; name the fields to pull",
                    ));
                }
                for (i, f) in fields.iter().enumerate() {
                    name(&format!("[{i}]"), f, errs);
                }
            }
            TaskSpec::MapAll(m) => {
                for (i, e) in m.exclude.iter().enumerate() {
                    name(&format!("exclude[{i}]"), e, errs);
                }
            }
            TaskSpec::Map(m) => {
                name("from", &m.from, errs);
                if m.to.as_deref().is_some_and(|t| t.trim().is_empty()) {
                    errs.push(FieldError::new(
                        format!("{at}.to"),
                        "is empty; name the destination field or remove `to`",
                    ));
                }
                if m.format.is_some()
                    && !matches!(
                        m.cast,
                        Some(CastType::Date | CastType::Timestamp | CastType::String)
                    )
                {
                    errs.push(FieldError::new(
                        format!("{at}.format"),
                        "only applies with `type: date`, `type: timestamp` or `type: string`",
                    ));
                }
                if (m.precision.is_some() || m.scale.is_some()) && m.cast != Some(CastType::Decimal)
                {
                    errs.push(FieldError::new(
                        format!("{at}.precision"),
                        "precision and scale only apply with `type: decimal`",
                    ));
                }
                let p = m.precision.unwrap_or(38);
                let s = m.scale.unwrap_or(9);
                if !(1..=38).contains(&p) || s < 0 || s as u8 > p {
                    errs.push(FieldError::new(
                        format!("{at}.precision"),
                        "precision must be 1-38 and scale between 0 and precision",
                    ));
                }
            }
            TaskSpec::Filter(f) => f.validate(&at, errs),
            TaskSpec::Mask(m) => {
                name("field", &m.field, errs);
                let set = [m.keep_first, m.keep_last, m.first, m.last]
                    .iter()
                    .filter(|x| x.is_some())
                    .count();
                if set > 1 {
                    errs.push(FieldError::new(
                        &at,
                        "set at most one of keep_first, keep_last, first and last (none masks everything)",
                    ));
                }
            }
            TaskSpec::Truncate(t) => {
                name("field", &t.field, errs);
            }
            TaskSpec::Arithmetic(a) => {
                name("to", &a.to, errs);
                name("left", &a.left, errs);
                match &a.right {
                    serde_json::Value::String(s) => name("right", s, errs),
                    serde_json::Value::Number(_) => {}
                    _ => errs.push(FieldError::new(
                        format!("{at}.right"),
                        "must be a field name or a number",
                    )),
                }
            }
            TaskSpec::Merge(m) => {
                name("to", &m.to, errs);
                if let Err(e) = m.parts() {
                    errs.push(FieldError::new(format!("{at}.format"), e));
                }
            }
            TaskSpec::Validate(v) => {
                name("field", &v.field, errs);
                match (&v.check, &v.matches) {
                    (None, None) => errs.push(FieldError::new(
                        &at,
                        "needs `check: non_null | non_zero | non_negative | numeric` or `matches: <regex>`",
                    )),
                    (Some(_), Some(_)) => errs.push(FieldError::new(
                        &at,
                        "has both `check` and `matches`; write two validate tasks",
                    )),
                    (None, Some(re)) => {
                        if let Err(e) = regex::Regex::new(re) {
                            errs.push(FieldError::new(
                                format!("{at}.matches"),
                                format!("is not a valid regular expression: {e}"),
                            ));
                        }
                    }
                    _ => {}
                }
            }
            TaskSpec::Partition(_) => errs.push(FieldError::new(
                &at,
                "partition keys belong to the output layout: move them to \
                 `destination.layout.partition_by: [field, ...]` and remove this task",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errs(yaml: &str) -> Vec<String> {
        let v: serde_json::Value = serde_yaml::from_str(yaml).unwrap();
        let t: TaskSpec = serde_json::from_value(v).unwrap();
        let mut e = vec![];
        t.validate("tasks[3]", &mut e);
        e.into_iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn design_example_spellings_parse() {
        for y in [
            "map_all: { exclude: [internal_notes] }",
            "filter: { field: status, op: not_equal, value: deleted }",
            "mask: { field: phone, keep_last: 4 }",
        ] {
            assert!(errs(y).is_empty(), "{y}");
        }
    }

    #[test]
    fn every_task_kind_parses_and_validates() {
        for y in [
            "project: [id, address.city]",
            "map: { from: amount, to: amount_f, type: float }",
            "map: { from: d, type: date, format: '%d/%m/%Y' }",
            "map: { from: a, type: decimal, precision: 10, scale: 2 }",
            "filter: { field: n, op: between, min: 1, max: 5 }",
            "filter: { field: c, op: in, values: [US, DE] }",
            "filter: { any: [ { field: a, op: is_null }, { all: [ { field: b, op: contains, value: x } ] } ] }",
            "mask: { field: p }",
            "mask: { field: p, first: 2, char: '#' }",
            "truncate: { field: name, length: 3 }",
            "arithmetic: { to: t, left: a, op: divide, right: b }",
            "arithmetic: { to: t, left: a, op: multiply, right: 1.5 }",
            "merge: { to: full, format: '{first} {last} {{x}}' }",
            "validate: { field: email, check: non_null }",
            "validate: { field: email, matches: '^.+@.+$', action: terminate_run }",
        ] {
            assert_eq!(errs(y), Vec::<String>::new(), "{y}");
        }
    }

    #[test]
    fn mistakes_name_the_task_and_field() {
        let cases = [
            (
                "filter: { field: n, op: between, min: 1 }",
                "tasks[3].filter.max: is missing",
            ),
            (
                "filter: { field: n, op: in, values: [] }",
                "tasks[3].filter.values: is empty",
            ),
            (
                "filter: { field: n, op: equal }",
                "tasks[3].filter.value: is missing",
            ),
            (
                "filter: { field: n, op: is_null, value: 1 }",
                "tasks[3].filter.value: is not used",
            ),
            (
                "filter: { any: [ { field: n } ] }",
                "tasks[3].filter.any[0].op: is missing",
            ),
            (
                "filter: { field: n, op: contains, value: 3 }",
                "tasks[3].filter.value: must be a string",
            ),
            (
                "filter: { field: n, op: equal, value: [1] }",
                "tasks[3].filter.value: must be a string, number",
            ),
            (
                "mask: { field: p, first: 1, last: 2 }",
                "tasks[3].mask: set at most one",
            ),
            (
                "arithmetic: { to: t, left: a, op: add, right: [1] }",
                "tasks[3].arithmetic.right: must be",
            ),
            (
                "merge: { to: t, format: 'no fields' }",
                "tasks[3].merge.format: names no field",
            ),
            (
                "merge: { to: t, format: '{open' }",
                "tasks[3].merge.format: '{open' is not closed",
            ),
            ("validate: { field: e }", "tasks[3].validate: needs `check"),
            (
                "validate: { field: e, matches: '(' }",
                "tasks[3].validate.matches: is not a valid regular expression",
            ),
            (
                "partition: [country]",
                "tasks[3].partition: partition keys belong to the output layout",
            ),
            (
                "map: { from: a, format: '%Y' }",
                "tasks[3].map.format: only applies",
            ),
            (
                "map: { from: a, type: decimal, precision: 40 }",
                "tasks[3].map.precision",
            ),
            (
                "truncate: { field: '', length: 2 }",
                "tasks[3].truncate.field: is empty",
            ),
        ];
        for (y, want) in cases {
            let got = errs(y);
            assert!(got.iter().any(|e| e.starts_with(want)), "{y}: {got:?}");
        }
    }

    #[test]
    fn merge_format_parts() {
        let m = MergeSpec {
            to: "x".into(),
            format: "{a}-{ b }{{lit}}".into(),
        };
        assert_eq!(
            m.parts().unwrap(),
            vec![
                MergePart::Field("a".into()),
                MergePart::Text("-".into()),
                MergePart::Field("b".into()),
                MergePart::Text("{lit}".into()),
            ]
        );
    }
}
