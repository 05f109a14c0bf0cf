//! Durations and timestamps as batch systems print them. Pure; no time-zone database:
//! wall-clock times without a zone are read as UTC (EManager's dev hosts and most HPC
//! login nodes' batch tools can be set to UTC; SLURM commands are run with
//! `SLURM_TIME_FORMAT=%s` so they print epoch seconds and no zone is involved).

/// Duration in seconds from `[D-]HH:MM:SS`, `MM:SS`, `MM` (SLURM: minutes), `D-HH`,
/// `D-HH:MM`; `None` for `infinite`, `UNLIMITED`, `INFINITY`, `N/A`, empty.
pub fn parse_duration(s: &str) -> Option<u64> {
    let s = s.trim();
    let lower = s.to_ascii_lowercase();
    if s.is_empty()
        || ["infinite", "unlimited", "infinity", "n/a", "none"].contains(&lower.as_str())
    {
        return None;
    }
    let (days, rest) = match s.split_once('-') {
        Some((d, r)) => (d.parse::<u64>().ok()?, r),
        None => (0, s),
    };
    let parts: Vec<u64> = rest
        .split(':')
        .map(|p| p.parse::<u64>().ok())
        .collect::<Option<Vec<_>>>()?;
    let secs = match (s.contains('-'), parts.as_slice()) {
        (false, [m]) => m * 60,
        (false, [m, sec]) => m * 60 + sec,
        (true, [h]) => h * 3600,
        (true, [h, m]) => h * 3600 + m * 60,
        (_, [h, m, sec]) => h * 3600 + m * 60 + sec,
        _ => return None,
    };
    Some(days * 86_400 + secs)
}

/// `HH:MM:SS` (hours may exceed 24), as job scripts want walltimes.
pub fn format_hms(secs: u64) -> String {
    format!(
        "{:02}:{:02}:{:02}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn epoch_ms(y: i64, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> Option<u64> {
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let secs = days_from_civil(y, mo, d) * 86_400 + (h * 3600 + mi * 60 + s) as i64;
    u64::try_from(secs).ok().map(|v| v * 1000)
}

fn hms(s: &str) -> Option<(u32, u32, u32)> {
    let mut it = s.split(':').map(|p| p.parse::<u32>().ok());
    let h = it.next()??;
    let m = it.next()??;
    let sec = it.next().unwrap_or(Some(0))?;
    Some((h, m, sec))
}

fn month(name: &str) -> Option<u32> {
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let lower = name.to_ascii_lowercase();
    MONTHS
        .iter()
        .position(|m| lower.starts_with(m))
        .map(|i| i as u32 + 1)
}

/// A timestamp (ms since epoch) from what batch tools print: epoch seconds
/// (`SLURM_TIME_FORMAT=%s`), ISO `2026-11-25T04:21:05`, SGE `11/25/2026 04:23:01`, ctime
/// `Wed Nov 25 04:22:42 2026` (qacct, PBS), LSF `Nov 25 04:22` (year from
/// `current_year`). `None` for `Unknown`, `N/A`, `None`, `-`, empty.
pub fn parse_timestamp(s: &str, current_year: i64) -> Option<u64> {
    let s = s.trim().trim_end_matches(" L").trim_end_matches(" E");
    if s.is_empty() || matches!(s, "Unknown" | "N/A" | "None" | "-" | "(null)" | "0") {
        return None;
    }
    if s.chars().all(|c| c.is_ascii_digit()) {
        return s.parse::<u64>().ok().map(|v| v * 1000);
    }
    if let Some((date, time)) = s.split_once('T') {
        let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
        let (y, mo, day) = (d.next()??, d.next()??, d.next()??);
        let (h, mi, sec) = hms(time)?;
        return epoch_ms(y, mo as u32, day as u32, h, mi, sec);
    }
    let words: Vec<&str> = s.split_whitespace().collect();
    match words.as_slice() {
        [date, time] if date.contains('/') => {
            let mut d = date.split('/').map(|p| p.parse::<i64>().ok());
            let (mo, day, y) = (d.next()??, d.next()??, d.next()??);
            let (h, mi, sec) = hms(time)?;
            epoch_ms(y, mo as u32, day as u32, h, mi, sec)
        }
        [_weekday, mon, day, time, year] => {
            let (h, mi, sec) = hms(time)?;
            epoch_ms(
                year.parse().ok()?,
                month(mon)?,
                day.parse().ok()?,
                h,
                mi,
                sec,
            )
        }
        [mon, day, time] => {
            let (h, mi, sec) = hms(time)?;
            epoch_ms(current_year, month(mon)?, day.parse().ok()?, h, mi, sec)
        }
        _ => None,
    }
}

/// The current year (UTC), for timestamps printed without one.
pub fn current_year() -> i64 {
    let days = (crate::now_ms() / 86_400_000) as i64;
    // 400-year cycles are exact; scan forward from 1970 (cheap: ~60 iterations).
    let mut year = 1970;
    while days_from_civil(year + 1, 1, 1) <= days {
        year += 1;
    }
    year
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_slurm_and_sge_forms() {
        assert_eq!(parse_duration("1:00:00"), Some(3600));
        assert_eq!(parse_duration("1:00"), Some(60));
        assert_eq!(parse_duration("30"), Some(1800));
        assert_eq!(parse_duration("1-00:00:00"), Some(86_400));
        assert_eq!(parse_duration("2-12"), Some(2 * 86_400 + 12 * 3600));
        assert_eq!(parse_duration("00:01:00"), Some(60));
        assert_eq!(parse_duration("infinite"), None);
        assert_eq!(parse_duration("INFINITY"), None);
        assert_eq!(parse_duration("UNLIMITED"), None);
        assert_eq!(parse_duration("x:y"), None);
    }

    #[test]
    fn format_hms_allows_more_than_a_day() {
        assert_eq!(format_hms(90), "00:01:30");
        assert_eq!(format_hms(48 * 3600), "48:00:00");
    }

    #[test]
    fn timestamps_in_every_printed_form() {
        let t = 1_795_580_562_000; // 2026-11-25T04:22:42Z
        assert_eq!(parse_timestamp("1795580562", 2026), Some(t));
        assert_eq!(parse_timestamp("2026-11-25T04:22:42", 2026), Some(t));
        assert_eq!(parse_timestamp("11/25/2026 04:22:42", 2026), Some(t));
        assert_eq!(parse_timestamp("Wed Nov 25 04:22:42 2026", 2026), Some(t));
        assert_eq!(parse_timestamp("Nov 25 04:22:42", 2026), Some(t));
        assert_eq!(parse_timestamp("Nov 25 04:22 L", 2026), Some(t - 42_000));
        assert_eq!(parse_timestamp("Unknown", 2026), None);
        assert_eq!(parse_timestamp("N/A", 2026), None);
    }

    #[test]
    fn current_year_is_plausible() {
        assert!(current_year() >= 2024);
    }
}
