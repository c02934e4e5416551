//! Security properties of the engine, checked with proptest over generated policies,
//! paths and requests:
//!
//! - path normalization is idempotent in every normalizing mode, and known-equivalent
//!   spellings of a path (dot segments, escapes, backslashes, repeated slashes, `;`
//!   parameters on dot segments, queries, fragments) normalize to it;
//! - a request is never allowed on a normalized path that a DENY rule covers, however the
//!   raw path is spelled;
//! - an ALLOW-only set allows a request exactly when one of its rules, on its own, would:
//!   it never allows a request that no rule matches;
//! - the path-template index agrees with the template matcher of `pattern.rs`.
//!
//! `differential.rs` checks the compiled evaluator against the reference interpreter on
//! every field and `when` key; these properties do not rely on the reference interpreter.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use cordon_engine::path::normalize;
use cordon_engine::pattern::PathPattern;
use cordon_engine::{Options, PathNormalization, PolicySet, Reason, Request, TrafficRecord};
use proptest::prelude::*;
use serde_json::{json, Value};

const NORMALIZING: [PathNormalization; 4] = [
    PathNormalization::Base,
    PathNormalization::MergeSlashes,
    PathNormalization::DecodeAndMergeSlashes,
    PathNormalization::Strict,
];
const ALL_MODES: [PathNormalization; 5] = [
    PathNormalization::None,
    PathNormalization::Base,
    PathNormalization::MergeSlashes,
    PathNormalization::DecodeAndMergeSlashes,
    PathNormalization::Strict,
];

/// Pieces of hostile paths: every spelling of a dot, a slash and a NUL that some component
/// reads differently, parameters, query and fragment starts, stray escapes, overlong UTF-8
/// and full-width dots, and plain segment text.
const PATH_TOKENS: &[&str] = &[
    "/", "//", "\\", ".", "..", "%2e", "%2E", "%2e%2e", ".%2e", "%252e", "%2f", "%2F", "%5c",
    "%5C", "%00", "\0", ";", ";x=1", "..;", ".;", "?", "#", "a", "b", "admin", "ADMIN", "%61",
    "%41", "%", "%4", "%%", "%zz", "é", "\u{ff0e}", "%c0%ae", "%C0%AE", "*", "~", "%7e", "-", "{",
    "}",
];

fn raw_path() -> impl Strategy<Value = String> {
    (
        prop::bool::weighted(0.9),
        prop::collection::vec(prop::sample::select(PATH_TOKENS), 0..14),
    )
        .prop_map(|(slash, tokens)| {
            let mut path = String::from(if slash { "/" } else { "" });
            for token in tokens {
                path.push_str(token);
            }
            path
        })
}

fn mode() -> impl Strategy<Value = PathNormalization> {
    prop::sample::select(&ALL_MODES[..])
}

fn norm(raw: &str, mode: PathNormalization) -> Result<String, cordon_engine::PathRejection> {
    let mut buf = String::new();
    normalize(raw, mode, &mut buf).map(str::to_string)
}

fn policy(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": name, "namespace": "finance"},
        "spec": spec,
    })
}

fn compile(policies: &[Value], mode: PathNormalization) -> PolicySet {
    let options = Options {
        path_normalization: mode,
        ..Options::default()
    };
    PolicySet::compile(policies, options).unwrap()
}

fn decide_path(set: &PolicySet, path: &str) -> cordon_engine::Decision {
    let request = Request {
        path: Some(path),
        method: Some("GET"),
        ..Request::default()
    };
    set.evaluate(&request, &mut set.new_scratch())
}

/// One step that turns a path into a spelling Envoy normalizes back to it (in `modes`).
#[derive(Debug, Clone)]
enum Obfuscation {
    /// `/x` → `/./x`.
    CurrentDir(usize),
    /// `/x` → `/zz/../x`.
    ParentDir(usize),
    /// `/x` → `/zz/%2e%2e/x`.
    EncodedParentDir(usize),
    /// `/x` → `/zz/..;p=1/x` (Envoy strips parameters from dot segments).
    ParentDirWithParameters(usize),
    /// A letter of a segment → `%XX`, upper or lower hex.
    EncodeLetter(usize, bool),
    /// `/` → `\`.
    Backslash(usize),
    /// `/` → `//`.
    DoubleSlash(usize),
    /// `/` → `%2F`.
    EncodedSlash(usize),
}

impl Obfuscation {
    fn works_in(&self, mode: PathNormalization) -> bool {
        use PathNormalization::*;
        match self {
            Obfuscation::DoubleSlash(_) => {
                matches!(mode, MergeSlashes | DecodeAndMergeSlashes | Strict)
            }
            Obfuscation::EncodedSlash(_) => mode == DecodeAndMergeSlashes,
            _ => mode != None,
        }
    }

    /// Applies the step to the slash or letter it names (modulo how many there are).
    fn apply(&self, path: &str) -> String {
        let slashes: Vec<usize> = path.match_indices('/').map(|(at, _)| at).collect();
        // Letters and digits outside existing `%XX` escapes.
        let bytes = path.as_bytes();
        let letters: Vec<usize> = (0..bytes.len())
            .filter(|&at| bytes[at].is_ascii_alphanumeric())
            .filter(|&at| !bytes[at.saturating_sub(2)..at].contains(&b'%'))
            .collect();
        if slashes.is_empty() {
            return path.to_string();
        }
        let slash = |n: usize| slashes[n % slashes.len()];
        let splice = |at: usize, len: usize, with: &str| {
            format!("{}{with}{}", &path[..at], &path[at + len..])
        };
        match *self {
            Obfuscation::CurrentDir(n) => splice(slash(n), 1, "/./"),
            Obfuscation::ParentDir(n) => splice(slash(n), 1, "/zz/../"),
            Obfuscation::EncodedParentDir(n) => splice(slash(n), 1, "/zz/%2e%2E/"),
            Obfuscation::ParentDirWithParameters(n) => splice(slash(n), 1, "/zz/..;p=1/"),
            Obfuscation::EncodeLetter(n, upper) => {
                if letters.is_empty() {
                    return path.to_string();
                }
                let at = letters[n % letters.len()];
                let byte = path.as_bytes()[at];
                let escape = if upper {
                    format!("%{byte:02X}")
                } else {
                    format!("%{byte:02x}")
                };
                splice(at, 1, &escape)
            }
            Obfuscation::Backslash(n) => {
                // Not next to a `..;p=1` segment. After it: Envoy strips parameters up to
                // the next `/`, and a `\` is not one yet. Before it: Envoy strips `/..;p`
                // only after a `/`, so behind a `\` the segment stays, and a later `..`
                // may remove it instead. Either way that would be another path.
                let touches_parameters = |at: &usize| {
                    let before = path[..*at].rsplit('/').next().unwrap_or_default();
                    let after = path[*at + 1..].split('/').next().unwrap_or_default();
                    before.contains(';') || after.contains(';')
                };
                let candidates: Vec<usize> = slashes
                    .iter()
                    .copied()
                    .filter(|at| !touches_parameters(at))
                    .collect();
                if candidates.is_empty() {
                    return path.to_string();
                }
                splice(candidates[n % candidates.len()], 1, "\\")
            }
            Obfuscation::DoubleSlash(n) => {
                // Not before any `..`: Envoy resolves dot segments before merging slashes,
                // so a later `..` may remove the empty segment instead of a real one (and
                // STRICT refuses a `..` right after an empty segment).
                let before_parent = |at: &usize| {
                    let rest = path[at + 1..].to_ascii_lowercase();
                    ["..", "%2e%2e", "%2e.", ".%2e"]
                        .iter()
                        .any(|parent| rest.contains(parent))
                };
                let candidates: Vec<usize> = slashes
                    .iter()
                    .copied()
                    .filter(|at| !before_parent(at))
                    .collect();
                if candidates.is_empty() {
                    return path.to_string();
                }
                splice(candidates[n % candidates.len()], 1, "//")
            }
            Obfuscation::EncodedSlash(n) => {
                // The leading slash stays: STRICT and DECODE_AND_MERGE_SLASHES differ on it.
                let at = slash(n);
                if at == 0 {
                    path.to_string()
                } else {
                    splice(at, 1, "%2F")
                }
            }
        }
    }
}

fn obfuscation() -> impl Strategy<Value = Obfuscation> {
    prop_oneof![
        any::<usize>().prop_map(Obfuscation::CurrentDir),
        any::<usize>().prop_map(Obfuscation::ParentDir),
        any::<usize>().prop_map(Obfuscation::EncodedParentDir),
        any::<usize>().prop_map(Obfuscation::ParentDirWithParameters),
        (any::<usize>(), any::<bool>()).prop_map(|(n, upper)| Obfuscation::EncodeLetter(n, upper)),
        any::<usize>().prop_map(Obfuscation::Backslash),
        any::<usize>().prop_map(Obfuscation::DoubleSlash),
        any::<usize>().prop_map(Obfuscation::EncodedSlash),
    ]
}

/// A normalized path: `/` and segments of letters.
fn target_path() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(&["admin", "api", "v1", "x", "Secret", "a-b_c~d"][..]),
        1..5,
    )
    .prop_map(|segments| format!("/{}", segments.join("/")))
}

/// DENY patterns a policy might protect `/admin` with, and what they cover.
const DENY_PATHS: &[&str] = &[
    "/admin",
    "/admin/*",
    "/admin*",
    "/admin/{**}",
    "/admin/{*}",
    "/{*}/admin",
    "*/admin",
    "*.json",
];

/// ALLOW policies a DENY sits next to: allow everything, allow by prefix, allow by
/// template, allow an unrelated path, or no ALLOW policy at all.
fn allow_policies() -> impl Strategy<Value = Vec<Value>> {
    prop::sample::select(&[0usize, 1, 2, 3, 4][..]).prop_map(|which| match which {
        0 => vec![policy("allow-all", json!({"rules": [{}]}))],
        1 => vec![policy(
            "allow-prefix",
            json!({"rules": [{"to": [{"operation": {"paths": ["/*"]}}]}]}),
        )],
        2 => vec![policy(
            "allow-template",
            json!({"rules": [{"to": [{"operation": {"paths": ["/{**}"]}}]}]}),
        )],
        3 => vec![policy(
            "allow-public",
            json!({"rules": [{"to": [{"operation": {"paths": ["/public/*"]}}]}]}),
        )],
        _ => vec![],
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Normalizing a normalized path changes nothing, in every normalizing mode; the
    /// result has no query, fragment, backslash, NUL or dot segment.
    #[test]
    fn normalization_is_idempotent(raw in raw_path()) {
        for mode in NORMALIZING {
            let Ok(once) = norm(&raw, mode) else { continue };
            prop_assert_eq!(norm(&once, mode), Ok(once.clone()), "{:?} in {}", raw, mode.name());
            prop_assert!(once.starts_with('/') || once == "*", "{:?} -> {:?}", raw, once);
            prop_assert!(!once.contains(['?', '#', '\\', '\0']), "{:?} -> {:?}", raw, once);
            for segment in once.split('/') {
                let bare = segment.split(';').next().unwrap_or_default();
                prop_assert!(
                    !matches!(bare, "." | ".." | "%2e" | "%2E" | "%2e%2e" | "%2E%2E" | ".%2e" | "%2e."),
                    "{:?} -> {:?} in {}", raw, once, mode.name()
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// Spellings Envoy resolves to the same path normalize to it, so a DENY on the path
    /// catches every one of them, and an ALLOW on exactly that path still admits them.
    #[test]
    fn equivalent_spellings_normalize_to_the_same_path(
        target in target_path(),
        steps in prop::collection::vec(obfuscation(), 1..5),
        mode in prop::sample::select(&NORMALIZING[..]),
        suffix in prop::sample::select(&["", "?a=/admin", "#/../x", "?", "?%2e%2e"][..]),
    ) {
        let mut raw = target.clone();
        for step in steps.iter().filter(|step| step.works_in(mode)) {
            raw = step.apply(&raw);
        }
        raw.push_str(suffix);
        prop_assert_eq!(norm(&raw, mode), Ok(target.clone()), "{:?} in {}", raw, mode.name());

        let deny = policy(
            "deny-target",
            json!({"action": "DENY", "rules": [{"to": [{"operation": {"paths": [target]}}]}]}),
        );
        let allow = policy(
            "allow-target",
            json!({"rules": [{"to": [{"operation": {"paths": [target]}}]}]}),
        );
        let set = compile(&[deny], mode);
        prop_assert!(!decide_path(&set, &raw).allowed, "{:?} in {}", raw, mode.name());
        let set = compile(&[allow], mode);
        prop_assert!(decide_path(&set, &raw).allowed, "{:?} in {}", raw, mode.name());
    }

    /// Whatever the raw path, a request whose normalized path a DENY rule covers is
    /// denied, next to any ALLOW policy; a path normalization rejects is refused with 400.
    #[test]
    fn a_path_a_deny_rule_covers_is_never_allowed(
        raw in raw_path(),
        mode in mode(),
        deny_path in prop::sample::select(DENY_PATHS),
        allows in allow_policies(),
        tight in any::<bool>(),
    ) {
        let deny = policy(
            "deny-admin",
            json!({"action": "DENY", "rules": [{"to": [{"operation": {"paths": [deny_path]}}]}]}),
        );
        let mut policies = allows;
        policies.push(deny);
        let mut options = Options { path_normalization: mode, ..Options::default() };
        if tight {
            options.limits.max_path_bytes = 12;
        }
        let set = PolicySet::compile(&policies, options.clone()).unwrap();
        let decision = decide_path(&set, &raw);
        if raw.len() > options.limits.max_path_bytes {
            prop_assert_eq!(decision.status, 400);
            return Ok(());
        }
        match norm(&raw, mode) {
            Err(_) => {
                prop_assert_eq!(decision.status, 400);
                prop_assert!(matches!(decision.reason, Reason::PathRejected(_)));
            }
            Ok(normalized) => {
                let covered = PathPattern::parse(deny_path).unwrap().matches(&normalized);
                if covered {
                    prop_assert!(
                        !decision.allowed,
                        "{:?} normalizes to {:?}, which {} covers, in {}",
                        raw, normalized, deny_path, mode.name()
                    );
                    prop_assert_eq!(decision.status, 403);
                }
            }
        }
    }
}

/// Values the ALLOW-only property draws from: enough overlap with the requests below that
/// rules match, with the tricks the adversarial corpora use.
const PRINCIPALS: &[&str] = &[
    "cluster.local/ns/a/sa/x",
    "cluster.local/ns/a/*",
    "*/sa/y",
    "*",
    "cluster.local/ns/b/sa/y",
];
const METHODS: &[&str] = &["GET", "POST", "G*", "*"];
const PATHS: &[&str] = &[
    "/admin",
    "/api/*",
    "/api/{*}/items",
    "/api/{**}",
    "*.json",
    "*",
];
const HOSTS: &[&str] = &["api.example.com", "*.example.com", "api.example.com:*", "*"];
const HEADER_VALUES: &[&str] = &["admin", "user", "*", "ad*", "*min", "a,b"];
const IP_BLOCKS: &[&str] = &["10.0.0.0/8", "192.168.0.0/16", "::1"];

fn values(choices: &'static [&'static str]) -> impl Strategy<Value = Vec<&'static str>> {
    prop::collection::vec(prop::sample::select(choices), 1..3)
}

fn allow_rule() -> impl Strategy<Value = Value> {
    let source = prop_oneof![
        values(PRINCIPALS).prop_map(|v| json!({"principals": v})),
        values(PRINCIPALS).prop_map(|v| json!({"notPrincipals": v})),
        values(IP_BLOCKS).prop_map(|v| json!({"ipBlocks": v})),
        values(&["a", "b", "*"]).prop_map(|v| json!({"namespaces": v})),
    ];
    let operation = prop_oneof![
        values(METHODS).prop_map(|v| json!({"methods": v})),
        values(PATHS).prop_map(|v| json!({"paths": v})),
        values(PATHS).prop_map(|v| json!({"notPaths": v})),
        values(HOSTS).prop_map(|v| json!({"hosts": v})),
        (values(METHODS), values(PATHS)).prop_map(|(m, p)| json!({"methods": m, "paths": p})),
    ];
    let condition = prop_oneof![
        values(HEADER_VALUES).prop_map(|v| json!({"key": "request.headers[x-user]", "values": v})),
        values(HEADER_VALUES)
            .prop_map(|v| json!({"key": "request.headers[x-user]", "notValues": v})),
        values(&["read", "write"])
            .prop_map(|v| json!({"key": "request.auth.claims[scope]", "values": v})),
    ];
    (
        prop::collection::vec(source, 0..3),
        prop::collection::vec(operation, 0..3),
        prop::collection::vec(condition, 0..2),
    )
        .prop_map(|(from, to, when)| {
            let mut rule = serde_json::Map::new();
            if !from.is_empty() {
                let from: Vec<Value> = from.into_iter().map(|s| json!({"source": s})).collect();
                rule.insert("from".into(), json!(from));
            }
            if !to.is_empty() {
                let to: Vec<Value> = to.into_iter().map(|o| json!({"operation": o})).collect();
                rule.insert("to".into(), json!(to));
            }
            if !when.is_empty() {
                rule.insert("when".into(), json!(when));
            }
            Value::Object(rule)
        })
}

fn allow_only_policies() -> impl Strategy<Value = Vec<Value>> {
    prop::collection::vec(
        (
            prop::collection::vec(allow_rule(), 0..4),
            prop::sample::select(&["finance", "istio-system", "other"][..]),
            prop::option::weighted(0.3, prop::sample::select(&["billing", "ledger"][..])),
        ),
        1..5,
    )
    .prop_map(|policies| {
        policies
            .into_iter()
            .enumerate()
            .map(|(position, (rules, namespace, app))| {
                let mut spec = json!({"rules": rules});
                if let Some(app) = app {
                    spec["selector"] = json!({"matchLabels": {"app": app}});
                }
                json!({
                    "apiVersion": "security.istio.io/v1",
                    "kind": "AuthorizationPolicy",
                    "metadata": {"name": format!("p{position}"), "namespace": namespace},
                    "spec": spec,
                })
            })
            .collect()
    })
}

fn request() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(vec![
                Value::Null,
                json!("spiffe://cluster.local/ns/a/sa/x"),
                json!("spiffe://cluster.local/ns/b/sa/y"),
                json!("spiffe://cluster.local:80/ns/a/sa/x"),
                json!("spiffe://cluster.local/ns/a/sa/x/"),
        ]),
        prop::sample::select(&["10.1.2.3", "192.168.1.1", "::1", "8.8.8.8"][..]),
        prop::sample::select(&["GET", "POST", "get", "DELETE"][..]),
        prop::sample::select(
            &[
                "/admin",
                "/ADMIN",
                "/admin/",
                "/api/v1/items",
                "/api//v1/items",
                "/api/x.json",
                "/public/%2e%2e/admin",
                "/api/%2e%2e/admin",
                "/admin%2F",
                "/admin;x",
                "//admin",
                "/",
            ][..],
        ),
        prop::sample::select(
            &["api.example.com", "API.EXAMPLE.COM:8080", "x.example.com", "other"][..],
        ),
        prop::sample::select(vec![
                Value::Null,
                json!("admin"),
                json!("user,admin"),
                json!(["user", "admin"]),
                json!("user, admin"),
                json!(""),
                json!("ADMIN"),
        ]),
        prop::option::of(prop::sample::select(&["read write", "write", "read"][..])),
        prop::sample::select(&[None, Some("billing"), Some("ledger")][..]),
    )
        .prop_map(
            |(principal, ip, method, path, host, user, scope, app)| {
                let mut headers = serde_json::Map::new();
                if !user.is_null() {
                    headers.insert("x-user".into(), user);
                }
                let mut request = json!({"method": method, "path": path, "host": host, "headers": headers});
                if let Some(scope) = scope {
                    request["auth"] = json!({"claims": {"iss": "https://idp", "sub": "u", "scope": scope}});
                }
                let mut destination = json!({"port": 8080});
                if let Some(app) = app {
                    destination["namespace"] = json!("finance");
                    destination["labels"] = json!({"app": app});
                }
                json!({"source": {"principal": principal, "ip": ip}, "destination": destination, "request": request})
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

    /// With ALLOW policies only, a request is allowed exactly when some rule, compiled on
    /// its own in its own policy, allows it; the deciding rule is the first such rule. So
    /// no request is ever allowed that no rule matches, and rules do not interfere
    /// through the value sets and triggers they share.
    #[test]
    fn allow_only_sets_allow_exactly_what_some_rule_matches(
        policies in allow_only_policies(),
        requests in prop::collection::vec(request(), 1..6),
    ) {
        for request in &requests {
            let record = TrafficRecord::from_json(request).unwrap();
            let options = Options { workload: record.workload(), ..Options::default() };
            let set = PolicySet::compile(&policies, options.clone()).unwrap();
            let view = record.request();
            let decision = set.evaluate(&view, &mut set.new_scratch());

            let applies = !set.policies().is_empty();
            let mut first_match = None;
            for policy in &policies {
                for (index, rule) in policy["spec"]["rules"].as_array().unwrap().iter().enumerate() {
                    let mut alone = policy.clone();
                    alone["spec"]["rules"] = json!([rule]);
                    let single = PolicySet::compile(&[alone], options.clone()).unwrap();
                    if single.policies().is_empty() {
                        continue;
                    }
                    let verdict = single.evaluate(&view, &mut single.new_scratch());
                    if verdict.allowed && first_match.is_none() {
                        let name = policy["metadata"]["name"].as_str().unwrap();
                        let namespace = policy["metadata"]["namespace"].as_str().unwrap();
                        first_match = Some(format!("ns[{namespace}]-policy[{name}]-rule[{index}]"));
                    }
                }
            }
            let name = decision.policy.map(|rule| set.rule_id(rule).to_string());
            if !applies {
                prop_assert!(decision.allowed || decision.status == 400, "{}", request);
                continue;
            }
            prop_assert_eq!(
                decision.allowed,
                first_match.is_some(),
                "request {} policies {:?}",
                request,
                policies
            );
            if decision.allowed {
                prop_assert_eq!(name, first_match, "request {}", request);
            }
        }
    }
}

/// Segments templates and paths are made of.
const SEGMENTS: &[&str] = &["a", "b", "", "{*}", "{**}", "a.b", "%2e"];

fn template() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(SEGMENTS), 1..5).prop_map(|segments| {
        // As validation requires: no glob after `{**}`, an empty literal only last.
        let last = segments.len() - 1;
        let mut seen_rest = false;
        let parts: Vec<&str> = segments
            .iter()
            .enumerate()
            .map(|(at, segment)| {
                let segment = match *segment {
                    "{*}" | "{**}" if seen_rest => "a",
                    "" if at != last => "b",
                    other => other,
                };
                seen_rest |= segment == "{**}";
                segment
            })
            .collect();
        format!("/{}", parts.join("/"))
    })
}

fn template_path() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(&["a", "b", "", "a.b", "c", "%2e", "a*", "[x]", "a=b"][..]),
        0..6,
    )
    .prop_map(|segments| format!("/{}", segments.join("/")))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    /// The compiled template index (a trie over segments) decides exactly as
    /// `PathPattern::matches`, the straightforward recursive matcher: each template is an
    /// ALLOW policy of its own, and the deciding one is the first that matches.
    #[test]
    fn template_index_agrees_with_the_template_matcher(
        templates in prop::collection::vec(template(), 1..8),
        paths in prop::collection::vec(template_path(), 1..8),
        with_plain in any::<bool>(),
    ) {
        let mut policies: Vec<Value> = templates
            .iter()
            .enumerate()
            .map(|(position, template)| {
                policy(&format!("t{position}"), json!({"rules": [{"to": [{"operation": {"paths": [template]}}]}]}))
            })
            .collect();
        if with_plain {
            // Plain patterns on the same attribute share the index with the templates.
            policies.push(policy("plain", json!({"rules": [{"to": [{"operation": {"paths": ["/a/*", "/b"]}}]}]})));
        }
        let set = compile(&policies, PathNormalization::None);
        let mut scratch = set.new_scratch();
        for path in &paths {
            let expected = templates
                .iter()
                .position(|template| PathPattern::parse(template).unwrap().matches(path))
                .map(|position| format!("ns[finance]-policy[t{position}]-rule[0]"));
            let request = Request { path: Some(path), ..Request::default() };
            let decision = set.evaluate(&request, &mut scratch);
            let decided = decision.policy.map(|rule| set.rule_id(rule).to_string());
            match expected {
                Some(expected) => prop_assert_eq!(decided, Some(expected), "{} against {:?}", path, templates),
                None if !with_plain => prop_assert!(!decision.allowed, "{} against {:?}", path, templates),
                None => {
                    let plain = path.starts_with("/a/") || path == "/b";
                    prop_assert_eq!(decision.allowed, plain, "{} against {:?}", path, templates);
                }
            }
        }
    }
}

fn short_text() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(&["a", "b", "ab", "/", "Á"][..]), 0..6)
        .prop_map(|parts| parts.concat())
}

fn string_pattern() -> impl Strategy<Value = String> {
    (short_text(), 0..4usize).prop_map(|(text, kind)| match kind {
        0 if !text.is_empty() => text,
        1 => format!("{text}*"),
        2 => format!("*{text}"),
        _ => format!("{text}x"),
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    /// The string index (hash table for exact values, compressed tries for prefixes and
    /// suffixes, case-folded for hosts) decides exactly as `StringPattern::matches`: each
    /// pattern is an ALLOW policy of its own, and the deciding one is the first that
    /// matches. Short texts over a tiny alphabet share many prefixes and suffixes.
    #[test]
    fn string_index_agrees_with_string_patterns(
        patterns in prop::collection::vec(string_pattern(), 1..10),
        values in prop::collection::vec(short_text(), 1..8),
        hosts in any::<bool>(),
    ) {
        let policies: Vec<Value> = patterns
            .iter()
            .enumerate()
            .map(|(position, pattern)| {
                let rule = if hosts {
                    json!({"to": [{"operation": {"hosts": [pattern]}}]})
                } else {
                    json!({"when": [{"key": "request.headers[x-v]", "values": [pattern]}]})
                };
                policy(&format!("s{position}"), json!({"rules": [rule]}))
            })
            .collect();
        let set = compile(&policies, PathNormalization::Strict);
        let mut scratch = set.new_scratch();
        for value in &values {
            let expected = patterns
                .iter()
                .position(|pattern| {
                    // `*` on a header is presence, which an empty value has too.
                    (pattern == "*" && !hosts)
                        || cordon_engine::pattern::StringPattern::parse(pattern)
                            .matches(value, hosts)
                })
                .map(|position| format!("ns[finance]-policy[s{position}]-rule[0]"));
            let headers = [("x-v", value.as_str())];
            let request = Request {
                path: Some("/"),
                host: Some(value),
                headers: &headers,
                ..Request::default()
            };
            let decision = set.evaluate(&request, &mut scratch);
            let decided = decision.policy.map(|rule| set.rule_id(rule).to_string());
            // Header values are also matched element by element; these texts have no `,`.
            prop_assert_eq!(decided, expected, "{:?} against {:?}", value, patterns);
        }
    }
}

/// Values the relation property draws patterns and probes from.
const RELATION_PATHS: &[&str] = &[
    "/a", "/a/*", "/a/{*}", "/a/{**}", "/a/{*}/b", "/{**}/b", "*b", "*", "/a/b", "/b/{*}", "*/",
];
const RELATION_PROBES: &[&str] = &[
    "/a", "/a/", "/a/b", "/a/x", "/a/x/b", "/a//b", "/a/*", "/a/x=y", "/b", "/b/c", "//b", "/", "",
    "/a/b/", "/x/y/b",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// `covers`, `overlaps` and witnesses agree with `PathPattern::matches`: a witness of
    /// `a` minus `b` is matched by `a` and not by `b`; no probe contradicts a covering or a
    /// disjointness.
    #[test]
    fn relations_agree_with_matching(
        a in prop::sample::select(RELATION_PATHS),
        b in prop::sample::select(RELATION_PATHS),
    ) {
        use cordon_engine::model::Matcher;
        use cordon_engine::relation::{covers, difference_of, overlaps, Difference};
        let pa = PathPattern::parse(a).unwrap();
        let pb = PathPattern::parse(b).unwrap();
        let (ma, mb) = (Matcher::Path(pa.clone()), Matcher::Path(pb.clone()));
        match difference_of(&ma, &mb, false) {
            Difference::Witness(value) => {
                prop_assert!(pa.matches(&value) && !pb.matches(&value), "{a} - {b}: {value}");
            }
            Difference::Empty => {
                for probe in RELATION_PROBES {
                    prop_assert!(!pa.matches(probe) || pb.matches(probe), "{b} covers {a}, not {probe}");
                }
            }
            Difference::Unknown => prop_assert!(false, "unknown for {a} - {b}"),
        }
        prop_assert_eq!(covers(&mb, &ma, false), difference_of(&ma, &mb, false) == Difference::Empty);
        if !overlaps(&ma, &mb, false) {
            for probe in RELATION_PROBES {
                prop_assert!(!(pa.matches(probe) && pb.matches(probe)), "{a} and {b} both match {probe}");
            }
        }
    }
}

const PEER_URIS: &[&str] = &[
    "spiffe://cluster.local/ns/shop/sa/frontend",
    "spiffe://cluster.local/ns/shop/sa/frontend/k/v",
    "spiffe://cluster.local/ns/shop/k/v/sa/frontend",
    "spiffe://other.td/ns/shop/sa/db",
    "spiffe://cluster.local/ns/a/sa/b/ns/shop/sa/x",
    "https://cluster.local/ns/shop/sa/frontend",
    "spiffe://cluster.local",
    "spiffe:///ns/shop/sa/frontend",
];
const IDENTITY_FIELDS: &[(&str, &str)] = &[
    ("principals", "cluster.local/ns/shop/sa/frontend"),
    ("principals", "cluster.local/ns/shop/*"),
    ("principals", "*/sa/frontend"),
    ("principals", "*"),
    ("namespaces", "shop"),
    ("namespaces", "sh*"),
    ("namespaces", "*op"),
    ("namespaces", "*"),
    ("serviceAccounts", "frontend"),
    ("serviceAccounts", "shop/db"),
    ("trustDomains", "cluster.local"),
    ("trustDomains", "other.*"),
    ("trustDomains", "*.td"),
    ("trustDomains", "*"),
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Partial evaluation over a class of one URI decides exactly as the request-level
    /// judge does: the three-valued answer is never Maybe there, and never disagrees.
    #[test]
    fn partial_evaluation_of_one_peer_agrees_with_the_judge(
        uri in prop::sample::select(PEER_URIS),
        field in prop::sample::select(IDENTITY_FIELDS),
        negated in any::<bool>(),
    ) {
        use cordon_engine::model::parse_policies;
        use cordon_engine::partial::{field_truth, PeerClass, Truth};
        use cordon_engine::reference::Judge;
        let key = if negated {
            let mut chars = field.0.chars();
            let first = chars.next().unwrap().to_ascii_uppercase();
            format!("not{first}{}", chars.as_str())
        } else {
            field.0.to_string()
        };
        let (policies, _, errors) = parse_policies(&[policy("p", json!({"rules": [{"from": [{"source": {key: [field.1]}}]}]}))]);
        prop_assert!(errors.is_empty(), "{errors:?}");
        let field = &policies[0].rules[0].from[0].fields[0];
        let options = Options::default();
        let request = Request { peer_identity: Some(uri), ..Request::default() };
        let judged = Judge { request: &request, path: None, options: &options }.field_matches(field);
        let partial = field_truth(field, &PeerClass::Uri(uri.to_string()), &options);
        prop_assert_eq!(partial, if judged { Truth::Yes } else { Truth::No }, "{:?} on {}", field, uri);
    }
}
