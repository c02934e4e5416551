//! Reading AuthorizationPolicy files: YAML (multi-document) or JSON, from files or
//! directories (recursively), with the line and column of every field so that an error
//! can point at the exact place a person must fix.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;
use std::path::{Path, PathBuf};

use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// One policy as read from a file.
#[derive(Debug, Clone)]
pub struct PolicySource {
    /// The file it came from.
    pub file: PathBuf,
    /// The policy, as JSON.
    pub value: Value,
    /// Line (1-based) and column (1-based) of every field, keyed by the engine's field
    /// path syntax (`spec.rules[0].to[0].operation.paths[1]`); `""` is the document.
    pub locations: BTreeMap<String, (usize, usize)>,
}

impl PolicySource {
    /// Where a field is, or the nearest enclosing field that has a location.
    pub fn locate(&self, field: &str) -> (usize, usize) {
        let mut candidate = field.to_string();
        loop {
            if let Some(location) = self.locations.get(&candidate) {
                return *location;
            }
            // `a.b[key]` is how the engine names map entries such as labels; the file
            // records them as `a.b.key`.
            if let Some(open) = candidate.rfind('[') {
                let inner = candidate
                    .get(open + 1..candidate.len().saturating_sub(1))
                    .unwrap_or("");
                if !inner.is_empty() && !inner.bytes().all(|b| b.is_ascii_digit()) {
                    let dotted = format!("{}.{inner}", candidate.get(..open).unwrap_or(""));
                    if let Some(location) = self.locations.get(&dotted) {
                        return *location;
                    }
                }
            }
            match candidate.rfind(['.', '[']) {
                Some(cut) => candidate.truncate(cut),
                None if !candidate.is_empty() => candidate.clear(),
                None => return (1, 1),
            }
        }
    }
}

/// A file that could not be read or parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceError {
    /// The file.
    pub file: PathBuf,
    /// Line (1-based), when known.
    pub line: Option<usize>,
    /// Column (1-based), when known.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => write!(
                f,
                "{}:{line}:{column}: {}",
                self.file.display(),
                self.message
            ),
            (Some(line), None) => write!(f, "{}:{line}: {}", self.file.display(), self.message),
            _ => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for SourceError {}

/// Every `.yaml`, `.yml` and `.json` file under the paths (files as given, directories
/// recursively, in sorted order).
pub fn policy_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, SourceError> {
    let mut files = Vec::new();
    for path in paths {
        collect(path, &mut files, true)?;
    }
    Ok(files)
}

fn collect(path: &Path, files: &mut Vec<PathBuf>, explicit: bool) -> Result<(), SourceError> {
    let metadata = std::fs::metadata(path).map_err(|error| SourceError {
        file: path.to_path_buf(),
        line: None,
        column: None,
        message: format!("cannot read: {error}"),
    })?;
    if metadata.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|error| SourceError {
                file: path.to_path_buf(),
                line: None,
                column: None,
                message: format!("cannot list directory: {error}"),
            })?
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .collect();
        entries.sort();
        for entry in entries {
            collect(&entry, files, false)?;
        }
    } else if explicit
        || path
            .extension()
            .is_some_and(|ext| ext == "yaml" || ext == "yml" || ext == "json")
    {
        files.push(path.to_path_buf());
    }
    Ok(())
}

/// Reads every AuthorizationPolicy in the files under `paths` (`-` is standard input). A
/// JSON or YAML list, a `kind: List` or an `AuthorizationPolicyList` (what `kubectl get -o
/// yaml` writes) yields its items. Documents of other Kubernetes kinds are skipped, and
/// standard error gets one line naming them (a directory of manifests holds Deployments
/// too). Errors, each naming the file and line: a document whose `kind` looks like a
/// misspelt AuthorizationPolicy or is another `security.istio.io` kind cordon does not
/// read, and a path that yields no AuthorizationPolicy at all (a typo must never read as
/// "no policies", which allows everything).
pub fn load_policies(paths: &[PathBuf]) -> Result<Vec<PolicySource>, SourceError> {
    let mut policies = Vec::new();
    let mut skipped: BTreeMap<String, usize> = BTreeMap::new();
    for path in paths {
        let before = policies.len();
        let files = if path.as_os_str() == "-" {
            vec![path.clone()]
        } else {
            policy_files(std::slice::from_ref(path))?
        };
        for file in files {
            let text = read_text(&file)?;
            for document in
                parse_documents(&text).map_err(|(line, column, message)| SourceError {
                    file: file.clone(),
                    line: Some(line),
                    column: Some(column),
                    message,
                })?
            {
                push_policies(&file, document, "", &mut policies, &mut skipped)?;
            }
        }
        if policies.len() == before {
            return Err(SourceError {
                file: path.clone(),
                line: None,
                column: None,
                message: "no AuthorizationPolicy found here (documents of other kinds are skipped; check `kind` and the path)".to_string(),
            });
        }
    }
    if !skipped.is_empty() {
        let kinds: Vec<String> = skipped
            .iter()
            .map(|(kind, count)| {
                if *count == 1 {
                    kind.clone()
                } else {
                    format!("{kind} ×{count}")
                }
            })
            .collect();
        eprintln!(
            "note: skipped {} document{} of other kinds: {}",
            skipped.values().sum::<usize>(),
            if skipped.values().sum::<usize>() == 1 {
                ""
            } else {
                "s"
            },
            kinds.join(", ")
        );
    }
    Ok(policies)
}

fn read_text(file: &Path) -> Result<String, SourceError> {
    let unreadable = |error: std::io::Error| SourceError {
        file: file.to_path_buf(),
        line: None,
        column: None,
        message: format!("cannot read: {error}"),
    };
    if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).map_err(unreadable)?;
        Ok(text)
    } else {
        std::fs::read_to_string(file).map_err(unreadable)
    }
}

/// Other `security.istio.io` kinds: not policies cordon enforces, skipped like any
/// other kind.
const OTHER_ISTIO_SECURITY_KINDS: &[&str] = &["PeerAuthentication", "RequestAuthentication"];

/// Whether a kind that is not `AuthorizationPolicy` is one a person meant to be one.
fn looks_like_authorization_policy(kind: &str, api_version: Option<&str>) -> bool {
    let istio = api_version.is_some_and(|version| version.starts_with("security.istio.io/"));
    if istio && !OTHER_ISTIO_SECURITY_KINDS.contains(&kind) {
        return true;
    }
    let folded = kind.to_ascii_lowercase();
    folded.contains("authori")
        || cordon_engine::model::edit_distance(&folded, "authorizationpolicy") <= 3
}

fn push_policies(
    file: &Path,
    document: Located,
    prefix: &str,
    out: &mut Vec<PolicySource>,
    skipped: &mut BTreeMap<String, usize>,
) -> Result<(), SourceError> {
    let Located { value, locations } = document;
    let list_kind = |map: &Map<String, Value>| {
        matches!(
            map.get("kind").and_then(Value::as_str),
            Some("List" | "AuthorizationPolicyList")
        )
    };
    let items: Vec<(String, Value)> = match &value {
        Value::Null => return Ok(()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| (format!("{prefix}[{i}]"), item.clone()))
            .collect(),
        Value::Object(map) if list_kind(map) => match map.get("items") {
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| (format!("{prefix}items[{i}]"), item.clone()))
                .collect(),
            _ => return Ok(()),
        },
        _ => vec![(prefix.to_string(), value.clone())],
    };
    for (base, item) in items {
        let kind = item.get("kind").and_then(Value::as_str);
        if let Some(kind) = kind.filter(|kind| *kind != "AuthorizationPolicy") {
            let api_version = item.get("apiVersion").and_then(Value::as_str);
            if looks_like_authorization_policy(kind, api_version) {
                let (line, column) = locations
                    .get(&if base.is_empty() {
                        "kind".to_string()
                    } else {
                        format!("{base}.kind")
                    })
                    .copied()
                    .unwrap_or((1, 1));
                return Err(SourceError {
                    file: file.to_path_buf(),
                    line: Some(line),
                    column: Some(column),
                    message: format!(
                        "kind `{kind}` is not one cordon reads: expected `AuthorizationPolicy`"
                    ),
                });
            }
            *skipped.entry(kind.to_string()).or_default() += 1;
            continue;
        }
        // The paths under `base` are one contiguous run of the sorted map: a range, not a
        // scan of the whole document per item (which made a 3,000-policy list quadratic).
        let rebased = locations
            .range::<str, _>((Bound::Included(base.as_str()), Bound::Unbounded))
            .take_while(|(path, _)| path.starts_with(base.as_str()))
            .filter_map(|(path, location)| {
                let rest = path.strip_prefix(base.as_str())?;
                // `[1]` must not claim the locations of `[10]`.
                if !(base.is_empty() || rest.is_empty() || rest.starts_with(['.', '['])) {
                    return None;
                }
                let rest = rest.strip_prefix('.').unwrap_or(rest);
                Some((rest.to_string(), *location))
            })
            .collect();
        out.push(PolicySource {
            file: file.to_path_buf(),
            value: item,
            locations: rebased,
        });
    }
    Ok(())
}

/// A parsed document and the location of each of its nodes.
#[derive(Debug, Clone, Default)]
pub struct Located {
    /// The document.
    pub value: Value,
    /// Field path → (line, column), both 1-based.
    pub locations: BTreeMap<String, (usize, usize)>,
}

/// Parses YAML (every document of a stream) or JSON text into JSON values with locations.
/// Errors give (line, column, message).
pub fn parse_documents(text: &str) -> Result<Vec<Located>, (usize, usize, String)> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut builder, true).map_err(|error| {
        (
            error.marker().line(),
            error.marker().col() + 1,
            error.info().to_string(),
        )
    })?;
    if let Some(problem) = builder.problem {
        return Err(problem);
    }
    Ok(builder.documents)
}

enum Frame {
    Sequence {
        path: String,
        items: Vec<Value>,
    },
    Mapping {
        path: String,
        map: Map<String, Value>,
        key: Option<String>,
    },
}

#[derive(Default)]
struct Builder {
    documents: Vec<Located>,
    stack: Vec<Frame>,
    locations: BTreeMap<String, (usize, usize)>,
    anchors: BTreeMap<usize, Value>,
    problem: Option<(usize, usize, String)>,
}

impl Builder {
    /// The path of the node about to be added to the innermost container.
    fn next_path(&self) -> String {
        match self.stack.last() {
            None => String::new(),
            Some(Frame::Sequence { path, items }) => format!("{path}[{}]", items.len()),
            Some(Frame::Mapping {
                path,
                key: Some(key),
                ..
            }) => {
                if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                }
            }
            Some(Frame::Mapping { path, .. }) => path.clone(),
        }
    }

    fn add(&mut self, value: Value, anchor: usize, mark: Marker) {
        if anchor > 0 {
            self.anchors.insert(anchor, value.clone());
        }
        let mut problem = None;
        match self.stack.last_mut() {
            None => {
                let locations = std::mem::take(&mut self.locations);
                self.documents.push(Located { value, locations });
            }
            Some(Frame::Sequence { items, .. }) => items.push(value),
            Some(Frame::Mapping { map, key, .. }) => match key.take() {
                Some(name) => {
                    map.insert(name, value);
                }
                None => {
                    let name = match value {
                        Value::String(text) => text,
                        Value::Null => String::new(),
                        Value::Bool(flag) => flag.to_string(),
                        Value::Number(number) => number.to_string(),
                        _ => {
                            problem = Some("a mapping key must be a scalar".to_string());
                            String::new()
                        }
                    };
                    if map.contains_key(&name) {
                        problem = Some(format!("duplicate key `{name}`"));
                    }
                    *key = Some(name);
                }
            },
        }
        if let Some(message) = problem {
            self.problem
                .get_or_insert((mark.line(), mark.col() + 1, message));
        }
    }

    fn expecting_key(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Mapping { key: None, .. }))
    }
}

fn scalar(text: String, style: TScalarStyle) -> Value {
    if style != TScalarStyle::Plain {
        return Value::String(text);
    }
    match text.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Ok(integer) = text.parse::<i64>() {
        return Value::Number(integer.into());
    }
    let looks_numeric = text
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_digit() || b == b'-' || b == b'+' || b == b'.');
    if looks_numeric {
        if let Some(number) = text.parse::<f64>().ok().and_then(Number::from_f64) {
            return Value::Number(number);
        }
    }
    Value::String(text)
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        let location = (mark.line(), mark.col() + 1);
        match event {
            Event::Scalar(text, style, anchor, _) => {
                let path = self.next_path();
                if !self.expecting_key() {
                    self.locations.entry(path).or_insert(location);
                } else {
                    // A key's own location is where its field starts.
                    let key_path = match self.stack.last() {
                        Some(Frame::Mapping { path, .. }) if path.is_empty() => text.clone(),
                        Some(Frame::Mapping { path, .. }) => format!("{path}.{text}"),
                        _ => text.clone(),
                    };
                    self.locations.insert(key_path, location);
                }
                self.add(scalar(text, style), anchor, mark);
            }
            Event::SequenceStart(anchor, _) => {
                let path = self.next_path();
                self.locations.entry(path.clone()).or_insert(location);
                self.stack.push(Frame::Sequence {
                    path,
                    items: Vec::new(),
                });
                let _ = anchor;
            }
            Event::SequenceEnd => {
                if let Some(Frame::Sequence { items, .. }) = self.stack.pop() {
                    self.add(Value::Array(items), 0, mark);
                }
            }
            Event::MappingStart(anchor, _) => {
                let path = self.next_path();
                self.locations.entry(path.clone()).or_insert(location);
                self.stack.push(Frame::Mapping {
                    path,
                    map: Map::new(),
                    key: None,
                });
                let _ = anchor;
            }
            Event::MappingEnd => {
                if let Some(Frame::Mapping { map, .. }) = self.stack.pop() {
                    self.add(Value::Object(map), 0, mark);
                }
            }
            Event::Alias(anchor) => {
                let value = self.anchors.get(&anchor).cloned().unwrap_or(Value::Null);
                self.add(value, 0, mark);
            }
            Event::DocumentStart => self.locations.clear(),
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn yaml_documents_keep_locations() {
        let text = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: a\nspec:\n  rules:\n  - to:\n    - operation:\n        paths: [\"/x\", \"/y\"]\n---\nkind: Deployment\n";
        let documents = parse_documents(text).unwrap();
        assert_eq!(documents.len(), 2);
        let first = &documents[0];
        assert_eq!(
            first.value["spec"]["rules"][0]["to"][0]["operation"]["paths"][1],
            "/y"
        );
        assert_eq!(
            first.locations["spec.rules[0].to[0].operation.paths"],
            (9, 9)
        );
        assert_eq!(
            first.locations["spec.rules[0].to[0].operation.paths[1]"].0,
            9
        );
        assert_eq!(first.locations["metadata.name"], (4, 3));
    }

    #[test]
    fn scalars_resolve_like_kubernetes_yaml() {
        let documents = parse_documents("a: 8080\nb: \"8080\"\nc: true\nd: ~\ne: x\n").unwrap();
        let value = &documents[0].value;
        assert_eq!(value["a"], 8080);
        assert_eq!(value["b"], "8080");
        assert_eq!(value["c"], true);
        assert!(value["d"].is_null());
        assert_eq!(value["e"], "x");
    }

    #[test]
    fn errors_and_duplicates_have_positions() {
        let (line, _, message) = parse_documents("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(line >= 1, "{message}");
        let (line, _, message) = parse_documents("a: 1\na: 2\n").unwrap_err();
        assert_eq!(line, 2);
        assert!(message.contains("duplicate key"));
    }

    #[test]
    fn json_is_read_with_locations_too() {
        let documents = parse_documents(
            "[\n {\"kind\": \"AuthorizationPolicy\",\n  \"spec\": {\"action\": \"DENY\"}}\n]",
        )
        .unwrap();
        assert_eq!(documents[0].value[0]["spec"]["action"], "DENY");
        assert_eq!(documents[0].locations["[0].spec.action"].0, 3);
    }
}
