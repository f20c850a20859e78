//! The task pipeline: a flow's `tasks`, compiled once against the source schema into a [`Plan`],
//! applied to Arrow record batches with arrow's compute kernels (never record by record through
//! JSON values).
//!
//! Model: a batch is a set of named columns ("slots"). Tasks run top to bottom; each reads the
//! columns the tasks above it left, by name (a source field, a dotted path into a struct such as
//! `address.city`, or a field an earlier task created). `mask`/`truncate` replace a column in
//! place; `map` (with a new name), `merge` and `arithmetic` add one. Filters and validations do
//! not move rows while the plan runs: they clear rows in an "alive" mask, and the rows are
//! dropped once, at the end, so row numbers in rejections are those of the input batch.
//!
//! The output is the fields chosen by `project`/`map_all`/`map` (in that order) plus the fields
//! `merge` and `arithmetic` create; with no choosing task, every top-level source field plus the
//! created fields. Each output field takes its column's value at the end of the plan.
//!
//! Defined results (also in `docs/flows.md`): see [`kernels`].

pub mod kernels;
pub mod pushdown;
#[cfg(test)]
mod tests;

use crate::error::ErrorKind;
use crate::flow::tasks::{
    ArithmeticOp, ArithmeticSpec, CastType, FilterOp, FilterSpec, MapField, MaskSpec, MergePart,
    MergeSpec, TaskSpec, ValidateAction, ValidateCheck, ValidateSpec,
};
use crate::flow::FieldError;
use arrow::array::{ArrayRef, BooleanArray};
use arrow::compute;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use std::collections::HashMap;
use std::sync::Arc;

pub use pushdown::FilterPushdown;

/// Why a batch could not be transformed.
#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    /// A task could not run on this batch (a bug or a schema the plan was not compiled for).
    #[error("tasks[{index}].{kind}: {message}")]
    Task {
        index: usize,
        kind: &'static str,
        message: String,
    },
    /// A `validate` task with `action: terminate_run` failed: the run must fail, write nothing
    /// and leave the watermark. `row` is the row in the input batch.
    #[error("tasks[{index}].validate: record {row} failed the check on '{field}' ({reason}); the flow says terminate_run, so the run stops and writes nothing")]
    Terminated {
        index: usize,
        field: String,
        row: usize,
        reason: String,
    },
    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),
}

impl TransformError {
    /// The stable step error name. `Terminated` is `SourceRejected`: the flow is valid, the data
    /// is not (not retried; the state machine's Catch fails the run).
    pub fn kind(&self) -> ErrorKind {
        match self {
            TransformError::Terminated { .. } => ErrorKind::SourceRejected,
            TransformError::Task { .. } => ErrorKind::InvalidFlow,
            TransformError::Arrow(_) => ErrorKind::Fatal,
        }
    }
}

impl From<TransformError> for crate::error::StepError {
    fn from(e: TransformError) -> Self {
        crate::error::StepError::new(e.kind(), e.to_string())
    }
}

/// The result of applying a plan to one batch.
#[derive(Debug)]
pub struct Applied {
    pub batch: RecordBatch,
    /// Records dropped by filters.
    pub filtered: u64,
    /// Records dropped by validation (`drop_record`): row index in the *input* batch and the
    /// reason. transform-batch writes them, with the raw record, to the flow's error location.
    pub rejected: Vec<Rejection>,
}

/// One record a task refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub row: usize,
    pub reason: String,
}

/// A compiled task list.
#[derive(Debug, Clone)]
pub struct Plan {
    input: SchemaRef,
    steps: Vec<(usize, Step)>,
    /// (slot, output name), in output order.
    projection: Vec<(usize, String)>,
    output: SchemaRef,
    /// Filter steps the source could run instead: (position in `steps`, the filter with source
    /// field names).
    pushable: Vec<(usize, FilterSpec)>,
}

/// A compiled condition.
#[derive(Debug, Clone)]
pub(crate) enum Cond {
    Leaf {
        slot: usize,
        op: FilterOp,
        /// One-element arrays of the column's type: value / min,max / values.
        args: Vec<ArrayRef>,
    },
    Any(Vec<Cond>),
    All(Vec<Cond>),
}

#[derive(Debug, Clone)]
pub(crate) enum Mask {
    All,
    KeepFirst(usize),
    KeepLast(usize),
    First(usize),
    Last(usize),
}

#[derive(Debug, Clone)]
pub(crate) enum Operand {
    Slot(usize),
    Int(i64),
    Float(f64),
}

#[derive(Debug, Clone)]
enum Step {
    Copy {
        from: usize,
        out: usize,
    },
    Extract {
        parent: usize,
        child: String,
        out: usize,
    },
    Cast {
        from: usize,
        out: usize,
        to: DataType,
        format: Option<String>,
    },
    Filter(Cond),
    Mask {
        slot: usize,
        mask: Mask,
        char: char,
    },
    Truncate {
        slot: usize,
        length: usize,
    },
    Arithmetic {
        left: usize,
        right: Operand,
        op: ArithmeticOp,
        out: usize,
        integer: bool,
    },
    Merge {
        parts: Vec<Result<usize, String>>,
        out: usize,
    },
    Validate {
        slot: usize,
        field: String,
        check: Check,
        action: ValidateAction,
    },
}

#[derive(Debug, Clone)]
pub(crate) enum Check {
    NonNull,
    NonZero,
    NonNegative,
    Numeric,
    Matches(String),
}

impl Check {
    fn describe(&self) -> String {
        match self {
            Check::NonNull => "is null".into(),
            Check::NonZero => "is zero".into(),
            Check::NonNegative => "is negative".into(),
            Check::Numeric => "is not numeric".into(),
            Check::Matches(re) => format!("does not match /{re}/"),
        }
    }
}

/// Compile-time state: the slots and the names bound to them.
struct Builder<'a> {
    input: &'a Schema,
    types: Vec<DataType>,
    names: HashMap<String, usize>,
    /// Slots written by a task (so no longer the source's own value).
    modified: Vec<bool>,
    steps: Vec<(usize, Step)>,
    errs: Vec<FieldError>,
}

impl Builder<'_> {
    fn new_slot(&mut self, t: DataType) -> usize {
        self.types.push(t);
        self.modified.push(true);
        self.types.len() - 1
    }

    /// The slot a name refers to: a bound name, or a dotted path into a struct.
    fn resolve(&mut self, task: usize, name: &str, at: String) -> Option<usize> {
        if let Some(s) = self.names.get(name) {
            return Some(*s);
        }
        // Longest bound prefix that is a struct, then walk the rest.
        let dots: Vec<usize> = name.match_indices('.').map(|(i, _)| i).collect();
        for &d in dots.iter().rev() {
            let (prefix, rest) = (&name[..d], &name[d + 1..]);
            let Some(&base) = self.names.get(prefix) else {
                continue;
            };
            let mut cur = base;
            let mut path = prefix.to_string();
            for seg in rest.split('.') {
                let DataType::Struct(fields) = &self.types[cur] else {
                    self.errs.push(FieldError::new(
                        at,
                        format!("'{path}' is not an object, so it has no field '{seg}'"),
                    ));
                    return None;
                };
                let Some(f) = fields.iter().find(|f| f.name() == seg) else {
                    self.errs.push(FieldError::new(
                        at,
                        format!(
                            "'{path}' has no field '{seg}'; its fields are: {}",
                            fields
                                .iter()
                                .map(|f| f.name().as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                    return None;
                };
                let t = f.data_type().clone();
                let out = self.new_slot(t);
                self.modified[out] = false;
                self.steps.push((
                    task,
                    Step::Extract {
                        parent: cur,
                        child: seg.to_string(),
                        out,
                    },
                ));
                path = format!("{path}.{seg}");
                self.names.insert(path.clone(), out);
                cur = out;
            }
            return Some(cur);
        }
        let mut known: Vec<&str> = self
            .input
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        let mut created: Vec<&str> = self
            .names
            .keys()
            .map(|s| s.as_str())
            .filter(|n| !known.contains(n) && !n.contains('.'))
            .collect();
        created.sort();
        known.extend(created);
        self.errs.push(FieldError::new(
            at,
            format!(
                "there is no field '{name}' at this point; fields are: {}",
                known.join(", ")
            ),
        ));
        None
    }
}

impl Plan {
    /// Compile `tasks` against the source schema. Errors name the task index and field
    /// (`tasks[3].filter.field: ...`).
    pub fn compile(tasks: &[TaskSpec], input: SchemaRef) -> Result<Plan, Vec<FieldError>> {
        let mut b = Builder {
            input: &input,
            types: input
                .fields()
                .iter()
                .map(|f| f.data_type().clone())
                .collect(),
            names: input
                .fields()
                .iter()
                .enumerate()
                .map(|(i, f)| (f.name().clone(), i))
                .collect(),
            modified: vec![false; input.fields().len()],
            steps: vec![],
            errs: vec![],
        };
        // Output names in order; `selecting` once a project/map_all/map chose fields.
        let mut out: Vec<String> = vec![];
        let mut selecting = false;
        let mut created: Vec<(String, usize)> = vec![]; // names written by map-to/merge/arithmetic
        let mut pushable: Vec<(usize, FilterSpec)> = vec![];
        let mut validated = false;
        for (i, t) in tasks.iter().enumerate() {
            let kind = t.kind();
            let at = |f: &str| {
                if f.is_empty() {
                    format!("tasks[{i}].{kind}")
                } else {
                    format!("tasks[{i}].{kind}.{f}")
                }
            };
            let mut claim = |name: &str, out: &mut Vec<String>, b: &mut Builder, f: &str| {
                if let Some((_, prev)) = created.iter().find(|(n, _)| n == name) {
                    b.errs.push(FieldError::new(
                        at(f),
                        format!("tasks[{prev}] already writes the destination field '{name}'; pick another name"),
                    ));
                } else {
                    created.push((name.to_string(), i));
                }
                if !out.iter().any(|n| n == name) {
                    out.push(name.to_string());
                }
            };
            match t {
                TaskSpec::Project(fields) => {
                    selecting = true;
                    for (k, f) in fields.iter().enumerate() {
                        if b.resolve(i, f, format!("tasks[{i}].project[{k}]")).is_some()
                            && !out.contains(f)
                        {
                            out.push(f.clone());
                        }
                    }
                }
                TaskSpec::MapAll(m) => {
                    selecting = true;
                    for (k, e) in m.exclude.iter().enumerate() {
                        if input.index_of(e).is_err() {
                            b.errs.push(FieldError::new(
                                at(&format!("exclude[{k}]")),
                                format!("the source has no field '{e}' (a typo?)"),
                            ));
                        }
                    }
                    for f in input.fields() {
                        if !m.exclude.contains(f.name()) && !out.contains(f.name()) {
                            out.push(f.name().clone());
                        }
                    }
                }
                TaskSpec::Map(m) => {
                    selecting = true;
                    let Some(slot) = compile_map(&mut b, i, m, &at) else {
                        continue;
                    };
                    let to = m.to.clone().unwrap_or_else(|| m.from.clone());
                    if to != m.from {
                        claim(&to, &mut out, &mut b, "to");
                    } else if !out.contains(&to) {
                        out.push(to.clone());
                    }
                    b.names.insert(to, slot);
                }
                TaskSpec::Filter(f) => {
                    let mut uses_modified = false;
                    if let Some(c) = compile_cond(&mut b, i, f, &at(""), &mut uses_modified) {
                        b.steps.push((i, Step::Filter(c)));
                        if !uses_modified && !validated {
                            pushable.push((b.steps.len() - 1, f.clone()));
                        }
                    }
                }
                TaskSpec::Mask(m) => {
                    let Some(s) = b.resolve(i, &m.field, at("field")) else {
                        continue;
                    };
                    let Some(s) = b.text_slot(i, s, &m.field, at("field"), "mask") else {
                        continue;
                    };
                    b.modified[s] = true;
                    b.steps.push((
                        i,
                        Step::Mask {
                            slot: s,
                            mask: mask_mode(m),
                            char: m.char,
                        },
                    ));
                }
                TaskSpec::Truncate(tr) => {
                    let Some(s) = b.resolve(i, &tr.field, at("field")) else {
                        continue;
                    };
                    let Some(s) = b.text_slot(i, s, &tr.field, at("field"), "truncate") else {
                        continue;
                    };
                    b.modified[s] = true;
                    b.steps.push((
                        i,
                        Step::Truncate {
                            slot: s,
                            length: tr.length,
                        },
                    ));
                }
                TaskSpec::Arithmetic(a) => {
                    if let Some(step) = compile_arithmetic(&mut b, i, a, &at) {
                        claim(&a.to, &mut out, &mut b, "to");
                        let Step::Arithmetic { out: o, .. } = &step else {
                            unreachable!()
                        };
                        b.names.insert(a.to.clone(), *o);
                        b.steps.push((i, step));
                    }
                }
                TaskSpec::Merge(m) => {
                    if let Some(o) = compile_merge(&mut b, i, m, &at) {
                        claim(&m.to, &mut out, &mut b, "to");
                        b.names.insert(m.to.clone(), o);
                    }
                }
                TaskSpec::Validate(v) => {
                    validated = true;
                    if let Some(step) = compile_validate(&mut b, i, v, &at) {
                        b.steps.push((i, step));
                    }
                }
                TaskSpec::Partition(_) => b.errs.push(FieldError::new(
                    at(""),
                    "partition keys belong to the output layout: move them to `destination.layout.partition_by`",
                )),
            }
        }
        if !selecting {
            out = input.fields().iter().map(|f| f.name().clone()).collect();
            for (n, _) in &created {
                if !out.contains(n) {
                    out.push(n.clone());
                }
            }
        }
        let mut errs = b.errs;
        let projection: Vec<(usize, String)> = out
            .iter()
            .filter_map(|n| b.names.get(n).map(|s| (*s, n.clone())))
            .collect();
        if projection.is_empty() && errs.is_empty() {
            errs.push(FieldError::new(
                "tasks",
                "the tasks select no field; the output would be empty",
            ));
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        let output = Arc::new(Schema::new(
            projection
                .iter()
                .map(|(s, n)| Field::new(n, b.types[*s].clone(), true))
                .collect::<Vec<_>>(),
        ));
        let steps = b.steps;
        Ok(Plan {
            input,
            steps,
            projection,
            output,
            pushable,
        })
    }

    pub fn output_schema(&self) -> SchemaRef {
        self.output.clone()
    }

    pub fn input_schema(&self) -> SchemaRef {
        self.input.clone()
    }

    /// Number of compiled steps (for tests and benches).
    pub fn steps(&self) -> usize {
        self.steps.len()
    }

    pub fn apply(&self, batch: &RecordBatch) -> Result<Applied, TransformError> {
        let rows = batch.num_rows();
        let mut cols: Vec<Option<ArrayRef>> = batch.columns().iter().cloned().map(Some).collect();
        #[allow(
            clippy::expect_used,
            reason = "compile() gives every step only slots that an earlier step or the input wrote"
        )]
        let col = |cols: &Vec<Option<ArrayRef>>, s: usize| -> ArrayRef {
            cols[s]
                .clone()
                .expect("slots are written before they are read")
        };
        let mut alive: Option<BooleanArray> = None;
        let mut filtered = 0u64;
        let mut rejected = vec![];
        for (index, step) in &self.steps {
            let index = *index;
            let task = |kind: &'static str| {
                move |message: String| TransformError::Task {
                    index,
                    kind,
                    message,
                }
            };
            match step {
                Step::Copy { from, out } => {
                    let v = col(&cols, *from);
                    put(&mut cols, *out, v);
                }
                Step::Extract { parent, child, out } => {
                    let v = kernels::extract(&col(&cols, *parent), child).map_err(task("map"))?;
                    put(&mut cols, *out, v);
                }
                Step::Cast {
                    from,
                    out,
                    to,
                    format,
                } => {
                    let v = kernels::cast(&col(&cols, *from), to, format.as_deref())
                        .map_err(task("map"))?;
                    put(&mut cols, *out, v);
                }
                Step::Filter(c) => {
                    let keep = kernels::eval_cond(c, &|s| col(&cols, s)).map_err(task("filter"))?;
                    let next = match &alive {
                        None => keep,
                        Some(a) => compute::and(a, &keep)?,
                    };
                    let before = alive.as_ref().map_or(rows, |a| a.true_count());
                    filtered += (before - next.true_count()) as u64;
                    alive = Some(next);
                }
                Step::Mask { slot, mask, char } => {
                    let v = kernels::mask(&col(&cols, *slot), mask, *char).map_err(task("mask"))?;
                    put(&mut cols, *slot, v);
                }
                Step::Truncate { slot, length } => {
                    let v =
                        kernels::truncate(&col(&cols, *slot), *length).map_err(task("truncate"))?;
                    put(&mut cols, *slot, v);
                }
                Step::Arithmetic {
                    left,
                    right,
                    op,
                    out,
                    integer,
                } => {
                    let r = match right {
                        Operand::Slot(s) => Operand::Slot(*s),
                        o => o.clone(),
                    };
                    let v = kernels::arithmetic(
                        &col(&cols, *left),
                        &r,
                        &|s| col(&cols, s),
                        *op,
                        *integer,
                    )
                    .map_err(task("arithmetic"))?;
                    put(&mut cols, *out, v);
                }
                Step::Merge { parts, out } => {
                    let v =
                        kernels::merge(parts, &|s| col(&cols, s), rows).map_err(task("merge"))?;
                    put(&mut cols, *out, v);
                }
                Step::Validate {
                    slot,
                    field,
                    check,
                    action,
                } => {
                    let fail =
                        kernels::validate(&col(&cols, *slot), check).map_err(task("validate"))?;
                    let fail = match &alive {
                        None => fail,
                        Some(a) => compute::and(a, &fail)?,
                    };
                    if fail.true_count() == 0 {
                        continue;
                    }
                    let reason = check.describe();
                    let failing = (0..rows).filter(|r| fail.value(*r));
                    match action {
                        ValidateAction::TerminateRun => {
                            // true_count > 0: there is a failing row.
                            if let Some(row) = failing.into_iter().next() {
                                return Err(TransformError::Terminated {
                                    index,
                                    field: field.clone(),
                                    row,
                                    reason,
                                });
                            }
                        }
                        ValidateAction::DropRecord => {
                            for row in failing {
                                rejected.push(Rejection {
                                    row,
                                    reason: format!("tasks[{index}].validate: '{field}' {reason}"),
                                });
                            }
                            let pass = compute::not(&fail)?;
                            alive = Some(match &alive {
                                None => pass,
                                Some(a) => compute::and(a, &pass)?,
                            });
                        }
                    }
                }
            }
        }
        let out_cols: Vec<ArrayRef> = self
            .projection
            .iter()
            .map(|(s, _)| col(&cols, *s))
            .collect();
        let mut out = RecordBatch::try_new(self.output.clone(), out_cols)?;
        if let Some(a) = alive {
            if a.true_count() != rows {
                out = compute::filter_record_batch(&out, &a)?;
            }
        }
        rejected.sort_by_key(|r| r.row);
        Ok(Applied {
            batch: out,
            filtered,
            rejected,
        })
    }
}

fn put(cols: &mut Vec<Option<ArrayRef>>, slot: usize, v: ArrayRef) {
    if cols.len() <= slot {
        cols.resize(slot + 1, None);
    }
    cols[slot] = Some(v);
}

/// Scalar types merge, mask, truncate and matches can print as text.
fn is_textable(t: &DataType) -> bool {
    !matches!(
        t,
        DataType::Struct(_) | DataType::List(_) | DataType::LargeList(_) | DataType::Map(_, _)
    )
}

impl Builder<'_> {
    /// A string slot for `s`: itself, or a cast of it to text (mask/truncate of a number).
    fn text_slot(
        &mut self,
        task: usize,
        s: usize,
        name: &str,
        at: String,
        what: &str,
    ) -> Option<usize> {
        match &self.types[s] {
            DataType::Utf8 => Some(s),
            t if is_textable(t) => {
                let o = self.new_slot(DataType::Utf8);
                self.steps.push((
                    task,
                    Step::Cast {
                        from: s,
                        out: o,
                        to: DataType::Utf8,
                        format: None,
                    },
                ));
                self.names.insert(name.to_string(), o);
                Some(o)
            }
            t => {
                self.errs.push(FieldError::new(
                    at,
                    format!("'{name}' is {t}; {what} works on text and scalar fields"),
                ));
                None
            }
        }
    }
}

fn mask_mode(m: &MaskSpec) -> Mask {
    match (m.keep_first, m.keep_last, m.first, m.last) {
        (Some(n), ..) => Mask::KeepFirst(n),
        (_, Some(n), ..) => Mask::KeepLast(n),
        (_, _, Some(n), _) => Mask::First(n),
        (_, _, _, Some(n)) => Mask::Last(n),
        _ => Mask::All,
    }
}

fn cast_target(m: &MapField, c: CastType, from: &DataType) -> Result<DataType, String> {
    if !is_textable(from) {
        return Err(format!(
            "'{}' is {from}; only scalar fields can be cast",
            m.from
        ));
    }
    Ok(match c {
        CastType::String => DataType::Utf8,
        CastType::Integer => DataType::Int64,
        CastType::Float => DataType::Float64,
        CastType::Decimal => DataType::Decimal128(m.precision.unwrap_or(38), m.scale.unwrap_or(9)),
        CastType::Boolean => DataType::Boolean,
        CastType::Date => DataType::Date32,
        CastType::Timestamp => kernels::timestamp_type(),
    })
}

fn compile_cond(
    b: &mut Builder,
    task: usize,
    f: &FilterSpec,
    at: &str,
    uses_modified: &mut bool,
) -> Option<Cond> {
    if let Some(list) = &f.any {
        let cs: Vec<_> = list
            .iter()
            .enumerate()
            .map(|(k, c)| compile_cond(b, task, c, &format!("{at}.any[{k}]"), uses_modified))
            .collect();
        return cs.into_iter().collect::<Option<Vec<_>>>().map(Cond::Any);
    }
    if let Some(list) = &f.all {
        let cs: Vec<_> = list
            .iter()
            .enumerate()
            .map(|(k, c)| compile_cond(b, task, c, &format!("{at}.all[{k}]"), uses_modified))
            .collect();
        return cs.into_iter().collect::<Option<Vec<_>>>().map(Cond::All);
    }
    let (Some(field), Some(op)) = (&f.field, f.op) else {
        b.errs.push(FieldError::new(
            at,
            "needs `field` and `op` (or `any`/`all`)",
        ));
        return None;
    };
    let slot = b.resolve(task, field, format!("{at}.field"))?;
    if slot >= b.input.fields().len() || b.modified[slot] {
        *uses_modified = true;
    }
    let t = b.types[slot].clone();
    if !is_textable(&t) && !matches!(op, FilterOp::IsNull | FilterOp::IsNotNull) {
        b.errs.push(FieldError::new(
            format!("{at}.field"),
            format!("'{field}' is {t}; filters compare scalar fields (use is_null / is_not_null on objects and lists)"),
        ));
        return None;
    }
    if op == FilterOp::Contains && t != DataType::Utf8 {
        b.errs.push(FieldError::new(
            format!("{at}.field"),
            format!("'{field}' is {t}; contains works on text (map it with `type: string` first)"),
        ));
        return None;
    }
    let mut args = vec![];
    let mut scalar =
        |k: &str, v: &serde_json::Value, b: &mut Builder| match kernels::scalar_of(v, &t) {
            Ok(a) => args.push(a),
            Err(e) => b.errs.push(FieldError::new(format!("{at}.{k}"), e)),
        };
    match op {
        FilterOp::Between => {
            scalar("min", f.min.as_ref()?, b);
            scalar("max", f.max.as_ref()?, b);
        }
        FilterOp::In => {
            for (k, v) in f.values.as_ref()?.iter().enumerate() {
                scalar(&format!("values[{k}]"), v, b);
            }
        }
        FilterOp::IsNull | FilterOp::IsNotNull => {}
        FilterOp::Contains => {
            let v = f.value.as_ref()?;
            args.push(Arc::new(arrow::array::StringArray::from(vec![v
                .as_str()
                .unwrap_or_default()
                .to_string()])));
        }
        _ => scalar("value", f.value.as_ref()?, b),
    }
    let want = match op {
        FilterOp::Between => 2,
        FilterOp::In => f.values.as_ref().map_or(0, |v| v.len()),
        FilterOp::IsNull | FilterOp::IsNotNull => 0,
        _ => 1,
    };
    (args.len() == want).then_some(Cond::Leaf { slot, op, args })
}

/// A `map` task: the slot holding its value (the source's, a copy under a new name, or a
/// cast); `None` when it is refused (the error is recorded).
fn compile_map(
    b: &mut Builder,
    i: usize,
    m: &MapField,
    at: &dyn Fn(&str) -> String,
) -> Option<usize> {
    let src = b.resolve(i, &m.from, at("from"))?;
    Some(match m.cast {
        // A new name gets its own slot, so a later mask of one leaves the other.
        None if m.to.as_ref().is_some_and(|t| *t != m.from) => {
            let o = b.new_slot(b.types[src].clone());
            b.modified[o] = b.modified[src];
            b.steps.push((i, Step::Copy { from: src, out: o }));
            o
        }
        None => src,
        Some(c) => match cast_target(m, c, &b.types[src]) {
            Ok(dt) => {
                let o = b.new_slot(dt.clone());
                b.steps.push((
                    i,
                    Step::Cast {
                        from: src,
                        out: o,
                        to: dt,
                        format: m.format.clone(),
                    },
                ));
                o
            }
            Err(e) => {
                b.errs.push(FieldError::new(at("type"), e));
                return None;
            }
        },
    })
}

/// A `merge` task: the slot of the merged text, its step added; `None` when refused.
fn compile_merge(
    b: &mut Builder,
    i: usize,
    m: &MergeSpec,
    at: &dyn Fn(&str) -> String,
) -> Option<usize> {
    let Ok(parts) = m.parts() else {
        b.errs
            .push(FieldError::new(at("format"), "is not a valid format"));
        return None;
    };
    let mut slots = vec![];
    let mut ok = true;
    for p in parts {
        match p {
            MergePart::Text(t) => slots.push(Err(t)),
            MergePart::Field(f) => match b.resolve(i, &f, at("format")) {
                Some(s) if is_textable(&b.types[s]) => slots.push(Ok(s)),
                Some(s) => {
                    b.errs.push(FieldError::new(
                        at("format"),
                        format!("'{f}' is {}; merge takes scalar fields", b.types[s]),
                    ));
                    ok = false;
                }
                None => ok = false,
            },
        }
    }
    if !ok {
        return None;
    }
    let o = b.new_slot(DataType::Utf8);
    b.steps.push((
        i,
        Step::Merge {
            parts: slots,
            out: o,
        },
    ));
    Some(o)
}

/// A `validate` task's step; `None` when refused (the error is recorded).
fn compile_validate(
    b: &mut Builder,
    i: usize,
    v: &ValidateSpec,
    at: &dyn Fn(&str) -> String,
) -> Option<Step> {
    let s = b.resolve(i, &v.field, at("field"))?;
    let t = b.types[s].clone();
    let refuse = |b: &mut Builder, path: String, message: String| -> Option<Step> {
        b.errs.push(FieldError::new(path, message));
        None
    };
    let check = match (&v.check, &v.matches) {
        (Some(ValidateCheck::NonNull), _) => Check::NonNull,
        (Some(c @ (ValidateCheck::NonZero | ValidateCheck::NonNegative)), _) => {
            if !kernels::is_numeric(&t) {
                return refuse(b, at("field"), format!("'{}' is {t}; non_zero/non_negative need a number (cast it with `map: {{ from: {}, type: float }}` first)", v.field, v.field));
            }
            if *c == ValidateCheck::NonZero {
                Check::NonZero
            } else {
                Check::NonNegative
            }
        }
        (Some(ValidateCheck::Numeric), _) => {
            if !(kernels::is_numeric(&t) || t == DataType::Utf8) {
                return refuse(
                    b,
                    at("field"),
                    format!("'{}' is {t}; numeric checks text or number fields", v.field),
                );
            }
            Check::Numeric
        }
        (None, Some(re)) => {
            if !is_textable(&t) {
                return refuse(
                    b,
                    at("field"),
                    format!("'{}' is {t}; matches checks scalar fields", v.field),
                );
            }
            if regex::Regex::new(re).is_err() {
                return refuse(b, at("matches"), "is not a valid regular expression".into());
            }
            Check::Matches(re.clone())
        }
        _ => return refuse(b, at(""), "needs `check` or `matches`".into()),
    };
    Some(Step::Validate {
        slot: s,
        field: v.field.clone(),
        check,
        action: v.action,
    })
}

fn compile_arithmetic(
    b: &mut Builder,
    task: usize,
    a: &ArithmeticSpec,
    at: &dyn Fn(&str) -> String,
) -> Option<Step> {
    let left = b.resolve(task, &a.left, at("left"))?;
    let lt = b.types[left].clone();
    let num = |b: &mut Builder, name: &str, t: &DataType, k: &str| -> bool {
        if kernels::is_numeric(t) {
            true
        } else {
            b.errs.push(FieldError::new(
                at(k),
                format!("'{name}' is {t}; arithmetic needs numbers (cast it with `map: {{ from: {name}, type: float }}` first)"),
            ));
            false
        }
    };
    let left_ok = num(b, &a.left, &lt, "left");
    let (right, right_int) = match &a.right {
        serde_json::Value::String(name) => {
            let r = b.resolve(task, name, at("right"))?;
            let rt = b.types[r].clone();
            if !num(b, name, &rt, "right") {
                return None;
            }
            (Operand::Slot(r), kernels::is_integer(&rt))
        }
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => (Operand::Int(i), true),
            None => (Operand::Float(n.as_f64().unwrap_or(f64::NAN)), false),
        },
        _ => {
            b.errs.push(FieldError::new(
                at("right"),
                "must be a field name or a number",
            ));
            return None;
        }
    };
    if !left_ok {
        return None;
    }
    let integer = kernels::is_integer(&lt) && right_int && a.op != ArithmeticOp::Divide;
    let out = b.new_slot(if integer {
        DataType::Int64
    } else {
        DataType::Float64
    });
    Some(Step::Arithmetic {
        left,
        right,
        op: a.op,
        out,
        integer,
    })
}
