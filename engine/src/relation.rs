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

use crate::model::{Attribute, Matcher};
use crate::pattern::{is_template_char, IpBlock, PathPattern, StringPattern, TemplateSegment};

pub mod region;

/// A set of bytes a loop or a single position accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Any byte.
    Any,
    /// Any byte but `/` (a path or SPIFFE ID segment).
    NotSlash,
    /// Envoy's `uri_template` characters.
    Template,
    /// Those or `/`.
    TemplateOrSlash,
}

impl Class {
    fn contains(self, byte: u8) -> bool {
        match self {
            Class::Any => true,
            Class::NotSlash => byte != b'/',
            Class::Template => is_template_char(byte),
            Class::TemplateOrSlash => byte == b'/' || is_template_char(byte),
        }
    }
}

/// One piece of a value's language: the languages here are sequences of these.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Byte(u8),
    One(Class),
    Loop(Class),
    /// The pieces, or nothing.
    Optional(Vec<Piece>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Edge {
    Byte(u8),
    Class(Class),
}

/// A value as a nondeterministic automaton: state 0 starts, `accept` accepts.
#[derive(Debug, Clone)]
struct Language {
    /// Per state: the byte edges leaving it.
    edges: Vec<Vec<(Edge, usize)>>,
    /// Per state: the states reached without consuming a byte.
    skips: Vec<Vec<usize>>,
    accept: usize,
}

impl Language {
    fn new(pieces: &[Piece]) -> Language {
        let mut language = Language {
            edges: alloc::vec![Vec::new()],
            skips: alloc::vec![Vec::new()],
            accept: 0,
        };
        language.accept = language.add(0, pieces);
        language
    }

    fn state(&mut self) -> usize {
        self.edges.push(Vec::new());
        self.skips.push(Vec::new());
        self.edges.len() - 1
    }

    /// Adds `pieces` after state `from`; returns the state after them.
    fn add(&mut self, from: usize, pieces: &[Piece]) -> usize {
        let mut at = from;
        for piece in pieces {
            at = match piece {
                Piece::Byte(byte) => self.edge(at, Edge::Byte(*byte)),
                Piece::One(class) => self.edge(at, Edge::Class(*class)),
                Piece::Loop(class) => {
                    let looping = self.state();
                    if let Some(skips) = self.skips.get_mut(at) {
                        skips.push(looping);
                    }
                    if let Some(edges) = self.edges.get_mut(looping) {
                        edges.push((Edge::Class(*class), looping));
                    }
                    looping
                }
                Piece::Optional(inner) => {
                    let end = self.add(at, inner);
                    if let Some(skips) = self.skips.get_mut(at) {
                        skips.push(end);
                    }
                    end
                }
            };
        }
        at
    }

    fn edge(&mut self, from: usize, edge: Edge) -> usize {
        let to = self.state();
        if let Some(edges) = self.edges.get_mut(from) {
            edges.push((edge, to));
        }
        to
    }

    fn of_string(pattern: &StringPattern, fold_case: bool) -> Language {
        Language::new(&string_pieces(pattern, fold_case, &[]))
    }

    fn of_path(pattern: &PathPattern) -> Language {
        match pattern {
            PathPattern::Plain(pattern) => Language::of_string(pattern, false),
            PathPattern::Template(segments) => {
                let mut pieces = Vec::new();
                for segment in segments {
                    pieces.push(Piece::Byte(b'/'));
                    match segment {
                        TemplateSegment::Literal(text) => {
                            pieces.extend(text.bytes().map(Piece::Byte));
                        }
                        TemplateSegment::One => {
                            pieces.push(Piece::One(Class::Template));
                            pieces.push(Piece::Loop(Class::Template));
                        }
                        TemplateSegment::Rest => pieces.push(Piece::Loop(Class::TemplateOrSlash)),
                    }
                }
                Language::new(&pieces)
            }
        }
    }

    /// The states reachable from `states` without consuming a byte.
    fn closure(&self, states: &mut BTreeSet<usize>) {
        let mut stack: Vec<usize> = states.iter().copied().collect();
        while let Some(state) = stack.pop() {
            for next in self.skips.get(state).map(Vec::as_slice).unwrap_or(&[]) {
                if states.insert(*next) {
                    stack.push(*next);
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
            for (edge, to) in self.edges.get(*state).map(Vec::as_slice).unwrap_or(&[]) {
                let takes = match edge {
                    Edge::Byte(expected) => *expected == byte,
                    Edge::Class(class) => class.contains(byte),
                };
                if takes {
                    next.insert(*to);
                }
            }
        }
        self.closure(&mut next);
        next
    }

    fn accepts(&self, states: &BTreeSet<usize>) -> bool {
        states.contains(&self.accept)
    }

    fn literal_bytes(&self) -> impl Iterator<Item = u8> + '_ {
        self.edges
            .iter()
            .flatten()
            .filter_map(|(edge, _)| match edge {
                Edge::Byte(byte) => Some(*byte),
                Edge::Class(_) => None,
            })
    }
}

/// The pieces of a string pattern, after `before` (a fixed prefix such as `spiffe://`).
fn string_pieces(pattern: &StringPattern, fold_case: bool, before: &[u8]) -> Vec<Piece> {
    let bytes = |text: &str| -> Vec<Piece> {
        text.bytes()
            .map(|byte| Piece::Byte(fold(byte, fold_case)))
            .collect()
    };
    let mut pieces: Vec<Piece> = before.iter().map(|byte| Piece::Byte(*byte)).collect();
    match pattern {
        StringPattern::Exact(text) => pieces.extend(bytes(text)),
        StringPattern::Prefix(text) => {
            pieces.extend(bytes(text));
            pieces.push(Piece::Loop(Class::Any));
        }
        StringPattern::Suffix(text) => {
            pieces.push(Piece::Loop(Class::Any));
            pieces.extend(bytes(text));
        }
        StringPattern::Presence => {
            pieces.push(Piece::One(Class::Any));
            pieces.push(Piece::Loop(Class::Any));
        }
    }
    pieces
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

/// The peer URIs an identity field's value matches, read off the matcher istiod generates
/// for it (see [`crate::identity`]); `None` for other attributes.
fn identity_language(attribute: &Attribute, pattern: &StringPattern) -> Option<Language> {
    let bytes = |text: &str| text.bytes().map(Piece::Byte).collect::<Vec<_>>();
    let any_non_empty = [Piece::One(Class::Any), Piece::Loop(Class::Any)];
    let scheme = bytes("spiffe://");
    let pieces = match attribute {
        Attribute::Principal => match pattern {
            StringPattern::Presence => any_non_empty.to_vec(),
            other => string_pieces(other, false, b"spiffe://"),
        },
        Attribute::Namespace => {
            let mut pieces = alloc::vec![Piece::Loop(Class::Any)];
            pieces.extend(bytes("/ns/"));
            match pattern {
                StringPattern::Exact(text) => pieces.extend(bytes(text)),
                StringPattern::Prefix(text) => {
                    pieces.extend(bytes(text));
                    pieces.push(Piece::Loop(Class::Any));
                }
                StringPattern::Suffix(text) => {
                    pieces.push(Piece::Loop(Class::Any));
                    pieces.extend(bytes(text));
                }
                StringPattern::Presence => pieces.push(Piece::Loop(Class::Any)),
            }
            pieces.push(Piece::Byte(b'/'));
            pieces.push(Piece::Loop(Class::Any));
            pieces
        }
        Attribute::ServiceAccount => {
            let (namespace, account) = pattern.text().split_once('/')?;
            let mut pieces = scheme;
            pieces.extend(any_non_empty);
            pieces.extend(bytes(&alloc::format!("/ns/{namespace}/")));
            pieces.push(Piece::Optional(alloc::vec![
                Piece::One(Class::Any),
                Piece::Loop(Class::Any),
                Piece::Byte(b'/'),
            ]));
            pieces.extend(bytes(&alloc::format!("sa/{account}")));
            pieces.push(Piece::Optional(alloc::vec![
                Piece::Byte(b'/'),
                Piece::One(Class::Any),
                Piece::Loop(Class::Any),
            ]));
            pieces
        }
        Attribute::TrustDomain => {
            let mut pieces = scheme;
            match pattern {
                StringPattern::Presence => {
                    pieces.push(Piece::Loop(Class::Any));
                    return Some(Language::new(&pieces));
                }
                StringPattern::Exact(text) => pieces.extend(bytes(text)),
                StringPattern::Prefix(text) => {
                    pieces.extend(bytes(text));
                    pieces.push(Piece::Loop(Class::NotSlash));
                }
                StringPattern::Suffix(text) => {
                    pieces.push(Piece::Loop(Class::NotSlash));
                    pieces.extend(bytes(text));
                }
            }
            pieces.push(Piece::Byte(b'/'));
            pieces.push(Piece::Loop(Class::Any));
            pieces
        }
        _ => return None,
    };
    Some(Language::new(&pieces))
}

/// A set of peers a question is asked about (see [`crate::partial`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PeerClass {
    /// No peer identity.
    Plaintext,
    /// One peer URI SAN, exactly (`spiffe://cluster.local/ns/shop/sa/frontend`).
    Uri(String),
    /// Istio identities of one service account in any trust domain:
    /// `spiffe://<td>/ns/<namespace>/sa/<name>`.
    ServiceAccount {
        /// The namespace.
        namespace: String,
        /// The service account.
        name: String,
    },
    /// Istio identities of any service account of a namespace, in any trust domain.
    Namespace(String),
    /// Any peer identity at all.
    Authenticated,
}

impl PeerClass {
    fn language(&self) -> Option<Language> {
        let bytes = |text: &str| text.bytes().map(Piece::Byte).collect::<Vec<_>>();
        let segment = [Piece::One(Class::NotSlash), Piece::Loop(Class::NotSlash)];
        let istio = |namespace: &str, account: Option<&str>| {
            let mut pieces = bytes("spiffe://");
            pieces.extend(segment.clone());
            pieces.extend(bytes(&alloc::format!("/ns/{namespace}/sa/")));
            match account {
                Some(account) => pieces.extend(bytes(account)),
                None => pieces.extend(segment.clone()),
            }
            Language::new(&pieces)
        };
        match self {
            PeerClass::Plaintext => None,
            PeerClass::Uri(uri) => Some(Language::new(&bytes(uri))),
            PeerClass::ServiceAccount { namespace, name } => Some(istio(namespace, Some(name))),
            PeerClass::Namespace(namespace) => Some(istio(namespace, None)),
            PeerClass::Authenticated => Some(Language::new(&[
                Piece::One(Class::Any),
                Piece::Loop(Class::Any),
            ])),
        }
    }
}

/// Whether every peer of `class` matches an identity value (`Some(true)`), none does
/// (`Some(false)`), or some do (`None`). Non-identity attributes give `None`.
pub fn identity_value_over(
    attribute: &Attribute,
    pattern: &StringPattern,
    class: &PeerClass,
) -> Option<bool> {
    let value = identity_language(attribute, pattern)?;
    let Some(peers) = class.language() else {
        // No identity: no identity value matches.
        return Some(false);
    };
    match search(&peers, &value, Goal::Difference, false) {
        None => return Some(true),
        Some(Err(())) => return None,
        Some(Ok(_)) => {}
    }
    match search(&peers, &value, Goal::Intersection, false) {
        None => Some(false),
        Some(_) => None,
    }
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
