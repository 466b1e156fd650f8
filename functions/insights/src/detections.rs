//! Detections from the Insights queue (messages of the select path's `detections` stream):
//! exceptions and suppression windows ([`trailwatch::detect::windows`], the windows in the
//! state table), then EventBridge entries of detail-type "trailwatch Detection".

use trailwatch::deliver::DeliveryMessage;
use trailwatch::detect::windows::offer;
use trailwatch::detect::{Detection, Noise, Outcome};
use trailwatch::forward::Entry;
use trailwatch_aws::detection_windows::{DynamoDbWindows, WindowError};

/// Noise settings of detections (JSON, see `trailwatch detect --help`): suppression windows
/// and exceptions by principal ARN, source IP or user agent. Default: a 60-minute window per
/// rule, principal and account, no exceptions.
pub const DETECTIONS_NOISE_ENV: &str = "TRAILWATCH_DETECTIONS_NOISE";

/// Noise control of detections.
#[derive(Default)]
pub struct Detections {
    pub noise: Noise,
    /// The state table's windows; without it (forwarding-only contexts) every match not
    /// excepted is reported.
    pub windows: Option<DynamoDbWindows>,
}

impl Detections {
    /// The noise settings of [`DETECTIONS_NOISE_ENV`] (empty or unset: the defaults).
    pub fn noise_from_env() -> Result<Noise, String> {
        match std::env::var(DETECTIONS_NOISE_ENV) {
            Ok(text) if !text.trim().is_empty() => {
                Noise::from_json(&text).map_err(|e| format!("{DETECTIONS_NOISE_ENV}: {e}"))
            }
            _ => Ok(Noise::default()),
        }
    }
}

/// Why a detection message was not forwarded (it is retried).
#[derive(Debug, thiserror::Error)]
pub enum DetectionError {
    #[error("detection {index} of the message is not a detection: {source}")]
    Unreadable {
        index: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Windows(#[from] WindowError),
}

/// What noise control made of one message's detections.
#[derive(Debug, Default)]
pub struct Decided {
    pub entries: Vec<Entry>,
    pub held: usize,
    pub excepted: usize,
}

/// The entries to send for the detections of `message`, after noise control.
pub async fn decide(
    detections: &Detections,
    source: &str,
    message: &DeliveryMessage<'_>,
) -> Result<Decided, DetectionError> {
    let mut decided = Decided::default();
    for (index, raw) in message.records.iter().enumerate() {
        let detection: Detection = serde_json::from_str(raw.get())
            .map_err(|source| DetectionError::Unreadable { index, source })?;
        let outcome = match &detections.windows {
            Some(windows) => offer(windows, &detections.noise, detection).await?,
            None => match detections.noise.exception_for(&detection) {
                Some(reason) => Outcome::Excepted(reason.to_owned()),
                None => Outcome::Report(Box::new(detection)),
            },
        };
        match outcome {
            Outcome::Report(d) => decided.entries.push(Entry::detection(source, &d)),
            Outcome::Held => decided.held += 1,
            Outcome::Excepted(reason) => {
                tracing::info!(reason = %reason, "detection covered by an exception");
                decided.excepted += 1;
            }
            // `offer` reports a match delivered again (see its module); nothing to do.
            Outcome::AlreadyReported => {}
        }
    }
    Ok(decided)
}
