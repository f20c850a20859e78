//! Reading datetimes, one way for the whole crate: RFC 3339, a vendor's own formats and epoch
//! numbers, as a [`Dialect`] names them. Connectors read values through it
//! (`connector::normalize::value_in`); the steps read incremental fields through [`time`].

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;

/// How a vendor spells typed values in its JSON or CSV, as data. [`value_in`] is the one
/// coercion function every connector reads values through; a connector names its dialect.
#[derive(Debug, Clone, Copy)]
pub struct Dialect {
    /// Timestamp text formats tried after RFC 3339 (chrono `strftime`; a format without an
    /// offset reads as UTC).
    pub time_formats: &'static [&'static str],
    /// Numbers, and text of digits, as timestamps.
    pub epoch: Epoch,
    /// Text read as true / false besides `true` / `false`.
    pub true_words: &'static [&'static str],
    pub false_words: &'static [&'static str],
    /// The numbers 0 and 1 as booleans.
    pub numeric_booleans: bool,
    /// A date may be the first ten characters of a longer text (`2026-03-04T00:00:00Z`).
    pub date_prefix: bool,
    /// Empty text is null in text columns too (a Bulk CSV cannot tell `""` from null);
    /// elsewhere empty text is null only where text is not the type.
    pub empty_text_is_null: bool,
}

/// How a number (or text of digits) reads as a timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Epoch {
    /// Not at all: only text in a time format is a timestamp.
    No,
    /// Seconds (with a fraction, as Slack's `ts`), or milliseconds above 10^11.
    SecondsOrMillis,
    /// Milliseconds (HubSpot).
    Millis,
}

impl Dialect {
    /// Plain JSON: RFC 3339 (or `YYYY-MM-DD HH:MM:SS` in UTC) or epoch seconds/milliseconds,
    /// `true`/`false` or 0/1.
    pub const JSON: Dialect = Dialect {
        time_formats: &["%Y-%m-%d %H:%M:%S"],
        epoch: Epoch::SecondsOrMillis,
        true_words: &[],
        false_words: &[],
        numeric_booleans: true,
        date_prefix: true,
        empty_text_is_null: false,
    };
}

/// A datetime from RFC 3339 text, epoch seconds / milliseconds (numbers or numeric text, with
/// a fractional part kept to the microsecond, as in Slack's `ts`).
pub fn time(v: &Value) -> Option<DateTime<Utc>> {
    time_in(v, &Dialect::JSON)
}

/// A datetime in the vendor's `dialect`: RFC 3339 text, then its time formats, then (as its
/// `epoch` says) numbers or text of digits.
pub fn time_in(v: &Value, d: &Dialect) -> Option<DateTime<Utc>> {
    match v {
        Value::String(s) => time_text(s, d),
        Value::Number(n) => match d.epoch {
            Epoch::No => None,
            Epoch::Millis => n.as_i64().and_then(DateTime::from_timestamp_millis),
            Epoch::SecondsOrMillis => match n.as_i64() {
                Some(i) if i.abs() > 100_000_000_000 => DateTime::from_timestamp_millis(i),
                Some(i) => DateTime::from_timestamp(i, 0),
                None => epoch_text(&n.to_string()),
            },
        },
        _ => None,
    }
}

/// [`time_in`] of text.
pub fn time_text(s: &str, d: &Dialect) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for f in d.time_formats {
        if let Ok(t) = DateTime::parse_from_str(s, f) {
            return Some(t.with_timezone(&Utc));
        }
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, f) {
            return Some(t.and_utc());
        }
    }
    match d.epoch {
        Epoch::No => None,
        Epoch::Millis => s
            .parse::<i64>()
            .ok()
            .and_then(DateTime::from_timestamp_millis),
        Epoch::SecondsOrMillis => epoch_text(s),
    }
}

/// `"1512085950.000216"` (seconds with up to 6 decimals) or `"1512085950"`.
fn epoch_text(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 9 {
        return None;
    }
    let secs: i64 = secs.parse().ok()?;
    let mut nanos_txt = frac.to_string();
    while nanos_txt.len() < 9 {
        nanos_txt.push('0');
    }
    let nanos: u32 = nanos_txt.parse().ok()?;
    if frac.is_empty() && secs > 100_000_000_000 {
        return DateTime::from_timestamp_millis(secs);
    }
    DateTime::from_timestamp(secs, nanos)
}

/// RFC 3339 in UTC with `Z`, sub-second digits only when present.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}
