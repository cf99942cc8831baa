//! Durations as written in the config: a decimal number and a unit, like `250ms`, `1s`, `1.5s`,
//! `2m`, `1h` or `30d` (certificates' validity). Parsed with integer arithmetic so `0.1s` is exactly 100ms.

use std::time::Duration;

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Units from largest to smallest: [`format_duration`] picks the first that fits exactly.
const UNITS: [(&str, u128); 5] = [
    ("d", 86_400 * NANOS_PER_SEC),
    ("h", 3600 * NANOS_PER_SEC),
    ("m", 60 * NANOS_PER_SEC),
    ("s", NANOS_PER_SEC),
    ("ms", 1_000_000),
];

/// Why a duration did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// No number in front of the unit, or a malformed one.
    #[error("expected a duration such as \"250ms\", \"1s\", \"1.5s\" or \"2m\", not \"{0}\"")]
    Malformed(String),
    /// A bare number: seconds or milliseconds would be a guess.
    #[error("\"{0}\" has no unit; write e.g. \"{0}s\" or \"{0}ms\"")]
    MissingUnit(String),
    /// A unit other than `ms`, `s`, `m` or `h`.
    #[error("unknown unit \"{unit}\" in \"{text}\"; use ms, s, m, h or d")]
    UnknownUnit {
        /// The duration as written.
        text: String,
        /// The unit as written.
        unit: String,
    },
    /// More than `Duration` holds.
    #[error("\"{0}\" is too long")]
    TooLarge(String),
}

/// Parses `250ms`, `1s`, `1.5s`, `2m`, `1h`. Fractions finer than a nanosecond are dropped.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let malformed = || DurationError::Malformed(text.to_string());
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() || (number.contains('.') && fraction.is_empty()) {
        return Err(malformed());
    }
    if unit.is_empty() {
        return Err(DurationError::MissingUnit(text.to_string()));
    }
    let Some(&(_, unit_nanos)) = UNITS.iter().find(|(name, _)| *name == unit) else {
        return Err(DurationError::UnknownUnit {
            text: text.to_string(),
            unit: unit.to_string(),
        });
    };
    let too_large = || DurationError::TooLarge(text.to_string());
    // `whole` and `fraction` are ASCII digits here, so parsing fails only on overflow.
    let whole: u128 = whole.parse().map_err(|_| too_large())?;
    // Digits past the 20th are below a nanosecond for every unit; dropping them keeps the
    // arithmetic inside u128.
    let fraction = &fraction[..fraction.len().min(20)];
    let fraction_nanos = match fraction.len() {
        0 => 0,
        len => {
            let digits: u128 = fraction.parse().map_err(|_| malformed())?;
            digits * unit_nanos / 10u128.pow(len as u32)
        }
    };
    let nanos = whole
        .checked_mul(unit_nanos)
        .and_then(|n| n.checked_add(fraction_nanos))
        .ok_or_else(too_large)?;
    let secs = u64::try_from(nanos / NANOS_PER_SEC).map_err(|_| too_large())?;
    // The remainder is below 10^9, so it fits.
    let subsec = (nanos % NANOS_PER_SEC) as u32;
    Ok(Duration::new(secs, subsec))
}

/// Writes a duration so [`parse_duration`] reads it back exactly, in the largest whole unit:
/// `2m`, `90s`, `1500ms`, `0.25ms`.
pub fn format_duration(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    for (name, unit_nanos) in UNITS {
        if nanos.is_multiple_of(unit_nanos) {
            return format!("{}{name}", nanos / unit_nanos);
        }
    }
    let (ms, rest) = (nanos / 1_000_000, nanos % 1_000_000);
    let fraction = format!("{rest:06}");
    format!("{ms}.{}ms", fraction.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_unit_and_fractions() {
        let cases = [
            ("250ms", Duration::from_millis(250)),
            ("1s", Duration::from_secs(1)),
            ("1.5s", Duration::from_millis(1500)),
            ("0.1s", Duration::from_millis(100)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
            ("0.25ms", Duration::from_micros(250)),
            ("0s", Duration::ZERO),
            ("1.000000001s", Duration::new(1, 1)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn rejects_what_is_not_a_duration() {
        for text in [
            "", "s", "1", "1.s", ".5s", "-1s", "1 s", "1sec", "1ss", "1.2.3s", "1e3ms",
        ] {
            assert!(parse_duration(text).is_err(), "{text}");
        }
        assert_eq!(
            parse_duration("15"),
            Err(DurationError::MissingUnit("15".into()))
        );
        assert!(matches!(
            parse_duration("99999999999999999999999h"),
            Err(DurationError::TooLarge(_))
        ));
    }

    #[test]
    fn formats_in_the_largest_exact_unit_and_round_trips() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(250), "250ms"),
            (Duration::from_millis(1500), "1500ms"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_secs(120), "2m"),
            (Duration::from_secs(7200), "2h"),
            (Duration::from_micros(250), "0.25ms"),
            (Duration::new(1, 1), "1000.000001ms"),
        ];
        for (duration, want) in cases {
            assert_eq!(format_duration(duration), want);
            assert_eq!(parse_duration(want), Ok(duration), "{want}");
        }
    }
}
