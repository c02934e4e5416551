//! The request space `cordon diff` splits: one dimension per request attribute a policy
//! can read (the peer URI that every identity field tests, the host, the normalized path,
//! each header and claim, the addresses, the port), the *predicates* policies test on them
//! ("the path matches `/api/*`", "some value of header `x-env` matches `prod`"), and
//! *regions*: per dimension, the predicates known true and known false.
//!
//! A region's truth for a predicate is three-valued ([`Truth`]): `Yes` and `No` are exact,
//! `Maybe` may be said of a predicate that is in fact decided (the search then splits on
//! it, and the split's emptiness checks, which are exact, prune the empty side). A single
//! valued dimension also holds "absent" (no peer identity, no path…), which no predicate
//! matches; a multi-valued one (headers, claims) holds any set of values.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::model::Attribute;
use crate::partial::Truth;
use crate::pattern::{mask, IpBlock, StringPattern};
use crate::relation::region::{find, find_within, Found, ValueSet};

/// Per dimension, the value sets an example's value is searched in first (inside the
/// first list, outside the second), or `None` for no preference.
pub(crate) type Preference<'a> = dyn Fn(&Dimension) -> Option<(Vec<ValueSet>, Vec<ValueSet>)> + 'a;

/// One attribute of a request, as `cordon diff` splits the space of requests.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dimension {
    /// The peer's URI SAN (absent: plaintext); every identity field tests it.
    Peer,
    /// `:authority` as `hosts` compares it (ASCII case folded).
    Host,
    /// `:authority` as `request.headers[host]` compares it (case kept).
    Authority,
    /// `:method`.
    Method,
    /// The normalized path.
    Path,
    /// `:path` as received (`request.headers[:path]`).
    RawPath,
    /// TLS SNI.
    Sni,
    /// The JWT's `iss` claim as a string (`requestPrincipals`).
    Issuer,
    /// The JWT's `sub` claim as a string (`requestPrincipals`).
    Subject,
    /// `source.ip`.
    SourceIp,
    /// `remote.ip`.
    RemoteIp,
    /// `destination.ip`.
    DestinationIp,
    /// `destination.port`.
    Port,
    /// A request header, by lowercase name: any number of values.
    Header(String),
    /// A JWT claim by path: any number of values (`scope` and `permission` split at spaces).
    Claim(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Str,
    Ip,
    Port,
    Multi,
}

impl Dimension {
    pub(crate) fn kind(&self) -> Kind {
        match self {
            Dimension::SourceIp | Dimension::RemoteIp | Dimension::DestinationIp => Kind::Ip,
            Dimension::Port => Kind::Port,
            Dimension::Header(_) | Dimension::Claim(_) => Kind::Multi,
            _ => Kind::Str,
        }
    }

    pub(crate) fn folds_case(&self) -> bool {
        *self == Dimension::Host
    }

    /// The attribute's name as policies and traffic records write it.
    pub fn name(&self) -> String {
        match self {
            Dimension::Peer => "peer".to_string(),
            Dimension::Host => "host".to_string(),
            Dimension::Authority => "request.headers[:authority]".to_string(),
            Dimension::Method => "method".to_string(),
            Dimension::Path => "path".to_string(),
            Dimension::RawPath => "request.headers[:path]".to_string(),
            Dimension::Sni => "connection.sni".to_string(),
            Dimension::Issuer => "request.auth.claims[iss]".to_string(),
            Dimension::Subject => "request.auth.claims[sub]".to_string(),
            Dimension::SourceIp => "source.ip".to_string(),
            Dimension::RemoteIp => "remote.ip".to_string(),
            Dimension::DestinationIp => "destination.ip".to_string(),
            Dimension::Port => "destination.port".to_string(),
            Dimension::Header(name) => format!("request.headers[{name}]"),
            Dimension::Claim(path) => {
                let mut text = "request.auth.claims".to_string();
                for key in path {
                    text.push('[');
                    text.push_str(key);
                    text.push(']');
                }
                text
            }
        }
    }

    /// The dimension a field of `attribute` tests (identity fields: the peer URI).
    pub(crate) fn of(attribute: &Attribute) -> Dimension {
        match attribute {
            Attribute::Principal
            | Attribute::Namespace
            | Attribute::ServiceAccount
            | Attribute::TrustDomain => Dimension::Peer,
            Attribute::RequestPrincipal => Dimension::Issuer,
            Attribute::Audience => Dimension::Claim(alloc::vec!["aud".to_string()]),
            Attribute::Presenter => Dimension::Claim(alloc::vec!["azp".to_string()]),
            Attribute::Claim(path) => Dimension::Claim(path.clone()),
            Attribute::SourceIp => Dimension::SourceIp,
            Attribute::RemoteIp => Dimension::RemoteIp,
            Attribute::DestinationIp => Dimension::DestinationIp,
            Attribute::DestinationPort => Dimension::Port,
            Attribute::Host => Dimension::Host,
            Attribute::Method => Dimension::Method,
            Attribute::Path => Dimension::Path,
            Attribute::Header(name) => match name.as_str() {
                ":method" => Dimension::Method,
                ":path" => Dimension::RawPath,
                ":authority" => Dimension::Authority,
                _ => Dimension::Header(name.clone()),
            },
            Attribute::Sni => Dimension::Sni,
        }
    }
}

/// What a predicate tests on its dimension's value.
#[derive(Debug, Clone)]
pub(crate) enum Test {
    /// The value is in the set. `plain`: the set is exactly this string pattern's values
    /// (so relations are read off the texts, without automata).
    Str {
        set: ValueSet,
        plain: Option<StringPattern>,
    },
    Ip(IpBlock),
    Port(u16),
}

/// "The dimension's value (a multi-valued dimension: one of its values) passes the test."
#[derive(Debug, Clone)]
pub(crate) struct Pred {
    pub dim: usize,
    pub test: Test,
    /// For people: `principal cluster.local/ns/a/sa/x`, `/api/*`, `10.0.0.0/8`.
    pub label: String,
}

impl Pred {
    fn exact(&self) -> Option<&str> {
        match &self.test {
            Test::Str {
                plain: Some(StringPattern::Exact(text)),
                ..
            } => Some(text),
            _ => None,
        }
    }

    fn holds(&self, value: &str) -> bool {
        match &self.test {
            Test::Str {
                plain: Some(pattern),
                ..
            } => pattern.matches(value, false),
            Test::Str { set, .. } => set.contains(value),
            _ => false,
        }
    }

    fn set(&self) -> Option<&ValueSet> {
        match &self.test {
            Test::Str { set, .. } => Some(set),
            _ => None,
        }
    }
}

/// How many state tuples a search for a preferred value (a normalized path, an Istio-shaped
/// identity) may visit before the example falls back to any value of the class.
const PREFERENCE_STATES: usize = 2_000;

/// Per dimension: the predicates known to hold and not to hold, and members found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DimRegion {
    pub pos: Vec<u32>,
    pub neg: Vec<u32>,
    /// A single-valued string dimension with `pos`: one member. A multi-valued one: per
    /// `pos` predicate, a value in it and in no `neg` one.
    witness: Vec<String>,
}

/// A set of requests: a product of one region per dimension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Region {
    pub dims: Vec<DimRegion>,
    /// An emptiness check gave up somewhere: the region may be empty.
    pub uncertain: bool,
}

/// The dimensions and predicates of one comparison, with the relations found so far.
#[derive(Debug, Default)]
pub(crate) struct Space {
    pub dims: Vec<Dimension>,
    /// Shared, so a test can be read while the space is borrowed mutably (a `Pred` holds
    /// patterns and a label: cloning one per truth query was a tenth of a 10,000-rule diff).
    pub preds: Vec<Rc<Pred>>,
    index: BTreeMap<(usize, String), u32>,
    dim_index: BTreeMap<Dimension, usize>,
    /// `(a, b)` → (every value of `a` is in `b`, no value is in both); `None`: unknown.
    relations: BTreeMap<(u32, u32), (Option<bool>, Option<bool>)>,
}

/// The rest of a set, by texts: every value of `a` is in `b`.
fn plain_subset(a: &StringPattern, b: &StringPattern) -> bool {
    use StringPattern::{Exact, Prefix, Presence, Suffix};
    match (a, b) {
        (Exact(text), other) => other.matches(text, false),
        (_, Exact(_)) => false,
        (Prefix(x), Prefix(y)) => x.starts_with(y.as_str()),
        (Suffix(x), Suffix(y)) => x.ends_with(y.as_str()),
        (Prefix(x) | Suffix(x), Presence) => !x.is_empty(),
        (Prefix(_), Suffix(y)) | (Suffix(_), Prefix(y)) | (Presence, Prefix(y) | Suffix(y)) => {
            y.is_empty()
        }
        (Presence, Presence) => true,
    }
}

/// No value is in both.
fn plain_disjoint(a: &StringPattern, b: &StringPattern) -> bool {
    use StringPattern::{Exact, Prefix, Suffix};
    match (a, b) {
        (Exact(text), other) | (other, Exact(text)) => !other.matches(text, false),
        (Prefix(x), Prefix(y)) => !x.starts_with(y.as_str()) && !y.starts_with(x.as_str()),
        (Suffix(x), Suffix(y)) => !x.ends_with(y.as_str()) && !y.ends_with(x.as_str()),
        _ => false,
    }
}

/// The block of the addresses in every one of `blocks` (`None`: none is; `Some(None)`: no
/// block given, any address of either family).
fn intersect_blocks(blocks: &[IpBlock]) -> Option<Option<IpBlock>> {
    let mut current: Option<IpBlock> = None;
    for block in blocks {
        current = Some(match current {
            None => *block,
            Some(other) => {
                if other.ipv4 != block.ipv4 {
                    return None;
                }
                let (wide, narrow) = if other.prefix_len <= block.prefix_len {
                    (other, *block)
                } else {
                    (*block, other)
                };
                if narrow.network & mask(wide.prefix_len) != wide.network {
                    return None;
                }
                narrow
            }
        });
    }
    Some(current)
}

fn block_covers(outer: &IpBlock, inner: &IpBlock) -> bool {
    outer.ipv4 == inner.ipv4
        && outer.prefix_len <= inner.prefix_len
        && inner.network & mask(outer.prefix_len) == outer.network
}

fn blocks_overlap(a: &IpBlock, b: &IpBlock) -> bool {
    block_covers(a, b) || block_covers(b, a)
}

/// An address of `base` in none of `holes`.
pub(crate) fn ip_in(base: &IpBlock, holes: &[IpBlock]) -> Option<u128> {
    if holes.iter().any(|hole| block_covers(hole, base)) {
        return None;
    }
    let inside: Vec<IpBlock> = holes
        .iter()
        .filter(|hole| blocks_overlap(hole, base))
        .copied()
        .collect();
    if inside.is_empty() {
        return Some(base.network);
    }
    if base.prefix_len >= 128 {
        return None;
    }
    let bit = 1u128 << (127 - u32::from(base.prefix_len));
    let halves = [
        IpBlock {
            prefix_len: base.prefix_len + 1,
            ..*base
        },
        IpBlock {
            prefix_len: base.prefix_len + 1,
            network: base.network | bit,
            ..*base
        },
    ];
    halves.iter().find_map(|half| ip_in(half, &inside))
}

impl Space {
    /// The dimension's position, added on first use.
    pub(crate) fn dim(&mut self, dimension: Dimension) -> usize {
        if let Some(position) = self.dim_index.get(&dimension) {
            return *position;
        }
        self.dims.push(dimension.clone());
        let position = self.dims.len() - 1;
        self.dim_index.insert(dimension, position);
        position
    }

    /// The predicate `key` on `dim` (made by `make` on first use).
    pub(crate) fn pred(
        &mut self,
        dim: usize,
        key: String,
        make: impl FnOnce() -> Option<(Test, String)>,
    ) -> Option<u32> {
        if let Some(id) = self.index.get(&(dim, key.clone())) {
            return Some(*id);
        }
        let (test, label) = make()?;
        let id = u32::try_from(self.preds.len()).ok()?;
        self.preds.push(Rc::new(Pred { dim, test, label }));
        self.index.insert((dim, key), id);
        Some(id)
    }

    /// The whole space: nothing known.
    pub(crate) fn everything(&self) -> Region {
        Region {
            dims: alloc::vec![DimRegion::default(); self.dims.len()],
            uncertain: false,
        }
    }

    fn get(&self, pred: u32) -> Option<&Pred> {
        self.preds.get(pred as usize).map(|pred| &**pred)
    }

    /// (every value of `a` is in `b`, no value is in both), each `None` when unknown.
    fn relation(&mut self, a: u32, b: u32) -> (Option<bool>, Option<bool>) {
        if let Some(known) = self.relations.get(&(a, b)) {
            return *known;
        }
        let (Some(pa), Some(pb)) = (self.get(a), self.get(b)) else {
            return (None, None);
        };
        let fold = self.dims.get(pa.dim).is_some_and(Dimension::folds_case);
        let answer = match (&pa.test, &pb.test) {
            (Test::Str { plain: Some(x), .. }, Test::Str { plain: Some(y), .. }) => {
                (Some(plain_subset(x, y)), Some(plain_disjoint(x, y)))
            }
            (Test::Str { set: x, .. }, Test::Str { set: y, .. }) => {
                let known = |found: Found| match found {
                    Found::Nothing => Some(true),
                    Found::Value(_) => Some(false),
                    Found::GaveUp => None,
                };
                (
                    known(find(&[x], &[y], fold)),
                    known(find(&[x, y], &[], fold)),
                )
            }
            _ => (None, None),
        };
        self.relations.insert((a, b), answer);
        answer
    }

    /// Whether every request of `region` passes `pred` (`Yes`), none does (`No`), or
    /// unknown or some (`Maybe`).
    pub(crate) fn truth(&mut self, region: &Region, pred: u32) -> Truth {
        let Some(p) = self.preds.get(pred as usize).cloned() else {
            return Truth::Maybe;
        };
        let Some(here) = region.dims.get(p.dim) else {
            return Truth::Maybe;
        };
        if here.pos.contains(&pred) {
            return Truth::Yes;
        }
        if here.neg.contains(&pred) {
            return Truth::No;
        }
        let kind = self.dims.get(p.dim).map_or(Kind::Str, Dimension::kind);
        match (kind, &p.test) {
            (Kind::Ip, Test::Ip(block)) => self.ip_truth(here, block),
            (Kind::Port, Test::Port(port)) => {
                let pos = self.ports(&here.pos);
                if let Some(first) = pos.first() {
                    return if first == port { Truth::Yes } else { Truth::No };
                }
                Truth::Maybe
            }
            (Kind::Str, _) => {
                if let Some(single) = here.pos.iter().find_map(|id| self.get(*id)?.exact()) {
                    return if p.holds(single) {
                        Truth::Yes
                    } else {
                        Truth::No
                    };
                }
                if let Some(value) = p.exact() {
                    if !self.member(here, value) {
                        return Truth::No;
                    }
                    return Truth::Maybe;
                }
                for q in here.pos.clone() {
                    let (subset, disjoint) = self.relation(q, pred);
                    if subset == Some(true) {
                        return Truth::Yes;
                    }
                    if disjoint == Some(true) {
                        return Truth::No;
                    }
                }
                for n in here.neg.clone() {
                    if self.relation(pred, n).0 == Some(true) {
                        return Truth::No;
                    }
                }
                Truth::Maybe
            }
            (Kind::Multi, _) => {
                for q in here.pos.clone() {
                    if self.relation(q, pred).0 == Some(true) {
                        return Truth::Yes;
                    }
                }
                if let Some(value) = p.exact() {
                    if here
                        .neg
                        .iter()
                        .any(|n| self.get(*n).is_some_and(|n| n.holds(value)))
                    {
                        return Truth::No;
                    }
                }
                for n in here.neg.clone() {
                    if self.relation(pred, n).0 == Some(true) {
                        return Truth::No;
                    }
                }
                Truth::Maybe
            }
            _ => Truth::Maybe,
        }
    }

    fn blocks(&self, ids: &[u32]) -> Vec<IpBlock> {
        ids.iter()
            .filter_map(|id| match self.get(*id)?.test {
                Test::Ip(block) => Some(block),
                _ => None,
            })
            .collect()
    }

    fn ports(&self, ids: &[u32]) -> Vec<u16> {
        ids.iter()
            .filter_map(|id| match self.get(*id)?.test {
                Test::Port(port) => Some(port),
                _ => None,
            })
            .collect()
    }

    fn ip_truth(&self, here: &DimRegion, block: &IpBlock) -> Truth {
        let holes = self.blocks(&here.neg);
        match intersect_blocks(&self.blocks(&here.pos)) {
            None => Truth::No,
            Some(None) => {
                if ip_in(block, &holes).is_none() {
                    Truth::No
                } else {
                    Truth::Maybe
                }
            }
            Some(Some(base)) => {
                if !blocks_overlap(&base, block) {
                    return Truth::No;
                }
                if block_covers(block, &base) {
                    return Truth::Yes;
                }
                if ip_in(block, &holes).is_none() {
                    return Truth::No;
                }
                let mut more = holes.clone();
                more.push(*block);
                if ip_in(&base, &more).is_none() {
                    return Truth::Yes;
                }
                Truth::Maybe
            }
        }
    }

    /// Whether a single-valued string dimension's region holds `value`.
    fn member(&self, here: &DimRegion, value: &str) -> bool {
        here.pos
            .iter()
            .all(|id| self.get(*id).is_some_and(|p| p.holds(value)))
            && !here
                .neg
                .iter()
                .any(|id| self.get(*id).is_some_and(|p| p.holds(value)))
    }

    fn sets(&self, ids: &[u32]) -> Vec<&ValueSet> {
        ids.iter().filter_map(|id| self.get(*id)?.set()).collect()
    }

    /// A value in every `pos` and no `neg` predicate, with `prefer` sets (inside, outside)
    /// tried first when given.
    pub(crate) fn find_value(
        &self,
        dim: usize,
        pos: &[u32],
        neg: &[u32],
        prefer: Option<&(Vec<ValueSet>, Vec<ValueSet>)>,
    ) -> Found {
        let fold = self.dims.get(dim).is_some_and(Dimension::folds_case);
        if let Some(value) = pos.iter().find_map(|id| self.get(*id)?.exact()) {
            let fits = pos
                .iter()
                .all(|id| self.get(*id).is_some_and(|p| p.holds(value)))
                && !neg
                    .iter()
                    .any(|id| self.get(*id).is_some_and(|p| p.holds(value)));
            return if fits {
                Found::Value(value.to_string())
            } else {
                Found::Nothing
            };
        }
        let mut inside = self.sets(pos);
        let mut outside = self.sets(neg);
        match prefer {
            Some((more_inside, more_outside)) => {
                inside.extend(more_inside);
                outside.extend(more_outside);
                // Only preferred: a small budget, the caller falls back to any value.
                find_within(&inside, &outside, fold, PREFERENCE_STATES)
            }
            None => find(&inside, &outside, fold),
        }
    }

    /// The two halves of `region` on `pred`: where it holds and where it does not; `None`
    /// for an empty half.
    pub(crate) fn split(&self, region: &Region, pred: u32) -> (Option<Region>, Option<Region>) {
        let Some(p) = self.get(pred) else {
            return (None, None);
        };
        let dim = p.dim;
        let Some(here) = region.dims.get(dim) else {
            return (None, None);
        };
        let kind = self.dims.get(dim).map_or(Kind::Str, Dimension::kind);
        let mut with = here.clone();
        with.pos.push(pred);
        let mut without = here.clone();
        without.neg.push(pred);
        let (with, with_unsure) = self.settle(kind, dim, with, Some(pred));
        let (without, without_unsure) = self.settle(kind, dim, without, None);
        let build = |part: Option<DimRegion>, unsure: bool| {
            part.map(|part| {
                let mut next = region.clone();
                if let Some(slot) = next.dims.get_mut(dim) {
                    *slot = part;
                }
                next.uncertain |= unsure;
                next
            })
        };
        (build(with, with_unsure), build(without, without_unsure))
    }

    /// Checks that a dimension's region is not empty, refreshing its members; `added`: the
    /// predicate just added to `pos`. Returns (the region or `None` if empty, unsure).
    fn settle(
        &self,
        kind: Kind,
        dim: usize,
        mut part: DimRegion,
        added: Option<u32>,
    ) -> (Option<DimRegion>, bool) {
        let found = |found: Found, part: &mut DimRegion, at: Option<usize>| -> Option<bool> {
            match found {
                Found::Nothing => None,
                Found::Value(value) => {
                    match at {
                        Some(position) => {
                            if let Some(slot) = part.witness.get_mut(position) {
                                *slot = value;
                            } else {
                                part.witness.push(value);
                            }
                        }
                        None => part.witness = alloc::vec![value],
                    }
                    Some(false)
                }
                Found::GaveUp => {
                    if at.is_none() {
                        part.witness.clear();
                    } else if part.witness.len() < part.pos.len() {
                        part.witness.push(String::new());
                    }
                    Some(true)
                }
            }
        };
        match kind {
            Kind::Ip => {
                let holes = self.blocks(&part.neg);
                let fine = match intersect_blocks(&self.blocks(&part.pos)) {
                    None => false,
                    Some(None) => true,
                    Some(Some(base)) => ip_in(&base, &holes).is_some(),
                };
                (fine.then_some(part), false)
            }
            Kind::Port => {
                let pos = self.ports(&part.pos);
                let neg = self.ports(&part.neg);
                let fine = match pos.first() {
                    None => true,
                    Some(first) => pos.iter().all(|port| port == first) && !neg.contains(first),
                };
                (fine.then_some(part), false)
            }
            Kind::Str => {
                if part.pos.is_empty() {
                    // Absent is a member.
                    return (Some(part), false);
                }
                if let Some(value) = part.witness.first() {
                    if self.member(&part, value) {
                        return (Some(part), false);
                    }
                }
                let result = self.find_value(dim, &part.pos, &part.neg, None);
                match found(result, &mut part, None) {
                    None => (None, false),
                    Some(unsure) => (Some(part), unsure),
                }
            }
            Kind::Multi => {
                let mut unsure = false;
                let positions: Vec<usize> = match added {
                    Some(_) => alloc::vec![part.pos.len().saturating_sub(1)],
                    None => (0..part.pos.len()).collect(),
                };
                for position in positions {
                    let Some(id) = part.pos.get(position).copied() else {
                        continue;
                    };
                    let current_fits = part.witness.get(position).is_some_and(|value| {
                        self.get(id).is_some_and(|p| p.holds(value))
                            && !part
                                .neg
                                .iter()
                                .any(|n| self.get(*n).is_some_and(|n| n.holds(value)))
                    });
                    if current_fits {
                        continue;
                    }
                    let result = self.find_value(dim, &[id], &part.neg, None);
                    match found(result, &mut part, Some(position)) {
                        None => return (None, false),
                        Some(gave_up) => unsure |= gave_up,
                    }
                }
                (Some(part), unsure)
            }
        }
    }

    /// A member for the example: per dimension, `None` for absent (a multi-valued
    /// dimension: no value), else its values. `prefer`: the sets tried first per
    /// dimension. `Err(())` when a value could not be found.
    pub(crate) fn members(
        &self,
        region: &Region,
        prefer: &Preference<'_>,
    ) -> Result<Vec<Member>, ()> {
        let mut out = Vec::with_capacity(self.dims.len());
        for (dim, (dimension, here)) in self.dims.iter().zip(&region.dims).enumerate() {
            let preferred = prefer(dimension);
            let pick = |pos: &[u32]| -> Result<String, ()> {
                if let Some(preferred) = &preferred {
                    if let Found::Value(value) =
                        self.find_value(dim, pos, &here.neg, Some(preferred))
                    {
                        return Ok(value);
                    }
                }
                match self.find_value(dim, pos, &here.neg, None) {
                    Found::Value(value) => Ok(value),
                    _ => Err(()),
                }
            };
            let member = match dimension.kind() {
                Kind::Str if here.pos.is_empty() => Member::Absent,
                Kind::Str => Member::Values(alloc::vec![pick(&here.pos)?]),
                Kind::Multi => {
                    let mut values = Vec::new();
                    for id in &here.pos {
                        values.push(pick(&[*id])?);
                    }
                    Member::Values(values)
                }
                Kind::Ip => match intersect_blocks(&self.blocks(&here.pos)) {
                    None => return Err(()),
                    Some(None) => Member::Absent,
                    Some(Some(base)) => {
                        let address = ip_in(&base, &self.blocks(&here.neg)).ok_or(())?;
                        Member::Ip(base.ipv4, address)
                    }
                },
                Kind::Port => match self.ports(&here.pos).first() {
                    None => Member::Absent,
                    Some(port) => Member::Port(*port),
                },
            };
            out.push(member);
        }
        Ok(out)
    }
}

impl Space {
    /// An address of either family that a class leaves `dim` (an IP dimension) free to
    /// take: in its `pos` blocks, in none of its `neg` ones.
    pub(crate) fn free_address(&self, region: &Region, dim: usize) -> Option<core::net::IpAddr> {
        let here = region.dims.get(dim)?;
        let holes = self.blocks(&here.neg);
        let bases = match intersect_blocks(&self.blocks(&here.pos))? {
            Some(base) => alloc::vec![base],
            None => alloc::vec![
                IpBlock {
                    ipv4: true,
                    network: 0xffff_u128 << 32,
                    prefix_len: 96
                },
                IpBlock {
                    ipv4: false,
                    network: 0,
                    prefix_len: 0
                },
            ],
        };
        bases.iter().find_map(|base| {
            let address = ip_in(base, &holes)?;
            Some(if base.ipv4 {
                core::net::IpAddr::V4(core::net::Ipv4Addr::from((address & 0xffff_ffff) as u32))
            } else {
                core::net::IpAddr::V6(core::net::Ipv6Addr::from(address))
            })
        })
    }
}

/// A dimension's values in one request: `None` for an absent single-valued attribute
/// (a multi-valued one: no values). `path` is the normalized path.
pub(crate) fn values_of(
    dimension: &Dimension,
    request: &crate::request::Request<'_>,
    path: Option<&str>,
) -> Option<Vec<String>> {
    use crate::reference::attribute_values;
    let one = |value: Option<&str>| value.map(|value| alloc::vec![value.to_string()]);
    let claim = |key: &str| {
        request
            .claims
            .and_then(|claims| claims.string(&[key]))
            .map(|value| alloc::vec![value.to_string()])
    };
    let header = |name: &str| {
        let mut found = Vec::new();
        request.headers.any_value(name, &mut |value| {
            found.push(value.to_string());
            false
        });
        found
    };
    let listed = |attribute: Attribute| {
        let values = attribute_values(&attribute, request, path);
        (!values.is_empty()).then_some(values)
    };
    match dimension {
        Dimension::Peer => one(request.peer_identity),
        Dimension::Host => request
            .host
            .map(|host| alloc::vec![host.to_ascii_lowercase()]),
        Dimension::Authority => header(":authority")
            .into_iter()
            .next()
            .map(|v| alloc::vec![v]),
        Dimension::Method => one(request.method),
        Dimension::Path => one(path),
        Dimension::RawPath => one(request.path),
        Dimension::Sni => one(request.sni),
        Dimension::Issuer => claim("iss"),
        Dimension::Subject => claim("sub"),
        Dimension::SourceIp => listed(Attribute::SourceIp),
        Dimension::RemoteIp => listed(Attribute::RemoteIp),
        Dimension::DestinationIp => listed(Attribute::DestinationIp),
        Dimension::Port => listed(Attribute::DestinationPort),
        Dimension::Header(name) => Some(header(name)),
        Dimension::Claim(path_keys) => Some(attribute_values(
            &Attribute::Claim(path_keys.clone()),
            request,
            path,
        )),
    }
}

impl Pred {
    /// Whether one concrete value passes (IP and port values as text).
    pub(crate) fn holds_value(&self, value: &str) -> bool {
        match &self.test {
            Test::Str { .. } => self.holds(value),
            Test::Ip(block) => value.parse().is_ok_and(|address| block.contains(address)),
            Test::Port(port) => value.parse::<u16>() == Ok(*port),
        }
    }
}

/// One dimension's value in an example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Member {
    Absent,
    Values(Vec<String>),
    Ip(bool, u128),
    Port(u16),
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn plain_relations() {
        let p = StringPattern::parse;
        assert!(plain_subset(&p("/api/v1*"), &p("/api/*")));
        assert!(!plain_subset(&p("/api/*"), &p("/api/v1*")));
        assert!(plain_disjoint(&p("/a*"), &p("/b*")));
        assert!(!plain_disjoint(&p("/a*"), &p("*b")));
        assert!(plain_subset(&p("x"), &p("*")));
        assert!(!plain_subset(&p("*"), &p("*x")));
    }

    #[test]
    fn addresses_outside_holes() {
        let b = |text: &str| IpBlock::parse(text).unwrap();
        assert_eq!(
            ip_in(&b("10.0.0.0/8"), &[b("10.0.0.0/9")]),
            Some(b("10.128.0.0/9").network)
        );
        assert_eq!(
            ip_in(&b("10.0.0.0/8"), &[b("10.0.0.0/9"), b("10.128.0.0/9")]),
            None
        );
        assert_eq!(ip_in(&b("10.1.0.0/16"), &[b("10.0.0.0/8")]), None);
        assert!(ip_in(&b("0.0.0.0/0"), &[b("10.0.0.0/8")]).is_some());
    }
}
