//! Sets of values as automata, and the one question `cordon diff` asks of them: is there a
//! value inside all of these sets and outside all of those, and which is a shortest one?
//!
//! [`ValueSet`] is the language of one policy value (or a union, for a principal that
//! stands for several trust domains), built by the same constructions as the pairwise
//! relations of [`crate::relation`]; [`find`] searches breadth first over tuples of
//! automaton states, so "none" is exact and a value found is a shortest one.

use alloc::collections::{BTreeSet, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;

use super::{identity_language, string_pieces, Class, Language, Piece, MAX_SEARCH_STATES};
use crate::model::{Attribute, Matcher};
use crate::pattern::StringPattern;

/// A set of attribute values, as an automaton.
#[derive(Debug, Clone)]
pub struct ValueSet {
    language: Language,
}

impl ValueSet {
    /// The values a string or path value matches; `fold_case` for hosts (the set then
    /// holds lowercase values only: compare folded values with it). `None` for IP blocks
    /// and ports.
    pub fn of_matcher(matcher: &Matcher, fold_case: bool) -> Option<ValueSet> {
        super::language(matcher, fold_case).map(|language| ValueSet { language })
    }

    /// Every value, the empty one included (`*` on a header: Envoy's `present_match`).
    pub fn any() -> ValueSet {
        ValueSet {
            language: Language::new(&[Piece::Loop(Class::Any)]),
        }
    }

    /// Every non-empty value.
    pub fn non_empty() -> ValueSet {
        ValueSet {
            language: Language::of_string(&StringPattern::Presence, false),
        }
    }

    /// The peer URIs an identity value (`principals`, `namespaces`, `serviceAccounts`,
    /// `trustDomains`) matches, for each of `patterns` (a value and the trust-domain
    /// aliases it stands for). `None` for other attributes.
    pub fn of_identity(attribute: &Attribute, patterns: &[StringPattern]) -> Option<ValueSet> {
        let languages = patterns
            .iter()
            .map(|pattern| identity_language(attribute, pattern))
            .collect::<Option<Vec<_>>>()?;
        Some(ValueSet {
            language: union(&languages),
        })
    }

    /// Values that start with `text`.
    pub fn starting_with(text: &str) -> ValueSet {
        ValueSet {
            language: Language::of_string(&StringPattern::Prefix(text.into()), false),
        }
    }

    /// Values that end with `text`.
    pub fn ending_with(text: &str) -> ValueSet {
        ValueSet {
            language: Language::of_string(&StringPattern::Suffix(text.into()), false),
        }
    }

    /// Values that hold `text` somewhere.
    pub fn containing(text: &str) -> ValueSet {
        let mut pieces = alloc::vec![Piece::Loop(Class::Any)];
        pieces.extend(text.bytes().map(Piece::Byte));
        pieces.push(Piece::Loop(Class::Any));
        ValueSet {
            language: Language::new(&pieces),
        }
    }

    /// Istio-shaped peer URIs, `spiffe://<td>/ns/<ns>/sa/<sa>` (segments without `/`).
    pub fn istio_identity() -> ValueSet {
        let segment = [Piece::One(Class::NotSlash), Piece::Loop(Class::NotSlash)];
        let mut pieces: Vec<Piece> = "spiffe://".bytes().map(Piece::Byte).collect();
        pieces.extend(segment.clone());
        pieces.extend("/ns/".bytes().map(Piece::Byte));
        pieces.extend(segment.clone());
        pieces.extend("/sa/".bytes().map(Piece::Byte));
        pieces.extend(segment);
        ValueSet {
            language: Language::new(&pieces),
        }
    }

    /// A string value of `pattern` (`spiffe://` put before it when `before` says so).
    pub fn of_pattern(pattern: &StringPattern, before: &str) -> ValueSet {
        ValueSet {
            language: Language::new(&string_pieces(pattern, false, before.as_bytes())),
        }
    }

    /// Whether the set holds `value` (already folded for a case-insensitive attribute).
    pub fn contains(&self, value: &str) -> bool {
        let mut states = self.language.start();
        for byte in value.bytes() {
            states = self.language.step(&states, byte);
            if states.is_empty() {
                return false;
            }
        }
        self.language.accepts(&states)
    }
}

/// One automaton accepting what any of `parts` accepts.
fn union(parts: &[Language]) -> Language {
    let mut edges: Vec<Vec<(super::Edge, usize)>> = alloc::vec![Vec::new()];
    let mut skips: Vec<Vec<usize>> = alloc::vec![Vec::new()];
    let mut accepts = Vec::new();
    for part in parts {
        let offset = edges.len();
        if let Some(start) = skips.get_mut(0) {
            start.push(offset);
        }
        for (state_edges, state_skips) in part.edges.iter().zip(&part.skips) {
            edges.push(
                state_edges
                    .iter()
                    .map(|(edge, to)| (*edge, to + offset))
                    .collect(),
            );
            skips.push(state_skips.iter().map(|to| to + offset).collect());
        }
        accepts.push(part.accept + offset);
    }
    let accept = edges.len();
    edges.push(Vec::new());
    skips.push(Vec::new());
    for state in accepts {
        if let Some(state_skips) = skips.get_mut(state) {
            state_skips.push(accept);
        }
    }
    Language {
        edges,
        skips,
        accept,
    }
}

/// What [`find`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// No value is in every `inside` set and outside every `outside` set.
    Nothing,
    /// A shortest such value (bytes that are not UTF-8 are shown lossily).
    Value(String),
    /// The search gave up (pathologically long values): unknown.
    GaveUp,
}

/// A shortest value inside every set of `inside` and outside every set of `outside`;
/// with no `inside` set, any value (the empty one first). `fold_case`: the sets hold
/// lowercase values only, so only those are tried.
pub fn find(inside: &[&ValueSet], outside: &[&ValueSet], fold_case: bool) -> Found {
    find_within(inside, outside, fold_case, MAX_SEARCH_STATES)
}

/// [`find`], giving up after visiting `max_states` tuples of states (for a value that is
/// only preferred, not required).
pub fn find_within(
    inside: &[&ValueSet],
    outside: &[&ValueSet],
    fold_case: bool,
    max_states: usize,
) -> Found {
    let all: Vec<&Language> = inside
        .iter()
        .chain(outside)
        .map(|set| &set.language)
        .collect();
    let letters = alphabet(&all, fold_case);
    let start: Vec<BTreeSet<usize>> = all.iter().map(|language| language.start()).collect();
    let key = |states: &[BTreeSet<usize>]| -> Vec<Vec<usize>> {
        states
            .iter()
            .map(|set| set.iter().copied().collect())
            .collect()
    };
    let mut seen: BTreeSet<Vec<Vec<usize>>> = BTreeSet::new();
    seen.insert(key(&start));
    let mut queue: VecDeque<(Vec<BTreeSet<usize>>, Vec<u8>)> = VecDeque::new();
    queue.push_back((start, Vec::new()));
    let count = inside.len();
    while let Some((states, word)) = queue.pop_front() {
        let found = all
            .iter()
            .zip(&states)
            .enumerate()
            .all(|(position, (language, set))| language.accepts(set) == (position < count));
        if found {
            return Found::Value(String::from_utf8_lossy(&word).into_owned());
        }
        if seen.len() > max_states {
            return Found::GaveUp;
        }
        for byte in &letters {
            let next: Vec<BTreeSet<usize>> = all
                .iter()
                .zip(&states)
                .map(|(language, set)| language.step(set, *byte))
                .collect();
            if next.iter().take(count).any(BTreeSet::is_empty) {
                continue;
            }
            if seen.insert(key(&next)) {
                let mut longer = word.clone();
                longer.push(*byte);
                queue.push_back((next, longer));
            }
        }
    }
    Found::Nothing
}

/// Every literal byte of the automata, and one byte of each region their classes split the
/// rest into (template characters, `/`, anything else), all ASCII so a value found is text.
fn alphabet(languages: &[&Language], fold_case: bool) -> Vec<u8> {
    let mut bytes: BTreeSet<u8> = languages
        .iter()
        .flat_map(|language| language.literal_bytes())
        .collect();
    let regions: [&[u8]; 3] = [
        b"xyzqjkvwXYZ0123456789-._~!$&'()+,;:@",
        b"/",
        b"*= []<>\"^`{|}#?\\",
    ];
    for region in regions {
        let fold = |byte: u8| {
            if fold_case {
                byte.to_ascii_lowercase()
            } else {
                byte
            }
        };
        if let Some(byte) = region
            .iter()
            .map(|byte| fold(*byte))
            .find(|byte| !bytes.contains(byte))
        {
            bytes.insert(byte);
        }
    }
    // Letters and digits first: of the shortest values, the one found reads like a name.
    let mut ordered: Vec<u8> = bytes.into_iter().collect();
    ordered.sort_by_key(|byte| (!byte.is_ascii_alphanumeric(), *byte));
    ordered
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;
    use crate::pattern::PathPattern;

    fn s(text: &str) -> ValueSet {
        ValueSet::of_matcher(&Matcher::Str(StringPattern::parse(text)), false).unwrap()
    }

    #[test]
    fn finds_values_inside_and_outside() {
        let (a, b, c) = (s("/api/*"), s("/api/v1*"), s("*.json"));
        assert_eq!(find(&[&a], &[&b], false), Found::Value("/api/".into()));
        assert_eq!(find(&[&b], &[&a], false), Found::Nothing);
        let Found::Value(value) = find(&[&a, &c], &[&b], false) else {
            panic!()
        };
        assert!(
            value.starts_with("/api/") && value.ends_with(".json") && !value.starts_with("/api/v1")
        );
        assert_eq!(find(&[], &[&a], false), Found::Value(String::new()));
        let template = ValueSet::of_matcher(
            &Matcher::Path(PathPattern::parse("/api/{*}").unwrap()),
            false,
        )
        .unwrap();
        assert_eq!(find(&[&template], &[&a], false), Found::Nothing);
        assert!(template.contains("/api/x") && !template.contains("/api/x/y"));
    }

    #[test]
    fn unions_of_identity_values() {
        let principals = ValueSet::of_identity(
            &Attribute::Principal,
            &[
                StringPattern::parse("td1/ns/a/sa/x"),
                StringPattern::parse("td2/ns/a/sa/x"),
            ],
        )
        .unwrap();
        assert!(principals.contains("spiffe://td1/ns/a/sa/x"));
        assert!(principals.contains("spiffe://td2/ns/a/sa/x"));
        assert!(!principals.contains("spiffe://td3/ns/a/sa/x"));
        let namespace =
            ValueSet::of_identity(&Attribute::Namespace, &[StringPattern::parse("a")]).unwrap();
        let Found::Value(peer) = find(
            &[&namespace, &ValueSet::istio_identity()],
            &[&principals],
            false,
        ) else {
            panic!()
        };
        assert!(peer.starts_with("spiffe://") && peer.contains("/ns/a/sa/"));
    }
}
