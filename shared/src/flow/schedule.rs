//! EventBridge schedule expressions, validated by ferry itself (moto accepts invalid ones that
//! AWS rejects, so an error would otherwise first show up at deploy time).
//!
//! Syntax: <https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-scheduled-rule-pattern.html>
//! `rate(value unit)`: value a positive integer, unit `minute|minutes|hour|hours|day|days`
//! (singular exactly when value is 1). `cron(min hour day-of-month month day-of-week year)`:
//! six fields, one of day-of-month / day-of-week must be `?`.

/// Check a `rate(...)` or `cron(...)` expression; the error says what is wrong and how to fix it.
pub fn validate_expression(expr: &str) -> Result<(), String> {
    let e = expr.trim();
    if let Some(inner) = e.strip_prefix("rate(").and_then(|r| r.strip_suffix(')')) {
        return validate_rate(inner);
    }
    if let Some(inner) = e.strip_prefix("cron(").and_then(|r| r.strip_suffix(')')) {
        return validate_cron(inner);
    }
    Err(format!(
        "'{expr}' is not a schedule expression; write `rate(1 hour)` or `cron(0 6 * * ? *)`"
    ))
}

/// The period of a `rate()` expression in seconds, if it is one.
pub fn rate_seconds(expr: &str) -> Option<u64> {
    let inner = expr.trim().strip_prefix("rate(")?.strip_suffix(')')?;
    let (v, unit) = inner.trim().split_once(' ')?;
    let v: u64 = v.parse().ok()?;
    let mult = match unit.trim() {
        "minute" | "minutes" => 60,
        "hour" | "hours" => 3600,
        "day" | "days" => 86_400,
        _ => return None,
    };
    Some(v * mult)
}

fn validate_rate(inner: &str) -> Result<(), String> {
    let parts: Vec<&str> = inner.split_whitespace().collect();
    let [value, unit] = parts.as_slice() else {
        return Err(format!(
            "rate({inner}) needs a value and a unit, e.g. `rate(5 minutes)` or `rate(1 hour)`"
        ));
    };
    let n: u64 = value
        .parse()
        .map_err(|_| format!("rate({inner}): '{value}' is not a positive whole number"))?;
    if n == 0 {
        return Err(format!("rate({inner}): the value must be at least 1"));
    }
    let (singular, plural) = match *unit {
        "minute" | "minutes" => ("minute", "minutes"),
        "hour" | "hours" => ("hour", "hours"),
        "day" | "days" => ("day", "days"),
        _ => {
            return Err(format!(
                "rate({inner}): unit '{unit}' is not one of minute(s), hour(s), day(s)"
            ))
        }
    };
    let want = if n == 1 { singular } else { plural };
    if *unit != want {
        return Err(format!(
            "rate({inner}): write `rate({n} {want})` (EventBridge wants the singular only for 1)"
        ));
    }
    Ok(())
}

fn validate_cron(inner: &str) -> Result<(), String> {
    let fields: Vec<&str> = inner.split_whitespace().collect();
    if fields.len() != 6 {
        return Err(format!(
            "cron({inner}) has {} fields; EventBridge cron has six: minutes hours day-of-month month day-of-week year, e.g. `cron(0 6 * * ? *)`",
            fields.len()
        ));
    }
    let names = [
        "minutes",
        "hours",
        "day-of-month",
        "month",
        "day-of-week",
        "year",
    ];
    let ranges: [(u32, u32); 6] = [(0, 59), (0, 23), (1, 31), (1, 12), (1, 7), (1970, 2199)];
    for (i, f) in fields.iter().enumerate() {
        check_cron_field(f, i, ranges[i])
            .map_err(|m| format!("cron({inner}): {} field '{f}': {m}", names[i]))?;
    }
    let (dom, dow) = (fields[2], fields[4]);
    if (dom == "?") == (dow == "?") {
        return Err(format!(
            "cron({inner}): exactly one of day-of-month and day-of-week must be `?`, e.g. `cron(0 6 * * ? *)`"
        ));
    }
    Ok(())
}

fn check_cron_field(f: &str, idx: usize, (lo, hi): (u32, u32)) -> Result<(), String> {
    if f == "*" {
        return Ok(());
    }
    if f == "?" {
        return if idx == 2 || idx == 4 {
            Ok(())
        } else {
            Err("`?` is only allowed in day-of-month and day-of-week".into())
        };
    }
    // Special day forms.
    if idx == 2 && (f == "L" || f == "LW" || f.strip_suffix('W').is_some_and(|d| num_in(d, 1, 31)))
    {
        return Ok(());
    }
    if idx == 4 {
        if let Some((d, n)) = f.split_once('#') {
            return if day_of_week(d).is_some() && num_in(n, 1, 5) {
                Ok(())
            } else {
                Err("use `<day>#<1-5>`, e.g. `2#1`".into())
            };
        }
        if let Some(d) = f.strip_suffix('L') {
            if d.is_empty() || day_of_week(d).is_some() {
                return Ok(());
            }
        }
    }
    for item in f.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (item, None),
        };
        if let Some(s) = step {
            if !s.parse::<u32>().is_ok_and(|s| s >= 1) {
                return Err(format!("step '{s}' is not a positive number"));
            }
        }
        if range == "*" {
            continue;
        }
        let ends: Vec<&str> = range.split('-').collect();
        if ends.is_empty() || ends.len() > 2 {
            return Err(format!("'{item}' is not a value, a range a-b, or a step"));
        }
        for e in ends {
            let ok = match idx {
                3 => month(e).is_some(),
                4 => day_of_week(e).is_some(),
                _ => num_in(e, lo, hi),
            };
            if !ok {
                return Err(format!("'{e}' is outside {lo}-{hi}"));
            }
        }
    }
    Ok(())
}

fn num_in(s: &str, lo: u32, hi: u32) -> bool {
    s.parse::<u32>().is_ok_and(|n| (lo..=hi).contains(&n))
}

fn month(s: &str) -> Option<u32> {
    const M: [&str; 12] = [
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ];
    s.parse::<u32>()
        .ok()
        .filter(|n| (1..=12).contains(n))
        .or_else(|| {
            M.iter()
                .position(|m| m.eq_ignore_ascii_case(s))
                .map(|p| p as u32 + 1)
        })
}

fn day_of_week(s: &str) -> Option<u32> {
    const D: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
    s.parse::<u32>()
        .ok()
        .filter(|n| (1..=7).contains(n))
        .or_else(|| {
            D.iter()
                .position(|d| d.eq_ignore_ascii_case(s))
                .map(|p| p as u32 + 1)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert!(validate_expression("rate(1 hour)").is_ok());
        assert!(validate_expression("rate(5 minutes)").is_ok());
        assert!(validate_expression("rate(1 hours)").is_err());
        assert!(validate_expression("rate(5 minute)").is_err());
        assert!(validate_expression("rate(0 minutes)").is_err());
        assert!(validate_expression("rate(5minutes)").is_err());
        assert!(validate_expression("rate(2 weeks)").is_err());
        assert_eq!(rate_seconds("rate(2 hours)"), Some(7200));
    }

    #[test]
    fn crons() {
        assert!(validate_expression("cron(0 6 * * ? *)").is_ok());
        assert!(validate_expression("cron(0/15 8-17 ? * MON-FRI *)").is_ok());
        assert!(validate_expression("cron(0 12 L * ? 2026)").is_ok());
        assert!(validate_expression("cron(0 9 ? * 2#1 *)").is_ok());
        assert!(
            validate_expression("cron(0 6 * * *)").is_err(),
            "five fields"
        );
        assert!(validate_expression("cron(0 6 * * * *)").is_err(), "no ?");
        assert!(validate_expression("cron(0 6 ? * ? *)").is_err(), "two ?");
        assert!(
            validate_expression("cron(60 6 * * ? *)").is_err(),
            "minute 60"
        );
        assert!(validate_expression("cron(0 6 * FOO ? *)").is_err());
        assert!(validate_expression("every hour").is_err());
    }
}
