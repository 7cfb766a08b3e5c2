//! Working-hours calendars (SPEC §4.3): an IANA zone, weekly local intervals, inclusive holiday
//! date ranges. Open-ness is decided on local wall-clock time, so daylight-saving transitions
//! follow the zone's rules.

use chrono::{Datelike, NaiveDate, TimeZone, Timelike, Weekday};
use chrono_tz::Tz;
use switchboard_schemas::WorkingHours;

/// A working-hours period parsed for fast questions.
#[derive(Debug, Clone)]
pub struct Calendar {
    pub zone: Tz,
    /// Per weekday (Monday = 0), sorted local intervals in minutes of the day, end exclusive.
    pub week: [Vec<(u32, u32)>; 7],
    /// Inclusive date ranges.
    pub holidays: Vec<(NaiveDate, NaiveDate)>,
}

/// Parse `HH:MM` (00:00 … 24:00) into minutes of the day.
pub fn parse_hhmm(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    match (h, m) {
        (24, 0) => Some(24 * 60),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

pub fn parse_date(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

impl Calendar {
    /// Parse a period; the error names the offending field (relative to the period).
    pub fn parse(p: &WorkingHours) -> Result<Calendar, (String, String)> {
        let zone: Tz = p.time_zone.parse().map_err(|_| {
            (
                "time_zone".to_string(),
                format!("{:?} is not an IANA time zone", p.time_zone),
            )
        })?;
        let mut week: [Vec<(u32, u32)>; 7] = Default::default();
        for (day, (name, intervals)) in p.week.days().into_iter().enumerate() {
            for (i, iv) in intervals.iter().enumerate() {
                let field = |f: &str| format!("week.{name}[{i}].{f}");
                let start = parse_hhmm(&iv.start)
                    .filter(|m| *m < 24 * 60)
                    .ok_or_else(|| {
                        (
                            field("start"),
                            format!("{:?} is not a time HH:MM", iv.start),
                        )
                    })?;
                let end = parse_hhmm(&iv.end).ok_or_else(|| {
                    (
                        field("end"),
                        format!("{:?} is not a time HH:MM (24:00 ends the day)", iv.end),
                    )
                })?;
                if end <= start {
                    return Err((
                        field("end"),
                        format!("{} is not after {}", iv.end, iv.start),
                    ));
                }
                week[day].push((start, end));
            }
            week[day].sort_unstable();
        }
        let mut holidays = Vec::new();
        for (i, h) in p.holidays.iter().enumerate() {
            let start = parse_date(&h.start).ok_or_else(|| {
                (
                    format!("holidays[{i}].start"),
                    format!("{:?} is not a date YYYY-MM-DD", h.start),
                )
            })?;
            let end = parse_date(&h.end).ok_or_else(|| {
                (
                    format!("holidays[{i}].end"),
                    format!("{:?} is not a date YYYY-MM-DD", h.end),
                )
            })?;
            if end < start {
                return Err((
                    format!("holidays[{i}].end"),
                    "ends before it starts".to_string(),
                ));
            }
            holidays.push((start, end));
        }
        Ok(Calendar {
            zone,
            week,
            holidays,
        })
    }

    pub fn is_holiday(&self, date: NaiveDate) -> bool {
        self.holidays.iter().any(|(s, e)| *s <= date && date <= *e)
    }

    /// Whether the period is open at the instant `ms` (Unix milliseconds).
    pub fn is_open(&self, ms: i64) -> bool {
        let Some(utc) = chrono::DateTime::from_timestamp_millis(ms) else {
            return false;
        };
        let local = self.zone.from_utc_datetime(&utc.naive_utc());
        let date = local.date_naive();
        if self.is_holiday(date) {
            return false;
        }
        let minute = local.hour() * 60 + local.minute();
        let day = weekday_index(local.weekday());
        self.week[day]
            .iter()
            .any(|(s, e)| *s <= minute && minute < *e)
    }
}

impl Calendar {
    /// The first instant after `ms` at which a working interval starts on a day that is not a
    /// holiday (looking at most 400 days ahead). A start that falls in a daylight-saving gap
    /// moves to the first local time that exists after it.
    pub fn next_opening(&self, ms: i64) -> Option<i64> {
        let utc = chrono::DateTime::from_timestamp_millis(ms)?;
        let first = self.zone.from_utc_datetime(&utc.naive_utc()).date_naive();
        for offset in 0..400 {
            let date = first + chrono::Days::new(offset);
            if self.is_holiday(date) {
                continue;
            }
            for (start, _) in &self.week[weekday_index(date.weekday())] {
                let local =
                    date.and_hms_opt(0, 0, 0)? + chrono::Duration::minutes(i64::from(*start));
                let instant = (0..=12)
                    .find_map(|q| {
                        self.zone
                            .from_local_datetime(&(local + chrono::Duration::minutes(15 * q)))
                            .earliest()
                    })?
                    .timestamp_millis();
                if instant > ms {
                    return Some(instant);
                }
            }
        }
        None
    }
}

fn weekday_index(w: Weekday) -> usize {
    w.num_days_from_monday() as usize
}
