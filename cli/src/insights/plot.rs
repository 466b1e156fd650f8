//! `insights backtest --plot FILE.svg`: one panel per key (the keys that fired, or those
//! asked for with --plot-key): calls per minute, each Insight's baseline average with its band,
//! and the Start and End marks.
//!
//! The band is the baseline average ± 3 √average: the spread of a Poisson count around that
//! average, the scale the detector's score measures a burst against.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use serde_json::Value;
use trailwatch::insights::{MinuteAggregator, SeriesKey};
use trailwatch::time::{format_event_time, parse_event_time, MS_PER_MINUTE};

const PANEL_WIDTH: u32 = 1200;
const PANEL_HEIGHT: u32 = 320;
/// Minutes drawn around a key's data or Insights so the marks are not on the frame.
const MARGIN_MINUTES: i64 = 30;

/// Why the picture was not drawn.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("--plot-key {0}: no such key in the replay (keys are account/region/type/source/name[/errorCode], as the summary prints them)")]
    UnknownKey(String),
    #[error("cannot draw {path}: {message}")]
    Draw { path: PathBuf, message: String },
}

/// One Insight of a key, from its Start (and End) records.
#[derive(Debug, Clone, PartialEq)]
struct Insight {
    start: i64,
    end: Option<i64>,
    baseline: f64,
}

/// The Insights of each key, from the backtest's records.
fn insights_by_key(records: &[String]) -> BTreeMap<String, Vec<Insight>> {
    let mut out: BTreeMap<String, Vec<Insight>> = BTreeMap::new();
    for text in records {
        let Ok(v) = serde_json::from_str::<Value>(text) else {
            continue;
        };
        let d = &v["insightDetails"];
        let mut key = format!(
            "{}/{}/{}/{}/{}",
            v["recipientAccountId"].as_str().unwrap_or(""),
            v["awsRegion"].as_str().unwrap_or(""),
            d["insightType"].as_str().unwrap_or(""),
            d["eventSource"].as_str().unwrap_or(""),
            d["eventName"].as_str().unwrap_or("")
        );
        if let Some(code) = d["errorCode"].as_str() {
            key = format!("{key}/{code}");
        }
        let Some(minute) = v["eventTime"]
            .as_str()
            .and_then(|t| parse_event_time(t).ok())
            .map(|ms| ms.div_euclid(MS_PER_MINUTE))
        else {
            continue;
        };
        let list = out.entry(key).or_default();
        match d["state"].as_str() {
            Some("Start") => list.push(Insight {
                start: minute,
                end: None,
                baseline: d["insightContext"]["statistics"]["baseline"]["average"]
                    .as_f64()
                    .unwrap_or(0.0),
            }),
            Some("End") => {
                if let Some(open) = list.iter_mut().rev().find(|i| i.end.is_none()) {
                    open.end = Some(minute);
                }
            }
            _ => {}
        }
    }
    out
}

/// Draws the keys asked for (or every key that fired) into `path`; returns the keys drawn.
pub fn plot(
    path: &Path,
    counts: &MinuteAggregator,
    records: &[String],
    asked: &[String],
) -> Result<Vec<String>, PlotError> {
    let insights = insights_by_key(records);
    let by_name: BTreeMap<String, &SeriesKey> = counts
        .index()
        .keys()
        .iter()
        .map(|k| (k.to_string(), k))
        .collect();
    let names: Vec<String> = if asked.is_empty() {
        insights.keys().cloned().collect()
    } else {
        for name in asked {
            if !by_name.contains_key(name) {
                return Err(PlotError::UnknownKey(name.clone()));
            }
        }
        asked.to_vec()
    };
    let mut series: BTreeMap<&str, Vec<(i64, u64)>> = BTreeMap::new();
    for cell in counts.cells() {
        let name = cell.key.to_string();
        if let Some((name, _)) = by_name.get_key_value(&name) {
            if names.contains(name) {
                series
                    .entry(name.as_str())
                    .or_default()
                    .push((cell.minute, cell.aggregate.count));
            }
        }
    }
    let draw_err = |e: &dyn std::fmt::Display| PlotError::Draw {
        path: path.to_owned(),
        message: e.to_string(),
    };
    let height = PANEL_HEIGHT * names.len().max(1) as u32;
    let root = SVGBackend::new(path, (PANEL_WIDTH, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| draw_err(&e))?;
    let panels = root.split_evenly((names.len().max(1), 1));
    for (name, panel) in names.iter().zip(panels) {
        let mut points = series.remove(name.as_str()).unwrap_or_default();
        points.sort_unstable();
        let none = Vec::new();
        let marks = insights.get(name).unwrap_or(&none);
        draw_panel(&panel, name, &points, marks).map_err(|e| draw_err(&e))?;
    }
    root.present().map_err(|e| draw_err(&e))?;
    Ok(names)
}

type Panel<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;
type DrawResult =
    Result<(), DrawingAreaErrorKind<<SVGBackend<'static> as DrawingBackend>::ErrorType>>;

fn band(baseline: f64) -> (f64, f64) {
    let spread = 3.0 * baseline.sqrt();
    ((baseline - spread).max(0.0), baseline + spread)
}

fn draw_panel(
    panel: &Panel<'_>,
    name: &str,
    points: &[(i64, u64)],
    marks: &[Insight],
) -> DrawResult {
    let minutes = points
        .iter()
        .map(|p| p.0)
        .chain(marks.iter().flat_map(|i| [Some(i.start), i.end]).flatten());
    let (lo, hi) = minutes.fold((i64::MAX, i64::MIN), |(lo, hi), m| (lo.min(m), hi.max(m)));
    let (lo, hi) = if lo > hi {
        (0, 1)
    } else {
        (lo - MARGIN_MINUTES, hi + MARGIN_MINUTES)
    };
    let top = points
        .iter()
        .map(|p| p.1 as f64)
        .chain(marks.iter().map(|i| band(i.baseline).1))
        .fold(1.0, f64::max)
        * 1.1;
    let mut chart = ChartBuilder::on(panel)
        .caption(name, ("sans-serif", 16))
        .margin(8)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(lo..hi, 0.0..top)?;
    chart
        .configure_mesh()
        .x_labels(8)
        .x_label_formatter(&|m| format_event_time(m * MS_PER_MINUTE)[5..16].replace('T', " "))
        .y_desc("calls per minute")
        .draw()?;
    for insight in marks {
        let end = insight.end.unwrap_or(hi);
        let (low, high) = band(insight.baseline);
        chart.draw_series(std::iter::once(Rectangle::new(
            [(lo, low), (hi, high)],
            GREEN.mix(0.12).filled(),
        )))?;
        chart.draw_series(LineSeries::new(
            [(lo, insight.baseline), (hi, insight.baseline)],
            GREEN.stroke_width(1),
        ))?;
        chart.draw_series(std::iter::once(Rectangle::new(
            [(insight.start, 0.0), (end, top)],
            RED.mix(0.08).filled(),
        )))?;
        chart.draw_series(LineSeries::new(
            [(insight.start, 0.0), (insight.start, top)],
            RED.stroke_width(2),
        ))?;
        if let Some(end) = insight.end {
            chart.draw_series(LineSeries::new(
                [(end, 0.0), (end, top)],
                BLACK.stroke_width(2),
            ))?;
        }
    }
    chart
        .draw_series(LineSeries::new(
            points.iter().map(|&(m, c)| (m, c as f64)),
            BLUE,
        ))?
        .label("calls per minute")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLUE));
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_and_its_end_make_one_insight_per_key() {
        let start = r#"{"eventTime":"2024-03-06T10:00:00Z","awsRegion":"us-east-1","recipientAccountId":"111122223333","insightDetails":{"state":"Start","eventSource":"iam.amazonaws.com","eventName":"CreateUser","insightType":"ApiCallRateInsight","insightContext":{"statistics":{"baseline":{"average":0.5}}}}}"#;
        let end = start.replace("Start", "End").replace("10:00", "10:20");
        let got = insights_by_key(&[start.to_owned(), end]);
        let minute = parse_event_time("2024-03-06T10:00:00Z").unwrap() / MS_PER_MINUTE;
        assert_eq!(
            got["111122223333/us-east-1/ApiCallRateInsight/iam.amazonaws.com/CreateUser"],
            [Insight {
                start: minute,
                end: Some(minute + 20),
                baseline: 0.5
            }]
        );
    }

    #[test]
    fn the_band_never_goes_below_zero() {
        assert_eq!(band(1.0), (0.0, 4.0));
        assert_eq!(band(100.0), (70.0, 130.0));
    }
}
