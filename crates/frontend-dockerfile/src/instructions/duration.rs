//! Go duration strings (`30s`, `1m30s`, `1.5h`), which HEALTHCHECK flags use.

/// Why a duration string was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DurationError {
    /// Not Go duration syntax.
    Syntax,
    /// Negative.
    Negative,
    /// Does not fit in 64-bit nanoseconds.
    Overflow,
}

/// Parses a duration the way Go's `time.ParseDuration` does, into nanoseconds.
pub(crate) fn parse_go_duration(value: &str) -> Result<u64, DurationError> {
    let (negative, mut rest) = match value.as_bytes().first() {
        Some(b'-') => (true, &value[1..]),
        Some(b'+') => (false, &value[1..]),
        _ => (false, value),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(DurationError::Syntax);
    }
    let mut total: f64 = 0.0;
    let mut exact: u128 = 0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..number_len];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(DurationError::Syntax);
        }
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit: u64 = match &rest[..unit_len] {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(DurationError::Syntax),
        };
        rest = &rest[unit_len..];
        match number.split_once('.') {
            None => {
                let whole: u128 = number.parse().map_err(|_| DurationError::Overflow)?;
                exact += whole * unit as u128;
            }
            Some((whole, frac)) => {
                let whole: u128 = if whole.is_empty() {
                    0
                } else {
                    whole.parse().map_err(|_| DurationError::Overflow)?
                };
                exact += whole * unit as u128;
                let frac: f64 = format!("0.{frac}").parse().unwrap_or(0.0);
                total += frac * unit as f64;
            }
        }
        if exact > i64::MAX as u128 {
            return Err(DurationError::Overflow);
        }
    }
    let nanos = exact + total as u128;
    if nanos > i64::MAX as u128 {
        return Err(DurationError::Overflow);
    }
    if negative && nanos != 0 {
        return Err(DurationError::Negative);
    }
    Ok(nanos as u64)
}

/// Formats nanoseconds as Go's `time.Duration.String` does (`1m30s`, `500ms`, `0s`).
pub(crate) fn format_go_duration(nanos: u64) -> String {
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000_000_000 {
        let (unit, scale) = if nanos < 1_000 {
            ("ns", 1)
        } else if nanos < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{}{unit}", fraction(nanos, scale));
    }
    let hours = nanos / 3_600_000_000_000;
    let minutes = nanos / 60_000_000_000 % 60;
    let seconds = fraction(nanos % 60_000_000_000, 1_000_000_000);
    match (hours, minutes) {
        (0, 0) => format!("{seconds}s"),
        (0, m) => format!("{m}m{seconds}s"),
        (h, m) => format!("{h}h{m}m{seconds}s"),
    }
}

/// `value / scale` with the fraction digits Go prints (trailing zeros dropped).
fn fraction(value: u64, scale: u64) -> String {
    let whole = value / scale;
    let frac = value % scale;
    if frac == 0 {
        return whole.to_string();
    }
    let width = scale.ilog10() as usize;
    let digits = format!("{frac:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse_go_duration("0"), Ok(0));
        assert_eq!(parse_go_duration("30s"), Ok(30_000_000_000));
        assert_eq!(parse_go_duration("1m30s"), Ok(90_000_000_000));
        assert_eq!(parse_go_duration("1.5h"), Ok(5_400_000_000_000));
        assert_eq!(parse_go_duration("500ms"), Ok(500_000_000));
        assert_eq!(parse_go_duration("10us"), Ok(10_000));
        assert_eq!(parse_go_duration("10µs"), Ok(10_000));
        assert_eq!(parse_go_duration(".5s"), Ok(500_000_000));
        assert_eq!(parse_go_duration("+1s"), Ok(1_000_000_000));
        assert_eq!(parse_go_duration("-0"), Ok(0));
    }

    #[test]
    fn rejects_bad_durations() {
        for bad in ["", "30", "s", "1x", "1.2.3s", "..s", "1s2"] {
            assert_eq!(parse_go_duration(bad), Err(DurationError::Syntax), "{bad}");
        }
        assert_eq!(parse_go_duration("-1s"), Err(DurationError::Negative));
        assert_eq!(
            parse_go_duration("9999999999h"),
            Err(DurationError::Overflow)
        );
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format_go_duration(0), "0s");
        assert_eq!(format_go_duration(30_000_000_000), "30s");
        assert_eq!(format_go_duration(90_000_000_000), "1m30s");
        assert_eq!(format_go_duration(5_400_000_000_000), "1h30m0s");
        assert_eq!(format_go_duration(500_000_000), "500ms");
        assert_eq!(format_go_duration(1_500_000_000), "1.5s");
        assert_eq!(format_go_duration(1_000), "1µs");
        assert_eq!(format_go_duration(12), "12ns");
    }
}
