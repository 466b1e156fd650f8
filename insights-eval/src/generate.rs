//! The pieces streams are made of: APIs, actors, rate functions of the minute, time zones with
//! daylight saving, Poisson counts, and the stream of cells an account and region produce.

use trailwatch::insights::aggregate::SUCCESS_ERROR_CODE;
use trailwatch::insights::{InsightType, MinuteAggregate, MinuteCell, SeriesKey};

use crate::family::Family;
use crate::score::Label;

pub const MINUTES_PER_DAY: i64 = 1440;

/// Day of the week of a UTC day number, Monday = 0 (1970-01-01 was a Thursday).
pub fn weekday(day: i64) -> i64 {
    (day + 3).rem_euclid(7)
}

/// The Julian day number of 1970-01-01, day 0 of the UTC day numbers used here.
const UNIX_EPOCH_JULIAN_DAY: i64 = 2_440_588;

/// The UTC day number of a calendar date (dates the streams use: always valid).
pub fn day_of(year: i64, month: u32, day: u32) -> i64 {
    let month = time::Month::try_from(month as u8).expect("a month number");
    let date = time::Date::from_calendar_date(year as i32, month, day as u8).expect("a date");
    i64::from(date.to_julian_day()) - UNIX_EPOCH_JULIAN_DAY
}

/// The year of a UTC day number.
fn year_of(day: i64) -> i64 {
    let date = time::Date::from_julian_day((day + UNIX_EPOCH_JULIAN_DAY) as i32).expect("a date");
    i64::from(date.year())
}

/// Time zones whose local schedules the streams use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    Utc,
    /// US Eastern: UTC−5, UTC−4 from the second Sunday of March (07:00 UTC) to the first Sunday
    /// of November (06:00 UTC).
    UsEastern,
    /// Central Europe: UTC+1, UTC+2 from the last Sunday of March to the last Sunday of October
    /// (01:00 UTC both).
    CentralEurope,
}

fn nth_sunday(year: i64, month: u32, n: i64) -> i64 {
    let first = day_of(year, month, 1);
    first + (6 - weekday(first)).rem_euclid(7) + 7 * (n - 1)
}

fn last_sunday(year: i64, month: u32) -> i64 {
    let last = day_of(year, month, 31);
    last - (weekday(last) + 1).rem_euclid(7)
}

impl Zone {
    /// The daylight-saving period of `year` as UTC minutes `[start, end)`.
    pub fn summer(self, year: i64) -> Option<(i64, i64)> {
        match self {
            Zone::Utc => None,
            Zone::UsEastern => Some((
                nth_sunday(year, 3, 2) * MINUTES_PER_DAY + 7 * 60,
                nth_sunday(year, 11, 1) * MINUTES_PER_DAY + 6 * 60,
            )),
            Zone::CentralEurope => Some((
                last_sunday(year, 3) * MINUTES_PER_DAY + 60,
                last_sunday(year, 10) * MINUTES_PER_DAY + 60,
            )),
        }
    }

    /// Minutes to add to UTC for local time at UTC minute `m`.
    pub fn offset(self, m: i64) -> i64 {
        let standard = match self {
            Zone::Utc => return 0,
            Zone::UsEastern => -300,
            Zone::CentralEurope => 60,
        };
        let year = year_of(m.div_euclid(MINUTES_PER_DAY));
        match self.summer(year) {
            Some((a, b)) if (a..b).contains(&m) => standard + 60,
            _ => standard,
        }
    }

    /// Local (day, minute of day, weekday) at UTC minute `m`.
    pub fn local(self, m: i64) -> (i64, i64, i64) {
        let l = m + self.offset(m);
        let day = l.div_euclid(MINUTES_PER_DAY);
        (day, l.rem_euclid(MINUTES_PER_DAY), weekday(day))
    }
}

/// An API series: event source, name, and the error code for error-rate series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Api {
    pub source: &'static str,
    pub name: &'static str,
    pub error: Option<&'static str>,
}

impl Api {
    pub const fn calls(source: &'static str, name: &'static str) -> Api {
        Api {
            source,
            name,
            error: None,
        }
    }

    pub const fn errors(source: &'static str, name: &'static str, code: &'static str) -> Api {
        Api {
            source,
            name,
            error: Some(code),
        }
    }

    pub fn insight_type(&self) -> InsightType {
        match self.error {
            Some(_) => InsightType::ApiErrorRateInsight,
            None => InsightType::ApiCallRateInsight,
        }
    }

    pub fn key(&self, account: &str, region: &str) -> SeriesKey {
        SeriesKey {
            account: account.to_owned(),
            region: region.to_owned(),
            event_source: self.source.to_owned(),
            event_name: self.name.to_owned(),
            insight_type: self.insight_type(),
            error_code: self.error.map(str::to_owned),
        }
    }
}

/// Who makes the calls of a component (the principal and its user agent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub principal: String,
    pub user_agent: &'static str,
}

impl Actor {
    pub fn role(account: &str, name: &str, user_agent: &'static str) -> Actor {
        Actor {
            principal: format!("arn:aws:sts::{account}:assumed-role/{name}/session"),
            user_agent,
        }
    }
}

/// Expected events per minute at a UTC minute.
pub type Rate = Box<dyn Fn(i64) -> f64>;

/// Events of one API by one actor, at a rate.
pub struct Component {
    pub api: Api,
    pub actor: Actor,
    pub rate: Rate,
    /// The rate is the exact count (a scripted burst), not a Poisson mean.
    pub exact: bool,
}

/// One account and region: its components and its labels.
pub struct Stream {
    pub account: String,
    pub region: String,
    pub components: Vec<Component>,
    pub labels: Vec<Label>,
}

impl Stream {
    /// The events of minute `m`: per component with events, its API, actor and count.
    pub fn events(&self, m: i64, rng: &mut fastrand::Rng) -> Vec<(&Component, u64)> {
        self.components
            .iter()
            .filter_map(|c| {
                let rate = (c.rate)(m);
                let n = if c.exact {
                    rate.round() as u64
                } else {
                    poisson(rng, rate)
                };
                (n > 0).then_some((c, n))
            })
            .collect()
    }

    /// The cell of `n` events of component `c` in minute `m`.
    pub fn cell(&self, c: &Component, m: i64, n: u64) -> MinuteCell {
        let mut agg = MinuteAggregate {
            count: n,
            ..MinuteAggregate::default()
        };
        agg.user_identity_arn.add(&c.actor.principal, n);
        agg.user_agent.add(c.actor.user_agent, n);
        agg.error_code
            .add(c.api.error.unwrap_or(SUCCESS_ERROR_CODE), n);
        MinuteCell {
            key: c.api.key(&self.account, &self.region),
            minute: m,
            aggregate: agg,
        }
    }
}

/// A Poisson draw: Knuth's product of uniforms for small means, a rounded normal above 30
/// (written here: `fastrand` has no distributions, and this is all the streams need).
pub fn poisson(rng: &mut fastrand::Rng, mean: f64) -> u64 {
    if mean <= 0.0 {
        return 0;
    }
    if mean > 30.0 {
        let (u1, u2) = (rng.f64().max(1e-12), rng.f64());
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        return (mean + z * mean.sqrt()).round().max(0.0) as u64;
    }
    let limit = (-mean).exp();
    let (mut k, mut p) = (0u64, 1.0);
    loop {
        p *= rng.f64();
        if p <= limit {
            return k;
        }
        k += 1;
    }
}

/// How many accounts and regions a run covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One account, one region.
    Single,
    /// An organization trail: `accounts` × `regions`, one series per account and region.
    Organization { accounts: u32, regions: u32 },
}

impl Layout {
    pub fn streams(self) -> Vec<(String, String)> {
        const REGIONS: [&str; 4] = ["us-east-1", "eu-west-1", "ap-southeast-2", "us-west-2"];
        let (accounts, regions) = match self {
            Layout::Single => (1, 1),
            Layout::Organization { accounts, regions } => (accounts, regions.min(4)),
        };
        (0..accounts)
            .flat_map(|a| {
                (0..regions).map(move |r| {
                    (
                        format!("{:012}", 111_122_223_333u64 + u64::from(a) * 1_010_101),
                        REGIONS[r as usize].to_owned(),
                    )
                })
            })
            .collect()
    }

    pub fn name(self) -> String {
        match self {
            Layout::Single => "1x1".to_owned(),
            Layout::Organization { accounts, regions } => format!("{accounts}x{regions}"),
        }
    }
}

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct StreamSpec {
    pub family: Family,
    pub seed: u64,
    /// Multiplies background and job rates (0.3 = a small quiet account, 10 = a busy one).
    pub volume: f64,
    pub layout: Layout,
    /// Days before the evaluation (the detector's memory needs four weeks).
    pub warmup_days: i64,
    pub eval_days: i64,
}

impl StreamSpec {
    pub fn new(family: Family, seed: u64, volume: f64) -> Self {
        StreamSpec {
            family,
            seed,
            volume,
            layout: Layout::Single,
            warmup_days: 35,
            eval_days: 7,
        }
    }

    /// First UTC day of the stream.
    pub fn start_day(&self) -> i64 {
        self.family.eval_start_day(self.seed) - self.warmup_days
    }

    pub fn eval_start_day(&self) -> i64 {
        self.family.eval_start_day(self.seed)
    }
}
