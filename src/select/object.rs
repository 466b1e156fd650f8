//! The select path over one log object, written once: the select function reads S3 objects
//! through it and the local replay reads files through it. What differs between them is
//! behind three small ports: where an object's bytes come from ([`ObjectSource`],
//! [`LogObject`]) and where the selected messages go ([`Outbox`]).

use std::future::Future;

use crate::ingest::{ObjectKind, RawItem};
use crate::record::Record;

use super::origin::Origin;
use super::problems::Problem;
use super::run::{Outgoing, SelectCounts, SelectRun};

/// Completed messages a caller lets wait before sending them while an object is read: four
/// full messages are about 1 MiB, so memory stays flat however large the object.
pub const SEND_EVERY_MESSAGES: usize = 4;

/// Why an object could not be read, and whether reading it again later could help.
pub trait ReadError: std::error::Error {
    /// `true` when a later attempt may succeed (S3 throttled or unreachable): the caller gets
    /// the error back to retry the whole message; otherwise the run records the object as
    /// failed and goes on.
    fn is_retryable(&self) -> bool;
}

/// Where log objects are opened: S3 in Lambda, a file or the standard input locally.
pub trait ObjectSource {
    type Object: LogObject<Error = Self::Error>;
    type Error: ReadError;

    /// Opens the object `origin` names.
    fn open(&self, origin: &Origin<'_>) -> impl Future<Output = Result<Self::Object, Self::Error>>;
}

/// A log object being read one chunk at a time, so memory is a chunk plus its records and
/// the caller can send what it packed between chunks.
pub trait LogObject {
    type Error: ReadError;

    /// Reads the next chunk and hands each element of `Records` completed by it to `each`, in
    /// file order. Returns `false` once the object has been read to its end.
    fn next_chunk(
        &mut self,
        each: impl FnMut(RawItem<'_>),
    ) -> impl Future<Output = Result<bool, Self::Error>>;
}

/// Where the selected messages go: the delivery and Insights queues, or the local pipeline.
pub trait Outbox {
    type Error;

    /// Sends completed messages (possibly none: the end of an object is a point to act on).
    fn send(&mut self, messages: Vec<Outgoing>) -> impl Future<Output = Result<(), Self::Error>>;

    /// A record the run kept for delivery (the local pipeline's Insights detector watches
    /// them).
    fn kept(&mut self, _record: &Record<'_>) {}

    /// A chunk has been read; `counts` are the run's so far.
    fn chunk_read(&mut self, _counts: &SelectCounts) {}

    /// A problem the run has just kept (the select function logs them as they happen).
    fn problem(&mut self, _problem: &Problem) {}
}

/// Why [`select_object`] stopped: reading the object again later may succeed, or the outbox
/// failed.
#[derive(Debug, thiserror::Error)]
pub enum SelectObjectError<R, S> {
    #[error(transparent)]
    Retry(R),
    #[error(transparent)]
    Send(S),
}

/// Reads the object `origin` names from `source` into `run`, sending what it packs to `outbox`
/// every [`SEND_EVERY_MESSAGES`] messages and once more at the end of the object.
///
/// A digest file is counted and not read. An object that cannot be read to its end for good
/// (missing, not a log file, damaged) is recorded by the run, with the records before the
/// damage taken; one that may be readable later is an error for the caller to retry, as is a
/// failed send.
pub async fn select_object<S: ObjectSource, O: Outbox>(
    source: &S,
    origin: &Origin<'_>,
    run: &mut SelectRun<'_>,
    outbox: &mut O,
) -> Result<(), SelectObjectError<S::Error, O::Error>> {
    if origin.parsed.kind == ObjectKind::Digest {
        run.digest_skipped();
        return Ok(());
    }
    let read = read_object(source, origin, run, outbox).await?;
    let retry = match read {
        Err(e) if e.is_retryable() => Some(e),
        Err(e) => {
            run.file_failed(origin, &e);
            None
        }
        Ok(()) => None,
    };
    run.object_done();
    report_problems(run, outbox);
    outbox
        .send(run.take_outbox())
        .await
        .map_err(SelectObjectError::Send)?;
    retry.map_or(Ok(()), |e| Err(SelectObjectError::Retry(e)))
}

/// Reads every chunk of the object; the outer error is a failed send, the inner one why the
/// object could not be read (to its end).
async fn read_object<S: ObjectSource, O: Outbox>(
    source: &S,
    origin: &Origin<'_>,
    run: &mut SelectRun<'_>,
    outbox: &mut O,
) -> Result<Result<(), S::Error>, SelectObjectError<S::Error, O::Error>> {
    let mut object = match source.open(origin).await {
        Ok(object) => object,
        Err(e) => return Ok(Err(e)),
    };
    loop {
        let more = object
            .next_chunk(|item| {
                if let Some(record) = run.take(origin, item) {
                    outbox.kept(&record);
                }
            })
            .await;
        outbox.chunk_read(run.counts());
        report_problems(run, outbox);
        match more {
            Ok(true) if run.outbox_len() >= SEND_EVERY_MESSAGES => outbox
                .send(run.take_outbox())
                .await
                .map_err(SelectObjectError::Send)?,
            Ok(true) => {}
            Ok(false) => return Ok(Ok(())),
            Err(e) => return Ok(Err(e)),
        }
    }
}

fn report_problems<O: Outbox>(run: &mut SelectRun<'_>, outbox: &mut O) {
    for problem in run.new_problems() {
        outbox.problem(problem);
    }
}
