//! The task pipeline: a flow's `tasks`, compiled once against the source schema into a [`Plan`],
//! applied to Arrow record batches with arrow's compute kernels.

use crate::flow::tasks::{FilterOp, FilterSpec, MaskSpec, TaskSpec};
use crate::flow::FieldError;
use arrow::array::{Array, ArrayRef, BooleanArray, StringArray};
use arrow::compute;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use std::sync::Arc;

/// Why a batch could not be transformed.
#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    #[error("task {index} ({kind}): {message}")]
    Task {
        index: usize,
        kind: &'static str,
        message: String,
    },
    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),
}

/// The result of applying a plan to one batch.
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
    /// (input column index, output name), in output order.
    projection: Vec<(usize, String)>,
    output: SchemaRef,
}

#[derive(Debug, Clone)]
enum Step {
    Filter {
        column: usize,
        op: FilterOp,
        value: serde_json::Value,
    },
    Mask {
        column: usize,
        spec: MaskSpec,
    },
}

impl Plan {
    /// Compile `tasks` against the source schema. Errors name the task index and field.
    pub fn compile(tasks: &[TaskSpec], input: SchemaRef) -> Result<Plan, Vec<FieldError>> {
        let mut errs = vec![];
        let col = |name: &str, at: String, errs: &mut Vec<FieldError>| -> Option<usize> {
            match input.index_of(name) {
                Ok(i) => Some(i),
                Err(_) => {
                    errs.push(FieldError::new(
                        at,
                        format!(
                            "the source has no field '{name}'; fields are: {}",
                            input
                                .fields()
                                .iter()
                                .map(|f| f.name().as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                    None
                }
            }
        };
        let mut projection: Vec<(usize, String)> = vec![];
        let mut mapped_any = false;
        let mut steps = vec![];
        for (i, t) in tasks.iter().enumerate() {
            let at = |f: &str| format!("tasks[{i}].{}.{f}", t.kind());
            match t {
                TaskSpec::MapAll(m) => {
                    mapped_any = true;
                    for e in &m.exclude {
                        // An exclude of a field the source does not have is harmless but likely a typo.
                        col(e, at("exclude"), &mut errs);
                    }
                    for (ci, f) in input.fields().iter().enumerate() {
                        if !m.exclude.contains(f.name())
                            && !projection.iter().any(|(c, _)| *c == ci)
                        {
                            projection.push((ci, f.name().clone()));
                        }
                    }
                }
                TaskSpec::Map(m) => {
                    mapped_any = true;
                    if let Some(c) = col(&m.from, at("from"), &mut errs) {
                        let to = m.to.clone().unwrap_or_else(|| m.from.clone());
                        if let Some(p) = projection.iter_mut().find(|(pc, _)| *pc == c) {
                            p.1 = to;
                        } else {
                            projection.push((c, to));
                        }
                    }
                }
                TaskSpec::Filter(FilterSpec { field, op, value }) => {
                    if let Some(c) = col(field, at("field"), &mut errs) {
                        steps.push((
                            i,
                            Step::Filter {
                                column: c,
                                op: *op,
                                value: value.clone(),
                            },
                        ));
                    }
                }
                TaskSpec::Mask(m) => {
                    if let Some(c) = col(&m.field, at("field"), &mut errs) {
                        if input.field(c).data_type() != &DataType::Utf8 {
                            errs.push(FieldError::new(
                                at("field"),
                                format!(
                                    "'{}' is not a string field; mask works on strings",
                                    m.field
                                ),
                            ));
                        } else {
                            steps.push((
                                i,
                                Step::Mask {
                                    column: c,
                                    spec: m.clone(),
                                },
                            ));
                        }
                    }
                }
            }
        }
        if !mapped_any {
            projection = input
                .fields()
                .iter()
                .enumerate()
                .map(|(i, f)| (i, f.name().clone()))
                .collect();
        }
        let mut names = std::collections::BTreeSet::new();
        for (_, n) in &projection {
            if !names.insert(n) {
                errs.push(FieldError::new(
                    "tasks",
                    format!("two tasks write the destination field '{n}'; rename one"),
                ));
            }
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        let output = Arc::new(Schema::new(
            projection
                .iter()
                .map(|(c, n)| Field::new(n, input.field(*c).data_type().clone(), true))
                .collect::<Vec<_>>(),
        ));
        Ok(Plan {
            input,
            steps,
            projection,
            output,
        })
    }

    pub fn output_schema(&self) -> SchemaRef {
        self.output.clone()
    }

    pub fn input_schema(&self) -> SchemaRef {
        self.input.clone()
    }

    pub fn apply(&self, batch: &RecordBatch) -> Result<Applied, TransformError> {
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        let mut keep: Option<BooleanArray> = None;
        for (index, step) in &self.steps {
            match step {
                Step::Filter { column, op, value } => {
                    let m = filter_mask(&columns[*column], *op, value).map_err(|message| {
                        TransformError::Task {
                            index: *index,
                            kind: "filter",
                            message,
                        }
                    })?;
                    keep = Some(match keep {
                        None => m,
                        Some(k) => compute::and(&k, &m)?,
                    });
                }
                Step::Mask { column, spec } => {
                    columns[*column] = mask(&columns[*column], spec);
                }
            }
        }
        let rows = batch.num_rows();
        let out_cols: Vec<ArrayRef> = self
            .projection
            .iter()
            .map(|(c, _)| columns[*c].clone())
            .collect();
        let mut out = RecordBatch::try_new(self.output.clone(), out_cols)?;
        let mut filtered = 0;
        if let Some(k) = keep {
            out = compute::filter_record_batch(&out, &k)?;
            filtered = (rows - out.num_rows()) as u64;
        }
        Ok(Applied {
            batch: out,
            filtered,
            rejected: vec![],
        })
    }
}

/// `equal`: true where the value equals; `not_equal`: true where it differs or is null.
fn filter_mask(
    col: &ArrayRef,
    op: FilterOp,
    value: &serde_json::Value,
) -> Result<BooleanArray, String> {
    let scalar_str = match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let scalar = StringArray::new_scalar(scalar_str.clone());
    let as_text = compute::cast(col, &DataType::Utf8)
        .map_err(|e| format!("cannot compare this field: {e}"))?;
    // Compare in the column's own type where it is not text, so `1.0` equals `1`.
    let eq = if col.data_type() == &DataType::Utf8 {
        compute::kernels::cmp::eq(&as_text, &scalar).map_err(|e| e.to_string())?
    } else {
        let v = compute::cast(
            &StringArray::from(vec![scalar_str.as_str()]),
            col.data_type(),
        )
        .map_err(|_| format!("'{scalar_str}' is not a {} value", col.data_type()))?;
        if v.is_null(0) {
            return Err(format!("'{scalar_str}' is not a {} value", col.data_type()));
        }
        let s = arrow::array::Scalar::new(v);
        compute::kernels::cmp::eq(col, &s).map_err(|e| e.to_string())?
    };
    Ok(match op {
        FilterOp::Equal => BooleanArray::from_iter(eq.iter().map(|v| Some(v == Some(true)))),
        FilterOp::NotEqual => BooleanArray::from_iter(eq.iter().map(|v| Some(v != Some(true)))),
    })
}

fn mask(col: &ArrayRef, spec: &MaskSpec) -> ArrayRef {
    let s = col
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("checked at compile time");
    let out: StringArray = s
        .iter()
        .map(|v| {
            v.map(|v| {
                let n = v.chars().count();
                v.chars()
                    .enumerate()
                    .map(|(i, c)| {
                        let visible = match (spec.keep_first, spec.keep_last) {
                            (Some(k), _) => i < k,
                            (_, Some(k)) => i + k >= n,
                            _ => false,
                        };
                        if visible {
                            c
                        } else {
                            spec.char
                        }
                    })
                    .collect::<String>()
            })
        })
        .collect();
    Arc::new(out)
}
