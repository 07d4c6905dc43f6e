//! Istio durations as written in YAML: Go's syntax (`10s`, `1.5s`, `500ms`, `1h30m`, `0`), which
//! also covers protobuf's JSON form (`1.5s`).

use std::time::Duration;

/// Parses a duration; the error says what is wrong with it.
pub fn parse(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() || s.starts_with('-') {
        return Err(format!(
            "{text:?} is not a duration (like 10s, 1.5s, 500ms or 1h30m)"
        ));
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    let mut nanos: u128 = 0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| {
                format!("{text:?} has a number without a unit (ns, us, ms, s, m or h)")
            })?;
        let (number, tail) = rest.split_at(number_len);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => {
                return Err(format!(
                    "{text:?} has an unknown unit {unit:?} (use ns, us, ms, s, m or h)"
                ))
            }
        };
        nanos += scaled(number, scale).ok_or_else(|| format!("{text:?} is not a duration"))?;
        rest = tail;
    }
    u64::try_from(nanos)
        .map(Duration::from_nanos)
        .map_err(|_| format!("{text:?} is too long"))
}

/// `number` (digits, optionally a fraction) times `scale` nanoseconds.
fn scaled(number: &str, scale: u128) -> Option<u128> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
        return None;
    }
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut total = whole.checked_mul(scale)?;
    let mut unit = scale;
    for digit in fraction.bytes() {
        unit /= 10;
        total = total.checked_add(u128::from(digit - b'0') * unit)?;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_and_protobuf_forms() {
        let ms = Duration::from_millis;
        for (text, want) in [
            ("10s", ms(10_000)),
            ("1.5s", ms(1_500)),
            ("0.25s", ms(250)),
            ("500ms", ms(500)),
            ("1h30m", ms(5_400_000)),
            ("2m", ms(120_000)),
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("100us", Duration::from_micros(100)),
            (".5s", ms(500)),
        ] {
            assert_eq!(parse(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn rejects_what_is_not_a_duration() {
        for text in [
            "",
            "10",
            "-1s",
            "1.2.3s",
            "5x",
            "s",
            "1 s",
            "99999999999999999999h",
        ] {
            assert!(parse(text).is_err(), "{text} parsed");
        }
    }
}
