//! Sizes as written in the config: a whole number and a unit, like `512KiB`, `1MiB` or `64MiB`
//! (also `B`, `KB`, `MB`, `GB` and `GiB`), or a bare number of bytes.

/// Units from largest to smallest: [`format_size`] picks the first binary one that fits exactly.
const UNITS: [(&str, u64); 7] = [
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
    ("GB", 1_000_000_000),
    ("MB", 1_000_000),
    ("KB", 1_000),
    ("B", 1),
];

/// Parses `64MiB`, `512KiB`, `1000000`. The message says what was expected.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let digits = trimmed.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = trimmed.split_at(digits);
    let malformed =
        || format!("expected a size such as \"1MiB\", \"512KiB\" or \"64MiB\", not \"{text}\"");
    let number: u64 = number.parse().map_err(|_| malformed())?;
    let unit = unit.trim();
    let scale = if unit.is_empty() {
        1
    } else {
        UNITS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(unit))
            .map(|(_, scale)| *scale)
            .ok_or_else(|| {
                format!("unknown unit \"{unit}\" in \"{text}\"; use B, KiB, MiB or GiB")
            })?
    };
    number
        .checked_mul(scale)
        .ok_or_else(|| format!("\"{text}\" is too large"))
}

/// Writes `bytes` as [`parse_size`] reads it, in the largest binary unit that divides it.
pub fn format_size(bytes: u64) -> String {
    UNITS
        .iter()
        .filter(|(name, _)| name.contains('i'))
        .find(|(_, scale)| bytes >= *scale && bytes.is_multiple_of(*scale))
        .map_or_else(
            || format!("{bytes}B"),
            |(name, scale)| format!("{}{name}", bytes / scale),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_binary_and_decimal_units() {
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("100 B"), Ok(100));
    }

    #[test]
    fn bad_sizes_say_why() {
        assert!(parse_size("").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("1.5MiB").is_err());
        assert!(parse_size("-1MiB").is_err());
        assert!(parse_size("1 parsec").is_err_and(|e| e.contains("unknown unit")));
        assert!(parse_size("99999999999999GiB").is_err_and(|e| e.contains("too large")));
    }

    #[test]
    fn sizes_print_as_they_parse() {
        for bytes in [1 << 20, 64 << 20, 1000, 1536, 3 << 30, 0] {
            assert_eq!(
                parse_size(&format_size(bytes)),
                Ok(bytes),
                "{}",
                format_size(bytes)
            );
        }
        assert_eq!(format_size(1 << 20), "1MiB");
        assert_eq!(format_size(1000), "1000B");
    }
}
