//! Unit conversions between the contract and Daytona, kept pure so they test natively.

/// Daytona's intervals (`autoStopInterval`, the TTL) are whole minutes and 0 means
/// "never", so the contract's seconds round up and never reach 0 (59 s → 1, 61 s → 2,
/// 1 s → 1): a sandbox lives at least as long as asked, at most 59 s longer.
pub fn whole_minutes(secs: u64) -> u64 {
    secs.div_ceil(60).max(1)
}

/// `CreateSandbox.memory` is whole GiB ("Memory allocated to the sandbox in GB"; the list
/// filters call it `minMemoryGiB`), so `memory_mb` rounds up: never less than asked.
pub fn memory_gib(memory_mb: u32) -> u32 {
    memory_mb.div_ceil(1024).max(1)
}

/// An upstream timestamp as RFC 3339, or `None` when it is not a date-time we can read.
///
/// Daytona serialises `Date` with JS `toISOString()` (`2024-10-01T12:00:00.000Z`, already
/// RFC 3339); this also accepts a space separator, a missing zone (taken as UTC, which is
/// what the API stores) and `+HHMM` / `+HH` offsets, so an older or proxied server's
/// format does not turn into a failed `list`.
pub fn rfc3339(s: &str) -> Option<String> {
    let s = s.trim();
    let (date, rest) = (s.get(..10)?, s.get(10..)?);
    let b = date.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if !(digits(0..4) && b[4] == b'-' && digits(5..7) && b[7] == b'-' && digits(8..10)) {
        return None;
    }
    let rest = rest.strip_prefix(['T', 't', ' '])?;
    let t = rest.get(..8)?.as_bytes();
    let tdigits = |r: std::ops::Range<usize>| t[r].iter().all(u8::is_ascii_digit);
    if !(tdigits(0..2) && t[2] == b':' && tdigits(3..5) && t[5] == b':' && tdigits(6..8)) {
        return None;
    }
    let month: u32 = date[5..7].parse().ok()?;
    let day: u32 = date[8..10].parse().ok()?;
    let (hh, mm, ss): (u32, u32, u32) = (rest[0..2].parse().ok()?, rest[3..5].parse().ok()?, rest[6..8].parse().ok()?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let mut tail = &rest[8..];
    let mut frac = "";
    if let Some(f) = tail.strip_prefix('.') {
        let n = f.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        frac = &tail[..n + 1];
        tail = &f[n..];
    }
    let zone = match tail {
        "" | "Z" | "z" => "Z".to_string(),
        _ => {
            let (sign, off) = (tail.get(..1)?, tail.get(1..)?);
            if sign != "+" && sign != "-" {
                return None;
            }
            let off = off.replace(':', "");
            if !off.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let (oh, om) = match off.len() {
                2 => (&off[..2], "00"),
                4 => (&off[..2], &off[2..]),
                _ => return None,
            };
            if oh.parse::<u32>().ok()? > 23 || om.parse::<u32>().ok()? > 59 {
                return None;
            }
            format!("{sign}{oh}:{om}")
        }
    };
    Some(format!("{date}T{}{frac}{zone}", &rest[..8]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_round_up_and_never_reach_zero() {
        for (secs, min) in [(1, 1), (59, 1), (60, 1), (61, 2), (300, 5), (301, 6), (0, 1)] {
            assert_eq!(whole_minutes(secs), min, "{secs} s");
        }
        assert_eq!(whole_minutes(u64::MAX), u64::MAX / 60 + 1);
    }

    #[test]
    fn memory_rounds_up_to_whole_gib() {
        for (mb, gib) in [(1, 1), (512, 1), (1024, 1), (1025, 2), (4096, 4), (u32::MAX, 4_194_304)] {
            assert_eq!(memory_gib(mb), gib, "{mb} MB");
        }
    }

    #[test]
    fn timestamps_normalise_to_rfc3339() {
        assert_eq!(rfc3339("2024-10-01T12:00:00.000Z").as_deref(), Some("2024-10-01T12:00:00.000Z"));
        assert_eq!(rfc3339("2024-10-01 12:00:00.123456+00").as_deref(), Some("2024-10-01T12:00:00.123456+00:00"));
        assert_eq!(rfc3339("2024-10-01T12:00:00").as_deref(), Some("2024-10-01T12:00:00Z"));
        assert_eq!(rfc3339("2024-10-01T12:00:00-0530").as_deref(), Some("2024-10-01T12:00:00-05:30"));
        for bad in [
            "",
            "yesterday",
            "2024-13-01T00:00:00Z",
            "2024-10-01T12:00",
            "2024-10-01T12:00:00.Z",
            "2024-10-01T12:00:00+5",
            "2024-10-01T12:00:00 UTC",
            "２０２４-10-01T12:00:00Z",
        ] {
            assert_eq!(rfc3339(bad), None, "{bad}");
        }
    }
}
