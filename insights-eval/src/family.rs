//! The scenario families. Every stream has the same background (office hours, a flat agent, a
//! sparse admin API, a steady error rate) and the same positives (a new principal's IAM burst,
//! an access-denied enumeration, a surge on the busy agent); each family adds its rhythm and
//! labels every occurrence of it in the evaluation days as a negative: it must not fire.

use crate::generate::{day_of, StreamSpec};
use crate::generate::{weekday, Actor, Api, Component, Rate, Stream, Zone, MINUTES_PER_DAY};
use crate::score::{Label, LabelKind};

/// A scenario family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Jobs that run once a week, at the same weekday and hour.
    Weekly,
    /// Daily jobs and office hours scheduled in local time, across a daylight-saving change.
    Dst,
    /// Quiet weekends, then a Monday-morning surge of work and deploys.
    Monday,
    /// A service scaling up smoothly through the day, a little more every day.
    Ramp,
}

impl Family {
    pub const ALL: [Family; 4] = [Family::Weekly, Family::Dst, Family::Monday, Family::Ramp];

    pub fn name(self) -> &'static str {
        match self {
            Family::Weekly => "weekly",
            Family::Dst => "dst",
            Family::Monday => "monday",
            Family::Ramp => "ramp",
        }
    }

    pub fn from_name(name: &str) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.name() == name)
    }

    /// First evaluation day: a Wednesday for most families (the week then holds a weekend and a
    /// Monday); for `Dst` the Saturday before a change, cycling through US and EU autumn and
    /// spring changes of several years with the seed.
    pub fn eval_start_day(self, seed: u64) -> i64 {
        match self {
            Family::Dst => {
                let year = 2023 + (seed / 4 % 3) as i64;
                let change = match seed % 4 {
                    0 => Zone::UsEastern.summer(year).map(|s| s.1),
                    1 => Zone::CentralEurope.summer(year).map(|s| s.1),
                    2 => Zone::UsEastern.summer(year).map(|s| s.0),
                    _ => Zone::CentralEurope.summer(year).map(|s| s.0),
                };
                change.unwrap_or(0).div_euclid(MINUTES_PER_DAY) - 1
            }
            _ => day_of(2024, 3, 6) + 7 * (seed % 40) as i64,
        }
    }

    /// The zone local schedules of a stream use.
    pub fn zone(self, seed: u64) -> Zone {
        match (self, seed % 4) {
            (Family::Dst, 0 | 2) => Zone::UsEastern,
            (Family::Dst, _) => Zone::CentralEurope,
            _ => Zone::Utc,
        }
    }
}

/// Builds one account-region stream.
pub struct Builder {
    pub account: String,
    pub region: String,
    pub volume: f64,
    pub rng: fastrand::Rng,
    pub start: i64,
    pub eval_start: i64,
    pub eval_end: i64,
    pub zone: Zone,
    components: Vec<Component>,
    labels: Vec<Label>,
}

impl Builder {
    fn add(&mut self, api: Api, actor: Actor, rate: Rate) {
        self.components.push(Component {
            api,
            actor,
            rate,
            exact: false,
        });
    }

    fn label(&mut self, api: Api, kind: LabelKind, scenario: &'static str, start: i64, end: i64) {
        self.labels.push(Label {
            account: self.account.clone(),
            region: self.region.clone(),
            api,
            kind,
            scenario,
            start,
            end,
        });
    }

    fn role(&self, name: &str, agent: &'static str) -> Actor {
        Actor::role(&self.account, name, agent)
    }

    /// A random minute of the evaluation days, in the UTC hours `[from, to)`.
    fn eval_time(&mut self, from: i64, to: i64) -> i64 {
        let days = (self.eval_end - self.eval_start) / MINUTES_PER_DAY;
        let day = self.eval_start / MINUTES_PER_DAY + self.rng.i64(0..days);
        day * MINUTES_PER_DAY + self.rng.i64(from * 60..to * 60)
    }

    /// Occurrences in the evaluation days of a recurring window, labelled negative.
    fn negatives(
        &mut self,
        api: Api,
        scenario: &'static str,
        every: impl Fn(i64) -> Vec<(i64, i64)>,
    ) {
        for day in self.eval_start / MINUTES_PER_DAY..self.eval_end / MINUTES_PER_DAY {
            for (a, b) in every(day) {
                if a < self.eval_end && b > self.eval_start {
                    self.label(api, LabelKind::Negative, scenario, a, b);
                }
            }
        }
    }

    /// A burst of `rate` events a minute (exactly, when `rate` is below 20: a scripted burst;
    /// a Poisson mean above) for `minutes` by a new actor: a required positive.
    fn positive(
        &mut self,
        api: Api,
        actor: Actor,
        scenario: &'static str,
        at: i64,
        minutes: i64,
        rate: f64,
    ) {
        self.label(api, LabelKind::Positive, scenario, at, at + minutes);
        self.components.push(Component {
            api,
            actor,
            rate: Box::new(move |m| {
                if (at..at + minutes).contains(&m) {
                    rate
                } else {
                    0.0
                }
            }),
            exact: rate < 20.0,
        });
    }
}

/// A rate of `rate` events a minute inside `[from, from + minutes)` of each local day `on` allows.
fn daily_window(
    zone: Zone,
    from: i64,
    minutes: i64,
    rate: f64,
    on: impl Fn(i64) -> bool + 'static,
) -> Rate {
    Box::new(move |m| {
        let (_, minute, wd) = zone.local(m);
        if on(wd) && (from..from + minutes).contains(&minute) {
            rate
        } else {
            0.0
        }
    })
}

/// UTC minutes `[a, b)` of local minutes `[from, from + minutes)` on local day `local_day`.
fn local_window(zone: Zone, local_day: i64, from: i64, minutes: i64) -> (i64, i64) {
    let guess = local_day * MINUTES_PER_DAY + from;
    let a = guess - zone.offset(guess - zone.offset(guess));
    (a, a + minutes)
}

/// Generates the streams of a spec, one per account and region of its layout.
pub fn streams(spec: &StreamSpec) -> Vec<Stream> {
    spec.layout
        .streams()
        .into_iter()
        .enumerate()
        .map(|(i, (account, region))| {
            let mut b = Builder {
                account,
                region,
                volume: spec.volume,
                rng: fastrand::Rng::with_seed(
                    spec.seed.wrapping_mul(0x9e37_79b9) ^ (i as u64) << 32,
                ),
                start: spec.start_day() * MINUTES_PER_DAY,
                eval_start: spec.eval_start_day() * MINUTES_PER_DAY,
                eval_end: (spec.eval_start_day() + spec.eval_days) * MINUTES_PER_DAY,
                zone: spec.family.zone(spec.seed),
                components: Vec::new(),
                labels: Vec::new(),
            };
            background(&mut b);
            match spec.family {
                Family::Weekly => weekly(&mut b),
                Family::Dst => dst(&mut b),
                Family::Monday => monday(&mut b),
                Family::Ramp => ramp(&mut b),
            }
            positives(&mut b);
            Stream {
                account: b.account,
                region: b.region,
                components: b.components,
                labels: b.labels,
            }
        })
        .collect()
}

const CONSOLE: &str = "console.amazonaws.com";
const SDK: &str = "aws-sdk-go-v2/1.30.3 os/linux lang/go#1.22.5";
const CLI: &str = "aws-cli/2.17.20 md/Botocore#1.34.148 os/linux";

fn background(b: &mut Builder) {
    let v = b.volume;
    let office = b.role("Developers", CONSOLE);
    b.add(
        Api::calls("ec2.amazonaws.com", "CreateTags"),
        office,
        Box::new(move |m| {
            let (day, hour) = (
                m.div_euclid(MINUTES_PER_DAY),
                m.rem_euclid(MINUTES_PER_DAY) / 60,
            );
            let weekend = if weekday(day) >= 5 { 0.12 } else { 1.0 };
            weekend
                * if (13..22).contains(&hour) {
                    2.0 * v
                } else {
                    0.1 * v
                }
        }),
    );
    let agent = b.role(
        "AmazonSSMRoleForInstances",
        "aws-sdk-go/1.44 (go1.21; linux; amd64) amazon-ssm-agent/3.3",
    );
    b.add(
        Api::calls("ssm.amazonaws.com", "UpdateInstanceInformation"),
        agent,
        Box::new(move |_| 5.0 * v),
    );
    let admin = b.role("Admin", CONSOLE);
    b.add(
        Api::calls("iam.amazonaws.com", "CreateUser"),
        admin,
        Box::new(|_| 1.0 / 1440.0),
    );
    let reader = b.role("ConfigAuditor", SDK);
    b.add(
        Api::errors("s3.amazonaws.com", "GetBucketPolicy", "NoSuchBucketPolicy"),
        reader,
        Box::new(move |_| 0.3 * v),
    );
}

fn positives(b: &mut Builder) {
    let v = b.volume;
    let intruder = Actor {
        principal: format!("arn:aws:iam::{}:user/temp-admin", b.account),
        user_agent: "python-requests/2.31.0",
    };
    let at = b.eval_time(0, 24);
    b.positive(
        Api::calls("iam.amazonaws.com", "CreateAccessKey"),
        intruder.clone(),
        "new principal creates access keys",
        at,
        2,
        4.0,
    );
    let at = b.eval_time(0, 24);
    b.positive(
        Api::errors(
            "secretsmanager.amazonaws.com",
            "GetSecretValue",
            "AccessDeniedException",
        ),
        intruder,
        "secret enumeration denied",
        at,
        8,
        10.0,
    );
    let at = b.eval_time(0, 24);
    let runaway = b.role("ssm-runaway-automation", CLI);
    b.positive(
        Api::calls("ssm.amazonaws.com", "UpdateInstanceInformation"),
        runaway,
        "agent fleet storm (x4)",
        at,
        20,
        15.0 * v,
    );
}

fn weekly(b: &mut Builder) {
    let v = b.volume;
    // Each account runs its jobs on its own weekday and hour.
    let snapshot_day = b.rng.i64(0..7);
    let snapshot_hour = b.rng.i64(0..6);
    let jobs = [
        (
            Api::calls("ec2.amazonaws.com", "CreateSnapshot"),
            "weekly-backup",
            snapshot_day,
            snapshot_hour * 60,
            20,
            12.0 * v,
        ),
        (
            Api::calls("iam.amazonaws.com", "UpdateAccessKey"),
            "key-rotation",
            (snapshot_day + 1) % 7,
            6 * 60,
            5,
            (4.0 * v).max(1.5),
        ),
        (
            Api::calls("rds.amazonaws.com", "CreateDBClusterSnapshot"),
            "weekly-db-snapshot",
            (snapshot_day + 3) % 7,
            22 * 60,
            10,
            (3.0 * v).max(1.0),
        ),
    ];
    for (api, role, day, from, minutes, rate) in jobs {
        let actor = b.role(role, SDK);
        b.add(
            api,
            actor,
            daily_window(Zone::Utc, from, minutes, rate, move |wd| wd == day),
        );
        b.negatives(api, "weekly job", move |d| {
            if weekday(d) == day {
                vec![(
                    d * MINUTES_PER_DAY + from,
                    d * MINUTES_PER_DAY + from + minutes,
                )]
            } else {
                Vec::new()
            }
        });
    }
    // The snapshot API used on another day by a new principal, four times as hard: must fire.
    let mut at = b.eval_time(8, 20);
    if weekday(at / MINUTES_PER_DAY) == snapshot_day {
        at += MINUTES_PER_DAY;
    }
    let actor = b.role("contractor", CLI);
    b.positive(
        Api::calls("ec2.amazonaws.com", "CreateSnapshot"),
        actor,
        "mass snapshot by a new principal",
        at,
        15,
        48.0 * v,
    );
}

fn dst(b: &mut Builder) {
    let v = b.volume;
    let zone = b.zone;
    let jobs = [
        (
            Api::calls("ssm.amazonaws.com", "SendCommand"),
            "patch-automation",
            150,
            15,
            8.0 * v,
        ),
        (
            Api::calls("backup.amazonaws.com", "StartBackupJob"),
            "nightly-backup",
            60,
            5,
            (3.0 * v).max(1.5),
        ),
    ];
    for (api, role, from, minutes, rate) in jobs {
        let actor = b.role(role, SDK);
        b.add(
            api,
            actor,
            daily_window(zone, from, minutes, rate, |_| true),
        );
        b.negatives(api, "daily local-time job", move |d| {
            vec![local_window(zone, d, from, minutes)]
        });
    }
    // Office hours in local time, weekdays 09:00-17:00.
    let api = Api::calls("cloudformation.amazonaws.com", "UpdateStack");
    let actor = b.role("Deployers", CONSOLE);
    b.add(
        api,
        actor,
        daily_window(zone, 9 * 60, 8 * 60, 1.5 * v, |wd| wd < 5),
    );
    b.negatives(api, "local office hours", move |d| {
        if weekday(d) < 5 {
            vec![local_window(zone, d, 8 * 60 + 30, 9 * 60)]
        } else {
            Vec::new()
        }
    });
}

fn monday(b: &mut Builder) {
    let v = b.volume;
    let api = Api::calls("ec2.amazonaws.com", "ModifyInstanceAttribute");
    let actor = b.role("Operators", CONSOLE);
    b.add(
        api,
        actor,
        Box::new(move |m| {
            let (day, minute) = (m.div_euclid(MINUTES_PER_DAY), m.rem_euclid(MINUTES_PER_DAY));
            let wd = weekday(day);
            if wd >= 5 {
                return 0.03 * v;
            }
            let office = (8 * 60..18 * 60).contains(&minute);
            let catch_up = wd == 0 && (8 * 60..11 * 60).contains(&minute);
            match (office, catch_up) {
                (_, true) => 6.0 * v,
                (true, false) => 2.0 * v,
                _ => 0.05 * v,
            }
        }),
    );
    b.negatives(api, "Monday catch-up", |d| {
        if weekday(d) == 0 {
            vec![(
                d * MINUTES_PER_DAY + 7 * 60 + 30,
                d * MINUTES_PER_DAY + 12 * 60,
            )]
        } else {
            Vec::new()
        }
    });
    let api = Api::calls("ecs.amazonaws.com", "UpdateService");
    let actor = b.role("ci-deployer", SDK);
    b.add(
        api,
        actor,
        Box::new(move |m| {
            let (day, minute) = (m.div_euclid(MINUTES_PER_DAY), m.rem_euclid(MINUTES_PER_DAY));
            let wd = weekday(day);
            match (wd, minute / 60) {
                (0, 9) => 2.0 * v,
                (0..=4, 9..=16) => 0.3 * v,
                _ => 0.0,
            }
        }),
    );
    b.negatives(api, "Monday deploys", |d| {
        if weekday(d) == 0 {
            vec![(
                d * MINUTES_PER_DAY + 8 * 60 + 30,
                d * MINUTES_PER_DAY + 11 * 60,
            )]
        } else {
            Vec::new()
        }
    });
}

fn ramp(b: &mut Builder) {
    let v = b.volume;
    let days = ((b.eval_end - b.start) / MINUTES_PER_DAY) as usize;
    let start_day = b.start / MINUTES_PER_DAY;
    // Daily peak: grows 2% a day, ±10% from day to day.
    let peaks: Vec<f64> = (0..days)
        .map(|d| 25.0 * v * (1.0 + 0.02 * d as f64) * (0.9 + 0.2 * b.rng.f64()))
        .collect();
    let peak_at = move |m: i64| {
        let d = (m.div_euclid(MINUTES_PER_DAY) - start_day).clamp(0, days as i64 - 1) as usize;
        peaks[d]
    };
    let shape = |m: i64| {
        let h = m.rem_euclid(MINUTES_PER_DAY) as f64 / 60.0;
        let up = 1.0 / (1.0 + (-(h - 8.0) / 0.9).exp());
        let down = 1.0 / (1.0 + (-(h - 20.0) / 1.5).exp());
        up * (1.0 - down)
    };
    let rate = move |m: i64| 0.5 * v + peak_at(m) * shape(m);
    let api = Api::calls("ecs.amazonaws.com", "RunTask");
    let scaler = b.role("service-autoscaler", SDK);
    b.add(api, scaler.clone(), Box::new(rate.clone()));
    b.negatives(api, "daily ramp", |d| {
        vec![(d * MINUTES_PER_DAY + 5 * 60, d * MINUTES_PER_DAY + 12 * 60)]
    });
    let errors = Api::errors("ecs.amazonaws.com", "RunTask", "ThrottlingException");
    let r = rate.clone();
    b.add(errors, scaler, Box::new(move |m| 0.03 * r(m)));
    b.negatives(errors, "daily ramp errors", |d| {
        vec![(d * MINUTES_PER_DAY + 5 * 60, d * MINUTES_PER_DAY + 12 * 60)]
    });
    // A runaway on the ramping API in the afternoon, three times its level: must fire.
    let at = b.eval_time(13, 17);
    let level = rate(at);
    let actor = b.role("batch-misconfigured", CLI);
    b.positive(
        api,
        actor,
        "runaway task launcher (x3)",
        at,
        15,
        2.0 * level,
    );
}
