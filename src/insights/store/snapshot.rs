//! Snapshots: what a local replay computed (the clock and every key's state), to seed a
//! deployment's table so it need not wait 7 days for baselines.

use serde::{Deserialize, Serialize};

use super::{Clock, EvaluationStore, StoreError, StoredKey};
use crate::insights::engine::{InsightsEngine, KeyAttributions};
use crate::insights::key::SeriesKey;

/// What a local replay computed, to seed a deployment's table (the backfill of a new
/// deployment, so it need not wait 7 days for baselines): the clock and every key's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub closed_through: i64,
    pub origin_minute: Option<i64>,
    pub keys: Vec<SnapshotKey>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotKey {
    pub key: SeriesKey,
    /// [`super::KeyState`] in its binary form, as hex.
    pub state: String,
    pub attributions: KeyAttributions,
}

/// Why a snapshot was not loaded.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(
        "the engine has closed no minute yet: advance it to the replay's end before exporting"
    )]
    NothingClosed,
    #[error("the deployment has evaluated through minute {table}, past the snapshot's {snapshot}: those minutes would be lost; export a replay that reaches closer to now")]
    Behind { snapshot: i64, table: i64 },
    #[error("another evaluation holds the lease; try again in a minute")]
    Busy,
    #[error("key {key}: state is not hex")]
    BadState {
        key: String,
        source: hex::FromHexError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The snapshot of an engine (after `advance_to`, not `finish`: minutes still open in the
/// engine are left to the deployment's own counting).
pub fn snapshot(engine: &InsightsEngine) -> Result<Snapshot, SnapshotError> {
    let closed_through = engine
        .closed_through()
        .ok_or(SnapshotError::NothingClosed)?;
    let keys = engine
        .keys()
        .iter()
        .filter_map(|key| {
            Some(SnapshotKey {
                key: key.clone(),
                state: hex::encode(engine.export_key_state(key)?),
                attributions: engine.export_key_attributions(key)?.clone(),
            })
        })
        .collect();
    Ok(Snapshot {
        closed_through,
        origin_minute: engine.origin_minute(),
        keys,
    })
}

/// Loads a snapshot into a store under the evaluation lease: the keys' states, then the clock
/// moved to the snapshot's minute (and the fence with it). The deployment's own cells after
/// that minute are evaluated next; those before it are covered by the snapshot. Refused if the
/// deployment has already evaluated past the snapshot.
pub async fn load_snapshot<S: EvaluationStore>(
    store: &S,
    snapshot: &Snapshot,
    owner: &str,
    now_ms: i64,
    lease_ms: i64,
) -> Result<usize, SnapshotError> {
    let mut keys = Vec::with_capacity(snapshot.keys.len());
    for k in &snapshot.keys {
        let state = hex::decode(&k.state).map_err(|source| SnapshotError::BadState {
            key: k.key.to_string(),
            source,
        })?;
        keys.push((
            k.key.clone(),
            StoredKey {
                through: snapshot.closed_through,
                state,
                attributions: k.attributions.clone(),
            },
        ));
    }
    let clock = store
        .acquire_lease(owner, now_ms, lease_ms)
        .await?
        .ok_or(SnapshotError::Busy)?;
    let result = load_leased(store, snapshot, owner, clock, &keys).await;
    if result.is_err() {
        store.release_lease(owner).await?;
    }
    result.map(|()| keys.len())
}

async fn load_leased<S: EvaluationStore>(
    store: &S,
    snapshot: &Snapshot,
    owner: &str,
    clock: Clock,
    keys: &[(SeriesKey, StoredKey)],
) -> Result<(), SnapshotError> {
    if let Some(table) = clock
        .closed_through
        .filter(|&c| c > snapshot.closed_through)
    {
        return Err(SnapshotError::Behind {
            snapshot: snapshot.closed_through,
            table,
        });
    }
    store.fence(owner, snapshot.closed_through).await?;
    store.save_keys(keys).await?;
    let mut open_keys: Vec<SeriesKey> = clock.open_keys;
    for (key, stored) in keys {
        let open = crate::insights::KeyState::decode(&stored.state)
            .map(|s| s.open_insight().is_some())
            .unwrap_or(false);
        if open && !open_keys.contains(key) {
            open_keys.push(key.clone());
        }
    }
    store
        .save_clock_and_release(
            owner,
            &Clock {
                closed_through: Some(snapshot.closed_through),
                closing_through: None,
                origin_minute: match (clock.origin_minute, snapshot.origin_minute) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                },
                open_keys,
            },
        )
        .await?;
    Ok(())
}
