//! Timestamps as OpenStack services write them, read with chrono.
//!
//! Keystone (`expires_at`), Glance, Neutron and Ironic write RFC 3339 (`2015-11-07T02:58:43.578887Z`,
//! `…+01:30`). Nova writes some times without an offset (`2026-11-24T10:35:00`, or with a
//! fraction): those are UTC. Anything else — an impossible date (`02-31`), `99:99`, a non-ASCII
//! offset, `inf` seconds, a time outside what [`SystemTime`] can hold — reads as `None`, never a
//! panic.
//!
//! ```
//! use openstack_client::time::parse_timestamp;
//! use std::time::{Duration, UNIX_EPOCH};
//!
//! let t = parse_timestamp("2015-11-07T03:58:43+01:00").unwrap();
//! assert_eq!(t, UNIX_EPOCH + Duration::from_secs(1_446_865_123));
//! assert_eq!(parse_timestamp("2015-11-07T02:58:43"), Some(t)); // Nova: no offset means UTC
//! assert_eq!(parse_timestamp("2015-02-31T02:58:43Z"), None);
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};

/// A timestamp as a UTC date-time: RFC 3339 (`Z` or a `±hh:mm` offset; `t`/space for `T`), the
/// `±hhmm` offset form, or an offset-less date-time read as UTC (Nova). `None` for anything else.
pub fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    // RFC 3339 years have four digits; `%Y` alone would also take `+10000` or `-1`, which no
    // service writes and [`format_rfc3339`] could not write back.
    parse_any(s.trim()).filter(|t| {
        // A leap second (`23:59:60`) carries into the next second once it is a `SystemTime`.
        let carry = i64::from(t.timestamp_subsec_nanos() >= 1_000_000_000);
        RFC3339_SECONDS.contains(&(t.timestamp() + carry))
    })
}

/// The seconds RFC 3339 can write: `0000-01-01T00:00:00Z` to `9999-12-31T23:59:59Z`.
const RFC3339_SECONDS: std::ops::RangeInclusive<i64> = -62_167_219_200..=253_402_300_799;

fn parse_any(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    // `+0130`: not RFC 3339, but ISO 8601; read it as the offset it says, not as +01:00.
    if let Ok(t) = DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z") {
        return Some(t.with_timezone(&Utc));
    }
    // Nova's offset-less times are UTC.
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        .map(|n| n.and_utc())
}

/// A timestamp (see [`parse_datetime`]) as a [`SystemTime`]; `None` when it cannot be read or the
/// platform cannot represent it.
pub fn parse_timestamp(s: &str) -> Option<SystemTime> {
    to_system_time(parse_datetime(s)?)
}

/// A chrono time as a [`SystemTime`], with checked arithmetic: `None` when it does not fit.
pub fn to_system_time(t: DateTime<Utc>) -> Option<SystemTime> {
    let secs = t.timestamp();
    // Up to 1_999_999_999 during a leap second: `Duration::new` carries it into the seconds.
    let nanos = Duration::from_nanos(u64::from(t.timestamp_subsec_nanos()));
    let whole = Duration::from_secs(secs.unsigned_abs());
    if secs >= 0 {
        UNIX_EPOCH.checked_add(whole)?.checked_add(nanos)
    } else {
        UNIX_EPOCH.checked_sub(whole)?.checked_add(nanos)
    }
}

/// A [`SystemTime`] as RFC 3339 UTC with whole seconds (`2026-11-24T10:35:00Z`), as OpenStack
/// writes times; `None` outside the four-digit years RFC 3339 can write.
pub fn format_rfc3339(t: SystemTime) -> Option<String> {
    let dt = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => DateTime::<Utc>::UNIX_EPOCH.checked_add_signed(chrono::TimeDelta::from_std(d).ok()?)?,
        Err(e) => DateTime::<Utc>::UNIX_EPOCH.checked_sub_signed(chrono::TimeDelta::from_std(e.duration()).ok()?)?,
    };
    RFC3339_SECONDS
        .contains(&dt.timestamp())
        .then(|| dt.to_rfc3339_opts(SecondsFormat::Secs, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: &str) -> Option<i64> {
        parse_datetime(s).map(|t| t.timestamp())
    }

    #[test]
    fn keystone_and_nova_forms_read() {
        assert_eq!(secs("2015-11-07T02:58:43.578887Z"), Some(1_446_865_123));
        assert_eq!(secs("2015-11-07T03:58:43+01:00"), Some(1_446_865_123));
        assert_eq!(secs("2015-11-07T01:58:43-01:00"), Some(1_446_865_123));
        // Nova, no offset: UTC.
        assert_eq!(secs("2015-11-07T02:58:43"), Some(1_446_865_123));
        assert_eq!(secs("2015-11-07T02:58:43.000000"), Some(1_446_865_123));
        assert_eq!(secs(" 2015-11-07T02:58:43Z\n"), Some(1_446_865_123));
        let t = parse_timestamp("2015-11-07T02:58:43.5Z").unwrap();
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap(),
            Duration::from_millis(1_446_865_123_500)
        );
    }

    #[test]
    fn half_hour_offsets_keep_their_minutes() {
        assert_eq!(secs("2015-11-07T04:28:43+01:30"), Some(1_446_865_123));
        assert_eq!(secs("2015-11-07T04:28:43+0130"), Some(1_446_865_123));
        assert_eq!(secs("2015-11-07T08:28:43+05:30"), Some(1_446_865_123));
    }

    #[test]
    fn garbage_is_rejected() {
        for s in [
            "",
            "yesterday",
            "02-31T99:99",
            "2015-02-31T10:00:00Z",
            "2015-11-07T99:99:00Z",
            "2015-11-07T10:00:61Z",
            "2015-13-07T10:00:00Z",
            "2015-11-07T10:00:inf",
            "2015-11-07T10:00:infZ",
            "2015-11-07T10:00:NaNZ",
            "2015-11-07T10:00:00+٠١:٠٠",
            "2015-11-07T10:00:00+01:00é",
            "2015-11-07T10:00:00+99:00",
            "2015-11-07T10:00:00-",
            "T",
            "-",
            "2015-11-07Té",
            // Outside four-digit years: readable by `%Y`, not writable as RFC 3339.
            "+10000-1-1T0:0:0",
            "-1-01-01T00:00:00",
        ] {
            assert_eq!(parse_timestamp(s), None, "{s:?}");
        }
    }

    #[test]
    fn huge_years_never_panic() {
        for s in [
            "99999-01-01T00:00:00Z",
            "+99999-01-01T00:00:00Z",
            "292277026596-12-04T15:30:07Z",
            "292277026596-12-04T15:30:07",
            "-292277022657-01-27T08:29:52Z",
            "+262143-12-31T23:59:59.999999999Z",
            "9999-12-31T23:59:60.999999999Z",
            "0000-01-01T00:00:00Z",
            "18446744073709551616-01-01T00:00:00Z",
        ] {
            // Whatever the verdict, no panic, and what is read converts back.
            if let Some(t) = parse_timestamp(s) {
                assert!(format_rfc3339(t).is_some(), "{s:?}");
            }
        }
        assert!(parse_timestamp("9999-12-31T23:59:59Z").is_some());
        assert!(parse_timestamp("0000-01-01T00:00:00Z").is_some());
        assert!(parse_timestamp("9999-12-31T23:59:60Z").is_none());
    }

    #[test]
    fn formatting_round_trips() {
        let t = UNIX_EPOCH + Duration::from_secs(1_446_865_123);
        let s = format_rfc3339(t).unwrap();
        assert_eq!(s, "2015-11-07T02:58:43Z");
        assert_eq!(parse_timestamp(&s), Some(t));
        let before = UNIX_EPOCH - Duration::from_secs(86_400);
        assert_eq!(format_rfc3339(before).unwrap(), "1969-12-31T00:00:00Z");
    }
}
