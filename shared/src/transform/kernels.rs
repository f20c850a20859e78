//! The column kernels behind each task, built on arrow's compute kernels. Each works on whole
//! arrays; where arrow has no kernel (masking, parse formats, checked integer arithmetic) a
//! tight loop over the array's values builds the result array directly.
//!
//! Defined results (the contract `docs/flows.md` documents):
//! - filter: a null never matches `equal`, `less`, `greater(_or_equal)`, `less_or_equal`,
//!   `between`, `contains`, `in`; a null *does* pass `not_equal` (it is not equal to the value).
//!   Strings compare by Unicode code point, case-sensitively; numbers, decimals, dates and
//!   timestamps compare as values (the filter's value is parsed into the field's type).
//! - mask/truncate count characters (Unicode scalar values), not bytes; null stays null, an empty
//!   string stays empty.
//! - arithmetic: integer with integer (add, subtract, multiply) gives an integer; an overflow
//!   gives null. Anything else (a float, a decimal, `divide`) gives a float; division by zero and
//!   non-finite results give null. A null operand gives null.
//! - merge: a null field prints as the empty string; if every field is null the result is null.
//! - validate: a null fails only `non_null`; the other checks let nulls through.
//! - map with a type: a value that does not convert becomes null (add a `validate non_null` after
//!   it to drop or stop on such records).

use super::{Check, Cond, Mask, Operand};
use crate::flow::tasks::{ArithmeticOp, FilterOp};
use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Date32Array, Float64Array, Int64Array, Scalar,
    StringArray, StringBuilder, TimestampMicrosecondArray,
};
use arrow::compute::{self, kernels::cmp, CastOptions};
use arrow::datatypes::{
    DataType, Date32Type, Float64Type, Int64Type, TimeUnit, TimestampMicrosecondType,
};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use std::sync::Arc;

type R<T> = Result<T, String>;

fn e(x: arrow::error::ArrowError) -> String {
    x.to_string()
}

pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

pub fn is_integer(t: &DataType) -> bool {
    t.is_integer()
}

pub fn is_numeric(t: &DataType) -> bool {
    t.is_integer()
        || t.is_floating()
        || matches!(t, DataType::Decimal128(..) | DataType::Decimal256(..))
}

/// A struct's child, null where the struct is null.
pub fn extract(parent: &ArrayRef, child: &str) -> R<ArrayRef> {
    let s = parent
        .as_struct_opt()
        .ok_or_else(|| format!("expected an object, found {}", parent.data_type()))?;
    let c = s
        .column_by_name(child)
        .ok_or_else(|| format!("the object has no field '{child}'"))?
        .clone();
    if s.null_count() == 0 {
        return Ok(c);
    }
    compute::nullif(&c, &compute::is_null(s).map_err(e)?).map_err(e)
}

/// One-element array of type `t` holding `v`, or why `v` is not a `t`.
pub fn scalar_of(v: &serde_json::Value, t: &DataType) -> R<ArrayRef> {
    let text = match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let s: ArrayRef = Arc::new(StringArray::from(vec![text.clone()]));
    if t == &DataType::Utf8 {
        return Ok(s);
    }
    let c = compute::cast(&s, t).map_err(|_| format!("'{text}' is not a {t} value"))?;
    if c.is_null(0) {
        return Err(format!("'{text}' is not a {t} value"));
    }
    Ok(c)
}

/// Nulls become false.
fn nn(b: BooleanArray) -> BooleanArray {
    if b.null_count() == 0 {
        b
    } else {
        compute::prep_null_mask_filter(&b)
    }
}

/// Rows where the condition holds (no nulls in the result).
pub(crate) fn eval_cond(c: &Cond, get: &dyn Fn(usize) -> ArrayRef) -> R<BooleanArray> {
    match c {
        Cond::Any(cs) | Cond::All(cs) => {
            let any = matches!(c, Cond::Any(_));
            let mut acc: Option<BooleanArray> = None;
            for c in cs {
                let m = eval_cond(c, get)?;
                acc = Some(match acc {
                    None => m,
                    Some(a) if any => compute::or(&a, &m).map_err(e)?,
                    Some(a) => compute::and(&a, &m).map_err(e)?,
                });
            }
            acc.ok_or_else(|| "an empty any/all".to_string())
        }
        Cond::Leaf { slot, op, args } => {
            let col = get(*slot);
            let s = |i: usize| Scalar::new(args[i].clone());
            Ok(match op {
                FilterOp::Equal => nn(cmp::eq(&col, &s(0)).map_err(e)?),
                FilterOp::NotEqual => {
                    compute::not(&nn(cmp::eq(&col, &s(0)).map_err(e)?)).map_err(e)?
                }
                FilterOp::Less => nn(cmp::lt(&col, &s(0)).map_err(e)?),
                FilterOp::LessOrEqual => nn(cmp::lt_eq(&col, &s(0)).map_err(e)?),
                FilterOp::Greater => nn(cmp::gt(&col, &s(0)).map_err(e)?),
                FilterOp::GreaterOrEqual => nn(cmp::gt_eq(&col, &s(0)).map_err(e)?),
                FilterOp::Between => compute::and(
                    &nn(cmp::gt_eq(&col, &s(0)).map_err(e)?),
                    &nn(cmp::lt_eq(&col, &s(1)).map_err(e)?),
                )
                .map_err(e)?,
                FilterOp::Contains => {
                    nn(compute::kernels::comparison::contains(&col, &s(0)).map_err(e)?)
                }
                FilterOp::In => {
                    let mut acc = BooleanArray::from(vec![false; col.len()]);
                    for i in 0..args.len() {
                        let m = nn(cmp::eq(&col, &s(i)).map_err(e)?);
                        acc = compute::or(&acc, &m).map_err(e)?;
                    }
                    acc
                }
                FilterOp::IsNull => compute::is_null(&col).map_err(e)?,
                FilterOp::IsNotNull => compute::is_not_null(&col).map_err(e)?,
            })
        }
    }
}

fn strings(a: &ArrayRef) -> R<&StringArray> {
    a.as_string_opt::<i32>()
        .ok_or_else(|| format!("expected text, found {}", a.data_type()))
}

pub(crate) fn mask(a: &ArrayRef, m: &Mask, ch: char) -> R<ArrayRef> {
    let s = strings(a)?;
    let mut b = StringBuilder::with_capacity(s.len(), s.value_data().len());
    let mut buf = String::new();
    for v in s.iter() {
        let Some(v) = v else {
            b.append_null();
            continue;
        };
        buf.clear();
        let n = v.chars().count();
        for (i, c) in v.chars().enumerate() {
            let hidden = match *m {
                Mask::All => true,
                Mask::KeepFirst(k) => i >= k,
                Mask::KeepLast(k) => i + k < n,
                Mask::First(k) => i < k,
                Mask::Last(k) => i + k >= n,
            };
            buf.push(if hidden { ch } else { c });
        }
        b.append_value(&buf);
    }
    Ok(Arc::new(b.finish()))
}

pub(crate) fn truncate(a: &ArrayRef, length: usize) -> R<ArrayRef> {
    let s = strings(a)?;
    Ok(Arc::new(
        compute::kernels::substring::substring_by_char(s, 0, Some(length as u64)).map_err(e)?,
    ))
}

fn to_f64(a: &ArrayRef) -> R<ArrayRef> {
    compute::cast(a, &DataType::Float64).map_err(e)
}

pub(crate) fn arithmetic(
    left: &ArrayRef,
    right: &Operand,
    get: &dyn Fn(usize) -> ArrayRef,
    op: ArithmeticOp,
    integer: bool,
) -> R<ArrayRef> {
    let n = left.len();
    if integer {
        let l = compute::cast(left, &DataType::Int64).map_err(e)?;
        let l = l.as_primitive::<Int64Type>();
        let f = |a: i64, b: i64| match op {
            ArithmeticOp::Add => a.checked_add(b),
            ArithmeticOp::Subtract => a.checked_sub(b),
            ArithmeticOp::Multiply => a.checked_mul(b),
            ArithmeticOp::Divide => unreachable!("divide is float"),
        };
        let out: Int64Array = match right {
            Operand::Int(c) => l.iter().map(|a| a.and_then(|a| f(a, *c))).collect(),
            Operand::Slot(s) => {
                let r = compute::cast(&get(*s), &DataType::Int64).map_err(e)?;
                let r = r.as_primitive::<Int64Type>();
                l.iter()
                    .zip(r.iter())
                    .map(|(a, b)| match (a, b) {
                        (Some(a), Some(b)) => f(a, b),
                        _ => None,
                    })
                    .collect()
            }
            Operand::Float(_) => unreachable!("a float constant makes a float result"),
        };
        return Ok(Arc::new(out));
    }
    let l = to_f64(left)?;
    let l = l.as_primitive::<Float64Type>();
    let f = |a: f64, b: f64| {
        let x = match op {
            ArithmeticOp::Add => a + b,
            ArithmeticOp::Subtract => a - b,
            ArithmeticOp::Multiply => a * b,
            ArithmeticOp::Divide if b == 0.0 => return None,
            ArithmeticOp::Divide => a / b,
        };
        x.is_finite().then_some(x)
    };
    let out: Float64Array = match right {
        Operand::Int(c) => l.iter().map(|a| a.and_then(|a| f(a, *c as f64))).collect(),
        Operand::Float(c) => l.iter().map(|a| a.and_then(|a| f(a, *c))).collect(),
        Operand::Slot(s) => {
            let r = to_f64(&get(*s))?;
            let r = r.as_primitive::<Float64Type>();
            l.iter()
                .zip(r.iter())
                .map(|(a, b)| match (a, b) {
                    (Some(a), Some(b)) => f(a, b),
                    _ => None,
                })
                .collect()
        }
    };
    debug_assert_eq!(out.len(), n);
    Ok(Arc::new(out))
}

pub(crate) fn merge(
    parts: &[Result<usize, String>],
    get: &dyn Fn(usize) -> ArrayRef,
    rows: usize,
) -> R<ArrayRef> {
    let cols: Vec<Result<ArrayRef, &str>> = parts
        .iter()
        .map(|p| match p {
            Ok(s) => compute::cast(&get(*s), &DataType::Utf8).map(Ok).map_err(e),
            Err(t) => Ok(Err(t.as_str())),
        })
        .collect::<R<_>>()?;
    let texts: Vec<Result<&StringArray, &str>> = cols
        .iter()
        .map(|c| match c {
            Ok(a) => Ok(a.as_string::<i32>()),
            Err(t) => Err(*t),
        })
        .collect();
    let mut b = StringBuilder::with_capacity(rows, rows * 16);
    let mut buf = String::new();
    for r in 0..rows {
        buf.clear();
        let mut any = false;
        for p in &texts {
            match p {
                Err(t) => buf.push_str(t),
                Ok(a) if a.is_valid(r) => {
                    any = true;
                    buf.push_str(a.value(r));
                }
                Ok(_) => {}
            }
        }
        if any {
            b.append_value(&buf);
        } else {
            b.append_null();
        }
    }
    Ok(Arc::new(b.finish()))
}

const NUMERIC: &str = r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$";

/// Rows that FAIL the check (nulls fail only `non_null`).
pub(crate) fn validate(a: &ArrayRef, check: &Check) -> R<BooleanArray> {
    Ok(match check {
        Check::NonNull => compute::is_null(a).map_err(e)?,
        Check::NonZero | Check::NonNegative => {
            let f = to_f64(a)?;
            let zero = Scalar::new(Float64Array::from(vec![0.0]));
            nn(match check {
                Check::NonZero => cmp::eq(&f, &zero).map_err(e)?,
                _ => cmp::lt(&f, &zero).map_err(e)?,
            })
        }
        Check::Numeric if a.data_type() != &DataType::Utf8 => {
            BooleanArray::from(vec![false; a.len()])
        }
        Check::Numeric | Check::Matches(_) => {
            let re = match check {
                Check::Matches(re) => re.as_str(),
                _ => NUMERIC,
            };
            let t = compute::cast(a, &DataType::Utf8).map_err(e)?;
            let m =
                compute::kernels::regexp::regexp_is_match_scalar(t.as_string::<i32>(), re, None)
                    .map_err(e)?;
            nn(compute::not(&m).map_err(e)?)
        }
    })
}

/// `map` with a type: arrow's cast (failures become null), or a strftime format for text into
/// dates/timestamps and dates/timestamps into text.
pub fn cast(a: &ArrayRef, to: &DataType, format: Option<&str>) -> R<ArrayRef> {
    let epoch = chrono::DateTime::UNIX_EPOCH.date_naive();
    match (a.data_type(), to, format) {
        (DataType::Utf8, DataType::Date32, Some(f)) => {
            let s = strings(a)?;
            let out: Date32Array = s
                .iter()
                .map(|v| {
                    v.and_then(|v| NaiveDate::parse_from_str(v.trim(), f).ok())
                        .map(|d| (d - epoch).num_days() as i32)
                })
                .collect();
            Ok(Arc::new(out))
        }
        (DataType::Utf8, DataType::Timestamp(..), Some(f)) => {
            let s = strings(a)?;
            let out: TimestampMicrosecondArray = s
                .iter()
                .map(|v| {
                    v.and_then(|v| parse_time(v.trim(), f))
                        .map(|t| t.timestamp_micros())
                })
                .collect();
            Ok(Arc::new(out.with_timezone("UTC")))
        }
        (DataType::Date32, DataType::Utf8, Some(f)) => {
            let d = a.as_primitive::<Date32Type>();
            let out: StringArray = d
                .iter()
                .map(|v| {
                    v.map(|v| {
                        (epoch + chrono::Duration::days(v as i64))
                            .format(f)
                            .to_string()
                    })
                })
                .collect();
            Ok(Arc::new(out))
        }
        (DataType::Timestamp(..), DataType::Utf8, Some(f)) => {
            let t = compute::cast(a, &timestamp_type()).map_err(e)?;
            let t = t.as_primitive::<TimestampMicrosecondType>();
            let out: StringArray = t
                .iter()
                .map(|v| {
                    v.and_then(DateTime::<Utc>::from_timestamp_micros)
                        .map(|t| t.format(f).to_string())
                })
                .collect();
            Ok(Arc::new(out))
        }
        _ => compute::cast_with_options(
            a,
            to,
            &CastOptions {
                safe: true,
                ..Default::default()
            },
        )
        .map_err(e),
    }
}

fn parse_time(v: &str, f: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_str(v, f)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(v, f)
                .ok()
                .map(|n| n.and_utc())
        })
        .or_else(|| {
            NaiveDate::parse_from_str(v, f)
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|n| n.and_utc())
        })
}
