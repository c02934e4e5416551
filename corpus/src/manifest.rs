//! The manifest pins the number of cases in every corpus file, so that a deleted file, a
//! file nobody registered, lost cases or a run that skipped some fail instead of passing
//! with less.
//!
//! The format, `policies/corpus/MANIFEST`: one `<file> <cases>` line per corpus file;
//! blank lines and lines starting with `#` are ignored.

use std::collections::BTreeMap;
use std::path::Path;

use crate::load::{Corpus, LoadError};

/// The file name of the manifest inside a corpus directory.
pub const MANIFEST_FILE: &str = "MANIFEST";

/// The pinned number of cases of every corpus file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    counts: BTreeMap<String, usize>,
}

impl Manifest {
    /// Reads a manifest's text; `name` is used in error messages.
    ///
    /// # Example
    ///
    /// ```
    /// let manifest = cordon_corpus::Manifest::parse("MANIFEST", "# pinned\nhosts.json 26\n").unwrap();
    /// assert_eq!(manifest.count("hosts.json"), Some(26));
    /// assert_eq!(manifest.total(), 26);
    /// ```
    pub fn parse(name: &str, text: &str) -> Result<Manifest, LoadError> {
        let mut counts = BTreeMap::new();
        let mut problems = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = format!("{name}:{}", number + 1);
            let mut words = line.split_whitespace();
            let (Some(file), Some(count), None) = (words.next(), words.next(), words.next()) else {
                problems.push(format!("{at}: expected `<file> <cases>`, found `{line}`"));
                continue;
            };
            let Ok(count) = count.parse::<usize>() else {
                problems.push(format!("{at}: `{count}` is not a number of cases"));
                continue;
            };
            if counts.insert(file.to_string(), count).is_some() {
                problems.push(format!("{at}: `{file}` is listed twice"));
            }
        }
        if problems.is_empty() {
            Ok(Manifest { counts })
        } else {
            Err(LoadError::new(problems))
        }
    }

    /// Reads `dir/MANIFEST`.
    pub fn read_dir(dir: &Path) -> Result<Manifest, LoadError> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(|error| {
            LoadError::new(vec![format!(
                "{}: cannot read the case-count manifest: {error}",
                path.display()
            )])
        })?;
        Manifest::parse(&path.display().to_string(), &text)
    }

    /// The pinned number of cases of `file`.
    pub fn count(&self, file: &str) -> Option<usize> {
        self.counts.get(file).copied()
    }

    /// The pinned number of cases in all files.
    pub fn total(&self) -> usize {
        self.counts.values().sum()
    }

    /// Every file with its pinned count.
    pub fn counts(&self) -> impl Iterator<Item = (&str, usize)> {
        self.counts
            .iter()
            .map(|(file, count)| (file.as_str(), *count))
    }

    /// Compares per-file counts with the pinned ones: a pinned file that is absent, a
    /// file that is not pinned, or a different count is a problem.
    pub fn compare<'f>(
        &self,
        found: impl IntoIterator<Item = (&'f str, usize)>,
        what: &str,
    ) -> Vec<String> {
        let found: BTreeMap<&str, usize> = found.into_iter().collect();
        let mut problems = Vec::new();
        for (file, &count) in &found {
            match self.count(file) {
                None => problems.push(format!(
                    "{file}: {count} cases {what}, but the file has no line in {MANIFEST_FILE} (add `{file} {count}`)"
                )),
                Some(pinned) if pinned != count => problems.push(format!(
                    "{file}: {count} cases {what}, {MANIFEST_FILE} pins {pinned}"
                )),
                Some(_) => {}
            }
        }
        for (file, pinned) in self.counts() {
            if !found.contains_key(file) {
                problems.push(format!(
                    "{file}: pinned at {pinned} cases in {MANIFEST_FILE}, but no case of it was {what}"
                ));
            }
        }
        problems
    }

    /// Checks a loaded corpus against the pins.
    pub fn check(&self, corpus: &Corpus) -> Result<(), LoadError> {
        let problems = self.compare(
            corpus
                .files()
                .iter()
                .map(|file| (file.name.as_str(), file.cases.len())),
            "loaded",
        );
        if problems.is_empty() {
            Ok(())
        } else {
            Err(LoadError::new(problems))
        }
    }
}

impl Corpus {
    /// Every `*.json` file of `dir`, checked against `dir/MANIFEST`: the corpus in
    /// `policies/corpus` is loaded this way.
    pub fn load_pinned(dir: &Path) -> Result<(Corpus, Manifest), LoadError> {
        let corpus = Corpus::load_dir(dir);
        let manifest = Manifest::read_dir(dir);
        match (corpus, manifest) {
            (Ok(corpus), Ok(manifest)) => {
                manifest.check(&corpus)?;
                Ok((corpus, manifest))
            }
            (Err(one), Ok(_)) | (Ok(_), Err(one)) => Err(one),
            (Err(mut first), Err(second)) => {
                first.problems.extend(second.problems);
                Err(first)
            }
        }
    }
}
