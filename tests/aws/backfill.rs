//! `trailwatch insights backfill` into the Insights state table on moto.
