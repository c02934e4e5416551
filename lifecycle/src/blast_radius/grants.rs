//! What a grant is made of: the `to` operations of ALLOW rules, split per path, minus what
//! DENY rules take away (the engine's relations decide coverage and overlap), regrouped
//! into [`Grant`]s.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use cordon_engine::model::{Attribute, Clause, Matcher};
use cordon_engine::partial::Truth;
use cordon_engine::pattern::{PathPattern, StringPattern};
use cordon_engine::relation;

use super::{Grant, Judgement};

/// One `to` operation, read for matching and subtraction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Operation {
    methods: Option<BTreeSet<String>>,
    paths: Option<Vec<PathPattern>>,
    hosts: Vec<String>,
    ports: Vec<String>,
    excluded: Vec<String>,
}

impl Operation {
    pub(super) fn from_clause(clause: &Clause) -> Operation {
        let mut operation = Operation::default();
        for field in &clause.fields {
            let texts: Vec<String> = field.values.iter().map(Matcher::to_istio).collect();
            let name = field.location.rsplit('.').next().unwrap_or("");
            if field.negated {
                operation
                    .excluded
                    .push(format!("{name} [{}]", texts.join(", ")));
                continue;
            }
            match field.attribute {
                Attribute::Method => {
                    let any = field
                        .values
                        .iter()
                        .any(|m| matches!(m, Matcher::Str(StringPattern::Presence)));
                    if !any {
                        operation.methods = Some(texts.into_iter().collect());
                    }
                }
                Attribute::Path => {
                    operation.paths = Some(
                        field
                            .values
                            .iter()
                            .filter_map(|m| match m {
                                Matcher::Path(pattern) => Some(pattern.clone()),
                                _ => None,
                            })
                            .collect(),
                    );
                }
                Attribute::Host => operation.hosts = texts,
                Attribute::DestinationPort => operation.ports = texts,
                _ => operation
                    .excluded
                    .push(format!("{name} [{}]", texts.join(", "))),
            }
        }
        operation
    }

    /// Whether it restricts more than methods and paths.
    fn has_other_constraints(&self) -> bool {
        !self.hosts.is_empty() || !self.ports.is_empty() || !self.excluded.is_empty()
    }

    fn describe(&self) -> String {
        let methods = self
            .methods
            .as_ref()
            .map(|m| m.iter().cloned().collect::<Vec<_>>().join(","));
        let paths = self.paths.as_ref().map(|paths| {
            paths
                .iter()
                .map(|p| Matcher::Path(p.clone()).to_istio())
                .collect::<Vec<_>>()
                .join(", ")
        });
        let mut text = match (methods, paths) {
            (Some(m), Some(p)) => format!("{m} {p}"),
            (Some(m), None) => format!("{m} on any path"),
            (None, Some(p)) => p,
            (None, None) => "everything".to_string(),
        };
        if !self.hosts.is_empty() {
            text.push_str(&format!(" on hosts {}", self.hosts.join(", ")));
        }
        if !self.ports.is_empty() {
            text.push_str(&format!(" on ports {}", self.ports.join(", ")));
        }
        for excluded in &self.excluded {
            text.push_str(&format!(" not {excluded}"));
        }
        text
    }
}

/// One grant for one path (or any path), before regrouping.
#[derive(Debug, Clone)]
pub(super) struct Atom {
    rule: Option<String>,
    methods: Option<BTreeSet<String>>,
    path: Option<PathPattern>,
    hosts: Vec<String>,
    ports: Vec<String>,
    excluded: Vec<String>,
    conditions: Vec<String>,
    except: Vec<String>,
}

impl Atom {
    pub(super) fn any(rule: Option<String>, conditions: Vec<String>) -> Atom {
        Atom {
            rule,
            methods: None,
            path: None,
            hosts: Vec::new(),
            ports: Vec::new(),
            excluded: Vec::new(),
            conditions,
            except: Vec::new(),
        }
    }

    pub(super) fn from_clause(
        clause: &Clause,
        rule: Option<&str>,
        conditions: &[String],
    ) -> Vec<Atom> {
        let operation = Operation::from_clause(clause);
        let base = Atom {
            rule: rule.map(str::to_string),
            methods: operation.methods.clone(),
            path: None,
            hosts: operation.hosts.clone(),
            ports: operation.ports.clone(),
            excluded: operation.excluded.clone(),
            conditions: conditions.to_vec(),
            except: Vec::new(),
        };
        match &operation.paths {
            None => vec![base],
            Some(paths) => paths
                .iter()
                .map(|path| Atom {
                    path: Some(path.clone()),
                    ..base.clone()
                })
                .collect(),
        }
    }

    /// What is left of the atom after a DENY operation; `None` when nothing is.
    pub(super) fn minus(
        mut self,
        denial: &Operation,
        rule: &str,
        judgement: &Judgement,
        relations: &Relations,
    ) -> Option<Atom> {
        let path_covered = match (&denial.paths, &self.path) {
            (None, _) => true,
            (Some(denied), Some(path)) => denied.iter().any(|d| relations.paths(d, path).0),
            (Some(_), None) => false,
        };
        let path_overlaps = match (&denial.paths, &self.path) {
            (None, _) | (Some(_), None) => true,
            (Some(denied), Some(path)) => denied.iter().any(|d| relations.paths(d, path).1),
        };
        // Method values may be patterns (`P*`, `*`): the engine's relations judge them.
        let methods_overlap = match (&denial.methods, &self.methods) {
            (Some(denied), Some(mine)) => denied
                .iter()
                .any(|d| mine.iter().any(|m| relations.methods(d, m).1)),
            _ => true,
        };
        if !path_overlaps || !methods_overlap {
            return Some(self);
        }
        let unconditional = judgement.tri == Truth::Yes && !denial.has_other_constraints();
        if !unconditional {
            let mut note = format!("{} (may be denied by {rule}", denial.describe());
            if !judgement.conditions.is_empty() {
                note.push_str(&format!(" if {}", judgement.conditions.join(" and ")));
            }
            note.push(')');
            self.except.push(note);
            return Some(self);
        }
        let covered_method = |mine: &String, denied: &BTreeSet<String>| {
            denied.iter().any(|d| relations.methods(d, mine).0)
        };
        let methods_covered = match (&denial.methods, &self.methods) {
            (None, _) => true,
            (Some(denied), Some(mine)) => mine.iter().all(|m| covered_method(m, denied)),
            (Some(_), None) => false,
        };
        if path_covered && methods_covered {
            return None;
        }
        if path_covered {
            if let (Some(denied), Some(mine)) = (&denial.methods, &self.methods) {
                self.methods = Some(
                    mine.iter()
                        .filter(|m| !covered_method(m, denied))
                        .cloned()
                        .collect(),
                );
                return Some(self);
            }
        }
        self.except
            .push(format!("{} (denied by {rule})", denial.describe()));
        Some(self)
    }
}

pub(super) fn regroup(atoms: Vec<Atom>) -> Vec<Grant> {
    type Key = (
        Option<String>,
        Option<Vec<String>>,
        Vec<String>,
        Vec<String>,
        Vec<String>,
        Vec<String>,
        Vec<String>,
    );
    let mut groups: BTreeMap<Key, (Vec<String>, bool)> = BTreeMap::new();
    for atom in atoms {
        let key = (
            atom.rule,
            atom.methods.map(|m| m.into_iter().collect()),
            atom.hosts,
            atom.ports,
            atom.excluded,
            atom.conditions,
            atom.except,
        );
        let entry = groups.entry(key).or_default();
        match atom.path {
            Some(path) => {
                let text = Matcher::Path(path).to_istio();
                if !entry.0.contains(&text) {
                    entry.0.push(text);
                }
            }
            None => entry.1 = true,
        }
    }
    groups
        .into_iter()
        .map(
            |((rule, methods, hosts, ports, excluded, conditions, except), (paths, any))| Grant {
                rule,
                methods,
                paths: (!any).then_some(paths),
                hosts,
                ports,
                excluded,
                conditions,
                except,
            },
        )
        .collect()
}

/// Whether every path `inner` matches, `outer` matches too (the engine's exact relation).
pub(super) fn covers(outer: &PathPattern, inner: &PathPattern) -> bool {
    relation::covers(
        &Matcher::Path(outer.clone()),
        &Matcher::Path(inner.clone()),
        false,
    )
}

/// Whether some path matches both (the engine's exact relation).
pub(super) fn overlaps(a: &PathPattern, b: &PathPattern) -> bool {
    relation::overlaps(&Matcher::Path(a.clone()), &Matcher::Path(b.clone()), false)
}

/// The engine's relations between the paths and methods of grants and DENY rules, each
/// pair asked once: a mesh repeats the same few paths in thousands of rules, and every
/// question is a search over two automata. Holds one entry per pair of values the policies
/// write, so it grows with the input.
#[derive(Debug, Default)]
pub(super) struct Relations {
    paths: RefCell<HashMap<(PathPattern, PathPattern), (bool, bool)>>,
    methods: RefCell<HashMap<(String, String), (bool, bool)>>,
}

impl Relations {
    /// (`denied` covers `path`, they overlap).
    fn paths(&self, denied: &PathPattern, path: &PathPattern) -> (bool, bool) {
        let key = (denied.clone(), path.clone());
        if let Some(known) = self.paths.borrow().get(&key) {
            return *known;
        }
        let answer = (covers(denied, path), overlaps(denied, path));
        self.paths.borrow_mut().insert(key, answer);
        answer
    }

    /// (`denied` covers `method`, they overlap); method values may be patterns (`P*`).
    fn methods(&self, denied: &str, method: &str) -> (bool, bool) {
        let key = (denied.to_string(), method.to_string());
        if let Some(known) = self.methods.borrow().get(&key) {
            return *known;
        }
        let (d, m) = (
            Matcher::Str(StringPattern::parse(denied)),
            Matcher::Str(StringPattern::parse(method)),
        );
        let answer = (
            relation::covers(&d, &m, false),
            relation::overlaps(&d, &m, false),
        );
        self.methods.borrow_mut().insert(key, answer);
        answer
    }
}
