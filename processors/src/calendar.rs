//! Working-hours calendars (SPEC §4.3): an IANA zone, weekly local intervals, inclusive holiday
//! date ranges. Open-ness is decided on local wall-clock time, so daylight-saving transitions
//! follow the zone's rules.

use chrono::{Datelike, NaiveDate, TimeZone, Timelike, Weekday};
use chrono_tz::Tz;
use smallvec::SmallVec;
use std::sync::{Arc, Mutex};
use switchboard_schemas::WorkingHours;

/// A working-hours period parsed for fast questions.
#[derive(Debug, Clone)]
pub struct Calendar {
    pub zone: Tz,
    /// Per weekday (Monday = 0), sorted local intervals in minutes of the day, end exclusive.
    pub week: [Vec<(u32, u32)>; 7],
    /// Inclusive date ranges.
    pub holidays: Vec<(NaiveDate, NaiveDate)>,
    /// Business time of each whole local year from [`FIRST_YEAR`], computed the first time a
    /// span covers the year, so a span of many years costs O(1) per year (plus two partial
    /// years walked day by day).
    years: std::sync::Arc<[std::sync::OnceLock<i64>]>,
    /// The open stretches of recently asked local dates ([`Calendar::day_segments`]), a
    /// direct-mapped cache by day number: SLA clocks ask about the same few days over and
    /// over, and each answer costs several time-zone lookups.
    days: Arc<Mutex<DayCache>>,
}

/// The day cache's slots: (local date, its open stretches).
type DayCache = [Option<(NaiveDate, Segments)>; DAY_SLOTS];

/// A local date's open stretches as UTC ms, half-open, in order: a few at most.
pub type Segments = SmallVec<[(i64, i64); 4]>;

/// Slots of the day cache (about two months of distinct days).
const DAY_SLOTS: usize = 64;

/// The years whose business time is kept: the accepted event times (1970 to 2200, see
/// `switchboard_schemas::limits`).
const FIRST_YEAR: i32 = 1970;
const LAST_YEAR: i32 = 2200;

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
            years: (FIRST_YEAR..=LAST_YEAR)
                .map(|_| std::sync::OnceLock::new())
                .collect(),
            days: Arc::new(Mutex::new(std::array::from_fn(|_| None))),
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

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

impl Calendar {
    /// The zone's UTC offset at `ms`, in ms.
    fn offset_at(&self, ms: i64) -> i64 {
        use chrono::Offset;
        let naive = chrono::DateTime::from_timestamp_millis(ms)
            .map(|d| d.naive_utc())
            .unwrap_or_default();
        i64::from(
            self.zone
                .offset_from_utc_datetime(&naive)
                .fix()
                .local_minus_utc(),
        ) * 1000
    }

    /// Stretches of constant UTC offset covering [a, b): one, or two around a transition
    /// (found by binary search to the millisecond).
    fn pieces(&self, a: i64, b: i64) -> Vec<(i64, i64, i64)> {
        let (first, last) = (self.offset_at(a), self.offset_at(b - 1));
        if first == last {
            return vec![(a, b, first)];
        }
        let (mut lo, mut hi) = (a, b - 1);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.offset_at(mid) == first {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        vec![(a, hi, first), (hi, b, last)]
    }

    /// The open stretches of local date `date` as UTC ms, half-open, in order: every instant
    /// whose local date is `date` and whose local time falls in one of the day's intervals.
    pub fn day_segments(&self, date: NaiveDate) -> Segments {
        let slot = date.num_days_from_ce().rem_euclid(DAY_SLOTS as i32) as usize;
        // A poisoned lock only means a panic elsewhere mid-update of a pure cache: the
        // answer is computed afresh, and the cache is bypassed.
        if let Ok(days) = self.days.lock() {
            if let Some((d, segments)) = &days[slot] {
                if *d == date {
                    return segments.clone();
                }
            }
        }
        let segments = self.compute_day_segments(date);
        if let Ok(mut days) = self.days.lock() {
            days[slot] = Some((date, segments.clone()));
        }
        segments
    }

    fn compute_day_segments(&self, date: NaiveDate) -> Segments {
        let intervals = &self.week[weekday_index(date.weekday())];
        if intervals.is_empty() || self.is_holiday(date) {
            return Segments::new();
        }
        let Some(midnight) = date.and_hms_opt(0, 0, 0) else {
            return Segments::new();
        };
        // Local midnight read as if it were UTC; local = utc + offset.
        let naive0 = midnight.and_utc().timestamp_millis();
        // Every instant of this local date lies within 14 h of naive0 (UTC offsets are
        // -12 h to +14 h).
        let pieces = self.pieces(naive0 - 15 * HOUR, naive0 + 39 * HOUR);
        let mut out: Vec<(i64, i64)> = Vec::new();
        for (s, e) in intervals {
            let (ls, le) = (
                naive0 + i64::from(*s) * MINUTE,
                naive0 + i64::from(*e) * MINUTE,
            );
            for (a, b, off) in &pieces {
                let (from, to) = ((ls - off).max(*a), (le - off).min(*b));
                if from < to {
                    out.push((from, to));
                }
            }
        }
        out.sort_unstable();
        let mut merged = Segments::new();
        for (a, b) in out {
            match merged.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        merged
    }

    fn local_date(&self, ms: i64) -> NaiveDate {
        let naive = chrono::DateTime::from_timestamp_millis(ms)
            .map(|d| d.naive_utc())
            .unwrap_or_default();
        self.zone.from_utc_datetime(&naive).date_naive()
    }

    /// Business time in [from, to), in ms. O(days spanned) within two years; beyond, the
    /// whole local years between the two ends come from a per-year cache, so the cost is two
    /// partial years plus O(1) per year.
    pub fn elapsed(&self, from: i64, to: i64) -> i64 {
        if to <= from {
            return 0;
        }
        let (first, last) = (self.local_date(from), self.local_date(to));
        let start = first.pred_opt().unwrap_or(first);
        if last.year() - first.year() < 2 {
            return self.walk(start, last, from, to);
        }
        // Local dates follow time, so every open segment of a local year strictly between
        // the two ends lies inside [from, to) and counts whole.
        let (Some(end_of_first), Some(start_of_last)) = (
            NaiveDate::from_ymd_opt(first.year(), 12, 31),
            NaiveDate::from_ymd_opt(last.year(), 1, 1),
        ) else {
            return self.walk(start, last, from, to);
        };
        let mut total = self.walk(start, end_of_first, from, to);
        for year in first.year() + 1..last.year() {
            total += self.year_total(year);
        }
        total + self.walk(start_of_last, last, from, to)
    }

    /// Business time of the open segments of local dates `first..=last`, clipped to [from, to).
    fn walk(&self, first: NaiveDate, last: NaiveDate, from: i64, to: i64) -> i64 {
        let mut total = 0;
        let mut date = first;
        while date <= last {
            for (a, b) in self.day_segments(date) {
                total += (b.min(to) - a.max(from)).max(0);
            }
            match date.succ_opt() {
                Some(next) => date = next,
                None => break,
            }
        }
        total
    }

    /// Business time of the whole local year `year`.
    fn year_total(&self, year: i32) -> i64 {
        let compute = || {
            let (Some(a), Some(b)) = (
                NaiveDate::from_ymd_opt(year, 1, 1),
                NaiveDate::from_ymd_opt(year, 12, 31),
            ) else {
                return 0;
            };
            self.walk(a, b, i64::MIN, i64::MAX)
        };
        match usize::try_from(year - FIRST_YEAR)
            .ok()
            .and_then(|i| self.years.get(i))
        {
            Some(cell) => *cell.get_or_init(compute),
            None => compute(),
        }
    }

    /// The instant at which `budget` ms of business time, counted from `from`, run out; none
    /// when the calendar has no open time in the next ten years. O(days spanned).
    pub fn add(&self, from: i64, budget: i64) -> Option<i64> {
        if budget <= 0 {
            return Some(from);
        }
        let mut left = budget;
        let mut date = self.local_date(from).pred_opt()?;
        for _ in 0..3700 {
            for (a, b) in self.day_segments(date) {
                if b <= from {
                    continue;
                }
                let start = a.max(from);
                if left <= b - start {
                    return Some(start + left);
                }
                left -= b - start;
            }
            date = date.succ_opt()?;
        }
        None
    }
}

/// Business time for SLA counting: around the clock, or a working-hours calendar.
#[derive(Debug, Clone)]
pub enum BusinessTime<'a> {
    Always,
    Hours(&'a Calendar),
}

impl BusinessTime<'_> {
    pub fn elapsed(&self, from: i64, to: i64) -> i64 {
        match self {
            BusinessTime::Always => (to - from).max(0),
            BusinessTime::Hours(c) => c.elapsed(from, to),
        }
    }

    pub fn add(&self, from: i64, budget: i64) -> Option<i64> {
        match self {
            BusinessTime::Always => Some(from + budget.max(0)),
            BusinessTime::Hours(c) => c.add(from, budget),
        }
    }
}

fn weekday_index(w: Weekday) -> usize {
    w.num_days_from_monday() as usize
}
