//! UTC timestamps as RFC 3339 text and back (pure; no time zone database needed).

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `2026-11-22T10:04:05.123456Z` (microseconds, as syslog and most log tools show them).
pub fn rfc3339_micros(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let sub = ns.rem_euclid(1_000_000_000);
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        sub / 1000
    )
}

/// `2026-11-22T10:04:05Z` from seconds since the epoch.
pub fn rfc3339_secs(secs: i64) -> String {
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` into nanoseconds since the epoch.
pub fn parse_rfc3339(t: &str) -> Option<i64> {
    let b = t.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = t.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 9 {
                frac = frac * 10 + (b[i] - b'0') as i64;
            }
            i += 1;
        }
        let digits = (i - start).min(9);
        if digits == 0 {
            return None;
        }
        frac *= 10i64.pow(9 - digits as u32);
    }
    let offset_s = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        c @ (b'+' | b'-') if b.len() == i + 6 && b[i + 3] == b':' => {
            let v = num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60;
            if *c == b'+' { v } else { -v }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo as u32, d as u32);
    let secs = days * 86_400 + h * 3600 + mi * 60 + s - offset_s;
    secs.checked_mul(1_000_000_000)?.checked_add(frac)
}

/// A point in time as a user writes it: a duration back from `now_ns` (`90s`, `10m`, `2h`,
/// `1d`), an RFC 3339 time, or Unix seconds.
pub fn parse_since(t: &str, now_ns: i64) -> Option<i64> {
    let t = t.trim();
    if let Some(ms) =
        crate::spec::parse_duration_ms(t).filter(|_| t.ends_with(|c: char| c.is_ascii_alphabetic()))
    {
        // Checked: a duration too long for the clock is no time at all, not a panic.
        return i64::try_from(ms)
            .ok()?
            .checked_mul(1_000_000)
            .and_then(|d| now_ns.checked_sub(d));
    }
    if let Some(days) = t.strip_suffix('d').and_then(|d| d.parse::<i64>().ok()) {
        return days
            .checked_mul(86_400 * 1_000_000_000)
            .and_then(|d| now_ns.checked_sub(d));
    }
    if let Ok(secs) = t.parse::<i64>() {
        return secs.checked_mul(1_000_000_000);
    }
    parse_rfc3339(t)
}

pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses() {
        assert_eq!(rfc3339_micros(0), "1970-01-01T00:00:00.000000Z");
        let t = parse_rfc3339("2026-11-22T10:04:05.123456789Z").unwrap();
        assert_eq!(rfc3339_micros(t), "2026-11-22T10:04:05.123456Z");
        assert_eq!(t % 1_000_000_000, 123_456_789);
        assert_eq!(
            parse_rfc3339("2026-11-22T12:04:05+02:00").unwrap(),
            parse_rfc3339("2026-11-22T10:04:05Z").unwrap()
        );
        assert_eq!(
            parse_rfc3339("2024-02-29T00:00:00Z").unwrap() / 1_000_000_000,
            1_709_164_800
        );
        for bad in [
            "",
            "2026-13-01T00:00:00Z",
            "2026-11-22T10:04:05",
            "2026-11-22T10:04:05.Z",
            "x026-11-22T10:04:05Z",
        ] {
            assert!(parse_rfc3339(bad).is_none(), "{bad}");
        }
        for days in [-800_000i64, -1, 0, 59, 20_000, 2_000_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn since_takes_durations_times_and_seconds() {
        let now = 10_000 * 1_000_000_000;
        assert_eq!(parse_since("10m", now), Some(now - 600 * 1_000_000_000));
        assert_eq!(parse_since("1d", now), Some(now - 86_400 * 1_000_000_000));
        assert_eq!(parse_since("5", now), Some(5_000_000_000));
        assert_eq!(
            parse_since("1970-01-01T00:00:01Z", now),
            Some(1_000_000_000)
        );
        assert_eq!(parse_since("soon", now), None);
        // Overflowing arithmetic is refused, not a panic.
        for huge in [
            "9223372036854775807d",
            "-9223372036854775807d",
            "106751992d",
            "9223372036854775807",
            "99999999999999999h",
        ] {
            assert_eq!(parse_since(huge, now), None, "{huge}");
        }
    }
}
