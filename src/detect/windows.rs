//! Suppression windows kept in a store shared by concurrent invocations (the Insights
//! function's state table), behind the [`WindowStore`] port; [`offer`] is noise control over
//! it, deciding with [`judge`] as the in-memory [`super::Suppressor`] does.
//!
//! Writes are conditional on the window read, so two invocations racing on one key cannot both
//! open a window; the loser decides again. A match whose window it opened is delivered again
//! (its message was retried after the window was written but before the bus took it) is
//! reported again with the same dedup key: a repeat the consumer can drop, never a loss.

use std::future::Future;

use super::detection::Detection;
use super::detection::SuppressionNote;
use super::noise::{judge, suppression_key, Noise, Outcome, Verdict, Window};
use crate::time::parse_event_time;

/// Decisions tried on one match before it is reported anyway (each lost race costs one).
pub const OFFER_ATTEMPTS: u32 = 4;

/// A key's window as stored, with the count its opening report carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredWindow {
    pub window: Window,
    /// What the report that opened it said was held in the window before.
    pub previous_held: u64,
}

/// Where suppression windows are kept.
pub trait WindowStore {
    type Error: std::error::Error + Send + Sync + 'static;

    /// The key's current window, read consistently.
    fn get(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<StoredWindow>, Self::Error>> + Send;

    /// Opens `window` for `key` (kept at least `minutes` past now) if the key's window is still
    /// `previous` (none, or the one opened by that dedup key); `false` when it changed.
    fn open(
        &self,
        key: &str,
        window: &StoredWindow,
        previous: Option<&str>,
        minutes: u32,
    ) -> impl Future<Output = Result<bool, Self::Error>> + Send;

    /// Counts one held match in the key's window if it is still the one `opened_by` opened;
    /// `false` when it changed.
    fn hold(
        &self,
        key: &str,
        opened_by: &str,
    ) -> impl Future<Output = Result<bool, Self::Error>> + Send;
}

/// Noise control of one detection with windows in `store`.
pub async fn offer<S: WindowStore>(
    store: &S,
    noise: &Noise,
    mut detection: Detection,
) -> Result<Outcome, S::Error> {
    if let Some(reason) = noise.exception_for(&detection) {
        return Ok(Outcome::Excepted(reason.to_owned()));
    }
    let minutes = noise.window_minutes(&detection.rule_id);
    let at = detection
        .event_time
        .as_deref()
        .and_then(|t| parse_event_time(t).ok());
    let (Some(at), true) = (at, minutes > 0) else {
        return Ok(Outcome::Report(Box::new(detection)));
    };
    let key = suppression_key(&detection);
    let note = |previous_held| SuppressionNote {
        key: key.clone(),
        window_minutes: minutes,
        held_in_previous_window: previous_held,
    };
    for _ in 0..OFFER_ATTEMPTS {
        let stored = store.get(&key).await?;
        let window = stored.as_ref().map(|s| &s.window);
        match judge(window, at, &detection.dedup_key, minutes) {
            Verdict::AlreadyReported => {
                let previous_held = stored.map_or(0, |s| s.previous_held);
                detection.suppression = Some(note(previous_held));
                return Ok(Outcome::Report(Box::new(detection)));
            }
            Verdict::Hold => {
                let opened_by = window.map_or("", |w| w.opened_by.as_str());
                if store.hold(&key, opened_by).await? {
                    return Ok(Outcome::Held);
                }
            }
            Verdict::Report { previous_held } => {
                let opened = StoredWindow {
                    window: Window {
                        start_ms: at,
                        opened_by: detection.dedup_key.clone(),
                        held: 0,
                    },
                    previous_held,
                };
                let previous = window.map(|w| w.opened_by.as_str());
                if store.open(&key, &opened, previous, minutes).await? {
                    detection.suppression = Some(note(previous_held));
                    return Ok(Outcome::Report(Box::new(detection)));
                }
            }
        }
    }
    // Still racing after every attempt: a repeat report is better than a lost detection.
    Ok(Outcome::Report(Box::new(detection)))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::*;
    use crate::detect::detection::Attack;

    /// Windows in a map, with a number of `open`s to refuse (another invocation won).
    #[derive(Default)]
    struct MapStore {
        windows: Mutex<HashMap<String, StoredWindow>>,
        refuse_opens: Mutex<u32>,
    }

    impl WindowStore for MapStore {
        type Error = std::io::Error;

        async fn get(&self, key: &str) -> Result<Option<StoredWindow>, Self::Error> {
            Ok(self.windows.lock().unwrap().get(key).cloned())
        }

        async fn open(
            &self,
            key: &str,
            window: &StoredWindow,
            previous: Option<&str>,
            _minutes: u32,
        ) -> Result<bool, Self::Error> {
            let mut refuse = self.refuse_opens.lock().unwrap();
            if *refuse > 0 {
                *refuse -= 1;
                return Ok(false);
            }
            let mut windows = self.windows.lock().unwrap();
            let current = windows.get(key).map(|s| s.window.opened_by.as_str());
            if current != previous {
                return Ok(false);
            }
            windows.insert(key.to_owned(), window.clone());
            Ok(true)
        }

        async fn hold(&self, key: &str, opened_by: &str) -> Result<bool, Self::Error> {
            let mut windows = self.windows.lock().unwrap();
            match windows.get_mut(key) {
                Some(s) if s.window.opened_by == opened_by => {
                    s.window.held += 1;
                    Ok(true)
                }
                _ => Ok(false),
            }
        }
    }

    fn detection(time: &str, event_id: &str) -> Detection {
        Detection {
            rule_id: "r".into(),
            title: "t".into(),
            level: "high".into(),
            status: None,
            author: None,
            rule_license: None,
            rule_origin: "test".into(),
            tags: Vec::new(),
            attack: Attack::default(),
            event_id: Some(event_id.into()),
            event_time: Some(time.into()),
            event_source: None,
            event_name: None,
            aws_region: None,
            account_id: Some("111122223333".into()),
            principal: "arn:u".into(),
            source_ip_address: None,
            user_agent: None,
            dedup_key: format!("r/{event_id}"),
            suppression: None,
            record: Default::default(),
        }
    }

    fn run<F: Future>(f: F) -> F::Output {
        crate::local::block_on(f)
    }

    fn held_before(outcome: &Outcome) -> Option<u64> {
        match outcome {
            Outcome::Report(d) => d.suppression.as_ref().map(|s| s.held_in_previous_window),
            _ => None,
        }
    }

    #[test]
    fn a_repeat_is_held_and_counted_in_the_next_windows_report() {
        let (store, noise) = (MapStore::default(), Noise::default());
        let take = |t, id| run(offer(&store, &noise, detection(t, id))).unwrap();
        assert_eq!(held_before(&take("2024-01-01T00:00:00Z", "1")), Some(0));
        assert_eq!(take("2024-01-01T00:20:00Z", "2"), Outcome::Held);
        assert_eq!(take("2024-01-01T00:40:00Z", "3"), Outcome::Held);
        assert_eq!(held_before(&take("2024-01-01T01:00:00Z", "4")), Some(2));
    }

    #[test]
    fn the_opening_match_delivered_again_is_reported_again_with_its_note() {
        let (store, noise) = (MapStore::default(), Noise::default());
        run(offer(
            &store,
            &noise,
            detection("2024-01-01T00:00:00Z", "1"),
        ))
        .unwrap();
        run(offer(
            &store,
            &noise,
            detection("2024-01-01T00:10:00Z", "2"),
        ))
        .unwrap();
        let again = run(offer(
            &store,
            &noise,
            detection("2024-01-01T00:00:00Z", "1"),
        ))
        .unwrap();
        assert_eq!(held_before(&again), Some(0));
    }

    #[test]
    fn a_lost_race_decides_again_and_endless_races_still_report() {
        let (store, noise) = (MapStore::default(), Noise::default());
        *store.refuse_opens.lock().unwrap() = 1;
        let first = run(offer(
            &store,
            &noise,
            detection("2024-01-01T00:00:00Z", "1"),
        ))
        .unwrap();
        assert_eq!(held_before(&first), Some(0));
        assert_eq!(store.windows.lock().unwrap().len(), 1);
        *store.refuse_opens.lock().unwrap() = OFFER_ATTEMPTS;
        let late = run(offer(
            &store,
            &noise,
            detection("2024-01-01T05:00:00Z", "2"),
        ))
        .unwrap();
        assert!(matches!(late, Outcome::Report(_)), "{late:?}");
    }
}
