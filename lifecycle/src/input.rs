//! Streaming traffic input: files (or standard input) read line by line. What a line
//! holds (a traffic record, an Envoy log line carrying a decision record, text or JSON
//! format, an ordinary log line, nothing, or a bad line) is the engine's one
//! classification, [`cordon_engine::traffic::classify`]; records are then read into
//! borrowed structs that hold only what the lifecycle tools look at, so a line costs one
//! pass of the JSON parser and almost no allocation. The borrowed reader checks the
//! record's structure as the engine's does (unknown fields are errors, and so are fields of
//! the wrong type among those it reads); it does not validate values it never reads (IP
//! addresses, header values, claims), which [`TrafficRecord`](cordon_engine::TrafficRecord)
//! does.

use std::borrow::Cow;
use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use cordon_engine::traffic::{classify, Line};
use serde::de::{IgnoredAny, MapAccess, Visitor};
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
#[serde(deny_unknown_fields)]
pub struct Source<'a> {
    /// `source.principal`.
    #[serde(borrow, default)]
    pub principal: Option<Text<'a>>,
    #[serde(default, rename = "ip")]
    _ip: Option<IgnoredAny>,
    #[serde(default, rename = "port")]
    _port: Option<IgnoredAny>,
}

/// `remote`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Remote {
    #[serde(default, rename = "ip")]
    _ip: Option<IgnoredAny>,
}

/// `destination`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Destination<'a> {
    /// `destination.port`.
    #[serde(default)]
    pub port: Option<u16>,
    /// `destination.namespace`.
    #[serde(borrow, default)]
    pub namespace: Option<Text<'a>>,
    /// `destination.labels`.
    #[serde(borrow, default)]
    pub labels: Option<Labels<'a>>,
    #[serde(default, rename = "ip")]
    _ip: Option<IgnoredAny>,
    #[serde(default, rename = "workload")]
    _workload: Option<IgnoredAny>,
}

/// `connection`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Connection {
    /// `connection.mtls`.
    #[serde(default)]
    pub mtls: Option<bool>,
    #[serde(default, rename = "sni")]
    _sni: Option<IgnoredAny>,
}

/// `request`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
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
    #[serde(default, rename = "headers")]
    _headers: Option<IgnoredAny>,
    #[serde(default, rename = "auth")]
    _auth: Option<IgnoredAny>,
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
    /// The HTTP status the filter answered with (200 when it let the request through;
    /// 403, 400 for a rejected path, 431 for oversized headers when it refused).
    #[serde(default)]
    pub status: Option<u16>,
}

/// The parts of a traffic record the lifecycle tools read; the other fields are checked
/// to be known and skipped.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiteRecord<'a> {
    /// `source`.
    #[serde(borrow, default)]
    pub source: Option<Source<'a>>,
    #[serde(default, rename = "remote")]
    _remote: Option<Remote>,
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
        self.destination.as_ref().and_then(|d| d.port)
    }

    /// Whether a decision record says the filter refused the request: `allowed: false`, or
    /// an error status (403, 400, 431). A record without a decision was observed
    /// forwarded.
    pub fn denied(&self) -> bool {
        self.decision.as_ref().is_some_and(|d| {
            d.allowed == Some(false) || d.status.is_some_and(|status| status >= 400)
        })
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

/// Reads one line with the engine's classification ([`classify`]) and, when it holds a
/// record, reads the record borrowed and hands it to `visit`. `Err`: the line is bad, and
/// why (the same reasons, for the same lines, as [`cordon_engine::traffic::read_line`]).
pub fn read_line<T>(
    line: &[u8],
    visit: impl FnOnce(&LiteRecord<'_>) -> T,
) -> Result<Line<T>, String> {
    classify(line)?.try_map(|found| {
        let record: LiteRecord<'_> = serde_json::from_slice(&found.json).map_err(|error| {
            found.form.error(&if error.is_data() {
                // The engine names the field; serde's message names the type.
                format!("{error}")
            } else {
                format!("invalid JSON: {error}")
            })
        })?;
        Ok(visit(&record))
    })
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

    /// What a line is, as either reader sees it.
    #[derive(Debug, PartialEq)]
    enum Seen {
        Record {
            principal: Option<String>,
            path: Option<String>,
        },
        LogLine,
        Nothing,
        Bad,
    }

    fn by_engine(line: &str) -> Seen {
        match cordon_engine::traffic::read_line(line.as_bytes()) {
            Ok(Line::Record(record)) => Seen::Record {
                principal: record.principal.clone(),
                path: record.path.clone(),
            },
            Ok(Line::LogLine) => Seen::LogLine,
            Ok(Line::Nothing) => Seen::Nothing,
            Err(_) => Seen::Bad,
        }
    }

    fn by_lite(line: &str) -> Seen {
        match read_line(line.as_bytes(), |record| Seen::Record {
            principal: record
                .source
                .as_ref()
                .and_then(|s| s.principal.as_ref())
                .map(|p| p.as_str().to_string()),
            path: record.path().map(str::to_string),
        }) {
            Ok(Line::Record(seen)) => seen,
            Ok(Line::LogLine) => Seen::LogLine,
            Ok(Line::Nothing) => Seen::Nothing,
            Err(_) => Seen::Bad,
        }
    }

    /// The shared set: every form of line the readers meet.
    const LINES: &[(&str, &str)] = &[
        (
            "plain",
            r#"{"source":{"principal":"spiffe://td/ns/a/sa/b","ip":"10.0.0.1"},"destination":{"port":8080,"namespace":"x","labels":{"app":"y"}},"connection":{"mtls":true,"sni":"y"},"request":{"method":"GET","path":"/a\/b","host":"y","headers":{"h":["1","2"]},"auth":{"claims":{"sub":"z"}}},"time":"2026-11-27T01:00:00Z"}"#,
        ),
        ("empty record", "{}"),
        (
            "text log",
            r#"[2026-11-27 01:00:00.000][12][info][wasm] [source/extensions/common/wasm/context.cc:1195] wasm log cordon: cordon.decision {"source":{"principal":null,"ip":"10.0.0.9"},"connection":{"mtls":false,"sni":null},"request":{"method":"GET","path":"/admin"},"decision":{"allowed":false,"enforced":true,"status":403,"dry_run":{"allowed":false,"policy":null}}}"#,
        ),
        (
            "JSON log",
            r#"{"time":"2026-11-27T01:00:00.000Z","level":"info","name":"wasm","message":"wasm log cordon: cordon.decision {\"source\":{\"principal\":\"spiffe://td/ns/a/sa/b\"},\"request\":{\"method\":\"GET\",\"path\":\"/x\"}}\n"}"#,
        ),
        (
            "escaped, nested",
            r#"{"log":{"level":"info","fields":["x","cordon.decision {\"request\":{\"path\":\"/q\\u0041\"},\"decision\":{\"allowed\":false}}"]}}"#,
        ),
        ("broken JSON", r#"{"source": {"principal": "#),
        (
            "broken JSON log",
            r#"{"level":"info","message":"cordon.decision {\"source\":"#,
        ),
        (
            "broken text log",
            "wasm log cordon: cordon.decision {\"source\": {",
        ),
        (
            "unknown field",
            r#"{"source":{"principal":"x","ipv6":"::1"}}"#,
        ),
        (
            "misspelt top-level field",
            r#"{"sourse":{},"request":{"path":"/"}}"#,
        ),
        ("wrong type", r#"{"request":{"path":7}}"#),
        (
            "ordinary text log",
            "[2026-11-27 01:00:00.000][1][info][main] starting main dispatch loop",
        ),
        (
            "ordinary JSON log",
            r#"{"time":"2026-11-27T01:00:00.000Z","level":"info","message":"starting"}"#,
        ),
        ("blank", "   "),
        ("comment", "# recorded at the shop"),
    ];

    #[test]
    fn the_two_readers_agree() {
        for (name, line) in LINES {
            assert_eq!(by_engine(line), by_lite(line), "{name}: {line}");
        }
        let seen: Vec<Seen> = LINES.iter().map(|(_, line)| by_lite(line)).collect();
        let kinds: Vec<&str> = seen
            .iter()
            .map(|seen| match seen {
                Seen::Record { .. } => "record",
                Seen::LogLine => "log line",
                Seen::Nothing => "nothing",
                Seen::Bad => "bad",
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "record", "record", "record", "record", "record", "bad", "bad", "bad", "bad",
                "bad", "bad", "log line", "log line", "nothing", "nothing"
            ]
        );
    }

    #[test]
    fn reads_records_borrowed() {
        let (_, line) = LINES[0];
        read_line(line.as_bytes(), |record| {
            assert_eq!(record.peer_identity(), Some("spiffe://td/ns/a/sa/b"));
            assert_eq!(record.namespace(), Some("x"));
            assert_eq!(record.labels().len(), 1);
            assert!(matches!(record.labels()[0].0 .0, Cow::Borrowed("app")));
            assert_eq!(record.path(), Some("/a/b"));
            assert_eq!(record.port(), Some(8080));
            assert!(!record.denied());
        })
        .unwrap();
        let (_, line) = LINES[2];
        read_line(line.as_bytes(), |record| {
            assert_eq!(record.peer_identity(), None);
            assert!(record.denied());
        })
        .unwrap();
        let (_, line) = LINES[4];
        read_line(line.as_bytes(), |record| {
            assert_eq!(record.path(), Some("/qA"));
            assert!(record.denied());
        })
        .unwrap();
    }
}
