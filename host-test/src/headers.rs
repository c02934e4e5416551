//! The request header map a module reads and edits, kept the way Envoy's `HeaderMap` behaves
//! for a proxy-wasm module.

use std::fmt;

use crate::encode::{encode_pairs_into, for_each_pair};

/// An ordered header map, with Envoy's rules for what a proxy-wasm module sees:
///
/// - names are stored lowercase (Envoy lowercases every name it stores, and lowercases the key a
///   module asks for);
/// - a repeated header is several entries, in arrival order;
/// - pseudo-headers (`:method`, `:path`, ...) stay ahead of regular headers when added.
///
/// All text lives in one buffer that is reused from one request to the next, so serving a
/// request allocates nothing once the buffer has grown to the largest request seen.
#[derive(Clone, Default)]
pub struct HeaderMap {
    buf: Vec<u8>,
    entries: Vec<Entry>,
}

#[derive(Clone, Copy)]
struct Entry {
    name: (u32, u32),
    value: (u32, u32),
}

impl HeaderMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a map from `(name, value)` pairs, in order; names are lowercased.
    pub fn from_pairs<N: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(N, V)]) -> Self {
        let mut map = Self::new();
        for (name, value) in pairs {
            map.append(name.as_ref(), value.as_ref());
        }
        map
    }

    /// Number of entries (a repeated header counts once per occurrence).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries in order, as raw bytes.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + Clone + '_ {
        self.entries
            .iter()
            .map(|e| (self.text(e.name), self.text(e.value)))
    }

    /// The first value of `name` (compared case-insensitively), as Envoy's
    /// `proxy_get_header_map_value` returns it.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.get_bytes(name.as_bytes())
    }

    /// The first value of `name` as text, if it is UTF-8.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Every value of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// The entries as owned strings (invalid UTF-8 replaced), for assertions and printing.
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        self.iter()
            .map(|(n, v)| {
                (
                    String::from_utf8_lossy(n).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect()
    }

    pub(crate) fn get_bytes(&self, name: &[u8]) -> Option<&[u8]> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Writes every value of `name` joined by `,` into `out`; false when there is none.
    pub(crate) fn join_values(&self, name: &[u8], out: &mut Vec<u8>) -> bool {
        let mut found = false;
        for (n, v) in self.iter() {
            if n.eq_ignore_ascii_case(name) {
                if found {
                    out.push(b',');
                }
                out.extend_from_slice(v);
                found = true;
            }
        }
        found
    }

    pub(crate) fn clear(&mut self) {
        self.buf.clear();
        self.entries.clear();
    }

    /// Envoy's `addCopy`: a new entry at the end, or after the last pseudo-header for a
    /// pseudo-header.
    pub(crate) fn append(&mut self, name: &[u8], value: &[u8]) {
        let name = self.store(name, true);
        let value = self.store(value, false);
        let entry = Entry { name, value };
        if name_is_pseudo(self.text(name)) {
            let at = self
                .entries
                .iter()
                .position(|e| !name_is_pseudo(self.text(e.name)))
                .unwrap_or(self.entries.len());
            self.entries.insert(at, entry);
        } else {
            self.entries.push(entry);
        }
    }

    /// Envoy's `remove`: drops every entry named `name`.
    pub(crate) fn remove(&mut self, name: &[u8]) {
        let buf = &self.buf;
        self.entries
            .retain(|e| !text_of(buf, e.name).eq_ignore_ascii_case(name));
    }

    /// Envoy's `setCopy` (`proxy_replace_header_map_value`): every entry named `name` is removed
    /// and one entry with `value` is added.
    pub(crate) fn replace(&mut self, name: &[u8], value: &[u8]) {
        self.remove(name);
        self.append(name, value);
    }

    /// Appends this map in the proxy-wasm pairs format to `out`.
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        encode_pairs_into(self.iter(), out);
    }

    /// Envoy's `setHeaderMapPairs`: every entry is removed, then each pair added. Malformed
    /// input leaves the map empty, as proxy-wasm-cpp-host's `toPairs` yields no pairs for it.
    pub(crate) fn replace_all_from_pairs(&mut self, pairs: &[u8]) {
        self.clear();
        let mut added = Vec::new();
        let parsed = for_each_pair(pairs, |k, v| added.push((k, v)));
        if parsed.is_ok() {
            for (k, v) in added {
                self.append(k, v);
            }
        }
    }

    /// Copies `bytes` into the buffer (lowercased for names) and returns its span.
    fn store(&mut self, bytes: &[u8], lowercase: bool) -> (u32, u32) {
        let start = self.buf.len();
        self.buf.extend_from_slice(bytes);
        if lowercase {
            if let Some(stored) = self.buf.get_mut(start..) {
                stored.make_ascii_lowercase();
            }
        }
        (clamp(start), clamp(bytes.len()))
    }

    fn text(&self, span: (u32, u32)) -> &[u8] {
        text_of(&self.buf, span)
    }
}

fn text_of(buf: &[u8], (start, len): (u32, u32)) -> &[u8] {
    let start = start as usize;
    buf.get(start..start.saturating_add(len as usize))
        .unwrap_or_default()
}

fn name_is_pseudo(name: &[u8]) -> bool {
    name.first() == Some(&b':')
}

/// Header text a wasm32 guest handles is far below 4 GiB; clamping keeps the spans total.
fn clamp(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl fmt::Debug for HeaderMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.to_pairs()).finish()
    }
}

impl PartialEq for HeaderMap {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for HeaderMap {}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> HeaderMap {
        HeaderMap::from_pairs(&[
            (":method", "GET"),
            (":path", "/a"),
            ("X-Multi", "1"),
            ("accept", "*/*"),
            ("x-multi", "2"),
        ])
    }

    #[test]
    fn names_are_lowercased_and_lookups_ignore_case() {
        let map = sample();
        assert_eq!(map.get("X-MULTI"), Some(&b"1"[..]));
        assert_eq!(
            map.get_all("x-multi").collect::<Vec<_>>(),
            vec![&b"1"[..], &b"2"[..]]
        );
        assert_eq!(map.iter().nth(2).map(|(n, _)| n), Some(&b"x-multi"[..]));
        let mut joined = Vec::new();
        assert!(map.join_values(b"x-multi", &mut joined));
        assert_eq!(joined, b"1,2");
    }

    #[test]
    fn replace_removes_every_occurrence_and_appends() {
        let mut map = sample();
        map.replace(b"x-multi", b"3");
        assert_eq!(map.get_all("x-multi").count(), 1);
        assert_eq!(map.iter().last(), Some((&b"x-multi"[..], &b"3"[..])));
        map.replace(b":path", b"/b");
        assert_eq!(map.iter().nth(1), Some((&b":path"[..], &b"/b"[..])));
    }

    #[test]
    fn pseudo_headers_stay_first() {
        let mut map = sample();
        map.append(b":authority", b"h");
        assert_eq!(map.iter().nth(2).map(|(n, _)| n), Some(&b":authority"[..]));
    }

    #[test]
    fn pairs_round_trip() {
        let map = sample();
        let mut bytes = Vec::new();
        map.encode_into(&mut bytes);
        let mut other = HeaderMap::new();
        other.replace_all_from_pairs(&bytes);
        assert_eq!(map, other);
        other.replace_all_from_pairs(&[9, 9]);
        assert!(other.is_empty());
    }
}
