//! The streaming log-file reader: every way a file can be damaged, and that splitting the
//! input anywhere never changes what is read.

use std::io::Write;

use proptest::prelude::*;
use trailwatch::ingest::{read_log_file, FileError, LogFileDecoder, LogFileLimits, RecordProblem};

type Items = Vec<(usize, Result<String, RecordProblem>)>;

fn read_with(bytes: &[u8], limits: LogFileLimits) -> (Items, Result<u64, FileError>) {
    let mut items = Vec::new();
    let result = read_log_file(bytes, limits, |item| {
        items.push((item.index, item.bytes.map(str::to_owned)))
    });
    (items, result)
}

fn read(bytes: &[u8]) -> (Items, Result<u64, FileError>) {
    read_with(bytes, LogFileLimits::default())
}

/// Pushes the input in pieces cut at `cuts`, as a network body arrives.
fn read_in_pieces(bytes: &[u8], cuts: &[usize]) -> (Items, Result<(), FileError>) {
    let mut decoder = LogFileDecoder::new(LogFileLimits::default());
    let mut items = Vec::new();
    let mut last = 0;
    let mut result = Ok(());
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.sort();
    points.push(bytes.len());
    let mut keep =
        |i: trailwatch::ingest::RawItem<'_>| items.push((i.index, i.bytes.map(str::to_owned)));
    for p in points {
        if result.is_ok() {
            result = decoder.feed(&bytes[last..p], &mut keep);
        }
        last = p;
    }
    if result.is_ok() {
        result = decoder.finish(&mut keep);
    }
    (items, result)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

fn real_file() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/data/invictus-ir/218007301253_CloudTrail_us-east-1_20230710T1205Z_SjF3IkuNXJkoHyar.json"
    ))
    .unwrap()
}

fn ok_texts(items: &Items) -> Vec<String> {
    items
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok().cloned())
        .collect()
}

const TWO: &[u8] = br#"{"Records":[{"eventID":"a","s":"} ] { [ \" \\"},{"eventID":"b"}]}"#;

#[test]
fn braces_and_quotes_inside_strings_do_not_split_records() {
    let (items, result) = read(TWO);
    result.unwrap();
    assert_eq!(
        ok_texts(&items),
        [
            r#"{"eventID":"a","s":"} ] { [ \" \\"}"#,
            r#"{"eventID":"b"}"#
        ]
    );
}

#[test]
fn gzip_is_recognised_by_its_magic_bytes_whatever_the_name() {
    let (plain, _) = read(TWO);
    let (zipped, result) = read(&gzip(TWO));
    result.unwrap();
    assert_eq!(ok_texts(&plain), ok_texts(&zipped));
}

#[test]
fn multi_member_gzip_is_read_to_the_end() {
    let text = b"{\"Records\":[{\"eventID\":\"a\"},{\"eventID\":\"b\"}]}";
    let mut bytes = gzip(&text[..20]);
    bytes.extend(gzip(&text[20..]));
    let (items, result) = read(&bytes);
    result.unwrap();
    assert_eq!(ok_texts(&items).len(), 2);
}

#[test]
fn pretty_printed_files_with_other_keys_and_a_bom_are_read() {
    let text = "\u{feff}{\n  \"Other\": {\"x\": [1, {\"y\": \"]\"}]},\n  \"Records\" : [\n    {\"eventID\": \"a\"} ,\n    {\"eventID\": \"b\"}\n  ],\n  \"n\": 3\n}\n";
    let (items, result) = read(text.as_bytes());
    result.unwrap();
    assert_eq!(
        ok_texts(&items),
        [r#"{"eventID": "a"}"#, r#"{"eventID": "b"}"#]
    );
}

#[test]
fn a_truncated_gzip_file_keeps_the_records_before_the_damage() {
    let file = real_file();
    let zipped = gzip(&file);
    let (items, result) = read(&zipped[..zipped.len() * 2 / 3]);
    assert!(
        matches!(
            result,
            Err(FileError::Gzip { .. }) | Err(FileError::Truncated { .. })
        ),
        "{result:?}"
    );
    assert!(
        !items.is_empty(),
        "records before the cut are still handed over"
    );
    let (all, _) = read(&file);
    assert_eq!(ok_texts(&items), ok_texts(&all)[..items.len()]);
}

#[test]
fn a_corrupt_gzip_stream_is_an_error_not_a_panic() {
    let mut zipped = gzip(&real_file());
    let mid = zipped.len() / 2;
    for b in &mut zipped[mid..mid + 64] {
        *b ^= 0x5a;
    }
    let (_, result) = read(&zipped);
    let err = result.unwrap_err();
    assert!(
        matches!(
            err,
            FileError::Gzip { .. } | FileError::Malformed { .. } | FileError::Truncated { .. }
        ),
        "{err}"
    );
}

#[test]
fn a_truncated_plain_file_says_where_it_ended() {
    let (items, result) = read(br#"{"Records":[{"eventID":"a"},{"eventID":"b""#);
    assert_eq!(ok_texts(&items), [r#"{"eventID":"a"}"#]);
    let err = result.unwrap_err().to_string();
    assert!(
        err.contains("truncated") && err.contains("after 1 records"),
        "{err}"
    );
}

#[test]
fn files_that_are_not_cloudtrail_logs_are_named_as_such() {
    for (bytes, expect) in [
        (&b""[..], "empty"),
        (b"[1,2,3]", "not a JSON object"),
        (br#"{"awsAccountId":"1","logFiles":[]}"#, "no Records array"),
        (br#"{"Records":{"a":1}}"#, "not an array"),
    ] {
        let err = read(bytes).1.unwrap_err();
        assert!(matches!(err, FileError::NotCloudTrail { .. }), "{err}");
        assert!(err.to_string().contains(expect), "{err}");
    }
}

#[test]
fn malformed_structure_is_reported_with_its_offset() {
    let err = read(br#"{"Records":[{"eventID":"a"} {"eventID":"b"}]}"#)
        .1
        .unwrap_err();
    assert!(
        matches!(
            err,
            FileError::Malformed {
                offset: 28,
                records: 1,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn bad_records_are_reported_by_index_and_their_neighbours_still_read() {
    let mut file = b"{\"Records\":[{\"eventID\":\"a\"},{\"eventID\":\"\xff\xfe\"},".to_vec();
    file.extend_from_slice(br#"null,{"deep":"#);
    file.extend(std::iter::repeat_n(b'[', 150));
    file.extend(std::iter::repeat_n(b']', 150));
    file.extend_from_slice(br#"},{"eventID":"tru" tru},{"eventID":"z"}]}"#);
    let (items, result) = read(&file);
    result.unwrap();
    assert_eq!(items.len(), 6);
    assert_eq!(items[0].1.as_deref(), Ok(r#"{"eventID":"a"}"#));
    assert!(matches!(
        items[1].1,
        Err(RecordProblem::NotUtf8 { offset: 12 })
    ));
    assert_eq!(items[2].1, Err(RecordProblem::NotAnObject));
    assert_eq!(items[3].1, Err(RecordProblem::TooDeep { limit: 100 }));
    // A bad token inside a record is the record's problem, found when it is parsed.
    assert!(trailwatch::record::Record::parse(items[4].1.as_deref().unwrap()).is_err());
    assert_eq!(items[5].1.as_deref(), Ok(r#"{"eventID":"z"}"#));
    assert_eq!(
        items.iter().map(|i| i.0).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4, 5]
    );
}

#[test]
fn oversized_records_are_refused_without_being_buffered() {
    let big = format!(
        r#"{{"Records":[{{"p":"{}"}},{{"eventID":"after"}}]}}"#,
        "x".repeat(5000)
    );
    let limits = LogFileLimits {
        max_record_bytes: 1000,
        ..LogFileLimits::default()
    };
    let (items, result) = read_with(big.as_bytes(), limits);
    result.unwrap();
    assert_eq!(items[0].1, Err(RecordProblem::TooLarge { limit: 1000 }));
    assert_eq!(items[1].1.as_deref(), Ok(r#"{"eventID":"after"}"#));
}

#[test]
fn a_gzip_bomb_stops_at_the_decompressed_size_limit() {
    let mut body = b"{\"Records\":[{\"p\":\"".to_vec();
    body.extend(std::iter::repeat_n(b' ', 20 << 20));
    body.extend_from_slice(b"\"}]}");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&body).unwrap();
    let bomb = gz.finish().unwrap();
    assert!(
        bomb.len() < 100 << 10,
        "a bomb: {} bytes expand to 20 MiB",
        bomb.len()
    );
    let limits = LogFileLimits {
        max_decompressed_bytes: 1 << 20,
        ..LogFileLimits::default()
    };
    let err = read_with(&bomb, limits).1.unwrap_err();
    assert!(
        matches!(err, FileError::TooLarge { limit } if limit == 1 << 20),
        "{err}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// However the bytes arrive, plain or gzip, the same records come out.
    #[test]
    fn splitting_the_input_anywhere_reads_the_same_records(
        cuts in proptest::collection::vec(0usize..100_000, 0..12),
        zipped in any::<bool>(),
    ) {
        let file = real_file();
        let (whole, result) = read(&file);
        result.unwrap();
        let input = if zipped { gzip(&file) } else { file };
        let (pieces, result) = read_in_pieces(&input, &cuts);
        prop_assert!(result.is_ok());
        prop_assert_eq!(ok_texts(&pieces), ok_texts(&whole));
    }
}
