//! Values with units as scenario files write them: rates, durations and sizes.
//!
//! Every value must carry a unit, because a bare `100` could mean bit/s or byte/s, ms or
//! s, and a wrong guess changes a rollout's time tenfold.

use std::fmt;

/// A value that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {text:?}: {reason}")]
pub struct UnitError {
    /// The kind of value: "rate", "duration" or "size".
    pub kind: &'static str,
    /// The rejected text.
    pub text: String,
    /// The problem and the fix.
    pub reason: String,
}

/// A link rate in bytes per second.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
pub struct Rate(pub f64);

impl Rate {
    /// Bytes per second.
    pub fn bytes_per_second(self) -> f64 {
        self.0
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bits = self.0 * 8.0;
        if bits >= 1e9 {
            write!(f, "{:.3} Gbit/s", bits / 1e9)
        } else {
            write!(f, "{:.3} Mbit/s", bits / 1e6)
        }
    }
}

/// Splits `text` into a number and the unit that follows it.
fn split_number(kind: &'static str, text: &str) -> Result<(f64, String), UnitError> {
    let trimmed = text.trim();
    let end = trimmed
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | '_')))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(end);
    let error = |reason: String| UnitError { kind, text: text.to_string(), reason };
    let value: f64 = number.replace('_', "").parse().map_err(|_| error("expected a number followed by a unit".into()))?;
    if !value.is_finite() {
        return Err(error("the number is not finite".into()));
    }
    if value < 0.0 {
        return Err(error("the value is negative".into()));
    }
    Ok((value, unit.trim().to_string()))
}

/// Parses a rate such as `"100Mbit/s"`, `"1Gbit/s"`, `"1.5 Gbps"` or `"12.5MB/s"`.
///
/// Bit units are decimal (1 Mbit/s = 10^6 bit/s), as carriers quote them. The result must
/// be above zero: a link that carries nothing is a link that is down.
pub fn parse_rate(text: &str) -> Result<Rate, UnitError> {
    let (value, unit) = split_number("rate", text)?;
    let bits_per_unit = match unit.as_str() {
        "bit/s" | "bps" => 1.0,
        "kbit/s" | "kbps" | "Kbit/s" | "Kbps" => 1e3,
        "Mbit/s" | "Mbps" => 1e6,
        "Gbit/s" | "Gbps" => 1e9,
        "Tbit/s" | "Tbps" => 1e12,
        "B/s" => 8.0,
        "kB/s" | "KB/s" => 8e3,
        "MB/s" => 8e6,
        "GB/s" => 8e9,
        "KiB/s" => 8.0 * 1024.0,
        "MiB/s" => 8.0 * 1024.0 * 1024.0,
        "GiB/s" => 8.0 * 1024.0 * 1024.0 * 1024.0,
        "" => {
            return Err(UnitError {
                kind: "rate",
                text: text.to_string(),
                reason: "missing unit: write for example \"100Mbit/s\" or \"1Gbit/s\"".into(),
            });
        }
        other => {
            return Err(UnitError {
                kind: "rate",
                text: text.to_string(),
                reason: format!(
                    "unknown unit {other:?}: use bit/s, kbit/s, Mbit/s, Gbit/s or Tbit/s (also written bps, kbps, Mbps, Gbps, Tbps), B/s, kB/s, MB/s, GB/s, KiB/s, MiB/s or GiB/s"
                ),
            });
        }
    };
    if value == 0.0 {
        return Err(UnitError { kind: "rate", text: text.to_string(), reason: "a rate must be above zero".into() });
    }
    Ok(Rate(value * bits_per_unit / 8.0))
}

/// Parses a duration such as `"20ms"`, `"1.5s"`, `"250us"`, `"2min"` or `"1h"` into
/// microseconds, rounded to the nearest microsecond.
pub fn parse_duration_us(text: &str) -> Result<u64, UnitError> {
    let (value, unit) = split_number("duration", text)?;
    let micros_per_unit = match unit.as_str() {
        "us" | "µs" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        "min" => 60e6,
        "h" => 3600e6,
        "d" => 86_400e6,
        "" => {
            return Err(UnitError {
                kind: "duration",
                text: text.to_string(),
                reason: "missing unit: write for example \"20ms\" or \"90s\"".into(),
            });
        }
        other => {
            return Err(UnitError {
                kind: "duration",
                text: text.to_string(),
                reason: format!("unknown unit {other:?}: use us, ms, s, min, h or d"),
            });
        }
    };
    Ok((value * micros_per_unit).round() as u64)
}

/// Parses a size such as `"1GiB"`, `"200MB"`, `"512KiB"` or `"4096B"` into bytes.
pub fn parse_size(text: &str) -> Result<u64, UnitError> {
    let (value, unit) = split_number("size", text)?;
    let bytes_per_unit: f64 = match unit.as_str() {
        "B" => 1.0,
        "kB" | "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "TiB" => 1024.0f64.powi(4),
        "" => {
            return Err(UnitError {
                kind: "size",
                text: text.to_string(),
                reason: "missing unit: write for example \"1GiB\" or \"200MB\"".into(),
            });
        }
        other => {
            return Err(UnitError {
                kind: "size",
                text: text.to_string(),
                reason: format!("unknown unit {other:?}: use B, kB, MB, GB, TB, KiB, MiB, GiB or TiB"),
            });
        }
    };
    Ok((value * bytes_per_unit).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!(parse_rate("100Mbit/s").map(|r| r.0), Ok(12.5e6));
        assert_eq!(parse_rate("1 Gbit/s").map(|r| r.0), Ok(125e6));
        assert_eq!(parse_rate("8bit/s").map(|r| r.0), Ok(1.0));
        assert_eq!(parse_rate("2MB/s").map(|r| r.0), Ok(2e6));
    }

    #[test]
    fn rate_without_unit_rejected() {
        let Err(error) = parse_rate("100") else { panic!("accepted a rate without unit") };
        assert!(error.reason.contains("missing unit"), "{error}");
    }

    #[test]
    fn negative_rate_rejected() {
        let Err(error) = parse_rate("-5Mbit/s") else { panic!("accepted a negative rate") };
        assert!(error.reason.contains("negative"), "{error}");
    }

    #[test]
    fn zero_rate_rejected() {
        assert!(parse_rate("0Mbit/s").is_err());
    }

    #[test]
    fn unknown_rate_unit_rejected() {
        let Err(error) = parse_rate("10 furlongs") else { panic!("accepted an unknown unit") };
        assert!(error.reason.contains("unknown unit"), "{error}");
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration_us("20ms"), Ok(20_000));
        assert_eq!(parse_duration_us("1.5s"), Ok(1_500_000));
        assert_eq!(parse_duration_us("250us"), Ok(250));
        assert_eq!(parse_duration_us("2min"), Ok(120_000_000));
        assert!(parse_duration_us("20").is_err());
        assert!(parse_duration_us("-1ms").is_err());
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("200MB"), Ok(200_000_000));
        assert_eq!(parse_size("0B"), Ok(0));
        assert!(parse_size("1024").is_err());
    }
}
