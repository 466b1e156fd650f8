//! `trailwatch lookup` as a user runs it, over what `trailwatch replay` writes (the sample
//! trail, the invictus-ir trail, a generated multi-account trail) and over CloudTrail log
//! files directly. Every expectation is computed here from the records themselves (as
//! `serde_json::Value`), by the rules LookupEvents documents, never by the code under test.
//!
//! Long by design: one test per LookupEvents behaviour, all against the oracle in oracle.rs.

mod data;
mod oracle;

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;
use trailwatch::time::parse_event_time;

use data::*;
use oracle::*;

// ---------------------------------------------------------------------------------------

#[test]
fn each_attribute_key_finds_exactly_the_matching_records() {
    let (dir, records) = sample();
    check_every_key(dir, records);
    let (dir, records) = invictus();
    check_every_key(dir, records);
    let g = generated();
    check_every_key(&g.logs, &g.records);
}

/// Long by design: the user's story, one command after the other.
#[test]
fn a_deleted_bucket_and_who_deleted_it_is_one_command() {
    let (dir, records) = invictus();
    let deletes: Vec<&Rec> = records
        .iter()
        .filter(|r| r.name() == Some("DeleteBucket"))
        .collect();
    assert!(!deletes.is_empty());
    let bucket = deletes[0].s("/requestParameters/bucketName").unwrap();
    let key_and_value = attr("ResourceName", bucket);
    let (code, stdout, stderr) = trailwatch(&[
        "lookup",
        dir.to_str().unwrap(),
        "--lookup-attributes",
        &key_and_value,
        "--output",
        "table",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let expected = expect(
        records,
        Some(("ResourceName", bucket)),
        (None, None),
        false,
        false,
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        expected.len() + 1,
        "a header and one line per event:\n{stdout}"
    );
    for column in [
        "EVENT TIME",
        "EVENT NAME",
        "USER NAME",
        "SOURCE IP",
        "EVENT ID",
        "RESOURCES",
    ] {
        assert!(lines[0].contains(column), "{}", lines[0]);
    }
    // The delete's line names the event, who, from where, and the bucket.
    for delete in expected
        .values()
        .filter(|r| r.name() == Some("DeleteBucket"))
    {
        let line = lines
            .iter()
            .find(|l| l.contains(delete.id()))
            .unwrap_or_else(|| panic!("{} not in\n{stdout}", delete.id()));
        assert!(line.contains("DeleteBucket"), "{line}");
        assert!(line.contains(&delete.username().unwrap()), "{line}");
        assert!(
            line.contains(delete.s("/sourceIPAddress").unwrap()),
            "{line}"
        );
        assert!(line.contains(bucket), "{line}");
    }
    // Table rows are newest first and aligned (every row's event ID starts in one column).
    let id_column = lines[0].find("EVENT ID").unwrap();
    let mut times = Vec::new();
    for line in &lines[1..] {
        let rec = expected
            .values()
            .find(|r| line[id_column..].starts_with(r.id()))
            .unwrap();
        times.push(rec.time());
    }
    assert!(times.windows(2).all(|w| w[0] >= w[1]));

    // By event name, the same answer.
    let out = check_lookup(
        dir,
        records,
        &[
            "--lookup-attributes",
            "AttributeKey=EventName,AttributeValue=DeleteBucket",
        ],
        &expect(
            records,
            Some(("EventName", "DeleteBucket")),
            (None, None),
            false,
            false,
        ),
    );
    assert!(out.events.iter().all(|e| e["Username"].is_string()));
}

#[test]
fn time_ranges_are_inclusive_and_combine_with_an_attribute() {
    let (dir, records) = invictus();
    let mut times: Vec<i64> = records.iter().map(Rec::time).collect();
    times.sort();
    let (start, end) = (times[times.len() / 4], times[times.len() / 2]);
    let start_text = trailwatch::time::format_event_time(start);
    let end_text = trailwatch::time::format_event_time(end);
    let expected = expect(records, None, (Some(start), Some(end)), false, false);
    assert!(
        expected.values().any(|r| r.time() == start) && expected.values().any(|r| r.time() == end)
    );
    check_lookup(
        dir,
        records,
        &["--start-time", &start_text, "--end-time", &end_text],
        &expected,
    );
    // UNIX seconds, as LookupEvents takes them, mean the same.
    let (s, e) = ((start / 1000).to_string(), (end / 1000).to_string());
    check_lookup(
        dir,
        records,
        &["--start-time", &s, "--end-time", &e],
        &expected,
    );
    // An offset is converted to UTC.
    let shifted = trailwatch::time::format_event_time(start + 2 * 3_600_000).replace('Z', "+02:00");
    check_lookup(
        dir,
        records,
        &["--start-time", &shifted, "--end-time", &end_text],
        &expected,
    );
    // Open-ended ranges and a range with an attribute.
    check_lookup(
        dir,
        records,
        &["--start-time", &end_text],
        &expect(records, None, (Some(end), None), false, false),
    );
    check_lookup(
        dir,
        records,
        &["--end-time", &start_text],
        &expect(records, None, (None, Some(start)), false, false),
    );
    check_lookup(
        dir,
        records,
        &[
            "--start-time",
            &start_text,
            "--end-time",
            &end_text,
            "--lookup-attributes",
            &attr("ReadOnly", "false"),
        ],
        &expect(
            records,
            Some(("ReadOnly", "false")),
            (Some(start), Some(end)),
            false,
            false,
        ),
    );
    // A date alone is its midnight UTC: the whole of the data's day.
    let day = &start_text[..10];
    let midnight = parse_event_time(&format!("{day}T00:00:00Z")).unwrap();
    check_lookup(
        dir,
        records,
        &["--start-time", day],
        &expect(records, None, (Some(midnight), None), false, false),
    );
}

/// Long by design: one walk through every page, each checked against the oracle.
#[test]
fn max_results_gives_the_newest_page_and_next_token_walks_the_rest() {
    let (dir, records) = invictus();
    let d = dir.to_str().unwrap();
    let a = attr("EventSource", "s3.amazonaws.com");
    let expected = expect(
        records,
        Some(("EventSource", "s3.amazonaws.com")),
        (None, None),
        false,
        false,
    );
    assert!(expected.len() > 100);
    let all_times: Vec<i64> = expected.values().map(|r| r.time()).collect();

    let mut seen: Vec<Value> = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut args = vec![
            "lookup",
            d,
            "--lookup-attributes",
            &a,
            "--max-results",
            "50",
        ];
        if let Some(t) = &token {
            args.extend(["--next-token", t]);
        }
        let (code, stdout, stderr) = trailwatch(&args);
        assert_eq!(code, 0, "{stderr}");
        let out = parse_output(&stdout);
        pages += 1;
        assert!(out.events.len() <= 50);
        if out.next_token.is_some() {
            assert_eq!(out.events.len(), 50, "a full page before a NextToken");
        }
        if pages == 1 {
            // The first page holds the 50 newest: nothing left out is newer than its oldest.
            let oldest = out.events.iter().map(time_of).min().unwrap();
            let newer_elsewhere = all_times.iter().filter(|&&t| t > oldest).count();
            assert!(
                newer_elsewhere <= 50,
                "{newer_elsewhere} events are newer than the page's oldest"
            );
        }
        seen.extend(out.events);
        match out.next_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert_eq!(pages, expected.len().div_ceil(50));
    let got: Vec<&str> = seen
        .iter()
        .map(|e| e["CloudTrailEvent"].as_str().unwrap())
        .collect();
    assert_eq!(
        got.len(),
        expected.len(),
        "each event once across the pages"
    );
    assert_eq!(
        got.iter().copied().collect::<BTreeSet<_>>(),
        expected.keys().map(String::as_str).collect()
    );
    assert!(
        seen.windows(2).all(|w| time_of(&w[0]) >= time_of(&w[1])),
        "newest first across pages"
    );

    // The AWS CLI's own flags: --max-items / --starting-token page the same way, and a page
    // of the whole listing is a prefix of it.
    let (_, full, _) = trailwatch(&["lookup", d, "--lookup-attributes", &a]);
    let full = parse_output(&full);
    assert!(
        full.next_token.is_none(),
        "without a limit, every event and no NextToken"
    );
    assert_eq!(full.events, seen, "pages concatenated = the whole listing");
    let (_, first, _) = trailwatch(&[
        "lookup",
        d,
        "--lookup-attributes",
        &a,
        "--max-items",
        "7",
        "--page-size",
        "5",
    ]);
    let first = parse_output(&first);
    assert_eq!(first.events, full.events[..7]);
    let t = first.next_token.unwrap();
    let (_, second, _) = trailwatch(&[
        "lookup",
        d,
        "--lookup-attributes",
        &a,
        "--max-items",
        "7",
        "--starting-token",
        &t,
    ]);
    assert_eq!(parse_output(&second).events, full.events[7..14]);
    let (_, one, _) = trailwatch(&["lookup", d, "--lookup-attributes", &a, "--no-paginate"]);
    assert_eq!(
        parse_output(&one).events,
        full.events[..50],
        "--no-paginate: one page of 50"
    );

    // A token is bound to its query's parameters.
    let (code, _, stderr) = trailwatch(&["lookup", d, "--max-results", "5", "--next-token", &t]);
    assert_eq!(code, 2);
    assert!(stderr.contains("InvalidNextTokenException"), "{stderr}");
    let (code, _, stderr) = trailwatch(&["lookup", d, "--next-token", "not-a-token"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("InvalidNextTokenException"), "{stderr}");
}

#[test]
fn without_an_attribute_every_event_is_listed_with_lookup_events_fields() {
    // Every field of every event checked against its record (check_fields), on all three.
    let (dir, records) = sample();
    check_lookup(
        dir,
        records,
        &[],
        &expect(records, None, (None, None), false, false),
    );
    let (dir, records) = invictus();
    check_lookup(
        dir,
        records,
        &[],
        &expect(records, None, (None, None), false, false),
    );
    let g = generated();
    check_lookup(
        &g.logs,
        &g.records,
        &[],
        &expect(&g.records, None, (None, None), false, false),
    );
}

#[test]
fn insights_events_only_with_event_category_insight() {
    let (dir, records) = sample();
    let insights = expect(records, None, (None, None), true, false);
    assert_eq!(insights.len(), 5, "the sample trail's Insights records");
    check_lookup(dir, records, &["--event-category", "insight"], &insights);
    let some = insights.values().next().unwrap();
    let name = some.name().unwrap();
    check_lookup(
        dir,
        records,
        &[
            "--event-category",
            "insight",
            "--lookup-attributes",
            &attr("EventName", name),
        ],
        &expect(
            records,
            Some(("EventName", name)),
            (None, None),
            true,
            false,
        ),
    );
    // Without the category the Insights records are not listed (checked by check_lookup's
    // exact set), and keys other than EventId/EventName/EventSource are refused for them.
    check_lookup(
        dir,
        records,
        &[],
        &expect(records, None, (None, None), false, false),
    );
    let (code, _, stderr) = trailwatch(&[
        "lookup",
        dir.to_str().unwrap(),
        "--event-category",
        "insight",
        "--lookup-attributes",
        &attr("Username", "x"),
    ]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("InvalidLookupAttributesException"),
        "{stderr}"
    );
}

#[test]
fn data_and_network_events_unless_management_only() {
    let g = generated();
    let all = expect(&g.records, None, (None, None), false, false);
    let management = expect(&g.records, None, (None, None), false, true);
    assert!(
        all.len() > management.len(),
        "the generated trail has data/network-activity events"
    );
    check_lookup(&g.logs, &g.records, &["--management-only"], &management);
    let a = attr("ReadOnly", "false");
    check_lookup(
        &g.logs,
        &g.records,
        &["--management-only", "--lookup-attributes", &a],
        &expect(
            &g.records,
            Some(("ReadOnly", "false")),
            (None, None),
            false,
            true,
        ),
    );
}

#[test]
fn log_files_and_their_replay_give_the_same_answers() {
    let g = generated();
    let replayed = jsonl_records(&g.replayed);
    assert!(jsonl_records(&g.replayed).len() > 1000);
    let streams = std::fs::read_dir(&g.replayed)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains("_CloudTrail_")
        })
        .count();
    assert_eq!(streams, 4, "two accounts × two Regions");
    let kept: BTreeSet<&str> = replayed.iter().map(|r| r.raw.as_str()).collect();
    for args in [
        vec!["--management-only"],
        vec![
            "--management-only",
            "--lookup-attributes",
            "AttributeKey=EventSource,AttributeValue=ec2.amazonaws.com",
        ],
        vec![
            "--lookup-attributes",
            "AttributeKey=ReadOnly,AttributeValue=false",
        ],
    ] {
        let run = |dir: &Path| {
            let mut all = vec!["lookup", dir.to_str().unwrap()];
            all.extend_from_slice(&args);
            let (code, stdout, stderr) = trailwatch(&all);
            assert_eq!(code, 0, "{stderr}");
            parse_output(&stdout).events
        };
        let from_logs: Vec<Value> = run(&g.logs)
            .into_iter()
            .filter(|e| kept.contains(e["CloudTrailEvent"].as_str().unwrap()))
            .collect();
        let from_replay = run(&g.replayed);
        assert!(!from_replay.is_empty());
        assert!(
            from_logs == from_replay,
            "{args:?}: the same events, fields and order"
        );
    }
    // Duplicate deliveries in the log files are listed once.
    let duplicated = g.records.len()
        - g.records
            .iter()
            .map(|r| &r.raw)
            .collect::<BTreeSet<_>>()
            .len();
    assert!(
        duplicated > 0,
        "the generated trail has duplicate deliveries"
    );
}

#[test]
fn an_unreadable_line_is_reported_by_file_and_line_and_the_rest_is_searched() {
    let (dir, records) = invictus();
    let copy = temp_dir("broken");
    let mut broken_file = None;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        if broken_file.is_none() && name.to_string_lossy().contains("_CloudTrail_") {
            // Line 3 is not JSON, line 6 is a record without eventTime, line 9 is blank.
            let mut lines: Vec<&str> = text.lines().collect();
            lines.insert(2, "{\"eventVersion\":\"1.08\",\"eventName\":");
            lines.insert(
                5,
                "{\"eventName\":\"DeleteBucket\",\"eventID\":\"no-time\"}",
            );
            lines.insert(8, "");
            std::fs::write(copy.join(&name), lines.join("\n") + "\n").unwrap();
            broken_file = Some(name);
        } else {
            std::fs::write(copy.join(&name), text).unwrap();
        }
    }
    let name = broken_file.unwrap().to_string_lossy().into_owned();
    let (code, stdout, stderr) = trailwatch(&[
        "lookup",
        copy.to_str().unwrap(),
        "--lookup-attributes",
        "AttributeKey=EventName,AttributeValue=DeleteBucket",
    ]);
    assert_eq!(code, 1, "problems make the exit code 1\n{stderr}");
    assert!(stderr.contains(&format!("{name}:3:")), "{stderr}");
    assert!(
        stderr.contains(&format!("{name}:6:")) && stderr.contains("eventTime"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(&format!("{name}:9:")),
        "a blank line is no problem: {stderr}"
    );
    let got: BTreeSet<String> = parse_output(&stdout)
        .events
        .iter()
        .map(|e| e["CloudTrailEvent"].as_str().unwrap().to_owned())
        .collect();
    let want: BTreeSet<String> = expect(
        records,
        Some(("EventName", "DeleteBucket")),
        (None, None),
        false,
        false,
    )
    .into_keys()
    .collect();
    assert_eq!(got, want, "every good record is still searched");
}

/// Long by design: a table of wrong invocations and the error each must give.
#[test]
fn wrong_arguments_and_missing_input_exit_2_with_lookup_events_errors() {
    let (dir, _) = sample();
    let d = dir.to_str().unwrap();
    let empty = temp_dir("empty");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["lookup", "/nonexistent/trailwatch-folder"],
            "no such file or folder",
        ),
        (vec!["lookup", empty.to_str().unwrap()], "no stream files"),
        (vec!["lookup"], "--log-group"),
        (
            vec![
                "lookup",
                d,
                "--lookup-attributes",
                "AttributeKey=EventName,AttributeValue=a",
                "AttributeKey=Username,AttributeValue=b",
            ],
            "InvalidLookupAttributesException",
        ),
        (
            vec![
                "lookup",
                d,
                "--lookup-attributes",
                "AttributeKey=Bucket,AttributeValue=a",
            ],
            "InvalidLookupAttributesException",
        ),
        (
            vec![
                "lookup",
                d,
                "--lookup-attributes",
                "AttributeKey=eventName,AttributeValue=a",
            ],
            "did you mean EventName",
        ),
        (
            vec![
                "lookup",
                d,
                "--lookup-attributes",
                "AttributeKey=EventName,AttributeValue=",
            ],
            "1 to 2000",
        ),
        (
            vec![
                "lookup",
                d,
                "--lookup-attributes",
                "AttributeKey=ReadOnly,AttributeValue=yes",
            ],
            "true or false",
        ),
        (
            vec![
                "lookup",
                d,
                "--start-time",
                "2024-03-02",
                "--end-time",
                "2024-03-01",
            ],
            "InvalidTimeRangeException",
        ),
        (
            vec!["lookup", d, "--start-time", "last tuesday"],
            "not a time",
        ),
        (vec!["lookup", d, "--max-results", "0"], "1..=50"),
        (vec!["lookup", d, "--max-results", "51"], "1..=50"),
        (vec!["lookup", d, "--event-category", "data"], "insight"),
        (
            vec!["lookup", d, "--region", "us-east-1"],
            "--log-group only",
        ),
        (vec!["lookup", d, "--log-group", "g"], "cannot be used"),
        (vec!["lookup", d, "--output", "text"], "table"),
    ];
    let long = format!(
        "AttributeKey=EventName,AttributeValue={}",
        "a b".repeat(501)
    );
    let mut cases = cases;
    cases.push((vec!["lookup", d, "--lookup-attributes", &long], "1 to 2000"));
    for (args, message) in cases {
        let (code, stdout, stderr) = trailwatch(&args);
        assert_eq!(code, 2, "{args:?}\n{stdout}\n{stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}: nothing on stdout");
    }
    // The folder may follow the attribute (clap hands it to the attribute's values).
    let (code, stdout, stderr) = trailwatch(&[
        "lookup",
        "--lookup-attributes",
        "AttributeKey=EventName,AttributeValue=ListBuckets",
        d,
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!parse_output(&stdout).events.is_empty());
    // JSON, as the AWS CLI also takes it.
    let (code, stdout, _) = trailwatch(&[
        "lookup",
        d,
        "--lookup-attributes",
        r#"[{"AttributeKey":"EventName","AttributeValue":"ListBuckets"}]"#,
    ]);
    assert_eq!(code, 0);
    assert!(!parse_output(&stdout).events.is_empty());
}
