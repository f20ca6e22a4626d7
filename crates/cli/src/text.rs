//! Small helpers for the text the commands print.

/// Writes a count with its noun in the right number, `1 file` or `2 files`. Every noun the
/// commands count takes a plain `s`.
pub(crate) fn count(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

/// Formats a Unix time as ISO 8601 UTC followed by the raw seconds, which the files hold:
/// `2027-01-01T00:00:00Z (Unix 1798761600)`. Seconds beyond what a calendar date
/// can express print alone.
pub(crate) fn unix_time(secs: u64) -> String {
    match i64::try_from(secs).ok().and_then(|secs| jiff::Timestamp::from_second(secs).ok()) {
        Some(time) => format!("{time} (Unix {secs})"),
        None => format!("Unix {secs}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_one() {
        assert_eq!(count(1, "file"), "1 file");
    }

    #[test]
    fn count_zero() {
        assert_eq!(count(0, "file"), "0 files");
    }

    #[test]
    fn count_many() {
        assert_eq!(count(2, "signature"), "2 signatures");
    }

    #[test]
    fn unix_time_iso() {
        assert_eq!(unix_time(1_798_761_600), "2027-01-01T00:00:00Z (Unix 1798761600)");
    }

    #[test]
    fn unix_time_out_of_range() {
        assert_eq!(unix_time(u64::MAX), format!("Unix {}", u64::MAX));
    }
}
