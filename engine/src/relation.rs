//! Exact relations between policy values: whether one value covers another (every request
//! value the inner one matches, the outer one matches too), whether two overlap, and a
//! witness: a concrete value one matches and the other does not.
//!
//! String and path values are all concatenations of literal bytes and character-class
//! loops (`abc*` is `abc` then any bytes; `/a/{*}` is `/a/` then one or more template
//! characters), so each is a small automaton, and a difference is searched breadth first
//! over pairs of automaton states: the answer is exact, and a witness found is a shortest
//! one. Used by the lints, `cordon audit`, `blast-radius` and `diff`, so that none of them
//! judges containment on its own.

use alloc::collections::{BTreeSet, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;

use crate::model::Matcher;
use crate::pattern::{is_template_char, IpBlock, PathPattern, StringPattern, TemplateSegment};

/// A set of bytes a loop or a single position accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Any byte.
    Any,
    /// Envoy's `uri_template` characters.
    Template,
    /// Those or `/`.
    TemplateOrSlash,
}

impl Class {
    fn contains(self, byte: u8) -> bool {
        match self {
            Class::Any => true,
            Class::Template => is_template_char(byte),
            Class::TemplateOrSlash => byte == b'/' || is_template_char(byte),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Item {
    Byte(u8),
    One(Class),
    Loop(Class),
}

/// A value as an automaton: positions `0..=items.len()`, accepting at the end.
#[derive(Debug, Clone)]
struct Language {
    items: Vec<Item>,
}

impl Language {
    fn of_string(pattern: &StringPattern, fold_case: bool) -> Language {
        let bytes = |text: &str| -> Vec<Item> {
            text.bytes()
                .map(|byte| Item::Byte(fold(byte, fold_case)))
                .collect()
        };
        let items = match pattern {
            StringPattern::Exact(text) => bytes(text),
            StringPattern::Prefix(text) => {
                let mut items = bytes(text);
                items.push(Item::Loop(Class::Any));
                items
            }
            StringPattern::Suffix(text) => {
                let mut items = alloc::vec![Item::Loop(Class::Any)];
                items.extend(bytes(text));
                items
            }
            StringPattern::Presence => alloc::vec![Item::One(Class::Any), Item::Loop(Class::Any)],
        };
        Language { items }
    }

    fn of_path(pattern: &PathPattern) -> Language {
        match pattern {
            PathPattern::Plain(pattern) => Language::of_string(pattern, false),
            PathPattern::Template(segments) => {
                let mut items = Vec::new();
                for segment in segments {
                    items.push(Item::Byte(b'/'));
                    match segment {
                        TemplateSegment::Literal(text) => {
                            items.extend(text.bytes().map(Item::Byte));
                        }
                        TemplateSegment::One => {
                            items.push(Item::One(Class::Template));
                            items.push(Item::Loop(Class::Template));
                        }
                        TemplateSegment::Rest => items.push(Item::Loop(Class::TemplateOrSlash)),
                    }
                }
                Language { items }
            }
        }
    }

    /// The positions reachable from `states` without consuming a byte (loops may be
    /// skipped).
    fn closure(&self, states: &mut BTreeSet<usize>) {
        let mut stack: Vec<usize> = states.iter().copied().collect();
        while let Some(state) = stack.pop() {
            if let Some(Item::Loop(_)) = self.items.get(state) {
                if states.insert(state + 1) {
                    stack.push(state + 1);
                }
            }
        }
    }

    fn start(&self) -> BTreeSet<usize> {
        let mut states = BTreeSet::new();
        states.insert(0);
        self.closure(&mut states);
        states
    }

    fn step(&self, states: &BTreeSet<usize>, byte: u8) -> BTreeSet<usize> {
        let mut next = BTreeSet::new();
        for state in states {
            match self.items.get(*state) {
                Some(Item::Byte(expected)) if *expected == byte => {
                    next.insert(state + 1);
                }
                Some(Item::One(class)) if class.contains(byte) => {
                    next.insert(state + 1);
                }
                Some(Item::Loop(class)) if class.contains(byte) => {
                    next.insert(*state);
                }
                _ => {}
            }
        }
        self.closure(&mut next);
        next
    }

    fn accepts(&self, states: &BTreeSet<usize>) -> bool {
        states.contains(&self.items.len())
    }

    fn literal_bytes(&self) -> impl Iterator<Item = u8> + '_ {
        self.items.iter().filter_map(|item| match item {
            Item::Byte(byte) => Some(*byte),
            _ => None,
        })
    }
}

fn fold(byte: u8, fold_case: bool) -> u8 {
    if fold_case {
        byte.to_ascii_lowercase()
    } else {
        byte
    }
}

/// How many state pairs a search may visit before it gives up (never reached by policy
/// values of ordinary length: the automata are linear).
const MAX_SEARCH_STATES: usize = 200_000;

/// The bytes worth trying: every literal byte of either automaton, and one byte of each
/// region the classes split the rest into (template characters, `/`, anything else).
fn alphabet(a: &Language, b: &Language, fold_case: bool) -> Vec<u8> {
    let mut bytes: BTreeSet<u8> = a.literal_bytes().chain(b.literal_bytes()).collect();
    let regions: [&[u8]; 3] = [
        b"xyzqjkvwXYZ0123456789-._~%!$&'()+,;:@",
        b"/",
        b"*= [];<>\"^`{|}#?\\\x7f\xc3",
    ];
    for region in regions {
        if let Some(byte) = region
            .iter()
            .map(|byte| fold(*byte, fold_case))
            .find(|byte| !bytes.contains(byte))
        {
            bytes.insert(byte);
        }
    }
    bytes.into_iter().collect()
}

/// What a search looks for: values of `a` that `b` does not match, or that it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Goal {
    Difference,
    Intersection,
}

/// A shortest value of `a` that `b` matches or does not match (`goal`); `None` when there
/// is none, `Some(Err(()))` when the search gave up.
fn search(a: &Language, b: &Language, goal: Goal, fold_case: bool) -> Option<Result<Vec<u8>, ()>> {
    let letters = alphabet(a, b, fold_case);
    let (start_a, start_b) = (a.start(), b.start());
    let mut seen: BTreeSet<(Vec<usize>, Vec<usize>)> = BTreeSet::new();
    let mut queue: VecDeque<(BTreeSet<usize>, BTreeSet<usize>, Vec<u8>)> = VecDeque::new();
    seen.insert((
        start_a.iter().copied().collect(),
        start_b.iter().copied().collect(),
    ));
    queue.push_back((start_a, start_b, Vec::new()));
    while let Some((states_a, states_b, word)) = queue.pop_front() {
        let found = a.accepts(&states_a)
            && match goal {
                Goal::Difference => !b.accepts(&states_b),
                Goal::Intersection => b.accepts(&states_b),
            };
        if found {
            return Some(Ok(word));
        }
        if seen.len() > MAX_SEARCH_STATES {
            return Some(Err(()));
        }
        for byte in &letters {
            let next_a = a.step(&states_a, *byte);
            let next_b = b.step(&states_b, *byte);
            if next_a.is_empty() || (goal == Goal::Intersection && next_b.is_empty()) {
                continue;
            }
            let key = (
                next_a.iter().copied().collect(),
                next_b.iter().copied().collect(),
            );
            if seen.insert(key) {
                let mut next_word = word.clone();
                next_word.push(*byte);
                queue.push_back((next_a, next_b, next_word));
            }
        }
    }
    None
}

/// The answer to "is there a value the first matches and the second does not?"
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    /// None: the second covers the first.
    Empty,
    /// This value (lossily shown as UTF-8 where a byte is not).
    Witness(String),
    /// The search gave up (pathologically long values); treat as unknown.
    Unknown,
}

/// A value `a` matches and `b` does not, for two values of the same attribute; `fold_case`
/// for case-insensitive attributes (hosts).
pub fn difference_of(a: &Matcher, b: &Matcher, fold_case: bool) -> Difference {
    match (a, b) {
        (Matcher::Ip(a), Matcher::Ip(b)) => ip_difference(a, b),
        (Matcher::Port(a), Matcher::Port(b)) => {
            if a == b {
                Difference::Empty
            } else {
                Difference::Witness(alloc::format!("{a}"))
            }
        }
        _ => match (language(a, fold_case), language(b, fold_case)) {
            (Some(la), Some(lb)) => match search(&la, &lb, Goal::Difference, fold_case) {
                None => Difference::Empty,
                Some(Ok(word)) => Difference::Witness(String::from_utf8_lossy(&word).into_owned()),
                Some(Err(())) => Difference::Unknown,
            },
            _ => Difference::Unknown,
        },
    }
}

/// Whether every value `inner` matches, `outer` matches too (`false` when unknown).
pub fn covers(outer: &Matcher, inner: &Matcher, fold_case: bool) -> bool {
    difference_of(inner, outer, fold_case) == Difference::Empty
}

/// Whether some value matches both (`true` when unknown, the safe answer for "might").
pub fn overlaps(a: &Matcher, b: &Matcher, fold_case: bool) -> bool {
    match (a, b) {
        (Matcher::Ip(a), Matcher::Ip(b)) => {
            a.ipv4 == b.ipv4 && {
                let shorter = a.prefix_len.min(b.prefix_len);
                let mask = crate::pattern::mask(shorter);
                a.network & mask == b.network & mask
            }
        }
        (Matcher::Port(a), Matcher::Port(b)) => a == b,
        _ => match (language(a, fold_case), language(b, fold_case)) {
            (Some(la), Some(lb)) => search(&la, &lb, Goal::Intersection, fold_case).is_some(),
            _ => true,
        },
    }
}

/// A value both match, if any.
pub fn common_value(a: &Matcher, b: &Matcher, fold_case: bool) -> Option<String> {
    let (la, lb) = (language(a, fold_case)?, language(b, fold_case)?);
    match search(&la, &lb, Goal::Intersection, fold_case) {
        Some(Ok(word)) => Some(String::from_utf8_lossy(&word).into_owned()),
        _ => None,
    }
}

fn language(matcher: &Matcher, fold_case: bool) -> Option<Language> {
    match matcher {
        Matcher::Str(pattern) => Some(Language::of_string(pattern, fold_case)),
        Matcher::Path(pattern) => Some(Language::of_path(pattern)),
        Matcher::Ip(_) | Matcher::Port(_) => None,
    }
}

fn ip_difference(a: &IpBlock, b: &IpBlock) -> Difference {
    let show = |block: &IpBlock, network: u128| -> String {
        if block.ipv4 {
            alloc::format!(
                "{}",
                core::net::Ipv4Addr::from((network & 0xffff_ffff) as u32)
            )
        } else {
            alloc::format!("{}", core::net::Ipv6Addr::from(network))
        }
    };
    if a.ipv4 != b.ipv4 {
        return Difference::Witness(show(a, a.network));
    }
    let covered =
        b.prefix_len <= a.prefix_len && a.network & crate::pattern::mask(b.prefix_len) == b.network;
    if covered {
        return Difference::Empty;
    }
    if a.network & crate::pattern::mask(b.prefix_len) != b.network {
        // b does not hold a's network address.
        return Difference::Witness(show(a, a.network));
    }
    // b sits strictly inside a: flip the first bit of b's network after a's prefix.
    let bit = 127u32.saturating_sub(u32::from(a.prefix_len));
    Difference::Witness(show(a, b.network ^ (1u128 << bit)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;

    fn s(text: &str) -> Matcher {
        Matcher::Str(StringPattern::parse(text))
    }

    fn p(text: &str) -> Matcher {
        Matcher::Path(PathPattern::parse(text).unwrap())
    }

    fn ip(text: &str) -> Matcher {
        Matcher::Ip(IpBlock::parse(text).unwrap())
    }

    fn witness(a: &Matcher, b: &Matcher) -> Option<String> {
        match difference_of(a, b, false) {
            Difference::Witness(value) => Some(value),
            Difference::Empty => None,
            Difference::Unknown => panic!("unknown"),
        }
    }

    #[test]
    fn strings() {
        assert!(covers(&s("*"), &s("abc"), false));
        assert!(covers(&s("ab*"), &s("abc*"), false));
        assert!(!covers(&s("abc*"), &s("ab*"), false));
        assert!(covers(&s("*c"), &s("abc"), false));
        assert!(!covers(&s("abc"), &s("*"), false));
        assert_eq!(witness(&s("ab*"), &s("abc*")).as_deref(), Some("ab"));
        assert!(overlaps(&s("a*"), &s("*b"), false));
        assert_eq!(
            common_value(&s("a*"), &s("*b"), false).as_deref(),
            Some("ab")
        );
        assert!(!overlaps(&s("a*"), &s("b*"), false));
        // Presence needs a non-empty value; `*` covers every other form.
        assert!(covers(&s("*"), &s("*x"), false));
        // Case folding for hosts.
        assert!(covers(&s("API.*"), &s("api.example.com"), true));
        assert!(!covers(&s("API.*"), &s("api.example.com"), false));
    }

    #[test]
    fn paths_and_templates() {
        assert!(covers(&p("/api/*"), &p("/api/{*}/items"), false));
        assert!(covers(&p("/api/{**}"), &p("/api/{*}/items"), false));
        assert!(!covers(&p("/api/{*}/items"), &p("/api/{**}"), false));
        // `{**}` takes template characters only: `/api/*` holds `/api/*`, `{**}` does not.
        assert_eq!(
            witness(&p("/api/*"), &p("/api/{**}")).as_deref(),
            Some("/api/*")
        );
        assert!(covers(&p("/store/{**}/cart"), &p("/store/{*}/cart"), false));
        assert!(overlaps(&p("/a/{*}"), &p("*b"), false));
        assert!(!overlaps(&p("/a/{*}"), &p("/b/*"), false));
        let w = witness(&p("/v1/{*}"), &p("/v1/x")).unwrap();
        assert!(PathPattern::parse("/v1/{*}").unwrap().matches(&w) && w != "/v1/x");
    }

    #[test]
    fn ip_blocks_and_ports() {
        assert!(covers(&ip("10.0.0.0/8"), &ip("10.1.0.0/16"), false));
        assert!(!covers(&ip("10.1.0.0/16"), &ip("10.0.0.0/8"), false));
        assert!(!covers(&ip("::/0"), &ip("10.0.0.0/8"), false));
        assert_eq!(
            witness(&ip("10.0.0.0/8"), &ip("10.0.0.0/16")).as_deref(),
            Some("10.128.0.0")
        );
        assert!(overlaps(&ip("10.0.0.0/8"), &ip("10.9.9.9"), false));
        assert!(!overlaps(&ip("10.0.0.0/8"), &ip("::/0"), false));
        assert!(covers(&Matcher::Port(80), &Matcher::Port(80), false));
        assert!(!overlaps(&Matcher::Port(80), &Matcher::Port(81), false));
    }
}
