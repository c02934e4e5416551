//! Streaming traffic input: files (or standard input) read line by line, each line a
//! traffic record, an Envoy log line carrying a decision record (`... cordon.decision
//! {...}`), or something else (skipped). Records are read into borrowed structs that hold
//! only what the lifecycle tools look at, so a line costs one pass of the JSON parser and
//! almost no allocation.

use std::borrow::Cow;
use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// A string borrowed from the line when it has no escapes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Text<'a>(#[serde(borrow)] pub Cow<'a, str>);

impl Text<'_> {
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `destination.labels`, in input order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels<'a>(pub Vec<(Text<'a>, Text<'a>)>);

impl<'de: 'a, 'a> Deserialize<'de> for Labels<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LabelsVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for LabelsVisitor<'a> {
            type Value = Labels<'a>;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("an object of string labels")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut labels = Vec::with_capacity(map.size_hint().unwrap_or(2));
                while let Some((key, value)) = map.next_entry::<Text<'de>, Text<'de>>()? {
                    labels.push((key, value));
                }
                Ok(Labels(labels))
            }
        }
        deserializer.deserialize_map(LabelsVisitor(std::marker::PhantomData))
    }
}

/// `source`.
#[derive(Debug, Default, Deserialize)]
pub struct Source<'a> {
    /// `source.principal`.
    #[serde(borrow, default)]
    pub principal: Option<Text<'a>>,
}

/// `destination`.
#[derive(Debug, Default, Deserialize)]
pub struct Destination<'a> {
    /// `destination.port`.
    #[serde(default)]
    pub port: Option<u64>,
    /// `destination.namespace`.
    #[serde(borrow, default)]
    pub namespace: Option<Text<'a>>,
    /// `destination.labels`.
    #[serde(borrow, default)]
    pub labels: Option<Labels<'a>>,
}

/// `connection`.
#[derive(Debug, Default, Deserialize)]
pub struct Connection {
    /// `connection.mtls`.
    #[serde(default)]
    pub mtls: Option<bool>,
}

/// `request`.
#[derive(Debug, Default, Deserialize)]
pub struct Request<'a> {
    /// `request.method`.
    #[serde(borrow, default)]
    pub method: Option<Text<'a>>,
    /// `request.path`, raw.
    #[serde(borrow, default)]
    pub path: Option<Text<'a>>,
    /// `request.host`.
    #[serde(borrow, default)]
    pub host: Option<Text<'a>>,
}

/// `decision.dry_run` of a decision record.
#[derive(Debug, Default, Deserialize)]
pub struct DryRun {
    /// Whether the request would be allowed with dry-run policies enforced.
    #[serde(default)]
    pub allowed: Option<bool>,
}

/// `decision` of a decision record (the filter's log line).
#[derive(Debug, Default, Deserialize)]
pub struct DecisionFields {
    /// Whether the filter let the request through.
    #[serde(default)]
    pub allowed: Option<bool>,
    /// Whether the engine's decision was enforced (false under the global `dry_run`).
    #[serde(default)]
    pub enforced: Option<bool>,
    /// The dry-run outcome.
    #[serde(default)]
    pub dry_run: Option<DryRun>,
}

/// The parts of a traffic record the lifecycle tools read; other fields are skipped.
#[derive(Debug, Default, Deserialize)]
pub struct LiteRecord<'a> {
    /// `source`.
    #[serde(borrow, default)]
    pub source: Option<Source<'a>>,
    /// `destination`.
    #[serde(borrow, default)]
    pub destination: Option<Destination<'a>>,
    /// `connection`.
    #[serde(default)]
    pub connection: Option<Connection>,
    /// `request`.
    #[serde(borrow, default)]
    pub request: Option<Request<'a>>,
    /// `time`.
    #[serde(borrow, default)]
    pub time: Option<Text<'a>>,
    /// `decision`, on decision-log records.
    #[serde(default)]
    pub decision: Option<DecisionFields>,
}

impl<'a> LiteRecord<'a> {
    /// The peer identity as presented, unless the connection is marked plaintext.
    pub fn peer_identity(&self) -> Option<&str> {
        if self.connection.as_ref().and_then(|c| c.mtls) == Some(false) {
            return None;
        }
        self.source
            .as_ref()
            .and_then(|source| source.principal.as_ref())
            .map(Text::as_str)
    }

    /// `destination.namespace`.
    pub fn namespace(&self) -> Option<&str> {
        self.destination
            .as_ref()
            .and_then(|d| d.namespace.as_ref())
            .map(Text::as_str)
    }

    /// `destination.labels`.
    pub fn labels(&self) -> &[(Text<'a>, Text<'a>)] {
        self.destination
            .as_ref()
            .and_then(|d| d.labels.as_ref())
            .map_or(&[], |labels| labels.0.as_slice())
    }

    /// `request.method`.
    pub fn method(&self) -> Option<&str> {
        self.request
            .as_ref()
            .and_then(|r| r.method.as_ref())
            .map(Text::as_str)
    }

    /// `request.path`, raw.
    pub fn path(&self) -> Option<&str> {
        self.request
            .as_ref()
            .and_then(|r| r.path.as_ref())
            .map(Text::as_str)
    }

    /// `request.host`.
    pub fn host(&self) -> Option<&str> {
        self.request
            .as_ref()
            .and_then(|r| r.host.as_ref())
            .map(Text::as_str)
    }

    /// `destination.port`, when it is a port number.
    pub fn port(&self) -> Option<u16> {
        self.destination
            .as_ref()
            .and_then(|d| d.port)
            .and_then(|port| u16::try_from(port).ok())
    }

    /// Whether a decision record says the filter refused the request.
    pub fn denied(&self) -> bool {
        self.decision.as_ref().and_then(|d| d.allowed) == Some(false)
    }

    /// Whether a decision record says the request passed only because nothing was
    /// enforced, or would be refused once dry-run policies are enforced.
    pub fn allowed_only_in_dry_run(&self) -> bool {
        self.decision.as_ref().is_some_and(|d| {
            d.allowed == Some(true)
                && (d.enforced == Some(false)
                    || d.dry_run.as_ref().and_then(|r| r.allowed) == Some(false))
        })
    }
}

/// The JSON object a line carries: the whole line, or what follows `cordon.decision ` on an
/// Envoy log line. `None` for blank lines, `#` comments and other log lines.
pub fn record_json(line: &[u8]) -> Option<&[u8]> {
    let start = line.iter().position(|b| !b.is_ascii_whitespace())?;
    let end = line.iter().rposition(|b| !b.is_ascii_whitespace())? + 1;
    let trimmed = line.get(start..end)?;
    match trimmed.first() {
        Some(b'{') => Some(trimmed),
        Some(b'#') => None,
        _ => {
            const MARKER: &[u8] = b"cordon.decision {";
            let at = trimmed
                .windows(MARKER.len())
                .position(|window| window == MARKER)?;
            trimmed.get(at + MARKER.len() - 1..)
        }
    }
}

/// A decision record inside a JSON-formatted log line (Envoy's `--log-format` with `%j`,
/// Istio's `--log_as_json`): the line is a JSON object, one of whose strings holds
/// `cordon.decision {...}`. Returns that record's JSON.
pub fn embedded_decision(line: &[u8]) -> Option<String> {
    const ESCAPED: &[u8] = b"cordon.decision {\\\"";
    let trimmed = line.get(line.iter().position(|b| !b.is_ascii_whitespace())?..)?;
    if trimmed.first() != Some(&b'{')
        || !trimmed
            .windows(ESCAPED.len())
            .any(|window| window == ESCAPED)
    {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(trimmed).ok()?;
    fn find(value: &serde_json::Value) -> Option<String> {
        match value {
            serde_json::Value::String(text) => {
                let at = text.find("cordon.decision {")?;
                text.get(at + "cordon.decision ".len()..)
                    .map(|json| json.trim_end().to_string())
            }
            serde_json::Value::Array(items) => items.iter().find_map(find),
            serde_json::Value::Object(map) => map.values().find_map(find),
            _ => None,
        }
    }
    find(&value)
}

/// Parses one line. `Ok(None)`: not a record.
pub fn parse_line(line: &[u8]) -> Result<Option<LiteRecord<'_>>, String> {
    match record_json(line) {
        None => Ok(None),
        Some(json) => serde_json::from_slice(json)
            .map(Some)
            .map_err(|error| format!("not a traffic record: {error}")),
    }
}

/// Reads every line of the files in order (`-` is standard input), calling `visit` with
/// the file, the 1-based line number and the line (without its newline). Memory stays at
/// one line. Stops at the first error `visit` returns.
pub fn for_each_line<E: From<std::io::Error>>(
    paths: &[PathBuf],
    mut visit: impl FnMut(&Path, usize, &[u8]) -> Result<(), E>,
) -> Result<(), E> {
    let mut buffer = Vec::with_capacity(4096);
    for path in paths {
        let reader: Box<dyn Read> = if path == Path::new("-") {
            Box::new(std::io::stdin())
        } else {
            Box::new(std::fs::File::open(path).map_err(|error| {
                std::io::Error::new(
                    error.kind(),
                    format!("cannot read {}: {error}", path.display()),
                )
            })?)
        };
        let mut reader = BufReader::with_capacity(1 << 20, reader);
        let mut number = 0usize;
        loop {
            buffer.clear();
            let read = reader.read_until(b'\n', &mut buffer).map_err(|error| {
                std::io::Error::new(
                    error.kind(),
                    format!("{}:{}: cannot read: {error}", path.display(), number + 1),
                )
            })?;
            if read == 0 {
                break;
            }
            number += 1;
            let line = buffer.strip_suffix(b"\n").unwrap_or(&buffer);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            visit(path, number, line)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn reads_records_and_decision_lines() {
        let line = br#"{"source":{"principal":"spiffe://td/ns/a/sa/b","ip":"10.0.0.1"},"destination":{"port":8080,"namespace":"x","labels":{"app":"y","version":"v1"}},"connection":{"mtls":true},"request":{"method":"GET","path":"/a\/b","host":"y","headers":{"h":["1","2"]},"auth":{"claims":{"sub":"z"}}},"time":"2026-11-27T01:00:00Z"}"#;
        let record = parse_line(line).unwrap().unwrap();
        assert_eq!(record.peer_identity(), Some("spiffe://td/ns/a/sa/b"));
        assert_eq!(record.namespace(), Some("x"));
        assert_eq!(record.labels().len(), 2);
        assert!(matches!(record.labels()[0].0 .0, Cow::Borrowed("app")));
        assert_eq!(record.path(), Some("/a/b"));
        assert_eq!(record.port(), Some(8080));
        assert!(!record.denied());

        let log = br#"[2026-11-27 01:00:00.000][12][info][wasm] [source/extensions/common/wasm/context.cc:1195] wasm log cordon: cordon.decision {"source":{"principal":null,"ip":"10.0.0.9"},"connection":{"mtls":false,"sni":null},"request":{"method":"GET","path":"/admin"},"decision":{"allowed":false,"enforced":true,"status":403,"dry_run":{"allowed":false,"policy":null}}}"#;
        let record = parse_line(log).unwrap().unwrap();
        assert_eq!(record.peer_identity(), None);
        assert!(record.denied());

        assert!(parse_line(b"   ").unwrap().is_none());
        assert!(parse_line(b"# comment").unwrap().is_none());
        assert!(parse_line(b"[info] starting envoy").unwrap().is_none());
        assert!(parse_line(b"{\"source\": 1}").is_err());
        assert!(parse_line(b"{\"source\": {").is_err());
    }

    #[test]
    fn finds_decisions_in_json_formatted_logs() {
        let line = br#"{"time":"2026-11-27T01:00:00.000Z","level":"info","name":"wasm","message":"wasm log cordon: cordon.decision {\"source\":{\"principal\":\"spiffe://td/ns/a/sa/b\"},\"request\":{\"method\":\"GET\",\"path\":\"/x\"}}"}"#;
        let json = embedded_decision(line).unwrap();
        let record = parse_line(json.as_bytes()).unwrap().unwrap();
        assert_eq!(record.peer_identity(), Some("spiffe://td/ns/a/sa/b"));
        assert_eq!(record.path(), Some("/x"));
        assert!(embedded_decision(br#"{"source":{}}"#).is_none());
    }
}
