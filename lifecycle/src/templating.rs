//! Turning observed request paths into Istio path templates.
//!
//! Two stages:
//!
//! 1. **Per segment, as records stream in** ([`template_path`]): a segment that is an
//!    identifier becomes `{*}` at once, so a million order numbers aggregate into one
//!    entry. Identifiers are: numbers (`123`), UUIDs, hex strings of at least
//!    [`TemplateOptions::id_min_length`] characters with a digit (or of 16 and more),
//!    hash-like tokens (16 and more characters of `[A-Za-z0-9_-]` with a digit and both
//!    cases), numbers with separators (`2026-11-27`, `1.2.3`), mixed letters and digits of
//!    at least `id_min_length` characters with at least [`TemplateOptions::id_min_digits`]
//!    digits (`a1b2c3d4`, `main.3f2a9c1e.js`), and prefixed identifiers (`o_5521`, `cr-20931`: a short
//!    alphabetic prefix, `_` or `-`, then a number of three or more digits or an
//!    identifier). Everything else (`me`, `export`, `v1`, `order-history`) stays literal.
//!    Observed text is never read as a pattern: a path holding `*`, `{` or `}` is not
//!    learned at all ([`unlearnable_path`]), and a path with a segment a template cannot
//!    hold (a space, `=`, an empty segment in the middle) is kept whole, as an exact value
//!    ([`is_templatable`]), and never generalized.
//! 2. **Over the aggregate of one workload** ([`generalize`]): where one prefix has more
//!    than [`TemplateOptions::max_literal_siblings`] distinct literal children, those that
//!    look alike (the same methods, and all leaves or all inner nodes) are values, not
//!    operations, and merge into `{*}`; the others are distinct operations and stay apart
//!    (`/users/export`, only ever POSTed, is not merged with a thousand GETs of
//!    `/users/<name>`). Where a prefix fans out into more than
//!    [`TemplateOptions::rest_threshold`] distinct tails at least two segments deep, its
//!    subtree becomes `{**}`; with the default threshold of 0 that never happens, because
//!    `{**}` is what `cordon audit` reports as over-broad.

use std::collections::{BTreeMap, BTreeSet};

use cordon_engine::pattern::is_template_char;

/// Thresholds of path templating.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateOptions {
    /// Minimum length of a mixed letters-and-digits (or hex) segment read as an identifier.
    pub id_min_length: usize,
    /// Minimum number of digits in such a segment.
    pub id_min_digits: usize,
    /// A prefix with more distinct literal children than this has its look-alike children
    /// merged into `{*}`; 0 disables merging.
    pub max_literal_siblings: usize,
    /// A prefix with more distinct deep tails (two or more segments below it) than this
    /// becomes `prefix/{**}`; 0 never writes `{**}`.
    pub rest_threshold: usize,
    /// The shortest prefix (in segments) that may end in `{**}`; at least 1, so `/{**}` is
    /// never written.
    pub rest_min_depth: usize,
}

impl Default for TemplateOptions {
    fn default() -> Self {
        TemplateOptions {
            id_min_length: 8,
            id_min_digits: 3,
            max_literal_siblings: 16,
            rest_threshold: 0,
            rest_min_depth: 1,
        }
    }
}

/// `{*}`: one segment.
pub const ONE: &str = "{*}";
/// `{**}`: the rest of the path.
pub const REST: &str = "{**}";

/// Whether a path segment is an identifier (see the module documentation).
pub fn is_identifier(segment: &str, options: &TemplateOptions) -> bool {
    let bytes = segment.as_bytes();
    if bytes.is_empty() {
        return false;
    }
    let mut digits = 0usize;
    let mut letters = 0usize;
    let mut upper = false;
    let mut lower = false;
    let mut hex = true;
    let mut token = true;
    let mut plain = true;
    let mut numeric = true;
    for &byte in bytes {
        match byte {
            b'0'..=b'9' => digits += 1,
            b'a'..=b'z' => {
                letters += 1;
                lower = true;
                hex &= byte <= b'f';
                numeric = false;
            }
            b'A'..=b'Z' => {
                letters += 1;
                upper = true;
                hex &= byte <= b'F';
                numeric = false;
            }
            b'-' | b'_' => {
                hex = false;
            }
            b'.' => {
                hex = false;
                token = false;
            }
            b':' => {
                hex = false;
                token = false;
                plain = false;
            }
            b'~' => {
                hex = false;
                token = false;
                numeric = false;
            }
            _ => {
                hex = false;
                token = false;
                plain = false;
                numeric = false;
            }
        }
    }
    let length = bytes.len();
    if digits == length {
        return true;
    }
    // Every rule below needs a digit, or 16 characters and more.
    if digits == 0 && length < 16 {
        return false;
    }
    if numeric && digits > 0 {
        // `2026-11-27`, `1.2.3`, `10.0.0.1`
        return true;
    }
    if is_uuid(bytes) {
        return true;
    }
    if hex && ((length >= options.id_min_length && digits > 0) || length >= 16) {
        return true;
    }
    if token && length >= 16 && digits > 0 && upper && lower {
        return true;
    }
    if plain && letters > 0 && length >= options.id_min_length && digits >= options.id_min_digits {
        return true;
    }
    is_prefixed_identifier(segment, options)
}

/// `o_5521`, `cr-20931`, `cus_a1b2c3d4e5`: up to eight letters, `_` or `-`, then an
/// identifier or a number of three or more digits.
fn is_prefixed_identifier(segment: &str, options: &TemplateOptions) -> bool {
    let Some(split) = segment.find(['_', '-']) else {
        return false;
    };
    let (prefix, rest) = (
        segment.get(..split).unwrap_or(""),
        segment.get(split + 1..).unwrap_or(""),
    );
    if prefix.is_empty() || prefix.len() > 8 || !prefix.bytes().all(|b| b.is_ascii_alphabetic()) {
        return false;
    }
    if rest.len() >= 3 && rest.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    !rest.contains(['_', '-']) && rest.len() > 2 && is_identifier(rest, options)
}

fn is_uuid(bytes: &[u8]) -> bool {
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(at, byte)| match at {
            8 | 13 | 18 | 23 => *byte == b'-',
            _ => byte.is_ascii_hexdigit(),
        })
}

/// Why an observed (normalized) path cannot be learned: a policy would read part of it as
/// syntax, so no value written from it matches only itself.
pub fn unlearnable_path(path: &str) -> Option<&'static str> {
    if path.bytes().any(|byte| matches!(byte, b'*' | b'{' | b'}')) {
        // `*` alone is presence, a leading or trailing `*` a suffix or prefix match, and
        // `{`/`}` make a template; a path holding them is not written at all.
        Some("holds `*`, `{` or `}`, which a policy reads as a wildcard or a template")
    } else if !path.starts_with('/') {
        Some("does not start with `/`")
    } else {
        None
    }
}

/// Whether every segment of a path can stand in a path template: a non-empty run of the
/// characters Envoy's `uri_template` accepts ([`is_template_char`]), or an empty last
/// segment (a trailing `/`). Only such paths are ever generalized: `{*}` and `{**}` match
/// nothing else, and a template with any other literal segment is invalid.
pub fn is_templatable(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    // One pass over the bytes: a `/` right after another (or first) is an empty segment.
    let mut at_segment_start = true;
    for &byte in rest.as_bytes() {
        if byte == b'/' {
            if at_segment_start {
                return false;
            }
            at_segment_start = true;
        } else if is_template_char(byte) {
            at_segment_start = false;
        } else {
            return false;
        }
    }
    true
}

/// Writes the templated form of a normalized, learnable path (it starts with `/`, no query;
/// see [`unlearnable_path`]) into `out`: each identifier segment becomes `{*}`. A path that
/// cannot stand in a template ([`is_templatable`]) is written as it is, and matches only
/// itself.
pub fn template_path(path: &str, options: &TemplateOptions, out: &mut String) {
    out.clear();
    if !is_templatable(path) {
        out.push_str(path);
        return;
    }
    let rest = path.strip_prefix('/').unwrap_or(path);
    for segment in rest.split('/') {
        out.push('/');
        if is_identifier(segment, options) {
            out.push_str(ONE);
        } else {
            out.push_str(segment);
        }
    }
}

/// One path of a workload's aggregate, for [`generalize`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathUse {
    /// The path as templated by [`template_path`].
    pub path: String,
    /// The methods it was requested with (by any caller).
    pub methods: BTreeSet<String>,
}

#[derive(Debug, Default)]
struct Node {
    children: BTreeMap<String, Node>,
    /// Methods of the paths that end here.
    methods: BTreeSet<String>,
    /// Inputs that end here.
    ids: Vec<usize>,
}

impl Node {
    fn is_terminal(&self) -> bool {
        !self.ids.is_empty()
    }

    fn absorb(&mut self, other: Node) {
        self.methods.extend(other.methods);
        self.ids.extend(other.ids);
        for (segment, child) in other.children {
            self.children.entry(segment).or_default().absorb(child);
        }
    }

    /// Everything below this node (not the node itself), flattened into one node.
    fn take_descendants(&mut self) -> Node {
        let mut flat = Node::default();
        for (_, mut child) in std::mem::take(&mut self.children) {
            let below = child.take_descendants();
            flat.methods.extend(child.methods);
            flat.ids.extend(child.ids);
            flat.methods.extend(below.methods);
            flat.ids.extend(below.ids);
        }
        flat
    }

    /// Distinct paths ending two or more segments below this node.
    fn deep_tails(&self) -> usize {
        self.children
            .values()
            .map(|child| {
                child
                    .children
                    .values()
                    .map(|grandchild| usize::from(grandchild.is_terminal()) + grandchild.tails())
                    .sum::<usize>()
            })
            .sum()
    }

    /// Distinct paths ending below this node.
    fn tails(&self) -> usize {
        self.children
            .values()
            .map(|child| usize::from(child.is_terminal()) + child.tails())
            .sum()
    }
}

/// Generalizes one workload's paths (module documentation, stage 2). Returns, for each
/// input, the template that covers it; deterministic for a given input set.
pub fn generalize(paths: &[PathUse], options: &TemplateOptions) -> Vec<String> {
    let mut root = Node::default();
    let mut result = vec![String::new(); paths.len()];
    for (id, used) in paths.iter().enumerate() {
        if !is_templatable(&used.path) {
            // Kept whole: no sibling merge or `{**}` may cover it.
            if let Some(slot) = result.get_mut(id) {
                slot.clone_from(&used.path);
            }
            continue;
        }
        let mut node = &mut root;
        let rest = used.path.strip_prefix('/').unwrap_or(&used.path);
        for segment in rest.split('/') {
            node = node.children.entry(segment.to_string()).or_default();
        }
        node.methods.extend(used.methods.iter().cloned());
        node.ids.push(id);
    }
    reshape(&mut root, 0, options);
    let mut prefix = String::new();
    collect(&root, &mut prefix, &mut result);
    result
}

fn reshape(node: &mut Node, depth: usize, options: &TemplateOptions) {
    merge_siblings(node, options);
    for child in node.children.values_mut() {
        reshape(child, depth + 1, options);
    }
    if options.rest_threshold > 0
        && depth >= options.rest_min_depth.max(1)
        && node.deep_tails() > options.rest_threshold
    {
        let flat = node.take_descendants();
        node.children.insert(REST.to_string(), flat);
    }
}

/// The shape of a literal child: the methods used on it and whether paths go on below it.
type Signature = (BTreeSet<String>, bool);

fn merge_siblings(node: &mut Node, options: &TemplateOptions) {
    if options.max_literal_siblings == 0 {
        return;
    }
    let literal = |segment: &str| segment != ONE && segment != REST && !segment.is_empty();
    let literal_count = node.children.keys().filter(|key| literal(key)).count();
    if literal_count <= options.max_literal_siblings {
        return;
    }
    let mut groups: BTreeMap<Signature, usize> = BTreeMap::new();
    for (segment, child) in &node.children {
        if literal(segment) {
            *groups
                .entry((child.methods.clone(), !child.children.is_empty()))
                .or_default() += 1;
        }
    }
    // The largest group; on a tie, the first in signature order.
    let mut dominant: Option<(&Signature, usize)> = None;
    for (signature, count) in &groups {
        if dominant.is_none_or(|(_, best)| *count > best) {
            dominant = Some((signature, *count));
        }
    }
    let Some((dominant, size)) = dominant.map(|(signature, size)| (signature.clone(), size)) else {
        return;
    };
    if size < 2 {
        return;
    }
    let merging: Vec<String> = node
        .children
        .iter()
        .filter(|(segment, child)| {
            let has_children = !child.children.is_empty();
            literal(segment) && child.methods == dominant.0 && has_children == dominant.1
        })
        .map(|(segment, _)| segment.clone())
        .collect();
    let mut merged = node.children.remove(ONE).unwrap_or_default();
    for segment in merging {
        if let Some(child) = node.children.remove(&segment) {
            merged.absorb(child);
        }
    }
    node.children.insert(ONE.to_string(), merged);
}

fn collect(node: &Node, prefix: &mut String, result: &mut [String]) {
    for id in &node.ids {
        if let Some(slot) = result.get_mut(*id) {
            slot.clone_from(prefix);
        }
    }
    for (segment, child) in &node.children {
        let length = prefix.len();
        prefix.push('/');
        prefix.push_str(segment);
        collect(child, prefix, result);
        prefix.truncate(length);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing)]
    use super::*;

    fn templated(path: &str) -> String {
        let mut out = String::new();
        template_path(path, &TemplateOptions::default(), &mut out);
        out
    }

    #[test]
    fn identifiers() {
        let options = TemplateOptions::default();
        for id in [
            "123",
            "0",
            "550e8400-e29b-41d4-a716-446655440000",
            "550E8400-E29B-41D4-A716-446655440000",
            "deadbeef01",
            "5f2b9c1e7a3d4e6f",
            "abcdefabcdefabcdef",
            "a1b2c3d4",
            "usr9x8y7",
            "2026-11-27",
            "1.2.3",
            "o_5521",
            "cr_20931",
            "cus-a1b2c3d4e5",
            "KsT2xqLm9PzRw4Yb",
            "report2026q3",
            "main.3f2a9c1e.js",
        ] {
            assert!(is_identifier(id, &options), "{id} is an identifier");
        }
        for word in [
            "me",
            "export",
            "v1",
            "v2beta1",
            "users",
            "order-history",
            "facade",
            "deadbeef",
            "api_v2",
            "page-2",
            "healthz",
            "index.html",
            "x86_64",
            "",
            "-",
            "my-long-product-slug-name",
        ] {
            assert!(!is_identifier(word, &options), "{word} is literal");
        }
    }

    #[test]
    fn paths_template_per_segment() {
        assert_eq!(templated("/users/123"), "/users/{*}");
        assert_eq!(templated("/users/456"), "/users/{*}");
        assert_eq!(templated("/users/me"), "/users/me");
        assert_eq!(templated("/users/export"), "/users/export");
        assert_eq!(
            templated("/v1/orders/550e8400-e29b-41d4-a716-446655440000/items/7"),
            "/v1/orders/{*}/items/{*}"
        );
        assert_eq!(templated("/"), "/");
        assert_eq!(templated("/a/"), "/a/");
        // Segments a template cannot hold keep the whole path exact.
        assert_eq!(templated("/orders/123/a=b"), "/orders/123/a=b");
        assert_eq!(templated("/orders/123/a b"), "/orders/123/a b");
        assert_eq!(templated("//orders/123"), "//orders/123");
        assert_eq!(templated("/orders/123/"), "/orders/{*}/");
        for (path, templatable) in [
            ("/", true),
            ("/a", true),
            ("/a/", true),
            ("/a/b-c.d~e%20", true),
            ("//a", false),
            ("/a//b", false),
            ("/a//", false),
            ("/a b", false),
            ("/a=b", false),
            ("a/b", false),
            ("", false),
        ] {
            assert_eq!(is_templatable(path), templatable, "{path}");
        }
    }

    #[test]
    fn syntax_is_never_learned() {
        for path in [
            "*",
            "/files/a*b",
            "/x/{y}",
            "/v1/{**}",
            "/v1/{*}",
            "/a*",
            "/}",
        ] {
            assert!(unlearnable_path(path).is_some(), "{path}");
        }
        assert!(unlearnable_path("relative").is_some());
        for path in ["/", "/a/b", "/a=b/c d", "/%7Bx%7D"] {
            assert_eq!(unlearnable_path(path), None, "{path}");
        }
    }

    fn uses(items: &[(&str, &[&str])]) -> Vec<PathUse> {
        items
            .iter()
            .map(|(path, methods)| PathUse {
                path: path.to_string(),
                methods: methods.iter().map(|m| m.to_string()).collect(),
            })
            .collect()
    }

    #[test]
    fn few_siblings_stay_apart() {
        let paths = uses(&[
            ("/users/{*}", &["GET"]),
            ("/users/me", &["GET"]),
            ("/users/export", &["POST"]),
        ]);
        let result = generalize(&paths, &TemplateOptions::default());
        assert_eq!(result, vec!["/users/{*}", "/users/me", "/users/export"]);
    }

    #[test]
    fn many_look_alike_siblings_merge_but_distinct_operations_stay() {
        let names: Vec<String> = (0..30).map(|i| format!("/users/person-{i}")).collect();
        let mut paths: Vec<PathUse> = names
            .iter()
            .map(|path| PathUse {
                path: path.clone(),
                methods: ["GET".to_string()].into(),
            })
            .collect();
        paths.push(PathUse {
            path: "/users/export".into(),
            methods: ["POST".to_string()].into(),
        });
        paths.push(PathUse {
            path: "/users/{*}".into(),
            methods: ["GET".to_string()].into(),
        });
        let result = generalize(&paths, &TemplateOptions::default());
        for generalized in &result[..30] {
            assert_eq!(generalized, "/users/{*}");
        }
        assert_eq!(result[30], "/users/export");
        assert_eq!(result[31], "/users/{*}");
    }

    #[test]
    fn deep_fan_out_becomes_rest_only_with_a_threshold() {
        let paths: Vec<PathUse> = (0..50)
            .map(|i| PathUse {
                path: format!(
                    "/static/js/chunk{}/main.js",
                    char::from(b'a' + (i % 26) as u8)
                ) + &"x".repeat(i / 26),
                methods: ["GET".to_string()].into(),
            })
            .chain([PathUse {
                path: "/static".into(),
                methods: ["GET".to_string()].into(),
            }])
            .collect();
        let off = generalize(&paths, &TemplateOptions::default());
        assert!(off.iter().all(|path| !path.contains(REST)));
        let options = TemplateOptions {
            rest_threshold: 20,
            max_literal_siblings: 0,
            ..TemplateOptions::default()
        };
        let on = generalize(&paths, &options);
        for path in &on[..50] {
            assert_eq!(path, "/static/js/{**}");
        }
        assert_eq!(on[50], "/static");
    }
}
