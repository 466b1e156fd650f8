//! trailwatch: a self-hosted CloudTrail pipeline. The stages, each pure and side by side:
//! [`ingest`] (notifications and log files to records), [`select`] (trail configuration and
//! event selectors), [`deliver`] (CloudWatch Logs batch planning), [`insights`] (unusual
//! activity detection), [`detect`] (Sigma rules on every record), and [`forward`] (EventBridge
//! entries). [`select::select_object`] reads a log object through small port traits, so the
//! same code runs in Lambda and in the local CLI ([`local`]: log files, local adapters, the
//! replay driver).

pub mod deliver;
pub mod detect;
pub mod forward;
pub mod ingest;
pub mod insights;
pub mod local;
pub mod record;
pub mod retry;
pub mod select;
pub mod time;
