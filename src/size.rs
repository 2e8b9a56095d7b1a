//! Sizes on the command line: plain bytes (`65536`) or with a binary unit (`64KiB`, `256MiB`,
//! `1GiB`).

/// Parses `<digits>` or `<digits><unit>` with unit `B`, `KiB`, `MiB` or `GiB` (powers of 1024).
/// Digits are parsed by hand (no sign, no spaces, no fractions), so `+5` or `1.5MiB` are refused
/// with a message instead of being read as something the user did not mean. Decimal units (`MB`)
/// are refused too: they would be a factor 1.05-1.07 away from what most people mean by them.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return Err(format!(
            "'{text}' must start with digits, e.g. 65536, 64KiB, 256MiB or 1GiB"
        ));
    }
    let multiplier: usize = match unit {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => {
            return Err(format!(
                "'{text}' has unknown unit '{unit}': use bytes, KiB, MiB or GiB"
            ))
        }
    };
    let mut value: usize = 0;
    for b in digits.bytes() {
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(usize::from(b - b'0')))
            .ok_or_else(|| format!("'{text}' is too large"))?;
    }
    value
        .checked_mul(multiplier)
        .ok_or_else(|| format!("'{text}' is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_with_and_without_units() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("512B"), Ok(512));
        assert_eq!(parse_size("64KiB"), Ok(64 * 1024));
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        for bad in [
            "", "MiB", "+5", "1.5MiB", "64kb", "64MB", " 1", "1 MiB", "-1",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(parse_size("99999999999999999999999").is_err());
        assert!(parse_size("99999999999999GiB").is_err());
    }
}
