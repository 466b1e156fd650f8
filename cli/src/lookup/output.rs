//! Printing a page: LookupEvents' JSON, or a table to read.

use std::io::{self, Write};

use serde::Serialize;

use super::event::LookupEvent;
use super::search::Extra;

/// `{"Events":[…],"NextToken":"…"}` with the AWS CLI's four-space indentation.
pub fn write_json(
    out: &mut dyn Write,
    events: &[(LookupEvent, Extra)],
    next_token: Option<&str>,
) -> io::Result<()> {
    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Response<'a> {
        events: Vec<&'a LookupEvent>,
        #[serde(skip_serializing_if = "Option::is_none")]
        next_token: Option<&'a str>,
    }
    let response = Response {
        events: events.iter().map(|(e, _)| e).collect(),
        next_token,
    };
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut *out, formatter);
    response.serialize(&mut ser).map_err(io::Error::other)?;
    out.write_all(b"\n")
}

/// Aligned columns, newest first; resources last, since they are the longest.
pub fn write_table(out: &mut dyn Write, events: &[(LookupEvent, Extra)]) -> io::Result<()> {
    const HEADERS: [&str; 8] = [
        "EVENT TIME",
        "EVENT NAME",
        "USER NAME",
        "EVENT SOURCE",
        "SOURCE IP",
        "ERROR",
        "EVENT ID",
        "RESOURCES",
    ];
    let dash = |v: Option<&str>| v.filter(|s| !s.is_empty()).unwrap_or("-").to_owned();
    let rows: Vec<[String; 8]> = events
        .iter()
        .map(|(e, x)| {
            let resources: Vec<String> = e
                .resources
                .iter()
                .map(|r| match &r.resource_type {
                    Some(t) => format!("{t} {}", r.resource_name),
                    None => r.resource_name.clone(),
                })
                .collect();
            [
                table_time(&e.event_time),
                dash(e.event_name.as_deref()),
                dash(x.who.as_deref()),
                dash(e.event_source.as_deref()),
                dash(x.source_ip.as_deref()),
                dash(x.error_code.as_deref()),
                dash(e.event_id.as_deref()),
                if resources.is_empty() {
                    "-".to_owned()
                } else {
                    resources.join(", ")
                },
            ]
        })
        .collect();
    let mut widths = HEADERS.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut line = |cells: &[&str]| -> io::Result<()> {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(cell);
                let pad = widths[i] - cell.chars().count() + 2;
                text.extend(std::iter::repeat_n(' ', pad));
            }
        }
        writeln!(out, "{}", text.trim_end())
    };
    line(&HEADERS)?;
    for row in &rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        line(&cells)?;
    }
    Ok(())
}

/// `2023-07-10T11:42:36+00:00` → `2023-07-10 11:42:36Z`: shorter, still unambiguous.
fn table_time(event_time: &str) -> String {
    match event_time.strip_suffix("+00:00") {
        Some(base) => format!("{}Z", base.replacen('T', " ", 1)),
        None => event_time.to_owned(),
    }
}
