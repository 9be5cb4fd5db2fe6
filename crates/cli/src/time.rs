//! Times on the command line and in the output: `--since 1h` or an RFC 3339
//! time in, RFC 3339 UTC and short ages (`3m05s`) out. Pure functions; the
//! caller passes "now".

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};

/// A protobuf timestamp as a UTC time; `None` for one out of range.
pub fn from_timestamp(timestamp: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    let nanos = u32::try_from(timestamp.nanos).ok()?;
    DateTime::from_timestamp(timestamp.seconds, nanos)
}

/// An optional protobuf timestamp as a UTC time.
pub fn from_optional(timestamp: Option<&prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    timestamp.and_then(from_timestamp)
}

/// A time as the tables show it: RFC 3339 in UTC, to the millisecond.
pub fn format_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// An optional time for a table cell (`-` when unset).
pub fn format_optional(time: Option<DateTime<Utc>>) -> String {
    time.map_or_else(|| "-".to_owned(), format_time)
}

/// A duration written as numbers with units, one after the other:
/// `500ms`, `30s`, `15m`, `1h30m`, `2d`, `1w` (spaces allowed between).
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let compact: String = raw.chars().filter(|c| !c.is_whitespace()).collect();
    let wrong = || format!("{raw:?} is not a duration like 30s, 15m, 1h30m or 2d");
    if compact.is_empty() {
        return Err(wrong());
    }
    let mut millis: u64 = 0;
    let mut rest = compact.as_str();
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(wrong());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| wrong())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let per_unit: u64 = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            _ => return Err(wrong()),
        };
        rest = &rest[unit_len..];
        millis = number
            .checked_mul(per_unit)
            .and_then(|part| millis.checked_add(part))
            .ok_or_else(|| format!("{raw:?} is too long a duration"))?;
    }
    Ok(Duration::from_millis(millis))
}

/// A point in time: RFC 3339 (`2025-05-01T12:00:00Z`), or an age before
/// `now` (`30m`, `1h`, `2d`: that long ago).
pub fn parse_time(raw: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if let Ok(time) = DateTime::parse_from_rfc3339(raw.trim()) {
        return Ok(time.with_timezone(&Utc));
    }
    let age = parse_duration(raw).map_err(|_| {
        format!("{raw:?} is neither an RFC 3339 time (2025-05-01T12:00:00Z) nor an age like 30m, 1h or 2d")
    })?;
    TimeDelta::from_std(age)
        .ok()
        .and_then(|age| now.checked_sub_signed(age))
        .ok_or_else(|| format!("{raw:?} reaches back too far"))
}

/// How long `from` was before `to`, short: `45s`, `3m05s`, `2h03m`, `3d04h`
/// (a negative span, from clocks apart, is `0s`).
pub fn format_age(from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    let seconds = (to - from).num_seconds().max(0);
    let (minutes, hours, days) = (seconds / 60, seconds / 3_600, seconds / 86_400);
    if seconds < 60 {
        format!("{seconds}s")
    } else if minutes < 60 {
        format!("{minutes}m{:02}s", seconds % 60)
    } else if hours < 24 {
        format!("{hours}h{:02}m", minutes % 60)
    } else {
        format!("{days}d{:02}h", hours % 24)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(raw: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(raw)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn durations_add_up_their_parts() {
        let cases = [
            ("500ms", 500),
            ("30s", 30_000),
            ("15m", 900_000),
            ("1h", 3_600_000),
            ("1h30m", 5_400_000),
            ("1h 30m", 5_400_000),
            ("2d", 172_800_000),
            ("1w", 604_800_000),
            ("0s", 0),
        ];
        for (raw, millis) in cases {
            assert_eq!(
                parse_duration(raw),
                Ok(Duration::from_millis(millis)),
                "{raw}"
            );
        }
    }

    #[test]
    fn durations_without_units_or_with_unknown_ones_are_refused() {
        for raw in [
            "",
            " ",
            "5",
            "h",
            "1y",
            "1.5h",
            "-1h",
            "1h30",
            "99999999999999999999s",
        ] {
            assert!(parse_duration(raw).is_err(), "{raw:?}");
        }
        assert!(
            parse_duration("99999999999999w")
                .unwrap_err()
                .contains("too long")
        );
    }

    #[test]
    fn a_time_is_rfc_3339_or_an_age_before_now() {
        let now = at("2025-05-01T12:00:00Z");
        assert_eq!(
            parse_time("2025-04-30T08:15:00+02:00", now),
            Ok(at("2025-04-30T06:15:00Z"))
        );
        assert_eq!(parse_time("1h", now), Ok(at("2025-05-01T11:00:00Z")));
        assert_eq!(parse_time("30m", now), Ok(at("2025-05-01T11:30:00Z")));
        assert_eq!(parse_time("2d", now), Ok(at("2025-04-29T12:00:00Z")));
        let wrong = parse_time("yesterday", now).unwrap_err();
        assert!(wrong.contains("neither an RFC 3339 time"), "{wrong}");
        assert!(parse_time("2025-05-01", now).is_err());
    }

    #[test]
    fn ages_are_short() {
        let start = at("2025-05-01T12:00:00Z");
        let after = |seconds| start + TimeDelta::seconds(seconds);
        assert_eq!(format_age(start, after(0)), "0s");
        assert_eq!(format_age(start, after(45)), "45s");
        assert_eq!(format_age(start, after(185)), "3m05s");
        assert_eq!(format_age(start, after(7_380)), "2h03m");
        assert_eq!(
            format_age(start, after(3 * 86_400 + 4 * 3_600 + 5)),
            "3d04h"
        );
        assert_eq!(format_age(after(10), start), "0s", "clocks apart");
    }

    #[test]
    fn timestamps_convert_both_ways() {
        let time = at("2025-05-01T12:00:00.123Z");
        let timestamp = ordo_proto::timestamp(time);
        assert_eq!(from_timestamp(&timestamp), Some(time));
        assert_eq!(format_time(time), "2025-05-01T12:00:00.123Z");
        assert_eq!(
            from_timestamp(&prost_types::Timestamp {
                seconds: 0,
                nanos: -1
            }),
            None
        );
        assert_eq!(format_optional(None), "-");
    }
}
