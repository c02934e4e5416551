//! Times and durations as the lifecycle tools read and write them: RFC 3339 timestamps
//! (`2026-11-27T01:00:00Z`, with optional fractions and offsets) as milliseconds since the
//! Unix epoch, and durations such as `7d`, `24h` or `1h30m`.

/// Milliseconds since 1970-01-01T00:00:00Z.
pub type Millis = i64;

/// Parses an RFC 3339 timestamp (`T` or a space between date and time, `Z` or `±HH:MM`,
/// any number of fraction digits, of which milliseconds are kept). `None` when malformed.
pub fn parse_rfc3339(text: &str) -> Option<Millis> {
    let bytes = text.as_bytes();
    let digits = |from: usize, count: usize| -> Option<i64> {
        let slice = bytes.get(from..from + count)?;
        let mut value = 0i64;
        for &byte in slice {
            if !byte.is_ascii_digit() {
                return None;
            }
            value = value * 10 + i64::from(byte - b'0');
        }
        Some(value)
    };
    let expect = |at: usize, options: &[u8]| bytes.get(at).is_some_and(|b| options.contains(b));
    let year = digits(0, 4)?;
    if !expect(4, b"-") || !expect(7, b"-") || !expect(10, b"Tt ") {
        return None;
    }
    let month = digits(5, 2)?;
    let day = digits(8, 2)?;
    if !expect(13, b":") || !expect(16, b":") {
        return None;
    }
    let hour = digits(11, 2)?;
    let minute = digits(14, 2)?;
    let second = digits(17, 2)?;
    if !(1..=12).contains(&month)
        || !(1..=days_in_month(year, month)).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut at = 19;
    let mut millis = 0i64;
    if expect(at, b".,") {
        at += 1;
        let start = at;
        while bytes.get(at).is_some_and(u8::is_ascii_digit) {
            if at - start < 3 {
                millis = millis * 10 + i64::from(bytes.get(at).copied().unwrap_or(b'0') - b'0');
            }
            at += 1;
        }
        if at == start {
            return None;
        }
        for _ in (at - start)..3 {
            millis *= 10;
        }
    }
    let offset_minutes = match bytes.get(at) {
        Some(b'Z' | b'z') if at + 1 == bytes.len() => 0,
        Some(sign @ (b'+' | b'-')) if at + 6 == bytes.len() && expect(at + 3, b":") => {
            let hours = digits(at + 1, 2)?;
            let minutes = digits(at + 4, 2)?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let total = hours * 60 + minutes;
            if *sign == b'+' {
                total
            } else {
                -total
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Some(seconds * 1000 + millis)
}

/// Formats milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (UTC), with `.mmm` when
/// the milliseconds are not zero.
pub fn format_rfc3339(millis: Millis) -> String {
    let seconds = millis.div_euclid(1000);
    let fraction = millis.rem_euclid(1000);
    let days = seconds.div_euclid(86_400);
    let time = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second) = (time / 3600, (time % 3600) / 60, time % 60);
    if fraction == 0 {
        format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z")
    } else {
        format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{fraction:03}Z")
    }
}

/// Parses a duration: one or more `<number><unit>` with units `ms`, `s`, `m`, `h`, `d`, `w`
/// (`7d`, `36h`, `1h30m`). `None` when malformed or zero.
pub fn parse_duration(text: &str) -> Option<Millis> {
    let mut total: i64 = 0;
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let number: i64 = rest.get(..digits)?.parse().ok()?;
        rest = rest.get(digits..)?;
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = rest.get(..unit_len)?;
        rest = rest.get(unit_len..)?;
        let scale: i64 = match unit {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            _ => return None,
        };
        total = total.checked_add(number.checked_mul(scale)?)?;
    }
    (total > 0).then_some(total)
}

/// The start of a learning window: `since` (a timestamp), or `window` (a duration) back
/// from `now` (a timestamp; default: the current time). `None`: no window.
pub fn window_start(
    window: Option<&str>,
    since: Option<&str>,
    now_text: Option<&str>,
) -> Result<Option<Millis>, String> {
    let timestamp = |flag: &str, text: &str| {
        parse_rfc3339(text).ok_or_else(|| {
            format!("{flag} `{text}`: expected an RFC 3339 time such as 2026-11-27T00:00:00Z")
        })
    };
    match (window, since) {
        (Some(_), Some(_)) => Err("give --window or --since, not both".to_string()),
        (None, Some(since)) => timestamp("--since", since).map(Some),
        (Some(window), None) => {
            let length = parse_duration(window).ok_or_else(|| {
                format!("--window `{window}`: expected a duration such as 7d, 24h or 1h30m")
            })?;
            let end = match now_text {
                Some(text) => timestamp("--now", text)?,
                None => now(),
            };
            Ok(Some(end - length))
        }
        (None, None) => Ok(None),
    }
}

/// The current time.
pub fn now() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Howard Hinnant's `days_from_civil`.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01.5Z"), Some(1500));
        assert_eq!(parse_rfc3339("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_rfc3339("1969-12-31T23:00:00-01:00"), Some(0));
        let t = parse_rfc3339("2026-11-27T01:00:00Z");
        assert_eq!(
            t.map(format_rfc3339).as_deref(),
            Some("2026-11-27T01:00:00Z")
        );
        let t = parse_rfc3339("2024-02-29T23:59:59.123456Z");
        assert_eq!(
            t.map(format_rfc3339).as_deref(),
            Some("2024-02-29T23:59:59.123Z")
        );
        for bad in [
            "",
            "2026-11-27",
            "2026-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-11-27T00:00:00",
            "2026-11-27T00:00:00.Z",
            "2026-11-27T24:00:00Z",
            "2026-11-27T00:00:00+0100",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn windows() {
        assert_eq!(window_start(None, None, None), Ok(None));
        assert_eq!(
            window_start(Some("1d"), None, Some("1970-01-02T00:00:00Z")),
            Ok(Some(0))
        );
        assert_eq!(
            window_start(None, Some("1970-01-01T00:00:01Z"), None),
            Ok(Some(1000))
        );
        assert!(window_start(Some("1d"), Some("1970-01-01T00:00:00Z"), None).is_err());
        assert!(window_start(Some("1y"), None, None).is_err());
        assert!(window_start(None, Some("yesterday"), None).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("7d"), Some(7 * 86_400_000));
        assert_eq!(parse_duration("1h30m"), Some(5_400_000));
        assert_eq!(parse_duration("250ms"), Some(250));
        assert_eq!(parse_duration("2w"), Some(14 * 86_400_000));
        for bad in ["", "7", "d", "7x", "0s", "-1d", "1.5h"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }
}
