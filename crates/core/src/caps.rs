//! Bandwidth caps that change with the time of day in a site's time zone.
//!
//! Operators cap what patchmesh may send or receive, usually harder during business
//! hours ("20% of the link from 08:00 to 18:00 on weekdays, all of it at night"). A
//! [`CapSchedule`] turns such a rule into a rate for any instant. It only computes
//! rates: the daemon paces socket bytes to them and the simulator sets link capacities
//! from them.
//!
//! Windows are whole minutes of local wall-clock time, so daylight saving moves them
//! with the clock. The first window that contains an instant sets the rate; outside
//! every window the base rate applies, and no base rate means no cap.

use std::fmt;

use jiff::civil::Weekday;
use jiff::tz::TimeZone;
use serde::Deserialize;

use crate::time::Timestamp;
use crate::units::parse_rate;

/// A cap as an operator writes it in `node.toml` or a scenario file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapSpec {
    /// The rate outside every window, such as `"50Mbit/s"` or `"40%"` of the link; none
    /// leaves the link uncapped there.
    pub rate: Option<String>,
    /// Time windows with their own rate, checked in order.
    #[serde(default)]
    pub window: Vec<WindowSpec>,
}

/// One time window of a [`CapSpec`].
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    /// Days of the week, such as `"mon-fri"` or `"sat,sun"`; every day when absent.
    pub days: Option<String>,
    /// Local start time, `"HH:MM"`.
    pub from: String,
    /// Local end time, `"HH:MM"`, exclusive. An end before the start runs past midnight.
    pub to: String,
    /// The rate inside the window, like [`CapSpec::rate`].
    pub rate: String,
}

/// The rate units [`parse_rate`] accepts, for messages. Bit units are decimal.
pub const RATE_UNITS: &str =
    "bit/s, kbit/s, Mbit/s, Gbit/s, Tbit/s (or bps, kbps, Mbps, Gbps, Tbps), B/s, kB/s, MB/s, GB/s, KiB/s, MiB/s or GiB/s";

/// A cap setting that cannot be used. Each variant names the field of the [`CapSpec`]
/// that failed, such as `rate` or `window[0].from`, so a caller can prefix the table
/// the spec came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CapError {
    /// The rate does not parse.
    Rate {
        /// The field, `rate` or `window[N].rate`.
        field: String,
        /// The rejected text.
        text: String,
        /// The problem and the fix.
        reason: String,
    },
    /// A percentage, but no link speed to take it of.
    NeedsLink {
        /// The field, `rate` or `window[N].rate`.
        field: String,
        /// The rejected text.
        text: String,
    },
    /// A clock time is not `HH:MM` within a day.
    Time {
        /// The field, `window[N].from` or `window[N].to`.
        field: String,
        /// The rejected text.
        text: String,
    },
    /// A day list names an unknown day.
    Days {
        /// The field, `window[N].days`.
        field: String,
        /// The rejected text.
        text: String,
    },
    /// A window starts and ends at the same minute.
    EmptyWindow {
        /// The field of the end time, `window[N].to`.
        field: String,
        /// Its start.
        from: String,
        /// Its end.
        to: String,
    },
    /// The time zone is not in the bundled database.
    TimeZone {
        /// The rejected name.
        name: String,
    },
}

impl CapError {
    /// Returns the field that failed, relative to the cap: `rate`, `window[0].from`, or
    /// `time_zone` for the zone passed to [`CapSchedule::from_spec`].
    pub fn field(&self) -> &str {
        match self {
            CapError::Rate { field, .. }
            | CapError::NeedsLink { field, .. }
            | CapError::Time { field, .. }
            | CapError::Days { field, .. }
            | CapError::EmptyWindow { field, .. } => field,
            CapError::TimeZone { .. } => "time_zone",
        }
    }

    /// Returns the value the user wrote in that field.
    pub fn value(&self) -> &str {
        match self {
            CapError::Rate { text, .. } | CapError::NeedsLink { text, .. } | CapError::Time { text, .. } | CapError::Days { text, .. } => text,
            CapError::EmptyWindow { to, .. } => to,
            CapError::TimeZone { name } => name,
        }
    }

    /// Returns what is wrong and how to fix it, without the field and value.
    pub fn fix(&self) -> String {
        match self {
            CapError::Rate { reason, .. } => reason.clone(),
            CapError::NeedsLink { .. } => {
                "a percentage needs the link speed: configure the link, or give the rate with a unit such as \"10Mbit/s\"".into()
            }
            // Many people write the end of the day as 24:00. The grammar has no such
            // minute, because an end before the start already runs past midnight.
            CapError::Time { text, .. } if text.trim() == "24:00" => {
                "use HH:MM from 00:00 to 23:59; write \"00:00\" for midnight (an end before the start runs past midnight)".into()
            }
            CapError::Time { .. } => "use HH:MM from 00:00 to 23:59, such as \"08:00\"".into(),
            CapError::Days { .. } => "use mon, tue, wed, thu, fri, sat, sun, ranges such as \"mon-fri\", and commas".into(),
            CapError::EmptyWindow { from, .. } => format!("the window starts at {from} too and would be empty: use different start and end times"),
            CapError::TimeZone { .. } => "unknown time zone: use an IANA name such as \"Europe/London\" or \"UTC\"".into(),
        }
    }
}

impl fmt::Display for CapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid cap {} {:?}: {}", self.field(), self.value(), self.fix())
    }
}

impl std::error::Error for CapError {}

/// Parses a rate with a unit into bytes per second. On failure returns the reason, with
/// the full list of units when the unit is the problem.
pub fn parse_rate_bytes(text: &str) -> Result<f64, String> {
    parse_rate(text).map(|rate| rate.bytes_per_second()).map_err(|error| {
        if error.reason.starts_with("unknown unit") || error.reason.starts_with("missing unit") {
            format!("{}; use {RATE_UNITS}", error.reason.split(':').next().unwrap_or("unknown unit"))
        } else {
            error.reason
        }
    })
}

/// A window in resolved form: minutes since local midnight and a rate in bytes per
/// second.
#[derive(Clone, Debug, PartialEq)]
pub struct CapWindow {
    /// Days it starts on, Monday first.
    pub days: [bool; 7],
    /// Start, in minutes after local midnight.
    pub start_minute: u32,
    /// End, in minutes after local midnight, exclusive; below `start_minute` when the
    /// window runs past midnight.
    pub end_minute: u32,
    /// The cap inside the window, in bytes per second.
    pub rate: f64,
}

/// A cap over time, in bytes per second.
#[derive(Clone, Debug)]
pub struct CapSchedule {
    base: Option<f64>,
    windows: Vec<CapWindow>,
    zone: TimeZone,
}

/// How far [`CapSchedule::next_change`] looks ahead: a week, plus a day for windows
/// that run past midnight.
const LOOKAHEAD_MINUTES: u64 = 8 * 24 * 60;

impl CapSchedule {
    /// Resolves `spec` for a link of `link` bytes per second (needed only for
    /// percentages) in the IANA time zone `zone`.
    pub fn from_spec(spec: &CapSpec, link: Option<f64>, zone: &str) -> Result<CapSchedule, CapError> {
        let zone = TimeZone::get(zone).map_err(|_| CapError::TimeZone { name: zone.to_string() })?;
        let base = spec.rate.as_deref().map(|text| resolve_rate("rate", text, link)).transpose()?;
        let mut windows = Vec::new();
        for (index, window) in spec.window.iter().enumerate() {
            let field = |name: &str| format!("window[{index}].{name}");
            let start_minute = parse_clock(field("from"), &window.from)?;
            let end_minute = parse_clock(field("to"), &window.to)?;
            if start_minute == end_minute {
                return Err(CapError::EmptyWindow { field: field("to"), from: window.from.clone(), to: window.to.clone() });
            }
            let days = match &window.days {
                Some(text) => parse_days(field("days"), text)?,
                None => [true; 7],
            };
            windows.push(CapWindow { days, start_minute, end_minute, rate: resolve_rate(&field("rate"), &window.rate, link)? });
        }
        Ok(CapSchedule { base, windows, zone })
    }

    /// A constant cap of `rate` bytes per second.
    pub fn constant(rate: f64) -> CapSchedule {
        CapSchedule { base: Some(rate), windows: Vec::new(), zone: TimeZone::UTC }
    }

    /// The cap at `at`, in bytes per second; `None` means uncapped.
    pub fn rate_at(&self, at: Timestamp) -> Option<f64> {
        if self.windows.is_empty() {
            return self.base;
        }
        let micros = i64::try_from(at.as_micros()).unwrap_or(i64::MAX);
        let Ok(instant) = jiff::Timestamp::from_microsecond(micros) else {
            return self.base;
        };
        let local = instant.to_zoned(self.zone.clone());
        let minute = u32::from(local.hour() as u8) * 60 + u32::from(local.minute() as u8);
        let today = weekday_index(local.weekday());
        let yesterday = (today + 6) % 7;
        for window in &self.windows {
            let inside = if window.start_minute < window.end_minute {
                window.days[today] && (window.start_minute..window.end_minute).contains(&minute)
            } else {
                (window.days[today] && minute >= window.start_minute)
                    || (window.days[yesterday] && minute < window.end_minute)
            };
            if inside {
                return Some(window.rate);
            }
        }
        self.base
    }

    /// The first minute boundary after `after` at which the cap changes, within the
    /// next eight days; `None` if it never does.
    pub fn next_change(&self, after: Timestamp) -> Option<Timestamp> {
        if self.windows.is_empty() {
            return None;
        }
        let current = self.rate_at(after);
        let minute = 60_000_000;
        let first = (after.as_micros() / minute + 1) * minute;
        (0..LOOKAHEAD_MINUTES)
            .map(|step| Timestamp::from_micros(first + step * minute))
            .find(|&at| self.rate_at(at) != current)
    }

    /// The same schedule with every rate multiplied by `factor`, such as one node's even
    /// share of a site's cap.
    pub fn scaled(&self, factor: f64) -> CapSchedule {
        let mut scaled = self.clone();
        scaled.base = scaled.base.map(|rate| rate * factor);
        for window in &mut scaled.windows {
            window.rate *= factor;
        }
        scaled
    }

    /// The smallest rate the schedule ever sets, in bytes per second; `None` if it
    /// never caps.
    pub fn min_rate(&self) -> Option<f64> {
        self.windows.iter().map(|window| window.rate).chain(self.base).reduce(f64::min)
    }
}

/// Parses `"50Mbit/s"` or `"20%"` of `link` into bytes per second.
fn resolve_rate(field: &str, text: &str, link: Option<f64>) -> Result<f64, CapError> {
    let error = |reason: String| CapError::Rate { field: field.to_string(), text: text.to_string(), reason };
    if let Some(percent) = text.trim().strip_suffix('%') {
        let percent: f64 = percent.trim().parse().map_err(|_| error("expected a number before %".into()))?;
        if !(percent > 0.0 && percent <= 100.0) {
            return Err(error("use a percentage above 0 and at most 100".into()));
        }
        let link = link.ok_or_else(|| CapError::NeedsLink { field: field.to_string(), text: text.to_string() })?;
        return Ok(link * percent / 100.0);
    }
    parse_rate_bytes(text).map_err(error)
}

fn parse_clock(field: String, text: &str) -> Result<u32, CapError> {
    let error = || CapError::Time { field: field.clone(), text: text.to_string() };
    let (hours, minutes) = text.trim().split_once(':').ok_or_else(error)?;
    let hours: u32 = hours.parse().map_err(|_| error())?;
    let minutes: u32 = minutes.parse().map_err(|_| error())?;
    if hours > 23 || minutes > 59 || text.trim().len() != 5 {
        return Err(error());
    }
    Ok(hours * 60 + minutes)
}

fn parse_days(field: String, text: &str) -> Result<[bool; 7], CapError> {
    const NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let error = || CapError::Days { field: field.clone(), text: text.to_string() };
    let day = |name: &str| NAMES.iter().position(|day| day.eq_ignore_ascii_case(name.trim())).ok_or_else(error);
    let mut days = [false; 7];
    for part in text.split(',') {
        match part.split_once('-') {
            Some((first, last)) => {
                let (first, last) = (day(first)?, day(last)?);
                // A range may wrap past Sunday, as in "fri-mon".
                let mut index = first;
                loop {
                    days[index] = true;
                    if index == last {
                        break;
                    }
                    index = (index + 1) % 7;
                }
            }
            None => days[day(part)?] = true,
        }
    }
    Ok(days)
}

fn weekday_index(day: Weekday) -> usize {
    usize::from(day.to_monday_zero_offset() as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MBIT: f64 = 1e6 / 8.0;

    /// 20% of a 20 Mbit/s link on weekdays from 08:00 to 18:00 London time, the full
    /// link otherwise.
    fn business_hours() -> CapSchedule {
        let spec = CapSpec {
            rate: Some("100%".into()),
            window: vec![WindowSpec { days: Some("mon-fri".into()), from: "08:00".into(), to: "18:00".into(), rate: "20%".into() }],
        };
        CapSchedule::from_spec(&spec, Some(20.0 * MBIT), "Europe/London").expect("valid spec")
    }

    fn at(text: &str) -> Timestamp {
        let instant: jiff::Timestamp = text.parse().expect("RFC 3339 time");
        Timestamp::from_micros(instant.as_microsecond() as u64)
    }

    #[test]
    fn window_edges() {
        let schedule = business_hours();
        // 2026-12-07 is a Monday; London is on UTC in December.
        let cases = [
            ("2026-12-07T07:59:59Z", 20.0),
            ("2026-12-07T08:00:00Z", 4.0),
            ("2026-12-07T17:59:59Z", 4.0),
            ("2026-12-07T18:00:00Z", 20.0),
            ("2026-12-05T12:00:00Z", 20.0),
        ];
        for (time, mbit) in cases {
            let rate = schedule.rate_at(at(time)).expect("capped") / MBIT;
            assert!((rate - mbit).abs() < 1e-9, "at {time}: {rate} Mbit/s, expected {mbit}");
        }
    }

    #[test]
    fn summer_time_moves_window() {
        // In July London is UTC+1, so 08:00 local is 07:00 UTC.
        let schedule = business_hours();
        let rate = schedule.rate_at(at("2026-07-06T07:30:00Z")).expect("capped") / MBIT;
        assert!((rate - 4.0).abs() < 1e-9, "{rate} Mbit/s at 08:30 local");
    }

    #[test]
    fn overnight_window_wraps() {
        let spec = CapSpec {
            rate: None,
            window: vec![WindowSpec { days: Some("fri".into()), from: "22:00".into(), to: "06:00".into(), rate: "1Mbit/s".into() }],
        };
        let schedule = CapSchedule::from_spec(&spec, None, "UTC").expect("valid spec");
        assert!(schedule.rate_at(at("2026-12-11T23:00:00Z")).is_some(), "Friday 23:00 is inside");
        assert!(schedule.rate_at(at("2026-12-12T05:59:00Z")).is_some(), "Saturday 05:59 is inside");
        assert!(schedule.rate_at(at("2026-12-12T06:00:00Z")).is_none(), "Saturday 06:00 is outside");
        assert!(schedule.rate_at(at("2026-12-10T23:00:00Z")).is_none(), "Thursday 23:00 is outside");
    }

    #[test]
    fn next_change_finds_window_start() {
        let schedule = business_hours();
        let change = schedule.next_change(at("2026-12-07T06:12:30Z")).expect("a change");
        assert_eq!(change, at("2026-12-07T08:00:00Z"));
    }

    #[test]
    fn bad_settings_rejected() {
        let window = |from: &str, to: &str, days: Option<&str>, rate: &str| CapSpec {
            rate: None,
            window: vec![WindowSpec { days: days.map(String::from), from: from.into(), to: to.into(), rate: rate.into() }],
        };
        let cases = [
            (window("8:00", "18:00", None, "1Mbit/s"), "cap window[0].from \"8:00\""),
            (window("08:00", "24:00", None, "1Mbit/s"), "cap window[0].to \"24:00\""),
            (window("08:00", "24:00", None, "1Mbit/s"), "write \"00:00\" for midnight"),
            (window("08:00", "08:00", None, "1Mbit/s"), "would be empty"),
            (window("08:00", "18:00", Some("mon-fry"), "1Mbit/s"), "cap window[0].days \"mon-fry\""),
            (window("08:00", "18:00", None, "20%"), "needs the link speed"),
            (window("08:00", "18:00", None, "150%"), "at most 100"),
            (window("08:00", "18:00", None, "20"), "cap window[0].rate \"20\""),
            (window("08:00", "18:00", None, "20"), "MiB/s"),
            (window("08:00", "18:00", None, "20 furlongs"), "Mbps"),
        ];
        for (spec, expected) in cases {
            let error = CapSchedule::from_spec(&spec, None, "UTC").expect_err("invalid spec").to_string();
            assert!(error.contains(expected), "{error:?} lacks {expected:?}");
        }
        let zone = CapSchedule::from_spec(&CapSpec::default(), None, "Mars/Olympus").expect_err("unknown zone");
        assert!(zone.to_string().contains("Mars/Olympus"), "{zone}");
    }

    #[test]
    fn rate_units_accepted() {
        for text in ["10Mbit/s", "10 Mbps", "1Gbps", "800bps", "2MiB/s", "1.5 Gbit/s", "12.5MB/s"] {
            assert!(parse_rate_bytes(text).is_ok(), "{text}");
        }
    }
}
