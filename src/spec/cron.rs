//! Cron schedules with seconds (the seed's `schedule`): six fields, seconds first, with
//! `*`, `?`, lists, ranges, steps (`*/N`, `A-B/N`, `A/N`) and names of months and days; the
//! next fire time after an instant, in a time zone.
//!
//! Invariants: pure (the caller passes the instant and the zone). Day of month and day of
//! week: when both are restricted, either matches (as Vixie cron). Clock changes: a time the
//! clock skips (spring forward) fires once, as much later as the clock jumped (jiff's
//! `compatible` rule: 02:30 -> 03:30); a time the clock shows twice (fall back) fires once, at
//! its first occurrence, unless the schedule runs every hour (hour `*`), which then runs
//! through both passes. A schedule never fires twice at one instant.

use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{Timestamp, civil};

const NAMES: [&str; 6] = [
    "second",
    "minute",
    "hour",
    "day of month",
    "month",
    "day of week",
];
const RANGES: [(u32, u32); 6] = [(0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 7)];
const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
/// How far ahead a schedule is searched (Feb 29 on a given weekday recurs within 28 years).
const YEARS_AHEAD: i16 = 30;

/// A parsed schedule: for each field, the values it matches (bit N = value N).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    fields: [u64; 6],
    /// Day of month / day of week restricted (not `*` or `?`).
    dom_any: bool,
    dow_any: bool,
    hour_any: bool,
}

impl Schedule {
    /// Parses six fields, seconds first. The error names the field and the forms allowed.
    pub fn parse(v: &str) -> Result<Schedule, String> {
        let parts: Vec<&str> = v.split_whitespace().collect();
        if parts.len() != 6 {
            return Err(format!(
                "{v:?} has {} fields; a schedule has 6, seconds first: \"0 */5 * * * *\"",
                parts.len()
            ));
        }
        let mut fields = [0u64; 6];
        for (i, f) in parts.iter().enumerate() {
            fields[i] = field(f, i).ok_or_else(|| {
                let (lo, hi) = RANGES[i];
                format!(
                    "{v:?}: the {} field {f:?} is invalid (range {lo}-{hi}{}, forms *, ?, */N, A-B, A-B/N, A/N, A,B)",
                    NAMES[i],
                    match i {
                        4 => ", or jan-dec",
                        5 => ", or sun-sat; 0 and 7 are Sunday",
                        _ => "",
                    }
                )
            })?;
        }
        // Sunday is 0 and 7.
        if fields[5] & (1 << 7) != 0 {
            fields[5] |= 1;
        }
        let any = |s: &str| s == "*" || s == "?";
        Ok(Schedule {
            fields,
            dom_any: any(parts[3]),
            dow_any: any(parts[5]),
            hour_any: any(parts[2]),
        })
    }

    fn has(&self, field: usize, v: u32) -> bool {
        self.fields[field] & (1u64 << v) != 0
    }

    fn day_matches(&self, y: i16, m: i8, d: i8) -> bool {
        let dom = self.has(3, d as u32);
        let dow = civil::Date::new(y, m, d)
            .map(|x| self.has(5, x.weekday().to_sunday_zero_offset() as u32))
            .unwrap_or(false);
        match (self.dom_any, self.dow_any) {
            (true, true) => true,
            (false, true) => dom,
            (true, false) => dow,
            (false, false) => dom || dow,
        }
    }

    /// The first civil time at or after `from` that the fields match.
    fn next_civil(&self, from: civil::DateTime) -> Option<civil::DateTime> {
        let (mut y, mut mo, mut d) = (from.year(), from.month(), from.day());
        let (mut h, mut mi, mut s) = (from.hour(), from.minute(), from.second());
        let limit = y.checked_add(YEARS_AHEAD)?;
        loop {
            if y > limit {
                return None;
            }
            if !self.has(4, mo as u32) {
                (d, h, mi, s) = (1, 0, 0, 0);
                (y, mo) = if mo == 12 { (y + 1, 1) } else { (y, mo + 1) };
                continue;
            }
            if d > days_in_month(y, mo) {
                (d, h, mi, s) = (1, 0, 0, 0);
                (y, mo) = if mo == 12 { (y + 1, 1) } else { (y, mo + 1) };
                continue;
            }
            if !self.day_matches(y, mo, d) {
                (d, h, mi, s) = (d + 1, 0, 0, 0);
                continue;
            }
            if h > 23 {
                (d, h, mi, s) = (d + 1, 0, 0, 0);
                continue;
            }
            if !self.has(2, h as u32) {
                (h, mi, s) = (h + 1, 0, 0);
                continue;
            }
            if mi > 59 {
                (h, mi, s) = (h + 1, 0, 0);
                continue;
            }
            if !self.has(1, mi as u32) {
                (mi, s) = (mi + 1, 0);
                continue;
            }
            if s > 59 {
                (mi, s) = (mi + 1, 0);
                continue;
            }
            if !self.has(0, s as u32) {
                s += 1;
                continue;
            }
            return civil::DateTime::new(y, mo, d, h, mi, s, 0).ok();
        }
    }

    /// The instants a matching civil time fires at in `tz` (one, or two in a repeated hour
    /// for a schedule that runs every hour).
    fn instants(&self, c: civil::DateTime, tz: &TimeZone) -> Vec<Timestamp> {
        let amb = tz.to_ambiguous_timestamp(c);
        match amb.offset() {
            AmbiguousOffset::Unambiguous { offset } => {
                offset.to_timestamp(c).ok().into_iter().collect()
            }
            // Skipped by the clock: as much later as it jumped.
            AmbiguousOffset::Gap { before, .. } => {
                before.to_timestamp(c).ok().into_iter().collect()
            }
            AmbiguousOffset::Fold { before, after } => {
                let mut v: Vec<Timestamp> = before.to_timestamp(c).ok().into_iter().collect();
                if self.hour_any {
                    v.extend(after.to_timestamp(c).ok());
                }
                v
            }
        }
    }

    /// The first fire time strictly after `after`, in `tz` (None if none within 30 years).
    pub fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let here = tz.to_datetime(after);
        let one = jiff::Span::new().seconds(1);
        let near = jiff::SignedDuration::from_hours(4);
        // (a) The matches from `here` on, in civil order, until one fires after `after`.
        let mut best = self.first_after(here.checked_add(one).ok()?, after, tz);
        // A match the clock skipped fires as much later, and may fire before a match that
        // reads earlier after the jump: the first match from where the jump lands counts too.
        if let Some((t, _)) = best
            && let Some(tr) = tz.preceding(t).next()
            && let Some(before) = offset_before(tz, tr.timestamp())
            && before < tr.offset()
            && t.duration_since(tr.timestamp()) < near
        {
            let landing = tr.offset().to_datetime(tr.timestamp());
            if let Some(other) = self.first_after(landing.max(here), after, tz) {
                best = best.min(Some(other));
            }
        }
        // (b) The clock jumped ahead shortly before `after`: skipped times still to fire.
        if let Some(tr) = tz.preceding(after).next()
            && let Some(before) = offset_before(tz, tr.timestamp())
            && before < tr.offset()
            && after.duration_since(tr.timestamp()) < before.duration_until(tr.offset())
        {
            let gap_end = tr.offset().to_datetime(tr.timestamp());
            if let Some(c) = self.next_civil(before.to_datetime(after).checked_add(one).ok()?)
                && c < gap_end
                && let Ok(t) = before.to_timestamp(c)
                && t > after
            {
                best = best.min(Some((t, c))).or(Some((t, c)));
            }
        }
        // (c) A repeated hour ahead: its second pass (every-hour schedules) fires before the
        // times after it, though it reads earlier than `here`.
        if self.hour_any
            && let Some(tr) = tz.following(after).next()
            && let Some(before) = offset_before(tz, tr.timestamp())
            && tr.offset() < before
            && tr.timestamp().duration_since(after) < near
            && best.is_none_or(|(t, _)| t >= tr.timestamp())
        {
            let fold_end = before.to_datetime(tr.timestamp());
            if let Some(c) = self.next_civil(tr.offset().to_datetime(tr.timestamp()))
                && c < fold_end
                && let Ok(t) = tr.offset().to_timestamp(c)
                && t > after
            {
                best = best.min(Some((t, c))).or(Some((t, c)));
            }
        }
        best.map(|(t, _)| t)
    }

    /// The first match from civil `from` on with an instant after `after`: that instant.
    fn first_after(
        &self,
        from: civil::DateTime,
        after: Timestamp,
        tz: &TimeZone,
    ) -> Option<(Timestamp, civil::DateTime)> {
        let mut cursor = from;
        loop {
            let c = self.next_civil(cursor)?;
            if let Some(t) = self
                .instants(c, tz)
                .into_iter()
                .filter(|t| *t > after)
                .min()
            {
                return Some((t, c));
            }
            cursor = c.checked_add(jiff::Span::new().seconds(1)).ok()?;
        }
    }
}

/// The offset in force just before the clock change at `t`.
fn offset_before(tz: &TimeZone, t: Timestamp) -> Option<jiff::tz::Offset> {
    Some(tz.to_offset(t.checked_sub(jiff::SignedDuration::from_secs(1)).ok()?))
}

fn days_in_month(y: i16, m: i8) -> i8 {
    civil::Date::new(y, m, 1)
        .map(|d| d.days_in_month())
        .unwrap_or(28)
}

/// One field's matching values as bits, or None when it is malformed.
fn field(f: &str, i: usize) -> Option<u64> {
    let (lo, hi) = RANGES[i];
    let num = |s: &str| -> Option<u32> {
        let l = s.to_ascii_lowercase();
        if i == 4
            && let Some(p) = MONTHS.iter().position(|m| *m == l)
        {
            return Some(p as u32 + 1);
        }
        if i == 5
            && let Some(p) = DAYS.iter().position(|d| *d == l)
        {
            return Some(p as u32);
        }
        s.parse::<u32>().ok().filter(|n| (lo..=hi).contains(n))
    };
    let mut bits = 0u64;
    for part in f.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                Some(
                    s.parse::<u32>()
                        .ok()
                        .filter(|n| *n > 0 && *n <= hi.max(1))?,
                ),
            ),
            None => (part, None),
        };
        let (a, b) = match range {
            "*" | "?" => (lo, hi),
            r => match r.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (num(a)?, num(b)?);
                    if a > b {
                        return None;
                    }
                    (a, b)
                }
                // `A/N`: from A to the end of the range.
                None if step.is_some() => (num(r)?, hi),
                None => {
                    let a = num(r)?;
                    (a, a)
                }
            },
        };
        let mut v = a;
        while v <= b {
            bits |= 1u64 << v;
            v += step.unwrap_or(1);
        }
    }
    Some(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    /// The next `n` fire times after `from`, as RFC 3339 in the zone.
    fn fires(expr: &str, zone: &str, from: &str, n: usize) -> Vec<String> {
        let s = Schedule::parse(expr).expect("parses");
        let tz = TimeZone::get(zone).expect("zone");
        let mut at = ts(from);
        let mut out = Vec::new();
        for _ in 0..n {
            match s.next_after(at, &tz) {
                Some(t) => {
                    out.push(
                        t.to_zoned(tz.clone())
                            .strftime("%Y-%m-%dT%H:%M:%S%:z")
                            .to_string(),
                    );
                    at = t;
                }
                None => break,
            }
        }
        out
    }

    #[test]
    fn every_field_form_parses_to_what_it_means() {
        // (expression, zone, from, the next fire times)
        let cases: &[(&str, &str, &str, &[&str])] = &[
            // The seed's: every 30 seconds.
            (
                "0-59/30 * * * * *",
                "UTC",
                "2026-01-01T00:00:10Z",
                &["2026-01-01T00:00:30+00:00", "2026-01-01T00:01:00+00:00"],
            ),
            (
                "*/20 * * * * *",
                "UTC",
                "2026-01-01T00:00:00Z",
                &[
                    "2026-01-01T00:00:20+00:00",
                    "2026-01-01T00:00:40+00:00",
                    "2026-01-01T00:01:00+00:00",
                ],
            ),
            (
                "5/20 * * * * *",
                "UTC",
                "2026-01-01T00:00:00Z",
                &[
                    "2026-01-01T00:00:05+00:00",
                    "2026-01-01T00:00:25+00:00",
                    "2026-01-01T00:00:45+00:00",
                    "2026-01-01T00:01:05+00:00",
                ],
            ),
            (
                "0 0 9-17/4 * * *",
                "UTC",
                "2026-01-01T10:00:00Z",
                &[
                    "2026-01-01T13:00:00+00:00",
                    "2026-01-01T17:00:00+00:00",
                    "2026-01-02T09:00:00+00:00",
                ],
            ),
            (
                "0 30 8 * * mon-fri",
                "UTC",
                "2026-01-02T09:00:00Z",
                &["2026-01-05T08:30:00+00:00"],
            ),
            (
                "0 0 0 * * SUN",
                "UTC",
                "2026-01-01T00:00:00Z",
                &["2026-01-04T00:00:00+00:00"],
            ),
            (
                "0 0 0 * * 7",
                "UTC",
                "2026-01-01T00:00:00Z",
                &["2026-01-04T00:00:00+00:00"],
            ),
            (
                "0 0 12 1,15 * ?",
                "UTC",
                "2026-01-01T12:00:00Z",
                &["2026-01-15T12:00:00+00:00", "2026-02-01T12:00:00+00:00"],
            ),
            (
                "0 0 0 1 jan,jul *",
                "UTC",
                "2026-02-01T00:00:00Z",
                &["2026-07-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00"],
            ),
            // Day of month and day of week both restricted: either.
            (
                "0 0 0 13 * fri",
                "UTC",
                "2026-02-01T00:00:00Z",
                &[
                    "2026-02-06T00:00:00+00:00",
                    "2026-02-13T00:00:00+00:00",
                    "2026-02-20T00:00:00+00:00",
                ],
            ),
            // Month ends: the 31st skips the months without one.
            (
                "0 0 0 31 * *",
                "UTC",
                "2026-01-31T00:00:00Z",
                &["2026-03-31T00:00:00+00:00", "2026-05-31T00:00:00+00:00"],
            ),
            // Leap days.
            (
                "0 0 0 29 2 *",
                "UTC",
                "2026-01-01T00:00:00Z",
                &["2028-02-29T00:00:00+00:00", "2032-02-29T00:00:00+00:00"],
            ),
            // Beijing time, as the seed.
            (
                "0 0 2 * * *",
                "Asia/Shanghai",
                "2026-01-01T00:00:00Z",
                &["2026-01-02T02:00:00+08:00"],
            ),
        ];
        for (expr, zone, from, want) in cases {
            assert_eq!(
                &fires(expr, zone, from, want.len()),
                want,
                "{expr} in {zone} after {from}"
            );
        }
    }

    #[test]
    fn clock_changes_fire_each_time_once() {
        // New York, 2026-03-08: 02:00 EST -> 03:00 EDT. A job at 02:30 runs once, at 03:30.
        assert_eq!(
            fires(
                "0 30 2 * * *",
                "America/New_York",
                "2026-03-07T12:00:00Z",
                2
            ),
            ["2026-03-08T03:30:00-04:00", "2026-03-09T02:30:00-04:00"]
        );
        // Every 30 minutes across it: 01:30, then 03:00 (02:00 and 02:30 are skipped times,
        // 02:00 -> 03:00 is the same instant as 03:00 and fires once), 03:30 (likewise).
        assert_eq!(
            fires(
                "0 */30 * * * *",
                "America/New_York",
                "2026-03-08T06:00:00Z",
                4
            ),
            [
                "2026-03-08T01:30:00-05:00",
                "2026-03-08T03:00:00-04:00",
                "2026-03-08T03:30:00-04:00",
                "2026-03-08T04:00:00-04:00"
            ]
        );
        // 2026-11-01: 02:00 EDT -> 01:00 EST. A job at 01:30 runs once, at the first 01:30.
        assert_eq!(
            fires(
                "0 30 1 * * *",
                "America/New_York",
                "2026-11-01T04:00:00Z",
                2
            ),
            ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]
        );
        // Every 30 minutes runs through both passes of the repeated hour.
        assert_eq!(
            fires(
                "0 */30 * * * *",
                "America/New_York",
                "2026-11-01T04:45:00Z",
                5
            ),
            [
                "2026-11-01T01:00:00-04:00",
                "2026-11-01T01:30:00-04:00",
                "2026-11-01T01:00:00-05:00",
                "2026-11-01T01:30:00-05:00",
                "2026-11-01T02:00:00-05:00"
            ]
        );
    }

    /// Every second for a day, across a clock change: each fire exactly one second (of
    /// real time) after the last, none twice.
    #[test]
    fn every_second_is_every_second_through_a_clock_change() {
        let s = Schedule::parse("* * * * * *").expect("parses");
        let tz = TimeZone::get("Europe/Berlin").expect("zone");
        // 2026-10-25 03:00 CEST -> 02:00 CET, and 2026-03-29 02:00 CET -> 03:00 CEST.
        for start in ["2026-10-24T22:00:00Z", "2026-03-28T22:00:00Z"] {
            let mut at = ts(start);
            for _ in 0..(6 * 3600) {
                let next = s.next_after(at, &tz).expect("fires");
                assert_eq!(
                    next.duration_since(at),
                    jiff::SignedDuration::from_secs(1),
                    "after {at}"
                );
                at = next;
            }
        }
        // Every 15 minutes in Sydney (the clock goes back on 2026-04-05 at 03:00 AEDT).
        let q = Schedule::parse("0 */15 * * * *").expect("parses");
        let syd = TimeZone::get("Australia/Sydney").expect("zone");
        let mut at = ts("2026-04-04T13:00:00Z");
        for _ in 0..24 {
            let next = q.next_after(at, &syd).expect("fires");
            assert_eq!(
                next.duration_since(at),
                jiff::SignedDuration::from_mins(15),
                "after {at}"
            );
            at = next;
        }
    }

    /// Matches the clock skips and the same times after the jump fire once each.
    #[test]
    fn skipped_matches_and_their_twins_after_the_jump_fire_once() {
        assert_eq!(
            fires(
                "0 5,30 2,3 * * *",
                "America/New_York",
                "2026-03-08T06:00:00Z",
                3
            ),
            [
                "2026-03-08T03:05:00-04:00",
                "2026-03-08T03:30:00-04:00",
                "2026-03-09T02:05:00-04:00"
            ]
        );
        // Just after the jump, a skipped 02:45 is still to fire, at 03:45.
        assert_eq!(
            fires(
                "0 45 2 * * *",
                "America/New_York",
                "2026-03-08T07:10:00Z",
                2
            ),
            ["2026-03-08T03:45:00-04:00", "2026-03-09T02:45:00-04:00"]
        );
    }

    #[test]
    fn invalid_expressions_say_which_field_and_why() {
        let cases: &[(&str, &str)] = &[
            ("*/5 * * * *", "has 5 fields"),
            ("60 * * * * *", "the second field \"60\""),
            ("* 0-60 * * * *", "the minute field"),
            ("* * 24 * * *", "the hour field"),
            ("* * * 0 * *", "the day of month field"),
            ("* * * * 13 *", "the month field"),
            ("* * * * foo *", "jan-dec"),
            ("* * * * * 8", "sun-sat"),
            ("*/0 * * * * *", "the second field \"*/0\""),
            ("5-1 * * * * *", "the second field \"5-1\""),
            ("* * * * * mon-", "the day of week field"),
            ("1,,2 * * * * *", "the second field"),
        ];
        for (expr, want) in cases {
            let e = Schedule::parse(expr).expect_err(expr);
            assert!(e.contains(want), "{expr}: {e}");
        }
        // Never: February 30th.
        let s = Schedule::parse("0 0 0 30 2 *").expect("parses");
        assert_eq!(
            s.next_after(ts("2026-01-01T00:00:00Z"), &TimeZone::UTC),
            None
        );
    }
}
