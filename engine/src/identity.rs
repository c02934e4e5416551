//! How Istio matches a peer identity, read from istiod's generators
//! (`pilot/pkg/security/authz/model/generator.go` and `trustdomain/bundle.go` at istio
//! 86c9f01): every identity field becomes an Envoy string matcher or RE2 regex on the peer
//! certificate's URI SAN *as a string*, `spiffe://` included. This module turns that URI
//! into the keys the compiled indexes look up, so that an exact, prefix or suffix value
//! matches exactly when istiod's matcher would:
//!
//! | field | istiod's matcher on the URI |
//! |---|---|
//! | `principals: [v]` | exact `spiffe://v`; `v*` prefix `spiffe://v`; `*v` regex `spiffe://.*v`; `*` regex `.+` |
//! | `namespaces: [v]` | regex `.*/ns/<v, each * as .*>/.*` (any `/ns/` segment) |
//! | `serviceAccounts: [ns/sa]` | regex `spiffe://.+/ns/<ns>/(.+/|)sa/<sa>(/.+)?` |
//! | `trustDomains: [v]` | prefix `spiffe://v/`; `*` prefix `spiffe://`; `p*s` regex `spiffe://p[^/]*s/.*` |
//!
//! A URI that is not a valid SPIFFE ID is matched the same way, as Envoy does.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::pattern::StringPattern;

const SCHEME: &str = "spiffe://";

/// The URI without `spiffe://`: what an exact, prefix or suffix `principals` value is
/// compared with. `None` when the URI has another scheme (only `*` can match it then).
pub fn principal_key(uri: &str) -> Option<&str> {
    uri.strip_prefix(SCHEME)
}

/// Where each `/ns/` of `uri` starts, overlapping ones included (`/ns/ns/x/` opens twice,
/// as istiod's regex `.*/ns/<v>/.*` reads it), in one pass over the bytes.
fn ns_openings(uri: &str) -> impl Iterator<Item = usize> + '_ {
    let bytes = uri.as_bytes();
    bytes
        .iter()
        .enumerate()
        .filter(move |(at, byte)| **byte == b'/' && bytes.get(at + 1..at + 4) == Some(b"ns/"))
        .map(|(at, _)| at)
}

/// Where each `/` of `text` is.
fn slashes(text: &str) -> impl Iterator<Item = usize> + '_ {
    text.bytes()
        .enumerate()
        .filter(|(_, byte)| *byte == b'/')
        .map(|(at, _)| at)
}

/// Calls `visit` with every text `X` such that `/ns/X/` occurs in the URI: the values a
/// `namespaces` pattern is matched against (istiod's `.*/ns/<v>/.*`). Returns whether any
/// `X` exists, which is what `*` (`.*/ns/.*/.*`) asks, an empty `X` included.
pub fn namespace_keys(uri: &str, visit: &mut dyn FnMut(&str)) -> bool {
    let mut found = false;
    for start in ns_openings(uri) {
        let Some(rest) = uri.get(start + 4..) else {
            continue;
        };
        for end in slashes(rest) {
            if let Some(key) = rest.get(..end) {
                found = true;
                visit(key);
            }
        }
    }
    found
}

/// [`namespace_keys`] for indexes where no pattern can match an `X` holding a `/` unless
/// it matches the text before that `/` too (`StringIndex::slash_free`): visits, for each
/// `/ns/`, only the shortest `X` (up to the next `/`). Returns the same as
/// [`namespace_keys`]: whether any `X` exists.
pub fn first_namespace_keys(uri: &str, visit: &mut dyn FnMut(&str)) -> bool {
    let mut found = false;
    for start in ns_openings(uri) {
        let Some(rest) = uri.get(start + 4..) else {
            continue;
        };
        // A byte scan for the `/` (a `char` pattern would set up a searcher per call).
        let end = rest.bytes().position(|byte| byte == b'/');
        if let Some(key) = end.and_then(|end| rest.get(..end)) {
            found = true;
            visit(key);
        }
    }
    found
}

/// Calls `visit(namespace, service_account)` for every pair istiod's service account
/// regex `spiffe://.+/ns/<ns>/(.+/|)sa/<sa>(/.+)?` can bind in the URI. istiod admits
/// no `/` inside either name, so each is one segment.
pub fn service_account_keys(uri: &str, visit: &mut dyn FnMut(&str, &str)) {
    let Some(after_scheme) = uri.strip_prefix(SCHEME) else {
        return;
    };
    for start in ns_openings(after_scheme) {
        // `.+` before `/ns/`: at least one character.
        if start == 0 {
            continue;
        }
        let Some(rest) = after_scheme.get(start + 4..) else {
            continue;
        };
        let Some((namespace, tail)) = rest.split_once('/') else {
            continue;
        };
        // `(.+/|)sa/`: `sa/` right after `/ns/<ns>/`, or after at least one character and
        // a `/`, so at the start of `tail` or of any of its segments but the first
        // (`sa/` cannot overlap itself, so every occurrence is found this way).
        let openings =
            core::iter::once(0).chain(slashes(tail).map(|at| at + 1).filter(|at| *at >= 2));
        for at in openings {
            if tail.as_bytes().get(at..at + 3) != Some(b"sa/") {
                continue;
            }
            let Some(after) = tail.get(at + 3..) else {
                continue;
            };
            match after.split_once('/') {
                None => visit(namespace, after),
                // `(/.+)?`: a `/` after the name must be followed by something.
                Some((account, more)) if !more.is_empty() => visit(namespace, account),
                Some(_) => {}
            }
        }
    }
}

/// The trust domain segment istiod's `trustDomains` matchers see: `(is_spiffe, segment)`,
/// where `is_spiffe` is what `*` asks (prefix `spiffe://`) and `segment` the text between
/// `spiffe://` and the next `/`, which must exist for any other value.
pub fn trust_domain_key(uri: &str) -> (bool, Option<&str>) {
    match uri.strip_prefix(SCHEME) {
        None => (false, None),
        Some(rest) => (true, rest.split_once('/').map(|(segment, _)| segment)),
    }
}

/// The values a policy's `principals` (`ReplaceTrustDomainAliases`) or `trustDomains`
/// (`ExpandTrustDomainAliases`) value stands for once istiod has applied the mesh's trust
/// domain and its aliases. `bundle` is the trust domain followed by its aliases.
pub fn principal_with_aliases(value: &str, bundle: &[String]) -> Vec<String> {
    let parts: Vec<&str> = value.split('/').collect();
    // istiod rewrites only `<td>/ns/<ns>/sa/<sa>` whose trust domain is not exactly `*`.
    let Some((domain, rest)) = (match parts.as_slice() {
        [domain, rest @ ..] if rest.len() == 4 && *domain != "*" => Some((*domain, rest)),
        _ => None,
    }) else {
        return alloc::vec![value.to_string()];
    };
    let in_bundle = bundle.iter().any(|name| td_pattern_match(domain, name));
    if !in_bundle && domain != "cluster.local" {
        return alloc::vec![value.to_string()];
    }
    let mut out: Vec<String> = Vec::new();
    for name in bundle {
        let rewritten = if suffix_match(name, domain) {
            value.to_string()
        } else {
            let mut text = name.clone();
            for part in rest {
                text.push('/');
                text.push_str(part);
            }
            text
        };
        if !out.contains(&rewritten) {
            out.push(rewritten);
        }
    }
    out
}

/// `ExpandTrustDomainAliases`: a `trustDomains` value equal to the trust domain or an alias
/// stands for all of them.
pub fn trust_domain_with_aliases(value: &str, bundle: &[String]) -> Vec<String> {
    if bundle.iter().any(|name| name == value) {
        let mut out: Vec<String> = Vec::new();
        for name in bundle {
            if !out.contains(name) {
                out.push(name.clone());
            }
        }
        out
    } else {
        alloc::vec![value.to_string()]
    }
}

/// istiod's `stringMatch` of one trust domain against one bundle entry: equal, `*`, or a
/// prefix or suffix wildcard on either side.
fn td_pattern_match(a: &str, s: &str) -> bool {
    a == s
        || s == "*"
        || prefix_match(a, s)
        || prefix_match(s, a)
        || suffix_match(a, s)
        || suffix_match(s, a)
}

fn prefix_match(a: &str, pattern: &str) -> bool {
    pattern
        .strip_suffix('*')
        .is_some_and(|prefix| a.starts_with(prefix))
}

fn suffix_match(a: &str, pattern: &str) -> bool {
    pattern
        .strip_prefix('*')
        .is_some_and(|suffix| a.ends_with(suffix))
}

/// The trust domain names istiod works with: the mesh's trust domain (`cluster.local`
/// unless set) followed by its aliases.
pub fn trust_domain_bundle(trust_domain: Option<&str>, aliases: &[String]) -> Vec<String> {
    let mut bundle = alloc::vec![trust_domain.unwrap_or("cluster.local").to_string()];
    bundle.extend(aliases.iter().cloned());
    bundle
}

/// A `requestPrincipals` value split as istiod's `requestPrincipalGenerator` does, at the
/// last `/`, into the matchers for the token's `iss` and `sub` claims (each must be a
/// string). [`StringPattern::Presence`] stands for istiod's `.+`.
pub fn request_principal_parts(value: &str) -> (StringPattern, StringPattern) {
    use StringPattern::{Exact, Prefix, Presence, Suffix};
    let split = value.rfind('/').map(|at| {
        (
            value.get(..at).unwrap_or_default(),
            value.get(at + 1..).unwrap_or_default(),
        )
    });
    if value == "*" {
        return (Presence, Presence);
    }
    if let Some(rest) = value.strip_prefix('*') {
        return match split {
            Some((issuer, subject)) => {
                let issuer = if issuer == "*" {
                    Presence
                } else {
                    Suffix(issuer.get(1..).unwrap_or_default().to_string())
                };
                (issuer, Exact(subject.to_string()))
            }
            None => (Presence, Suffix(rest.to_string())),
        };
    }
    if let Some(rest) = value.strip_suffix('*') {
        return match split {
            Some((issuer, subject)) => {
                let subject = if subject == "*" {
                    Presence
                } else {
                    Prefix(
                        subject
                            .get(..subject.len().saturating_sub(1))
                            .unwrap_or_default()
                            .to_string(),
                    )
                };
                (Exact(issuer.to_string()), subject)
            }
            None => (Prefix(rest.to_string()), Presence),
        };
    }
    match split {
        Some((issuer, subject)) => (Exact(issuer.to_string()), Exact(subject.to_string())),
        None => (Exact(value.to_string()), Exact(String::new())),
    }
}

/// Whether a claim value satisfies one side of a request principal: Envoy's string
/// matcher, where `.+` (presence) needs a non-empty string and `exact ""` matches only
/// the empty string.
pub fn claim_part_matches(pattern: &StringPattern, value: &str) -> bool {
    match pattern {
        StringPattern::Exact(text) => value == text,
        other => other.matches(value, false),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use alloc::vec;

    fn namespaces(uri: &str) -> Vec<String> {
        let mut keys = Vec::new();
        namespace_keys(uri, &mut |key| keys.push(key.to_string()));
        keys
    }

    fn accounts(uri: &str) -> Vec<String> {
        let mut keys = Vec::new();
        service_account_keys(uri, &mut |ns, sa| keys.push(alloc::format!("{ns}/{sa}")));
        keys
    }

    #[test]
    fn namespace_keys_follow_istios_regex() {
        assert_eq!(
            namespaces("spiffe://td/ns/shop/sa/web"),
            vec!["shop", "shop/sa"]
        );
        // Any `/ns/` segment counts, not only the first.
        assert!(namespaces("spiffe://td/ns/a/sa/b/ns/evil/x").contains(&"evil".to_string()));
        // `/ns/shop` at the very end has no `/` after it: no key.
        assert!(namespaces("spiffe://td/sa/x/ns/shop").is_empty());
        assert!(!namespace_keys("spiffe://td/ns/shop", &mut |_| {}));
        assert!(namespace_keys("spiffe://td/ns//x", &mut |_| {}));
        // Overlapping `/ns/`: istiod's `.*/ns/x/.*` matches through the second one.
        assert!(namespaces("spiffe://td/ns/ns/x/sa/y").contains(&"x".to_string()));
    }

    #[test]
    fn first_namespace_keys_are_the_shortest_key_of_each_opening() {
        let first = |uri: &str| {
            let mut keys = Vec::new();
            let found = first_namespace_keys(uri, &mut |key| keys.push(key.to_string()));
            (found, keys)
        };
        for uri in [
            "spiffe://td/ns/shop/sa/web",
            "spiffe://td/ns/a/sa/b/ns/evil/x",
            "spiffe://td/sa/x/ns/shop",
            "spiffe://td/ns/shop",
            "spiffe://td/ns//x",
            "spiffe://td/ns/ns/x/sa/y",
            "/ns/",
            "",
        ] {
            let all = namespaces(uri);
            let (found, keys) = first(uri);
            assert_eq!(found, namespace_keys(uri, &mut |_| {}), "{uri}");
            // Every key is one of all the keys, without a `/`, and every key of all the
            // keys without a `/` is there.
            assert!(
                keys.iter()
                    .all(|key| all.contains(key) && !key.contains('/')),
                "{uri}"
            );
            assert!(
                all.iter()
                    .filter(|key| !key.contains('/'))
                    .all(|key| keys.contains(key)),
                "{uri}"
            );
        }
        assert_eq!(first("spiffe://td/ns/ns/x/sa/y").1, vec!["ns", "x"]);
    }

    #[test]
    fn service_account_keys_follow_istios_regex() {
        assert_eq!(accounts("spiffe://td/ns/shop/sa/web"), vec!["shop/web"]);
        assert_eq!(accounts("spiffe://td/ns/shop/sa/web/k/v"), vec!["shop/web"]);
        assert_eq!(accounts("spiffe://td/ns/shop/k/v/sa/web"), vec!["shop/web"]);
        // `(/.+)?`: a trailing slash alone does not end the name.
        assert!(accounts("spiffe://td/ns/shop/sa/web/").is_empty());
        // `spiffe://.+`: a trust domain is needed before `/ns/`.
        assert!(accounts("spiffe:///ns/shop/sa/web").is_empty());
        // `sa/` must start a segment.
        assert!(accounts("spiffe://td/ns/shop/xsa/web").is_empty());
        assert!(accounts("spiffe://td/ns/shop/x/sa/web").contains(&"shop/web".to_string()));
        assert!(accounts("http://td/ns/shop/sa/web").is_empty());
        // Overlapping `/ns/`: the namespace may be `ns` or what follows it.
        assert_eq!(
            accounts("spiffe://td/ns/ns/x/sa/web"),
            vec!["ns/web", "x/web"]
        );
        // `(.+/|)`: an empty segment before `sa/` is not `.+/`.
        assert!(accounts("spiffe://td/ns/shop//sa/web").is_empty());
        assert_eq!(accounts("spiffe://td/ns/shop/x//sa/web"), vec!["shop/web"]);
    }

    #[test]
    fn trust_domain_keys() {
        assert_eq!(trust_domain_key("spiffe://td/ns/a"), (true, Some("td")));
        assert_eq!(trust_domain_key("spiffe://td"), (true, None));
        assert_eq!(trust_domain_key("https://td/x"), (false, None));
    }

    #[test]
    fn cluster_local_is_always_rewritten() {
        let bundle = trust_domain_bundle(Some("example.org"), &[]);
        assert_eq!(
            principal_with_aliases("cluster.local/ns/a/sa/b", &bundle),
            vec!["example.org/ns/a/sa/b"]
        );
        let bundle = trust_domain_bundle(Some("td1"), &["td2".to_string()]);
        assert_eq!(
            principal_with_aliases("td2/ns/a/sa/b", &bundle),
            vec!["td1/ns/a/sa/b", "td2/ns/a/sa/b"]
        );
        // Another trust domain, a wildcard trust domain, or another shape: kept.
        assert_eq!(
            principal_with_aliases("other/ns/a/sa/b", &bundle),
            vec!["other/ns/a/sa/b"]
        );
        assert_eq!(
            principal_with_aliases("*/ns/a/sa/b", &bundle),
            vec!["*/ns/a/sa/b"]
        );
        assert_eq!(
            principal_with_aliases("td1/ns/a/sa/b/c", &bundle),
            vec!["td1/ns/a/sa/b/c"]
        );
        // `*d1` matches td1 by suffix: kept for td1, rewritten for td2.
        assert_eq!(
            principal_with_aliases("*d1/ns/a/sa/b", &bundle),
            vec!["*d1/ns/a/sa/b", "td2/ns/a/sa/b"]
        );
        assert_eq!(
            trust_domain_with_aliases("td2", &bundle),
            vec!["td1", "td2"]
        );
        assert_eq!(trust_domain_with_aliases("td3", &bundle), vec!["td3"]);
    }

    #[test]
    fn request_principals_split_at_the_last_slash() {
        use StringPattern::*;
        let p = request_principal_parts;
        assert_eq!(
            p("https://idp.example/alice"),
            (Exact("https://idp.example".into()), Exact("alice".into()))
        );
        assert_eq!(
            p("https://idp.example/*"),
            (Exact("https://idp.example".into()), Presence)
        );
        assert_eq!(p("*"), (Presence, Presence));
        assert_eq!(p("*/alice"), (Presence, Exact("alice".into())));
        assert_eq!(
            p("*.example/alice"),
            (Suffix(".example".into()), Exact("alice".into()))
        );
        assert_eq!(p("*lice"), (Presence, Suffix("lice".into())));
        assert_eq!(p("https*"), (Prefix("https".into()), Presence));
        assert_eq!(p("iss/al*"), (Exact("iss".into()), Prefix("al".into())));
        assert_eq!(p("alone"), (Exact("alone".into()), Exact(String::new())));
        assert!(claim_part_matches(&Exact(String::new()), ""));
        assert!(!claim_part_matches(&Presence, ""));
    }
}
