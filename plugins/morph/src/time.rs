//! Morph reports `created` as Unix epoch seconds; the contract wants RFC 3339 UTC.
//! A hand-written civil-from-days conversion (Howard Hinnant's algorithm) keeps chrono
//! and its timezone machinery out of the guest for the one conversion it needs.

/// `secs` since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ`, or `None` outside years 0..=9999
/// (RFC 3339 has exactly four year digits).
pub fn rfc3339_from_epoch(secs: i64) -> Option<String> {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) {
        return None;
    }
    Some(format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60))
}

/// An upstream `created` value (integer per the spec; a float is tolerated and floored).
pub fn rfc3339_from_created(created: f64) -> Option<String> {
    if !created.is_finite() || created.abs() > 1e15 {
        return None;
    }
    rfc3339_from_epoch(created.floor() as i64)
}

/// (year, month 1..=12, day 1..=31) of the proleptic Gregorian day `z` days after 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // year of era, 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from March 1st
    let mp = (5 * doy + 2) / 153; // month from March, 0..=11
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(rfc3339_from_epoch(0).unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_from_epoch(1_735_689_600).unwrap(), "2025-01-01T00:00:00Z");
        assert_eq!(rfc3339_from_epoch(951_782_400).unwrap(), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_from_epoch(4_107_542_399).unwrap(), "2100-02-28T23:59:59Z");
        assert_eq!(rfc3339_from_epoch(-1).unwrap(), "1969-12-31T23:59:59Z");
        assert_eq!(rfc3339_from_epoch(1_709_210_096).unwrap(), "2024-02-29T12:34:56Z");
    }

    #[test]
    fn every_day_round_trips_through_the_calendar() {
        // Walk 800 years day by day and check the dates are consecutive.
        let (mut y, mut m, mut d) = civil_from_days(-146_097);
        for z in -146_096..146_097 {
            let next = civil_from_days(z);
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let len = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][m as usize - 1];
            let expected = if d < len {
                (y, m, d + 1)
            } else if m < 12 {
                (y, m + 1, 1)
            } else {
                (y + 1, 1, 1)
            };
            assert_eq!(next, expected, "day {z}");
            (y, m, d) = next;
        }
    }

    #[test]
    fn out_of_range_is_none_not_a_panic() {
        assert_eq!(rfc3339_from_epoch(253_402_300_800), None); // year 10000
        assert_eq!(rfc3339_from_epoch(i64::MIN / 2), None);
        assert_eq!(rfc3339_from_created(f64::NAN), None);
        assert_eq!(rfc3339_from_created(1e300), None);
        assert_eq!(rfc3339_from_created(1_735_689_600.9).unwrap(), "2025-01-01T00:00:00Z");
    }
}
