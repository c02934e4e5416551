//! Lines of a traffic file: what each one holds, and where its record's JSON is.
//!
//! The one classification every reader uses (the CLI's `TrafficRecord` reader and the
//! lifecycle tools' borrowed reader alike):
//!
//! | line | is |
//! |---|---|
//! | blank, or `#` … | nothing: not counted |
//! | a JSON object with one of the record's fields (`source`, `remote`, `destination`, `connection`, `request`, `decision`), or only record fields (`{}`, `{"time": …}`) | a plain traffic record |
//! | any other JSON object (a JSON-formatted Envoy log line) with a string holding `cordon.decision {...}` (escaped, in `message` or any field) | the decision record in that string |
//! | any other JSON object | an ordinary log line: skipped, counted |
//! | a line holding `cordon.decision {` (an Envoy text log line) | the decision record: from that `{` to the end of the line |
//! | any other line | an ordinary log line: skipped, counted |
//!
//! A line that starts with `{` but is not valid JSON is bad, and so is a record (plain or
//! carried by a log line) that does not read as a traffic record: the error says why.

use alloc::borrow::Cow;
use alloc::format;
use alloc::string::{String, ToString};

use serde_json::Value;

use super::TrafficRecord;

/// What the filter writes before a decision record in its log lines.
pub const DECISION_MARKER: &str = "cordon.decision ";

/// The marker and the start of the record: what a line carrying one holds.
const MARKER_OBJECT: &[u8] = b"cordon.decision {";

/// Top-level fields that make a JSON object a traffic record (`time` alone does not:
/// log lines have one too).
const RECORD_FIELDS: &[&str] = &[
    "source",
    "remote",
    "destination",
    "connection",
    "request",
    "decision",
];

/// What one line holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Line<R> {
    /// A traffic record (or where its JSON is).
    Record(R),
    /// A log line that carries no decision record: skipped, and counted as such.
    LogLine,
    /// A blank line or a `#` comment: nothing, not counted.
    Nothing,
}

impl<R> Line<R> {
    /// The record, if the line holds one.
    pub fn record(self) -> Option<R> {
        match self {
            Line::Record(record) => Some(record),
            Line::LogLine | Line::Nothing => None,
        }
    }

    /// The same line with its record read by `read`.
    pub fn try_map<S, E>(self, read: impl FnOnce(R) -> Result<S, E>) -> Result<Line<S>, E> {
        Ok(match self {
            Line::Record(record) => Line::Record(read(record)?),
            Line::LogLine => Line::LogLine,
            Line::Nothing => Line::Nothing,
        })
    }
}

/// How a record was written on its line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// The line is the record.
    Plain,
    /// An Envoy text log line: `... cordon.decision {...}`.
    TextLog,
    /// A JSON-formatted Envoy log line with `cordon.decision {...}` escaped in a string.
    JsonLog,
}

impl Form {
    /// An error about the record, saying where the record was.
    pub fn error(self, what: &str) -> String {
        match self {
            Form::Plain => what.to_string(),
            Form::TextLog => format!("decision record: {what}"),
            Form::JsonLog => format!("decision record in a JSON log line: {what}"),
        }
    }
}

/// A record's JSON as found on a line: borrowed from the line, or unescaped out of a
/// JSON log line's string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordJson<'a> {
    /// The record's JSON text.
    pub json: Cow<'a, [u8]>,
    /// How it was written.
    pub form: Form,
}

/// Says what a line holds and, for a record, where its JSON is. `Err`: the line is bad,
/// and why. Reads only as much of a plain record as it takes to see its first record
/// field; the record itself is read by the caller (see [`read_line`]).
pub fn classify(line: &[u8]) -> Result<Line<RecordJson<'_>>, String> {
    let line = trim(line);
    match line.first() {
        None | Some(b'#') => Ok(Line::Nothing),
        Some(b'{') => match object_shape(line) {
            Shape::Record => Ok(Line::Record(RecordJson {
                json: Cow::Borrowed(line),
                form: Form::Plain,
            })),
            Shape::Other | Shape::Broken => {
                let value: Value = serde_json::from_slice(line)
                    .map_err(|error| format!("invalid JSON: {error}"))?;
                let Value::Object(fields) = &value else {
                    return Err("invalid JSON: not an object".to_string());
                };
                if is_record(fields.keys().map(String::as_str)) {
                    return Ok(Line::Record(RecordJson {
                        json: Cow::Borrowed(line),
                        form: Form::Plain,
                    }));
                }
                Ok(match embedded_record(&value) {
                    Some(json) => Line::Record(RecordJson {
                        json: Cow::Owned(json.into_bytes()),
                        form: Form::JsonLog,
                    }),
                    None => Line::LogLine,
                })
            }
        },
        Some(_) => Ok(match find(line, MARKER_OBJECT) {
            Some(at) => Line::Record(RecordJson {
                json: Cow::Borrowed(line.get(at + MARKER_OBJECT.len() - 1..).unwrap_or(&[])),
                form: Form::TextLog,
            }),
            None => Line::LogLine,
        }),
    }
}

/// Reads one line into a [`TrafficRecord`]. `Err`: the line is bad, and why.
pub fn read_line(line: &[u8]) -> Result<Line<TrafficRecord>, String> {
    classify(line)?.try_map(|found| {
        let value: Value = serde_json::from_slice(&found.json)
            .map_err(|error| found.form.error(&format!("invalid JSON: {error}")))?;
        TrafficRecord::from_json(&value).map_err(|error| found.form.error(&error))
    })
}

fn trim(line: &[u8]) -> &[u8] {
    let start = line.iter().position(|b| !b.is_ascii_whitespace());
    let end = line.iter().rposition(|b| !b.is_ascii_whitespace());
    match (start, end) {
        (Some(start), Some(end)) => line.get(start..=end).unwrap_or(&[]),
        _ => &[],
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// A JSON object's fields are a record's when one of them is a record-only field, or all
/// are record fields.
fn is_record<'k>(mut keys: impl Iterator<Item = &'k str>) -> bool {
    let mut all_known = true;
    for key in keys.by_ref() {
        if RECORD_FIELDS.contains(&key) {
            return true;
        }
        all_known &= key == "time";
    }
    all_known
}

/// The first string (depth first) of a JSON log line that carries a decision record:
/// the record's JSON.
fn embedded_record(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => {
            let at = find(text.as_bytes(), MARKER_OBJECT)?;
            text.get(at + DECISION_MARKER.len()..)
                .map(|json| json.trim_end().to_string())
        }
        Value::Array(items) => items.iter().find_map(embedded_record),
        Value::Object(fields) => fields.values().find_map(embedded_record),
        _ => None,
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Shape {
    /// A traffic record (judged by its top-level keys).
    Record,
    /// Some other object.
    Other,
    /// Not scanned to the end: let the JSON parser say what is wrong.
    Broken,
}

/// Scans a JSON object's top-level keys without building it, stopping at the first
/// record-only field (the first key of every record the filter writes).
fn object_shape(bytes: &[u8]) -> Shape {
    let mut at = 1; // after `{`
    let mut keys_known = true;
    let mut first = true;
    loop {
        at = skip_space(bytes, at);
        match bytes.get(at) {
            Some(b'}') if first => {
                return if skip_space(bytes, at + 1) == bytes.len() {
                    Shape::Record
                } else {
                    Shape::Broken
                };
            }
            Some(b'"') => {}
            _ => return Shape::Broken,
        }
        let Some(end) = skip_string(bytes, at) else {
            return Shape::Broken;
        };
        let key = bytes.get(at + 1..end - 1).unwrap_or(&[]);
        if RECORD_FIELDS.iter().any(|field| field.as_bytes() == key) {
            return Shape::Record;
        }
        keys_known &= key == b"time";
        at = skip_space(bytes, end);
        if bytes.get(at) != Some(&b':') {
            return Shape::Broken;
        }
        let Some(end) = skip_value(bytes, skip_space(bytes, at + 1)) else {
            return Shape::Broken;
        };
        at = skip_space(bytes, end);
        match bytes.get(at) {
            Some(b',') => {
                at += 1;
                first = false;
            }
            Some(b'}') if skip_space(bytes, at + 1) == bytes.len() => {
                return if keys_known {
                    Shape::Record
                } else {
                    Shape::Other
                };
            }
            _ => return Shape::Broken,
        }
    }
}

fn skip_space(bytes: &[u8], mut at: usize) -> usize {
    while bytes.get(at).is_some_and(u8::is_ascii_whitespace) {
        at += 1;
    }
    at
}

/// `at` is on a `"`: the position after the closing one.
fn skip_string(bytes: &[u8], mut at: usize) -> Option<usize> {
    at += 1;
    loop {
        match bytes.get(at)? {
            b'"' => return Some(at + 1),
            b'\\' => at += 2,
            _ => at += 1,
        }
    }
}

/// The position after the value starting at `at` (not validated: the parser does that).
fn skip_value(bytes: &[u8], mut at: usize) -> Option<usize> {
    match bytes.get(at)? {
        b'"' => skip_string(bytes, at),
        b'{' | b'[' => {
            let mut depth = 0usize;
            loop {
                match bytes.get(at)? {
                    b'"' => {
                        at = skip_string(bytes, at)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(at + 1);
                        }
                    }
                    _ => {}
                }
                at += 1;
            }
        }
        _ => {
            while bytes
                .get(at)
                .is_some_and(|b| !matches!(b, b',' | b'}' | b']') && !b.is_ascii_whitespace())
            {
                at += 1;
            }
            Some(at)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;
    use alloc::vec::Vec;

    const PLAIN: &str = r#"{"source": {"principal": "spiffe://td/ns/a/sa/b"}, "request": {"method": "GET", "path": "/x"}}"#;
    const TEXT_LOG: &str = r#"[2026-11-27 01:00:00.000][12][info][wasm] [source/extensions/common/wasm/context.cc:1195] wasm log cordon: cordon.decision {"source":{"principal":null,"ip":"10.0.0.9"},"request":{"method":"GET","path":"/admin"},"decision":{"allowed":false}}"#;
    const JSON_LOG: &str = r#"{"time":"2026-11-27T01:00:00.000Z","level":"info","name":"wasm","message":"wasm log cordon: cordon.decision {\"source\":{\"principal\":\"spiffe://td/ns/a/sa/b\"},\"request\":{\"method\":\"GET\",\"path\":\"/x\"}}\n"}"#;

    fn form(line: &str) -> Result<Option<Form>, String> {
        classify(line.as_bytes()).map(|line| line.record().map(|found| found.form))
    }

    #[test]
    fn every_form_of_line() {
        assert_eq!(form(PLAIN), Ok(Some(Form::Plain)));
        assert_eq!(form(TEXT_LOG), Ok(Some(Form::TextLog)));
        assert_eq!(form(JSON_LOG), Ok(Some(Form::JsonLog)));
        assert_eq!(form("{}"), Ok(Some(Form::Plain)));
        assert_eq!(
            form(r#"{"time": "2026-11-27T01:00:00Z"}"#),
            Ok(Some(Form::Plain))
        );
        // A record field anywhere makes a record, so a misspelt field is an error, not a
        // log line.
        assert_eq!(
            form(r#"{"time": "t", "sourse": {}, "request": {}}"#),
            Ok(Some(Form::Plain))
        );
        assert_eq!(classify(b""), Ok(Line::Nothing));
        assert_eq!(classify(b"  \t "), Ok(Line::Nothing));
        assert_eq!(classify(b"# a comment"), Ok(Line::Nothing));
        assert_eq!(
            classify(b"[2026-11-27][info] starting envoy"),
            Ok(Line::LogLine)
        );
        assert_eq!(
            classify(br#"{"time":"t","level":"info","message":"starting"}"#),
            Ok(Line::LogLine)
        );
        assert_eq!(
            classify(b"cordon: configuration rejected"),
            Ok(Line::LogLine)
        );
        // Classified by its first field; the reader finds it broken.
        assert_eq!(form("{\"source\": {"), Ok(Some(Form::Plain)));
        assert!(read_line(b"{\"source\": {").is_err());
        assert!(classify(b"{not json").is_err());
        assert!(classify(b"{\"level\": \"info\"} trailing").is_err());
    }

    #[test]
    fn reads_records_wherever_they_are() {
        let record = read_line(JSON_LOG.as_bytes()).unwrap().record().unwrap();
        assert_eq!(record.principal.as_deref(), Some("spiffe://td/ns/a/sa/b"));
        assert_eq!(record.path.as_deref(), Some("/x"));
        let record = read_line(TEXT_LOG.as_bytes()).unwrap().record().unwrap();
        assert_eq!(record.path.as_deref(), Some("/admin"));
        let record = read_line(PLAIN.as_bytes()).unwrap().record().unwrap();
        assert_eq!(record.method.as_deref(), Some("GET"));
    }

    #[test]
    fn bad_lines_say_what_is_wrong() {
        let error = |line: &str| read_line(line.as_bytes()).unwrap_err();
        assert!(error("{\"source\": {").starts_with("invalid JSON: "));
        assert_eq!(error(r#"{"source": 1}"#), "source: expected an object");
        assert_eq!(
            error(r#"{"sourse": {}, "request": {}}"#),
            "unknown field `sourse`"
        );
        assert!(
            error("x cordon.decision {\"source\": ").starts_with("decision record: invalid JSON: ")
        );
        assert_eq!(
            error(r#"{"message": "cordon.decision {\"request\": {\"port\": 1}}"}"#),
            "decision record in a JSON log line: request: unknown field `port`"
        );
    }

    #[test]
    fn the_scan_agrees_with_the_parser() {
        // Values the scanner skips: nested objects, strings with escapes and braces.
        let lines = [
            r#"{"level": {"a": [1, {"b": "}"}]}, "msg": "x\"}", "n": -1.5e3, "t": true}"#,
            r#"{"level": "info", "nested": {"source": {}}}"#,
            r#"{ "time" : "t" , "level" : null }"#,
        ];
        let shapes: Vec<Shape> = lines.iter().map(|l| object_shape(l.as_bytes())).collect();
        assert_eq!(shapes, [Shape::Other, Shape::Other, Shape::Other]);
        assert_eq!(object_shape(br#"{ "time" : "t" }"#), Shape::Record);
        assert_eq!(object_shape(br#"{"a": "unterminated}"#), Shape::Broken);
    }
}
