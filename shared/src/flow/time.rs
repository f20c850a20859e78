//! Times as users write them: RFC 3339 (`2026-11-01T10:00:00Z`, `2026-11-01T10:00:00+01:00`),
//! a date (`2026-11-01`, midnight) or a local date and time (`2026-11-01T10:00`,
//! `2026-11-01 10:00:30`). Times without an offset are read in a given IANA time zone (UTC in a
//! flow file; the flow's time zone for `ferry run --from/--to`).

use chrono::{DateTime, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

/// The accepted forms, for messages.
pub const FORMS: &str = "RFC 3339 `2026-11-01T10:00:00Z` (or with an offset, `+01:00`), a date `2026-11-01` (midnight), or `2026-11-01T10:00`";

/// Parse a time in one of the accepted forms; times without an offset are in `tz`.
pub fn parse_in(s: &str, tz: Tz) -> Result<DateTime<Utc>, String> {
    let t = s.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Ok(d.with_timezone(&Utc));
    }
    let naive = [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(t, f).ok())
    .or_else(|| {
        NaiveDate::parse_from_str(t, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
    });
    let Some(naive) = naive else {
        return Err(format!("'{s}' is not a time; write {FORMS}"));
    };
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => Ok(t.with_timezone(&Utc)),
        // The earlier of the two instants when clocks go back.
        LocalResult::Ambiguous(a, _) => Ok(a.with_timezone(&Utc)),
        LocalResult::None => Err(format!(
            "'{s}' does not exist in time zone {tz} (the clocks skip it); pick another time"
        )),
    }
}

/// A time zone by IANA name (`Europe/Paris`, `UTC`, `CET`, `GMT`).
pub fn parse_tz(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>().map_err(|_| {
        format!("'{name}' is not an IANA time zone name; write e.g. `UTC`, `Europe/Paris` or `America/New_York`")
    })
}

/// serde for `Option<DateTime<Utc>>` fields of a flow: the accepted forms in, RFC 3339 out.
pub mod opt_time {
    use super::*;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        t.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        match Option::<serde_json::Value>::deserialize(d)? {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) => parse_in(&s, Tz::UTC)
                .map(Some)
                .map_err(serde::de::Error::custom),
            Some(other) => Err(serde::de::Error::custom(format!(
                "{other} is not a time; write {FORMS}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn forms() {
        let paris: Tz = "Europe/Paris".parse().unwrap();
        assert_eq!(
            parse_in("2026-11-01", Tz::UTC).unwrap(),
            utc("2026-11-01T00:00:00Z")
        );
        assert_eq!(
            parse_in("2026-11-01T10:00", paris).unwrap(),
            utc("2026-11-01T09:00:00Z")
        );
        assert_eq!(
            parse_in("2026-07-01 10:00:30", paris).unwrap(),
            utc("2026-07-01T08:00:30Z")
        );
        assert_eq!(
            parse_in("2026-11-01T10:00:00-05:00", paris).unwrap(),
            utc("2026-11-01T15:00:00Z")
        );
        let e = parse_in("yesterday", Tz::UTC).unwrap_err();
        assert!(
            e.contains("'yesterday' is not a time") && e.contains("2026-11-01"),
            "{e}"
        );
        assert!(parse_in("2026-03-29T02:30", paris)
            .unwrap_err()
            .contains("does not exist"));
    }

    #[test]
    fn time_zones() {
        for ok in [
            "UTC",
            "CET",
            "GMT",
            "Europe/Paris",
            "America/New_York",
            "Etc/GMT+5",
        ] {
            assert!(parse_tz(ok).is_ok(), "{ok}");
        }
        for bad in ["Foo/Bar", "New York", "", "Europe/Pariss"] {
            assert!(parse_tz(bad).is_err(), "{bad}");
        }
    }
}
