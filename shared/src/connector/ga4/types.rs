//! The ga4 connector's entities and fields, and how its values are typed.

use super::*;

/// Currency metrics as decimal(38, 6).
pub(super) const CURRENCY_SCALE: i8 = 6;

/// The ferry type of a metric type.
pub fn metric_type(t: &str) -> FieldType {
    match t {
        "TYPE_INTEGER" => FieldType::Integer,
        "TYPE_CURRENCY" => FieldType::Decimal {
            precision: 38,
            scale: CURRENCY_SCALE,
        },
        _ => FieldType::Float,
    }
}

/// A metric value typed: integers and floats as numbers, currency as decimal text.
pub(crate) fn metric_value(v: &str, ty: &str) -> Result<Value, String> {
    let v = v.trim();
    if v.is_empty() {
        return Ok(Value::Null);
    }
    match metric_type(ty) {
        FieldType::Integer => v
            .parse::<i64>()
            .map(Value::from)
            .or_else(|_| {
                v.parse::<f64>()
                    .ok()
                    .filter(|x| x.fract() == 0.0)
                    .map(|x| Value::from(x as i64))
                    .ok_or(())
            })
            .map_err(|_| format!("a {ty} value that is not an integer")),
        FieldType::Decimal { .. } => decimal_text(v)
            .map(Value::String)
            .ok_or_else(|| format!("a {ty} value that is not a decimal number")),
        _ => v
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| format!("a {ty} value that is not a number")),
    }
}

/// Decimal text checked and cut to the currency scale (`12.3456789` → `12.345678`); exponent
/// forms (`1.5E3`) are expanded.
pub(super) fn decimal_text(v: &str) -> Option<String> {
    let (neg, digits) = match v.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, v),
    };
    let (mantissa, exp) = match digits.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().ok()?),
        None => (digits, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    // Shift the decimal point by the exponent.
    let mut all: String = format!("{int}{frac}");
    let mut point = int.len() as i32 + exp;
    if point < 0 {
        all = format!("{}{all}", "0".repeat((-point) as usize));
        point = 0;
    }
    while all.len() < point as usize {
        all.push('0');
    }
    let (i, f) = all.split_at(point as usize);
    let i = i.trim_start_matches('0');
    let f: String = f.chars().take(CURRENCY_SCALE as usize).collect();
    let i = if i.is_empty() { "0" } else { i };
    let s = if f.is_empty() {
        i.to_string()
    } else {
        format!("{i}.{f}")
    };
    Some(if neg { format!("-{s}") } else { s })
}

/// `20260201` → `2026-02-01`.
pub(super) fn ga_date(v: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(v, "%Y%m%d").ok()
}
