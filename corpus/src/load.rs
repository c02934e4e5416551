//! Reading corpus files: every problem in every file is gathered, each named by file and
//! case, before loading fails.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::format::{Case, CaseOptions, Expect, RawFile};

/// The environment variable that restricts a run to the cases whose name contains it.
pub const FILTER_VARIABLE: &str = "CORDON_CORPUS_FILTER";

/// Why a corpus could not be loaded: every problem found, one line each, each naming the
/// file and, inside a file, the case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub(crate) problems: Vec<String>,
}

impl LoadError {
    pub(crate) fn new(problems: Vec<String>) -> LoadError {
        LoadError { problems }
    }

    /// The problems, one per line of the message.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the corpus has {} problem(s):", self.problems.len())?;
        for problem in &self.problems {
            write!(f, "\n  {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadError {}

/// One loaded corpus file.
#[derive(Debug, Clone)]
pub struct CorpusFile {
    /// The file name (`principals.json`), or the path as given for a file outside a
    /// corpus directory; failures are reported under it.
    pub name: String,
    /// What the file covers.
    pub description: String,
    /// The default policies of its cases.
    pub policies: Option<Vec<Value>>,
    /// The default options of its cases.
    pub options: CaseOptions,
    /// The cases, in file order.
    pub cases: Vec<Case>,
}

impl CorpusFile {
    /// Reads one file's text. `name` is used in error messages.
    ///
    /// # Example
    ///
    /// ```
    /// let text = r#"{"description": "d", "cases": [
    ///     {"name": "typo", "request": {}, "expect": {"decision": "deny", "polcy": null}}
    /// ]}"#;
    /// let error = cordon_corpus::CorpusFile::parse("t.json", text).unwrap_err();
    /// assert!(error.to_string().contains("t.json: case `typo`: unknown field `polcy`"));
    /// ```
    pub fn parse(name: &str, text: &str) -> Result<CorpusFile, LoadError> {
        let raw: RawFile = serde_json::from_str(text).map_err(|error| {
            LoadError::new(vec![format!(
                "{name}:{}:{}: {error}",
                error.line(),
                error.column()
            )])
        })?;
        let mut problems = Vec::new();
        let mut cases = Vec::with_capacity(raw.cases.len());
        for (index, value) in raw.cases.into_iter().enumerate() {
            let label = match value.get("name").and_then(Value::as_str) {
                Some(case) => format!("{name}: case `{case}`"),
                None => format!("{name}: cases[{index}]"),
            };
            match serde_json::from_value::<Case>(value) {
                Ok(case) => {
                    problems.extend(shape(&case).map(|problem| format!("{label}: {problem}")));
                    cases.push(case);
                }
                Err(error) => problems.push(format!("{label}: {error}")),
            }
        }
        if !problems.is_empty() {
            return Err(LoadError::new(problems));
        }
        Ok(CorpusFile {
            name: name.to_string(),
            description: raw.description,
            policies: raw.policies,
            options: raw.options.unwrap_or_default(),
            cases,
        })
    }

    /// Reads one file from disk, reported under its file name.
    pub fn read(path: &Path) -> Result<CorpusFile, LoadError> {
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |name| name.to_string_lossy().into_owned(),
        );
        let text = std::fs::read_to_string(path).map_err(|error| {
            LoadError::new(vec![format!("{}: cannot read: {error}", path.display())])
        })?;
        CorpusFile::parse(&name, &text)
    }
}

/// What serde cannot say: a decision needs a request, a rejection has none.
fn shape(case: &Case) -> Option<&'static str> {
    match (&case.expect, &case.request) {
        (Expect::Decision(_), None) => Some("expects a decision but has no `request`"),
        (Expect::Error(_), Some(_)) => {
            Some("expects its policies to be rejected, so a `request` would never be sent")
        }
        _ => None,
    }
}

/// A set of corpus files whose case names are unique across all of them.
#[derive(Debug, Clone)]
pub struct Corpus {
    files: Vec<CorpusFile>,
}

impl Corpus {
    /// Every `*.json` file of `dir`, in name order.
    pub fn load_dir(dir: &Path) -> Result<Corpus, LoadError> {
        let entries = std::fs::read_dir(dir).map_err(|error| {
            LoadError::new(vec![format!("{}: cannot list: {error}", dir.display())])
        })?;
        let mut paths = Vec::new();
        let mut problems = Vec::new();
        for entry in entries {
            match entry {
                Ok(entry) => paths.push(entry.path()),
                Err(error) => problems.push(format!("{}: cannot list: {error}", dir.display())),
            }
        }
        if !problems.is_empty() {
            return Err(LoadError::new(problems));
        }
        paths.retain(|path| path.extension().is_some_and(|ext| ext == "json"));
        paths.sort();
        Corpus::load_files(&paths)
    }

    /// The given files, in the order given.
    pub fn load_files(paths: &[PathBuf]) -> Result<Corpus, LoadError> {
        let mut problems = Vec::new();
        let mut files = Vec::new();
        for path in paths {
            match CorpusFile::read(path) {
                Ok(file) => files.push(file),
                Err(error) => problems.extend(error.problems),
            }
        }
        match Corpus::new(files) {
            Ok(corpus) if problems.is_empty() => Ok(corpus),
            Ok(_) => Err(LoadError::new(problems)),
            Err(error) => {
                problems.extend(error.problems);
                Err(LoadError::new(problems))
            }
        }
    }

    /// Files already read; fails when two cases share a name.
    pub fn new(files: Vec<CorpusFile>) -> Result<Corpus, LoadError> {
        let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
        let mut problems = Vec::new();
        for file in &files {
            for case in &file.cases {
                if let Some(first) = seen.insert(&case.name, &file.name) {
                    problems.push(format!(
                        "{}: case `{}`: duplicate name (also in {first})",
                        file.name, case.name
                    ));
                }
            }
        }
        if !problems.is_empty() {
            return Err(LoadError::new(problems));
        }
        Ok(Corpus { files })
    }

    /// The files.
    pub fn files(&self) -> &[CorpusFile] {
        &self.files
    }

    /// Every case with its file's defaults resolved, in file order.
    pub fn cases(&self) -> impl Iterator<Item = Entry<'_>> {
        self.files
            .iter()
            .flat_map(|file| file.cases.iter().map(move |case| Entry { file, case }))
    }

    /// The number of cases.
    pub fn len(&self) -> usize {
        self.files.iter().map(|file| file.cases.len()).sum()
    }

    /// Whether there is no case at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One case in its file: what an engine is given.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'c> {
    /// The file the case is in.
    pub file: &'c CorpusFile,
    /// The case as written.
    pub case: &'c Case,
}

impl<'c> Entry<'c> {
    /// The case's name.
    pub fn name(&self) -> &'c str {
        &self.case.name
    }

    /// The policies: the case's, else the file's, else none.
    pub fn policies(&self) -> &'c [Value] {
        self.case
            .policies
            .as_deref()
            .or(self.file.policies.as_deref())
            .unwrap_or_default()
    }

    /// The options: the case's keys over the file's.
    pub fn options(&self) -> CaseOptions {
        match &self.case.options {
            Some(options) => options.over(&self.file.options),
            None => self.file.options.clone(),
        }
    }

    /// Whether the case or its file sets any option (a tool that models only the default
    /// options skips these).
    pub fn sets_options(&self) -> bool {
        self.case.options.is_some() || self.file.options != CaseOptions::default()
    }

    /// The request, for a case that expects a decision.
    pub fn request(&self) -> Option<&'c Value> {
        self.case.request.as_ref()
    }

    /// What the case expects.
    pub fn expect(&self) -> &'c Expect {
        &self.case.expect
    }

    /// `file :: name`, how failures name a case.
    pub fn label(&self) -> String {
        format!("{} :: {}", self.file.name, self.case.name)
    }
}

/// Which cases a run executes: those whose name contains a substring, or all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    substring: Option<String>,
}

impl Filter {
    /// Every case.
    pub fn all() -> Filter {
        Filter::default()
    }

    /// The cases whose name contains `substring`.
    pub fn containing(substring: &str) -> Filter {
        Filter {
            substring: Some(substring.to_string()),
        }
    }

    /// From [`FILTER_VARIABLE`] (`CORDON_CORPUS_FILTER`); every case when it is unset or
    /// empty.
    pub fn from_env() -> Filter {
        match std::env::var(FILTER_VARIABLE) {
            Ok(substring) if !substring.is_empty() => Filter::containing(&substring),
            _ => Filter::all(),
        }
    }

    /// Whether the run is restricted.
    pub fn substring(&self) -> Option<&str> {
        self.substring.as_deref()
    }

    /// Whether the case named `name` runs.
    pub fn matches(&self, name: &str) -> bool {
        self.substring
            .as_deref()
            .is_none_or(|substring| name.contains(substring))
    }
}
