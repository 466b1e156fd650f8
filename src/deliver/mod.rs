//! Deliver: selected records into a CloudWatch Logs log group, one stream per account and
//! region, within every PutLogEvents limit, with nothing lost.
//!
//! A delivery run ([`run::deliver_messages_once`]) takes the messages of one invocation
//! ([`message`]), plans batches per stream ([`plan`]), claims each record in a
//! [`DeliveredLedger`] so that it lands once ([`ledger`]), holds calls that are not full back
//! for more records through a [`Carrier`] ([`hold`]), writes the rest through a [`LogSink`]
//! ([`sink`]), and reports which messages must come back and which records were set aside
//! for good, with the reason ([`report`]).

pub mod hold;
pub mod ledger;
pub mod limits;
pub mod message;
mod pending;
pub mod plan;
pub mod report;
pub mod run;
pub mod sink;
pub mod stream;

pub use hold::{Carrier, CarryError, HeldMessage, NoCarry};
pub use ledger::{Claim, ClaimOutcome, DeliveredLedger, InvocationOnly, LedgerError, MemoryLedger};
pub use limits::BatchLimits;
pub use message::{DeliveryMessage, MessagePacker, RecordLocation};
pub use pending::Inbound;
pub use plan::{plan_batches, LogEvent, Plan, Rejection};
pub use report::{DeliveryReport, LedgerReport, SetAside};
pub use run::{deliver_messages, deliver_messages_once, DeliverySettings};
pub use sink::{LogSink, RejectedRanges, SinkError};
pub use stream::stream_name;
