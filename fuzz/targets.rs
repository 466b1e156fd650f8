//! One function per fuzz target: what it feeds to which parser, and what must hold for any
//! input — no panic, memory bounded (libFuzzer's `-rss_limit_mb`), and the target's own
//! invariant where it has one (the same records whole or in chunks, gzip or plain; a codec's
//! round trip). `fuzz_targets/*.rs` call these, and `cli/tests/fuzz_corpus.rs` replays the
//! kept corpus through them on the stable toolchain (where the CLI is always there: `fuzzing`
//! is cargo-fuzz's cfg, `cli` the fuzz crate's feature).

use std::borrow::Cow;
use std::io::Write;

use trailwatch::deliver::message::{open_held, seal_held, DeliveryMessage};
use trailwatch::ingest::object_key::decode_notification_key;
use trailwatch::ingest::{parse_message, parse_object_key, LogFileDecoder, LogFileLimits, RawItem};
use trailwatch::insights::detector::KeyState;
use trailwatch::record::Record;
use trailwatch::select::TrailConfig;
#[cfg(any(feature = "cli", not(fuzzing)))]
use trailwatch_cli::{
    lookup::query::{decode_token, parse_attributes, parse_time_arg, Query},
    validate_logs::digest::parse_digest,
};

/// Small limits, so that the fuzzer reaches them with small inputs.
const LIMITS: LogFileLimits = LogFileLimits {
    max_decompressed_bytes: 1 << 20,
    max_record_bytes: 4096,
    max_nesting: 16,
};

/// What a decoder handed over: each item (its bytes, or that it was rejected) and how the file
/// ended. Why a record is rejected is left out: one that breaks two limits (too large and too
/// deep) is reported for the limit the decoder meets first, which depends on the chunking.
type Outcome = (Vec<(usize, Result<String, ()>)>, Result<(), String>);

fn decode(data: &[u8], chunk: usize) -> Outcome {
    let mut decoder = LogFileDecoder::new(LIMITS);
    let mut items = Vec::new();
    let mut each = |item: RawItem<'_>| {
        let bytes = item.bytes.map(str::to_owned).map_err(|_| ());
        items.push((item.index, bytes));
    };
    for piece in data.chunks(chunk.max(1)) {
        if let Err(e) = decoder.feed(piece, &mut each) {
            return (items, Err(e.to_string()));
        }
    }
    let finished = decoder.finish(&mut each);
    (items, finished.map_err(|e| e.to_string()))
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).expect("writing to memory");
    encoder.finish().expect("writing to memory")
}

/// The log-file reader. The first byte picks a chunk size; the rest is the file. Fed whole and
/// in chunks, a plain file hands over the same records and ends the same way; so does a gzip
/// file that decompresses, and a plain file gzipped reads as the plain file does. Of a corrupt
/// gzip stream, the records decompressed in the same write as the corruption are not handed
/// over (flate2 keeps that write's output), so what comes before the error depends on the
/// chunking: one list is then the start of the other.
pub fn log_file(data: &[u8]) {
    let Some((&split, file)) = data.split_first() else {
        return;
    };
    let whole = decode(file, file.len());
    let chunked = decode(file, usize::from(split % 64) + 1);
    let gzip_error = |o: &Outcome| o.1.as_ref().is_err_and(|e| e.starts_with("gzip stream"));
    if gzip_error(&whole) || gzip_error(&chunked) {
        let (short, long) = if whole.0.len() <= chunked.0.len() {
            (&whole.0, &chunked.0)
        } else {
            (&chunked.0, &whole.0)
        };
        assert_eq!(
            short[..],
            long[..short.len()],
            "records before a gzip error differ"
        );
    } else {
        assert_eq!(whole, chunked, "whole and chunked differ");
    }
    if !file.starts_with(&[0x1f, 0x8b]) {
        let gzipped = decode(&gzip(file), usize::from(split) + 1);
        assert_eq!(whole.0, gzipped.0, "plain and gzip records differ");
        assert_eq!(
            whole.1.is_ok(),
            gzipped.1.is_ok(),
            "plain and gzip end differently"
        );
    }
}

/// `Record::parse` on any text.
pub fn record(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Record::parse(text);
    }
}

/// SQS message bodies: S3 notifications, SNS wrappers, EventBridge envelopes.
pub fn notification(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_message(text);
    }
}

/// Object keys as the functions receive them (notification-encoded) and as they are.
pub fn object_key(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_object_key(text);
        if let Ok(decoded) = decode_notification_key(text) {
            let _ = parse_object_key(&decoded);
        }
    }
}

/// A record every compiled configuration is evaluated on.
const SAMPLE_RECORD: &str = r#"{"eventVersion":"1.08","eventTime":"2023-07-10T11:42:36Z","eventSource":"s3.amazonaws.com","eventName":"GetObject","awsRegion":"us-east-1","eventCategory":"Data","managementEvent":false,"readOnly":true,"recipientAccountId":"123456789012","userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::123456789012:user/a"},"resources":[{"type":"AWS::S3::Object","ARN":"arn:aws:s3:::bucket/key"}],"eventID":"e","eventType":"AwsApiCall"}"#;

/// Trail configuration: parsed and validated; what is accepted compiles and evaluates.
pub fn trail_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = TrailConfig::from_json(text) else {
        return;
    };
    let _ = config.validate();
    let matcher = config.compile();
    let record = Record::parse(SAMPLE_RECORD).expect("the sample record parses");
    let _ = matcher.evaluate(&record);
}

/// Digest files (validate-logs).
#[cfg(any(feature = "cli", not(fuzzing)))]
pub fn digest(data: &[u8]) {
    let _ = parse_digest(data);
}

/// `lookup`'s attribute, time and NextToken arguments.
#[cfg(any(feature = "cli", not(fuzzing)))]
pub fn lookup_query(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_attributes(&[text.to_owned()]);
    let _ = parse_time_arg(text);
    let _ = decode_token(&Query::default(), text);
}

/// The Insights state codec: what decodes re-encodes to bytes that decode to the same state.
pub fn insights_state(data: &[u8]) {
    if let Ok(state) = KeyState::decode(data) {
        let encoded = state.encode();
        let again = KeyState::decode(&encoded).expect("an encoded state decodes");
        assert_eq!(state, again, "decode(encode(state)) differs");
    }
}

/// Delivery messages as the deliver stage receives them (held envelopes opened first).
pub fn delivery_message(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(bodies) = open_held(text) {
        for body in &bodies {
            let _ = DeliveryMessage::parse(body);
        }
    }
}

/// Held-back envelopes: any text opens or fails cleanly; bodies sealed (into envelopes of at
/// most a size from the first two bytes) open to the same bodies in order.
pub fn held_envelope(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = open_held(text);
    }
    let Some((size, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let max_bytes = usize::from(u16::from_le_bytes(*size));
    let bodies: Vec<String> = rest
        .split(|&b| b == 0)
        .map(|part| serde_json::Value::from(String::from_utf8_lossy(part)).to_string())
        .collect();
    let opened: Vec<String> = seal_held("stream", &bodies, max_bytes)
        .iter()
        .flat_map(|sealed| open_held(sealed).expect("a sealed envelope opens"))
        .map(Cow::into_owned)
        .collect();
    assert_eq!(opened, bodies, "sealed and opened bodies differ");
}

/// A target: what it is fed, checked.
pub type Target = fn(&[u8]);

/// Every target by name, for the corpus replay.
pub const TARGETS: &[(&str, Target)] = &[
    ("log_file", log_file),
    ("record", record),
    ("notification", notification),
    ("object_key", object_key),
    ("trail_config", trail_config),
    #[cfg(any(feature = "cli", not(fuzzing)))]
    ("digest", digest),
    #[cfg(any(feature = "cli", not(fuzzing)))]
    ("lookup_query", lookup_query),
    ("insights_state", insights_state),
    ("delivery_message", delivery_message),
    ("held_envelope", held_envelope),
];
