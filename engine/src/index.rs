//! Per-attribute indexes: from one attribute value to every value set it satisfies, in
//! time that depends on the value's length, not on how many patterns exist.
//!
//! Exact values live in a hash table, prefixes and suffixes in byte tries (a suffix trie
//! is built over reversed text), presence in one list, and path templates in a trie over
//! path segments.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::ops::Range;

use crate::pattern::TemplateSegment;

/// Identifier of a deduplicated value set (one field's list of values).
pub type ValueSetId = u32;

/// A flattened list of value set ids, addressed by ranges.
#[derive(Debug, Default, Clone)]
pub struct IdLists {
    ids: Vec<ValueSetId>,
}

impl IdLists {
    fn push(&mut self, list: &[ValueSetId]) -> Range<u32> {
        let start = self.ids.len() as u32;
        self.ids.extend_from_slice(list);
        start..self.ids.len() as u32
    }

    fn get(&self, range: &Range<u32>) -> &[ValueSetId] {
        self.ids
            .get(range.start as usize..range.end as usize)
            .unwrap_or(&[])
    }
}

/// An attribute value made of parts joined by `/` (a JWT `iss` and `sub`, a namespace and
/// service account), matched without building the joined string.
#[derive(Debug, Clone, Copy)]
pub struct Joined<'a> {
    parts: &'a [&'a str],
}

impl<'a> Joined<'a> {
    /// The value `parts.join("/")`.
    pub fn new(parts: &'a [&'a str]) -> Self {
        Joined { parts }
    }

    fn len(&self) -> usize {
        self.parts.iter().map(|part| part.len()).sum::<usize>() + self.parts.len().saturating_sub(1)
    }

    fn bytes(&self) -> impl Iterator<Item = u8> + '_ {
        self.parts.iter().enumerate().flat_map(|(position, part)| {
            let separator = if position == 0 { None } else { Some(b'/') };
            separator.into_iter().chain(part.bytes())
        })
    }

    fn bytes_rev(&self) -> impl Iterator<Item = u8> + '_ {
        let last = self.parts.len().saturating_sub(1);
        self.parts
            .iter()
            .enumerate()
            .rev()
            .flat_map(move |(position, part)| {
                let separator = if position == last { None } else { Some(b'/') };
                separator.into_iter().chain(part.bytes().rev())
            })
    }

    fn single(&self) -> Option<&'a str> {
        match self.parts {
            [only] => Some(only),
            _ => None,
        }
    }
}

fn fold(byte: u8, fold_case: bool) -> u8 {
    if fold_case {
        byte.to_ascii_lowercase()
    } else {
        byte
    }
}

/// A word-at-a-time hash (FxHash's mixing step over 8-byte little-endian words, then the
/// length): a value of a few dozen bytes takes a handful of multiplies, not one per byte.
/// Bytes can be fed one at a time or as slices, with the same result.
#[derive(Clone, Copy)]
struct Hasher {
    hash: u64,
    word: u64,
    filled: u32,
    len: u64,
}

const HASH_MULTIPLIER: u64 = 0x517c_c1b7_2722_0a95;

fn mix(hash: u64, word: u64) -> u64 {
    (hash.rotate_left(5) ^ word).wrapping_mul(HASH_MULTIPLIER)
}

impl Hasher {
    fn new() -> Self {
        Hasher {
            hash: 0,
            word: 0,
            filled: 0,
            len: 0,
        }
    }

    fn byte(&mut self, byte: u8) {
        self.word |= u64::from(byte) << (8 * self.filled);
        self.filled += 1;
        self.len += 1;
        if self.filled == 8 {
            self.hash = mix(self.hash, self.word);
            self.word = 0;
            self.filled = 0;
        }
    }

    fn slice(&mut self, bytes: &[u8]) {
        if self.filled != 0 {
            bytes.iter().for_each(|byte| self.byte(*byte));
            return;
        }
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.hash = mix(self.hash, word(chunk));
        }
        // The tail (0 to 7 bytes) as one partial word: what feeding its bytes one at a
        // time would leave in `word`, `filled` and `len`, without a shift per byte.
        let tail = chunks.remainder();
        self.word = partial_word(tail);
        self.filled = tail.len() as u32;
        self.len += bytes.len() as u64;
    }

    fn finish(self) -> u64 {
        let hash = if self.filled == 0 {
            self.hash
        } else {
            mix(self.hash, self.word)
        };
        let hash = mix(hash, self.len);
        hash ^ (hash >> 32)
    }
}

#[inline]
fn hash_slice(bytes: &[u8]) -> u64 {
    let mut hasher = Hasher::new();
    hasher.slice(bytes);
    hasher.finish()
}

fn hash_bytes(bytes: impl Iterator<Item = u8>) -> u64 {
    let mut hasher = Hasher::new();
    bytes.for_each(|byte| hasher.byte(byte));
    hasher.finish()
}

/// Open-addressing hash table from exact strings to id lists.
#[derive(Debug, Default, Clone)]
struct ExactTable {
    /// Entry index + 1, or 0 for an empty slot; the length is a power of two.
    slots: Vec<u32>,
    entries: Vec<ExactEntry>,
    /// The entries' texts, concatenated.
    texts: Vec<u8>,
}

/// One exact text: its full hash (compared before any byte), where it is in
/// [`ExactTable::texts`], and its ids.
#[derive(Debug, Clone)]
struct ExactEntry {
    hash: u64,
    text: Range<u32>,
    ids: Range<u32>,
}

impl ExactTable {
    /// Builds the table; the texts are already folded when the index folds case.
    fn build(values: Vec<(Box<[u8]>, Range<u32>)>) -> Self {
        let capacity = (values.len() * 2).next_power_of_two().max(8);
        let mut slots = alloc::vec![0u32; capacity];
        let mask = capacity - 1;
        let mut entries = Vec::with_capacity(values.len());
        let mut texts = Vec::with_capacity(values.iter().map(|(text, _)| text.len()).sum());
        for (position, (text, ids)) in values.into_iter().enumerate() {
            // Stored texts are already folded when the table folds case.
            let hash = hash_slice(&text);
            let mut slot = hash as usize & mask;
            while slots.get(slot).is_some_and(|occupied| *occupied != 0) {
                slot = (slot + 1) & mask;
            }
            if let Some(entry) = slots.get_mut(slot) {
                *entry = position as u32 + 1;
            }
            let start = texts.len() as u32;
            texts.extend_from_slice(&text);
            entries.push(ExactEntry {
                hash,
                text: start..texts.len() as u32,
                ids,
            });
        }
        ExactTable {
            slots,
            entries,
            texts,
        }
    }

    /// The common case (one part, case-sensitive): the slice hashed and compared a word at
    /// a time.
    #[inline]
    fn lookup_slice(&self, bytes: &[u8]) -> Option<&Range<u32>> {
        if self.entries.is_empty() {
            return None;
        }
        self.probe(hash_slice(bytes), |text| same_bytes(text, bytes))
    }

    fn lookup(&self, value: Joined<'_>, fold_case: bool) -> Option<&Range<u32>> {
        if let (false, Some(single)) = (fold_case, value.single()) {
            return self.lookup_slice(single.as_bytes());
        }
        if self.entries.is_empty() {
            return None;
        }
        let hash = hash_bytes(value.bytes().map(|byte| fold(byte, fold_case)));
        self.probe(hash, |text| {
            text.len() == value.len()
                && text
                    .iter()
                    .copied()
                    .eq(value.bytes().map(|byte| fold(byte, fold_case)))
        })
    }

    #[inline]
    fn probe(&self, hash: u64, matches: impl Fn(&[u8]) -> bool) -> Option<&Range<u32>> {
        let mask = self.slots.len().wrapping_sub(1);
        let mut slot = hash as usize & mask;
        loop {
            let entry = *self.slots.get(slot)?;
            if entry == 0 {
                return None;
            }
            let found = self.entries.get(entry as usize - 1)?;
            if found.hash == hash {
                let text = self
                    .texts
                    .get(found.text.start as usize..found.text.end as usize)?;
                if matches(text) {
                    return Some(&found.ids);
                }
            }
            slot = (slot + 1) & mask;
        }
    }
}

/// Whether two byte strings are equal, compared 8 bytes at a time (values are a few dozen
/// bytes: a call to `memcmp` would cost more than the comparison).
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut left = a.chunks_exact(8);
    let mut right = b.chunks_exact(8);
    for (x, y) in (&mut left).zip(&mut right) {
        if word(x) != word(y) {
            return false;
        }
    }
    partial_word(left.remainder()) == partial_word(right.remainder())
}

/// An 8-byte chunk as a little-endian word.
fn word(chunk: &[u8]) -> u64 {
    <[u8; 8]>::try_from(chunk).map_or(0, u64::from_le_bytes)
}

/// Up to 7 bytes as the low bytes of a little-endian word (zero above): two overlapping
/// loads instead of a loop or a call to `memcpy`.
#[inline]
fn partial_word(bytes: &[u8]) -> u64 {
    let len = bytes.len();
    let load4 = |at: usize| {
        bytes
            .get(at..at + 4)
            .and_then(|part| <[u8; 4]>::try_from(part).ok())
            .map_or(0, |part| u64::from(u32::from_le_bytes(part)))
    };
    let load2 = |at: usize| {
        bytes
            .get(at..at + 2)
            .and_then(|part| <[u8; 2]>::try_from(part).ok())
            .map_or(0, |part| u64::from(u16::from_le_bytes(part)))
    };
    if len >= 4 {
        // Bytes 0..4 and len-4..len; the overlap holds the same bytes in both.
        load4(0) | (load4(len - 4) << (8 * (len - 4)))
    } else if len >= 2 {
        load2(0) | (load2(len - 2) << (8 * (len - 2)))
    } else {
        bytes.first().map_or(0, |byte| u64::from(*byte))
    }
}

/// A byte trie whose nodes may carry id lists; walking a value visits every stored text
/// that is a prefix of it. Chains of single children are compressed into one edge whose
/// label lives in `labels`, so the trie takes memory in proportion to the number of texts
/// and the bytes they do not share, not one node per byte.
#[derive(Debug, Clone)]
struct Trie {
    /// Per node: its label in `labels`, the range of its edges in `edges`, and its ids.
    nodes: Vec<TrieNode>,
    /// Edges sorted by the first byte of their child's label within each node:
    /// (first byte, child).
    edges: Vec<(u8, u32)>,
    /// Edge labels, concatenated.
    labels: Vec<u8>,
}

#[derive(Debug, Clone)]
struct TrieNode {
    /// The bytes from the parent to this node (empty for the root).
    label: Range<u32>,
    edges: Range<u32>,
    ids: Range<u32>,
}

impl Trie {
    fn build(mut texts: Vec<(Vec<u8>, Range<u32>)>) -> Option<Self> {
        if texts.is_empty() {
            return None;
        }
        texts.sort_by(|a, b| a.0.cmp(&b.0));
        texts.dedup_by(|later, earlier| later.0 == earlier.0);
        let empty = TrieNode {
            label: 0..0,
            edges: 0..0,
            ids: 0..0,
        };
        let mut nodes = alloc::vec![empty.clone()];
        let mut edges = Vec::new();
        let mut labels = Vec::new();
        // Work list, depth first: a node, the sorted texts below it (all sharing its first
        // `depth` bytes), and that depth. A node's children are all created when the node
        // is processed, so its edges are contiguous.
        let mut work = alloc::vec![(0usize, 0..texts.len(), 0usize)];
        while let Some((node, range, depth)) = work.pop() {
            let mut next = range.start;
            if let Some((text, ids)) = texts.get(next) {
                if text.len() == depth {
                    if let Some(slot) = nodes.get_mut(node) {
                        slot.ids = ids.clone();
                    }
                    next += 1;
                }
            }
            let edge_start = edges.len() as u32;
            while next < range.end {
                let Some(byte) = texts.get(next).and_then(|(text, _)| text.get(depth)) else {
                    break;
                };
                let byte = *byte;
                // The group of texts continuing with `byte`, and the bytes they all share.
                let mut end = next + 1;
                while texts
                    .get(end)
                    .is_some_and(|(text, _)| end < range.end && text.get(depth) == Some(&byte))
                {
                    end += 1;
                }
                let first = texts.get(next).map_or(&[][..], |(text, _)| text.as_slice());
                let last = texts
                    .get(end - 1)
                    .map_or(&[][..], |(text, _)| text.as_slice());
                let shared = first.iter().zip(last).take_while(|(a, b)| a == b).count();
                let label_start = labels.len() as u32;
                labels.extend_from_slice(first.get(depth..shared).unwrap_or(&[]));
                let child = nodes.len();
                nodes.push(TrieNode {
                    label: label_start..labels.len() as u32,
                    ..empty.clone()
                });
                edges.push((byte, child as u32));
                work.push((child, next..end, shared));
                next = end;
            }
            if let Some(slot) = nodes.get_mut(node) {
                slot.edges = edge_start..edges.len() as u32;
            }
        }
        Some(Trie {
            nodes,
            edges,
            labels,
        })
    }

    /// [`Trie::walk`] over a slice: each edge's label is compared as one slice.
    fn walk_slice(&self, value: &[u8], mut visit: impl FnMut(&Range<u32>)) {
        let Some(root) = self.nodes.first() else {
            return;
        };
        if !root.ids.is_empty() {
            visit(&root.ids);
        }
        let mut node = root;
        let mut at = 0usize;
        while let Some(byte) = value.get(at) {
            let Some(edges) = self
                .edges
                .get(node.edges.start as usize..node.edges.end as usize)
            else {
                return;
            };
            let Ok(found) = edges.binary_search_by_key(byte, |(edge, _)| *edge) else {
                return;
            };
            let Some(child) = edges
                .get(found)
                .and_then(|(_, child)| self.nodes.get(*child as usize))
            else {
                return;
            };
            // The label starts with the edge's byte; all of it must follow in the value.
            let label = self
                .labels
                .get(child.label.start as usize..child.label.end as usize)
                .unwrap_or(&[]);
            let end = at + label.len().max(1);
            if label.len() > 1 && value.get(at..end) != Some(label) {
                return;
            }
            at = end;
            if !child.ids.is_empty() {
                visit(&child.ids);
            }
            node = child;
        }
    }

    fn walk(&self, mut bytes: impl Iterator<Item = u8>, mut visit: impl FnMut(&Range<u32>)) {
        let Some(root) = self.nodes.first() else {
            return;
        };
        if !root.ids.is_empty() {
            visit(&root.ids);
        }
        let mut node = root;
        while let Some(byte) = bytes.next() {
            let Some(edges) = self
                .edges
                .get(node.edges.start as usize..node.edges.end as usize)
            else {
                return;
            };
            let Ok(found) = edges.binary_search_by_key(&byte, |(edge, _)| *edge) else {
                return;
            };
            let Some(child) = edges
                .get(found)
                .and_then(|(_, child)| self.nodes.get(*child as usize))
            else {
                return;
            };
            // The label's first byte is the edge's; the rest must follow in the value.
            let label = self
                .labels
                .get(child.label.start as usize..child.label.end as usize)
                .unwrap_or(&[]);
            for expected in label.iter().skip(1) {
                if bytes.next() != Some(*expected) {
                    return;
                }
            }
            if !child.ids.is_empty() {
                visit(&child.ids);
            }
            node = child;
        }
    }
}

/// Path templates of one attribute, as a trie over path segments: a literal segment is an
/// edge labelled with its text, `{*}` an edge taken by any non-empty segment of template
/// characters, and `{**}` an edge to a node that loops on segments of template characters
/// (Envoy's `[C/]*` between two `/`). Without `{**}` a node sits at a fixed depth and is
/// reached only from its parent; since nothing but literals may follow `{**}`, the nodes
/// active at one segment are distinct trie nodes, so one segment costs at most the size of
/// the trie, however long or crafted the path.
#[derive(Debug)]
struct TemplateSet {
    nodes: Vec<TemplateNode>,
    /// Literal edges of every node, in one hash table keyed by (node, segment text): a
    /// segment is hashed once, and each active node costs one probe, however many literal
    /// edges it has (the node under `/api` of a large set has thousands).
    literals: EdgeTable,
}

/// Open-addressing hash table from (node, segment text) to the child node.
#[derive(Debug, Default)]
struct EdgeTable {
    /// Entry index + 1, or 0 for an empty slot; the length is a power of two.
    slots: Vec<u32>,
    /// (parent, child, text in `texts`).
    entries: Vec<(u32, u32, Range<u32>)>,
    texts: Vec<u8>,
}

/// The slot hash of an edge: its text's hash, which a lookup computes once per segment,
/// mixed with the parent node.
fn edge_hash(text_hash: u64, parent: u32) -> u64 {
    let hash = mix(text_hash, u64::from(parent));
    hash ^ (hash >> 32)
}

impl EdgeTable {
    fn build(edges: Vec<(u32, Box<[u8]>, u32)>) -> Self {
        let capacity = (edges.len() * 2).next_power_of_two().max(8);
        let mask = capacity - 1;
        let mut table = EdgeTable {
            slots: alloc::vec![0u32; capacity],
            entries: Vec::with_capacity(edges.len()),
            texts: Vec::new(),
        };
        for (parent, text, child) in edges {
            let mut slot = edge_hash(hash_slice(&text), parent) as usize & mask;
            while table.slots.get(slot).is_some_and(|occupied| *occupied != 0) {
                slot = (slot + 1) & mask;
            }
            let start = table.texts.len() as u32;
            table.texts.extend_from_slice(&text);
            table
                .entries
                .push((parent, child, start..table.texts.len() as u32));
            if let Some(entry) = table.slots.get_mut(slot) {
                *entry = table.entries.len() as u32;
            }
        }
        table
    }

    /// The child of `parent` along the literal `text`, whose hash is `text_hash`.
    fn child(&self, parent: u32, text: &[u8], text_hash: u64) -> Option<u32> {
        let mask = self.slots.len().checked_sub(1)?;
        let mut slot = edge_hash(text_hash, parent) as usize & mask;
        loop {
            let entry = *self.slots.get(slot)?;
            let (node, child, range) = self.entries.get(entry.checked_sub(1)? as usize)?;
            if *node == parent
                && self.texts.get(range.start as usize..range.end as usize) == Some(text)
            {
                return Some(*child);
            }
            slot = (slot + 1) & mask;
        }
    }
}

#[derive(Debug)]
struct TemplateNode {
    /// The `{*}` edge.
    one: Option<u32>,
    /// The `{**}` edge.
    rest: Option<u32>,
    /// Whether this node is the target of a `{**}` edge: it takes further segments itself.
    loops: bool,
    /// Value sets of the templates that end here.
    ends: Range<u32>,
}

/// A template trie node while building.
#[derive(Default)]
struct TemplateDraft {
    literals: alloc::collections::BTreeMap<Box<[u8]>, u32>,
    one: Option<u32>,
    rest: Option<u32>,
    loops: bool,
    ends: Vec<ValueSetId>,
}

impl TemplateSet {
    /// Builds the trie; fails when it would take more than `max_bytes`.
    fn build(
        templates: Vec<(Vec<TemplateSegment>, Vec<ValueSetId>)>,
        lists: &mut IdLists,
        max_bytes: usize,
    ) -> Result<TemplateSet, String> {
        let node_bytes = core::mem::size_of::<TemplateNode>();
        let edge_bytes = core::mem::size_of::<(Box<[u8]>, u32)>();
        let mut drafts: Vec<TemplateDraft> = alloc::vec![TemplateDraft::default()];
        let mut bytes = node_bytes;
        for (segments, ids) in templates {
            let mut node = 0usize;
            for segment in &segments {
                let existing = drafts.get(node).and_then(|draft| match segment {
                    TemplateSegment::Literal(text) => draft.literals.get(text.as_bytes()).copied(),
                    TemplateSegment::One => draft.one,
                    TemplateSegment::Rest => draft.rest,
                });
                node = match existing {
                    Some(child) => child as usize,
                    None => {
                        let child = drafts.len();
                        bytes += node_bytes;
                        if let Some(draft) = drafts.get_mut(node) {
                            match segment {
                                TemplateSegment::Literal(text) => {
                                    bytes += edge_bytes + text.len();
                                    draft.literals.insert(text.as_bytes().into(), child as u32);
                                }
                                TemplateSegment::One => draft.one = Some(child as u32),
                                TemplateSegment::Rest => draft.rest = Some(child as u32),
                            }
                        }
                        if bytes > max_bytes {
                            return Err(alloc::format!(
                                "path templates need more than {max_bytes} bytes of index (limits.max_automaton_bytes)"
                            ));
                        }
                        drafts.push(TemplateDraft {
                            loops: *segment == TemplateSegment::Rest,
                            ..TemplateDraft::default()
                        });
                        child
                    }
                };
            }
            if let Some(draft) = drafts.get_mut(node) {
                draft.ends.extend_from_slice(&ids);
            }
        }
        let mut nodes = Vec::with_capacity(drafts.len());
        let mut literals = Vec::new();
        for (parent, draft) in drafts.into_iter().enumerate() {
            literals.extend(
                draft
                    .literals
                    .into_iter()
                    .map(|(text, child)| (parent as u32, text, child)),
            );
            let mut ends = draft.ends;
            ends.sort_unstable();
            ends.dedup();
            nodes.push(TemplateNode {
                one: draft.one,
                rest: draft.rest,
                loops: draft.loops,
                ends: lists.push(&ends),
            });
        }
        Ok(TemplateSet {
            nodes,
            literals: EdgeTable::build(literals),
        })
    }

    /// Visits the id ranges of every template that matches `path`.
    fn lookup(&self, path: &str, scratch: &mut TemplateScratch, mut emit: impl FnMut(&Range<u32>)) {
        let Some(rest) = path.strip_prefix('/') else {
            return;
        };
        let TemplateScratch {
            active,
            next,
            stamps,
            epoch,
        } = scratch;
        if stamps.len() != self.nodes.len() {
            stamps.clear();
            stamps.resize(self.nodes.len(), 0);
        }
        active.clear();
        active.push(0);
        let bytes = rest.as_bytes();
        let mut start = 0usize;
        loop {
            // One pass over the segment: where it ends, and whether a glob may match it.
            let mut end = start;
            let mut glob_text = true;
            while let Some(&byte) = bytes.get(end) {
                if !crate::pattern::is_template_char(byte) {
                    if byte == b'/' {
                        break;
                    }
                    glob_text = false;
                }
                end += 1;
            }
            let segment = bytes.get(start..end).unwrap_or(&[]);
            *epoch = epoch.wrapping_add(1);
            if *epoch == 0 {
                stamps.iter_mut().for_each(|stamp| *stamp = 0);
                *epoch = 1;
            }
            let current = *epoch;
            let mut push = |node: u32, next: &mut Vec<u32>| {
                if let Some(stamp) = stamps.get_mut(node as usize) {
                    if *stamp != current {
                        *stamp = current;
                        next.push(node);
                    }
                }
            };
            let segment_hash = hash_slice(segment);
            next.clear();
            for id in active.iter() {
                let Some(node) = self.nodes.get(*id as usize) else {
                    continue;
                };
                if let Some(child) = self.literals.child(*id, segment, segment_hash) {
                    push(child, next);
                }
                if glob_text {
                    if let (Some(child), false) = (node.one, segment.is_empty()) {
                        push(child, next);
                    }
                    if let Some(child) = node.rest {
                        push(child, next);
                    }
                    if node.loops {
                        push(*id, next);
                    }
                }
            }
            core::mem::swap(active, next);
            if active.is_empty() {
                return;
            }
            if end >= bytes.len() {
                break;
            }
            start = end + 1;
        }
        for node in active.iter() {
            if let Some(node) = self.nodes.get(*node as usize) {
                emit(&node.ends);
            }
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct TemplateScratch {
    active: Vec<u32>,
    next: Vec<u32>,
    /// Per node: the segment (epoch) in which it was last added to `next`.
    stamps: Vec<u32>,
    epoch: u32,
}

/// What an index is built from: each distinct pattern with the value sets containing it.
#[derive(Debug, Default)]
pub struct StringIndexBuilder {
    /// Exact text → value sets.
    pub exact: Vec<(String, Vec<ValueSetId>)>,
    /// Prefix text → value sets.
    pub prefix: Vec<(String, Vec<ValueSetId>)>,
    /// Suffix text → value sets.
    pub suffix: Vec<(String, Vec<ValueSetId>)>,
    /// Value sets containing `*`.
    pub presence: Vec<ValueSetId>,
    /// Template segments → value sets.
    pub templates: Vec<(Vec<TemplateSegment>, Vec<ValueSetId>)>,
}

/// Limits applied while building an index.
#[derive(Debug, Clone, Copy)]
pub struct AutomatonLimits {
    /// Maximum size of the template trie, in bytes.
    pub template_bytes: usize,
}

/// Index of one string attribute.
#[derive(Debug)]
pub struct StringIndex {
    fold_case: bool,
    lists: IdLists,
    exact: ExactTable,
    prefixes: Option<Trie>,
    suffixes: Option<Trie>,
    presence: Range<u32>,
    templates: Option<TemplateSet>,
    /// No pattern can match a value with a `/` unless it also matches the value's text up
    /// to its first `/`: no suffixes, no templates, and no exact value or prefix holding a
    /// `/`. Then a namespace needs only the first of its keys looked up (`evaluate`).
    slash_free: bool,
}

impl StringIndex {
    /// Builds the index; fails only when the template trie exceeds its limit.
    pub fn build(
        builder: StringIndexBuilder,
        fold_case: bool,
        limits: AutomatonLimits,
    ) -> Result<Self, String> {
        let mut lists = IdLists::default();
        let slash_free = builder.suffix.is_empty()
            && builder.templates.is_empty()
            && !builder
                .exact
                .iter()
                .chain(&builder.prefix)
                .any(|(text, _)| text.contains('/'));
        // Patterns that differ only in case become one entry once folded.
        let group = |patterns: Vec<(String, Vec<ValueSetId>)>, reverse: bool| {
            let mut grouped: alloc::collections::BTreeMap<Vec<u8>, Vec<ValueSetId>> =
                alloc::collections::BTreeMap::new();
            for (text, ids) in patterns {
                let mut key: Vec<u8> = text.bytes().map(|byte| fold(byte, fold_case)).collect();
                if reverse {
                    key.reverse();
                }
                let entry = grouped.entry(key).or_default();
                entry.extend(ids);
                entry.sort_unstable();
                entry.dedup();
            }
            grouped
        };
        let exact = group(builder.exact, false)
            .into_iter()
            .map(|(text, ids)| (text.into_boxed_slice(), lists.push(&ids)))
            .collect();
        let prefixes = group(builder.prefix, false)
            .into_iter()
            .map(|(text, ids)| (text, lists.push(&ids)))
            .collect();
        let suffixes = group(builder.suffix, true)
            .into_iter()
            .map(|(text, ids)| (text, lists.push(&ids)))
            .collect();
        let presence = lists.push(&builder.presence);
        let templates = if builder.templates.is_empty() {
            None
        } else {
            Some(TemplateSet::build(
                builder.templates,
                &mut lists,
                limits.template_bytes,
            )?)
        };
        Ok(StringIndex {
            fold_case,
            exact: ExactTable::build(exact),
            prefixes: Trie::build(prefixes),
            suffixes: Trie::build(suffixes),
            presence,
            templates,
            lists,
            slash_free,
        })
    }

    /// Fresh scratch for the template trie, if the index has one.
    pub fn template_scratch(&self) -> Option<TemplateScratch> {
        self.templates.as_ref().map(|_| TemplateScratch::default())
    }

    /// Whether a value's text up to its first `/` is all that can match (see the field).
    pub fn slash_free(&self) -> bool {
        self.slash_free
    }

    /// Visits the value sets that hold `*` (presence), whatever the value.
    pub fn lookup_presence(&self, mut visit: impl FnMut(ValueSetId)) {
        for id in self.lists.get(&self.presence) {
            visit(*id);
        }
    }

    /// [`StringIndex::lookup`] of a value of one part: the common case, which walks the
    /// slice itself when the index does not fold case.
    pub fn lookup_str(
        &self,
        value: &str,
        scratch: Option<&mut TemplateScratch>,
        mut visit: impl FnMut(ValueSetId),
    ) {
        if self.fold_case {
            return self.lookup(Joined::new(&[value]), scratch, visit);
        }
        let mut emit = |range: &Range<u32>| {
            for id in self.lists.get(range) {
                visit(*id);
            }
        };
        if let Some(range) = self.exact.lookup_slice(value.as_bytes()) {
            emit(range);
        }
        if let Some(trie) = &self.prefixes {
            trie.walk_slice(value.as_bytes(), &mut emit);
        }
        if let Some(trie) = &self.suffixes {
            trie.walk(value.bytes().rev(), &mut emit);
        }
        if !value.is_empty() {
            emit(&self.presence);
        }
        if let (Some(templates), Some(scratch)) = (&self.templates, scratch) {
            templates.lookup(value, scratch, &mut emit);
        }
    }

    /// Visits the value sets that `value` satisfies (a value set may be visited more than
    /// once).
    pub fn lookup(
        &self,
        value: Joined<'_>,
        scratch: Option<&mut TemplateScratch>,
        mut visit: impl FnMut(ValueSetId),
    ) {
        if let (false, Some(single)) = (self.fold_case, value.single()) {
            return self.lookup_str(single, scratch, visit);
        }
        let mut emit = |range: &Range<u32>| {
            for id in self.lists.get(range) {
                visit(*id);
            }
        };
        if let Some(range) = self.exact.lookup(value, self.fold_case) {
            emit(range);
        }
        if let Some(trie) = &self.prefixes {
            trie.walk(
                value.bytes().map(|byte| fold(byte, self.fold_case)),
                &mut emit,
            );
        }
        if let Some(trie) = &self.suffixes {
            trie.walk(
                value.bytes_rev().map(|byte| fold(byte, self.fold_case)),
                &mut emit,
            );
        }
        if value.len() > 0 {
            emit(&self.presence);
        }
        if let (Some(templates), Some(scratch), Some(text)) =
            (&self.templates, scratch, value.single())
        {
            templates.lookup(text, scratch, &mut emit);
        }
    }
}

/// Networks of one family (`true` for IPv4) and prefix length, sorted, each with its
/// value sets.
type NetworkGroup = (bool, u8, Vec<(u128, Range<u32>)>);

/// Index of an IP attribute: blocks grouped by prefix length, each group sorted.
#[derive(Debug, Default)]
pub struct IpIndex {
    lists: IdLists,
    /// (prefix length, sorted (network, ids)).
    by_length: Vec<NetworkGroup>,
}

impl IpIndex {
    /// Builds from (block, value sets) pairs with distinct blocks.
    pub fn build(blocks: Vec<(crate::pattern::IpBlock, Vec<ValueSetId>)>) -> Self {
        let mut lists = IdLists::default();
        let mut by_length: Vec<NetworkGroup> = Vec::new();
        for (block, ids) in blocks {
            let range = lists.push(&ids);
            match by_length
                .iter_mut()
                .find(|(ipv4, length, _)| *ipv4 == block.ipv4 && *length == block.prefix_len)
            {
                Some((_, _, group)) => group.push((block.network, range)),
                None => by_length.push((
                    block.ipv4,
                    block.prefix_len,
                    alloc::vec![(block.network, range)],
                )),
            }
        }
        for (_, _, group) in &mut by_length {
            group.sort_by_key(|(network, _)| *network);
        }
        by_length.sort_by_key(|(ipv4, length, _)| (*ipv4, *length));
        IpIndex { lists, by_length }
    }

    /// Visits the value sets whose blocks contain `address` (blocks of its family only).
    pub fn lookup(&self, address: core::net::IpAddr, mut visit: impl FnMut(ValueSetId)) {
        let ipv4 = address.is_ipv4();
        let address = crate::pattern::to_u128(address);
        for (_, length, group) in self.by_length.iter().filter(|group| group.0 == ipv4) {
            let network = address & crate::pattern::mask(*length);
            if let Ok(found) = group.binary_search_by_key(&network, |(candidate, _)| *candidate) {
                if let Some((_, range)) = group.get(found) {
                    for id in self.lists.get(range) {
                        visit(*id);
                    }
                }
            }
        }
    }
}

/// Index of a port attribute.
#[derive(Debug, Default)]
pub struct PortIndex {
    lists: IdLists,
    ports: Vec<(u16, Range<u32>)>,
}

impl PortIndex {
    /// Builds from (port, value sets) pairs with distinct ports.
    pub fn build(ports: Vec<(u16, Vec<ValueSetId>)>) -> Self {
        let mut lists = IdLists::default();
        let mut ports: Vec<(u16, Range<u32>)> = ports
            .into_iter()
            .map(|(port, ids)| (port, lists.push(&ids)))
            .collect();
        ports.sort_by_key(|(port, _)| *port);
        PortIndex { lists, ports }
    }

    /// Visits the value sets that contain `port`.
    pub fn lookup(&self, port: u16, mut visit: impl FnMut(ValueSetId)) {
        if let Ok(found) = self
            .ports
            .binary_search_by_key(&port, |(candidate, _)| *candidate)
        {
            if let Some((_, range)) = self.ports.get(found) {
                for id in self.lists.get(range) {
                    visit(*id);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use alloc::vec;

    fn collect(
        index: &StringIndex,
        parts: &[&str],
        scratch: Option<&mut TemplateScratch>,
    ) -> Vec<u32> {
        let mut found = Vec::new();
        index.lookup(Joined::new(parts), scratch, &mut |id| found.push(id));
        found.sort_unstable();
        found.dedup();
        found
    }

    #[test]
    fn every_kind_of_pattern_reports_its_value_sets() {
        let builder = StringIndexBuilder {
            exact: vec![("/a/b".into(), vec![1]), ("iss/sub".into(), vec![7])],
            prefix: vec![
                ("/a".into(), vec![2]),
                ("/".into(), vec![3]),
                ("/x".into(), vec![9]),
            ],
            suffix: vec![("/b".into(), vec![4]), ("c".into(), vec![8])],
            presence: vec![5],
            templates: vec![(
                vec![TemplateSegment::One, TemplateSegment::Literal("b".into())],
                vec![6],
            )],
        };
        let limits = AutomatonLimits {
            template_bytes: 1 << 20,
        };
        let index = StringIndex::build(builder, false, limits).unwrap();
        let mut scratch = index.template_scratch();
        assert_eq!(
            collect(&index, &["/a/b"], scratch.as_mut()),
            vec![1, 2, 3, 4, 5, 6]
        );
        assert_eq!(collect(&index, &["iss", "sub"], None), vec![5, 7]);
        assert_eq!(collect(&index, &[""], scratch.as_mut()), Vec::<u32>::new());
    }

    #[test]
    fn word_comparison_is_byte_comparison() {
        let text: Vec<u8> = (0u8..40).map(|i| b'a' + i % 26).collect();
        for len in 0..text.len() {
            let value = &text[..len];
            let expected = value.iter().enumerate().fold(0u64, |word, (at, byte)| {
                word | u64::from(*byte) << (8 * (at % 8))
            });
            if len < 8 {
                assert_eq!(partial_word(value), expected, "length {len}");
            }
            assert!(same_bytes(value, value));
            for at in 0..len {
                let mut other = value.to_vec();
                other[at] ^= 0x20;
                assert!(!same_bytes(value, &other), "length {len}, byte {at}");
            }
            assert!(!same_bytes(value, &text[..len + 1]));
        }
    }

    #[test]
    fn hashing_a_slice_or_its_bytes_agrees() {
        let text: Vec<u8> = (0u8..40).map(|i| b'a' + i % 26).collect();
        for len in 0..text.len() {
            let value = &text[..len];
            let whole = hash_slice(value);
            assert_eq!(whole, hash_bytes(value.iter().copied()), "length {len}");
            for split in 0..=len {
                let mut hasher = Hasher::new();
                value[..split].iter().for_each(|byte| hasher.byte(*byte));
                hasher.slice(&value[split..]);
                assert_eq!(whole, hasher.finish(), "length {len}, split at {split}");
            }
        }
        // The length takes part: a trailing zero byte changes the hash.
        assert_ne!(hash_slice(b"ab"), hash_slice(b"ab\0"));
    }

    #[test]
    fn template_literal_edges_are_found_by_node_and_text() {
        let templates: Vec<(Vec<TemplateSegment>, Vec<u32>)> = (0..2_000u32)
            .map(|i| {
                (
                    vec![
                        TemplateSegment::Literal("api".into()),
                        TemplateSegment::Literal(alloc::format!("svc{i}")),
                        TemplateSegment::One,
                        TemplateSegment::Literal("status".into()),
                    ],
                    vec![i],
                )
            })
            .collect();
        let builder = StringIndexBuilder {
            templates,
            ..Default::default()
        };
        let limits = AutomatonLimits {
            template_bytes: 1 << 24,
        };
        let index = StringIndex::build(builder, false, limits).unwrap();
        let mut scratch = index.template_scratch();
        for i in [0u32, 1, 999, 1_999] {
            let path = alloc::format!("/api/svc{i}/x/status");
            assert_eq!(collect(&index, &[&path], scratch.as_mut()), vec![i]);
        }
        assert!(collect(&index, &["/api/svc2000/x/status"], scratch.as_mut()).is_empty());
        assert!(collect(&index, &["/api/svc1/status"], scratch.as_mut()).is_empty());
        // `status` is a literal under a `{*}` node, not under `/api`.
        assert!(collect(&index, &["/api/status/x/status"], scratch.as_mut()).is_empty());
    }

    #[test]
    fn a_prefix_walk_over_a_slice_or_its_bytes_agrees() {
        let texts = [
            "/",
            "/a",
            "/api/",
            "/api/svc1/",
            "/api/svc10/",
            "/api/svc2/x",
            "/b/c",
        ];
        let trie = Trie::build(
            texts
                .iter()
                .enumerate()
                .map(|(i, text)| (text.as_bytes().to_vec(), i as u32..i as u32 + 1))
                .collect(),
        )
        .unwrap();
        let values = [
            "",
            "/",
            "/a",
            "/ap",
            "/api",
            "/api/",
            "/api/svc1",
            "/api/svc1/",
            "/api/svc10/z",
            "/api/svc2/",
            "/api/svc2/x/y",
            "/b",
            "/b/c",
            "/b/cd",
            "x/api/",
        ];
        for value in values {
            let mut by_byte = Vec::new();
            trie.walk(value.bytes(), |range| by_byte.push(range.clone()));
            let mut by_slice = Vec::new();
            trie.walk_slice(value.as_bytes(), |range| by_slice.push(range.clone()));
            assert_eq!(by_byte, by_slice, "{value:?}");
            let expected: Vec<Range<u32>> = texts
                .iter()
                .enumerate()
                .filter(|(_, text)| value.starts_with(**text))
                .map(|(i, _)| i as u32..i as u32 + 1)
                .collect();
            assert_eq!(by_slice, expected, "{value:?}");
        }
    }

    #[test]
    fn folded_case() {
        let builder = StringIndexBuilder {
            exact: vec![("Example.COM".into(), vec![1])],
            suffix: vec![(".Example.com".into(), vec![2])],
            ..Default::default()
        };
        let limits = AutomatonLimits {
            template_bytes: 1 << 20,
        };
        let index = StringIndex::build(builder, true, limits).unwrap();
        assert_eq!(collect(&index, &["example.com"], None), vec![1]);
        assert_eq!(collect(&index, &["A.EXAMPLE.COM"], None), vec![2]);
    }
}
