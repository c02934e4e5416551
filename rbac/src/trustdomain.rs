//! The trust domain bundle: `pilot/pkg/security/trustdomain/{bundle,util}.go`.

/// The trust domain every principal written with `cluster.local` is taken to mean.
const DEFAULT_CLUSTER_LOCAL_DOMAIN: &str = "cluster.local";

/// The mesh trust domain followed by its aliases (`NewBundle`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bundle {
    trust_domains: Vec<String>,
}

impl Bundle {
    /// `NewBundle(trustDomain, aliases)`.
    pub(crate) fn new(trust_domain: &str, aliases: &[String]) -> Bundle {
        let mut trust_domains = Vec::with_capacity(aliases.len() + 1);
        trust_domains.push(trust_domain.to_string());
        trust_domains.extend(aliases.iter().cloned());
        Bundle { trust_domains }
    }

    /// `ReplaceTrustDomainAliases`: a principal `<td>/ns/<ns>/sa/<sa>` (exactly five
    /// `/`-separated parts, trust domain not `*`) whose trust domain is one of the bundle's
    /// (wildcards on either side count) or `cluster.local` becomes one principal per trust
    /// domain of the bundle, in order, without duplicates; a trust domain matching the
    /// principal's own wildcard keeps the principal as written. Anything else is kept.
    pub(crate) fn replace_trust_domain_aliases(&self, principals: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        for principal in principals {
            let parts: Vec<&str> = principal.split('/').collect();
            let Some(&trust_domain) = parts.first() else {
                out.push(principal.clone());
                continue;
            };
            // Not five parts (malformed) or `*` as trust domain: the trust domain is not enforced.
            if parts.len() != 5 || trust_domain == "*" {
                out.push(principal.clone());
                continue;
            }
            if string_match(trust_domain, &self.trust_domains)
                || trust_domain == DEFAULT_CLUSTER_LOCAL_DOMAIN
            {
                out.extend(self.replace_trust_domains(principal, &parts, trust_domain));
            } else {
                out.push(principal.clone());
            }
        }
        out
    }

    fn replace_trust_domains(
        &self,
        principal: &str,
        parts: &[&str],
        from_principal: &str,
    ) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for trust_domain in &self.trust_domains {
            let candidate = if suffix_match(trust_domain, from_principal) {
                principal.to_string()
            } else {
                let rest = parts.get(1..).unwrap_or_default().join("/");
                format!("{trust_domain}/{rest}")
            };
            if !out.contains(&candidate) {
                out.push(candidate);
            }
        }
        out
    }

    /// `ExpandTrustDomainAliases`: a value equal to one of the bundle's trust domains becomes
    /// all of them; duplicates removed, first occurrence kept. `cluster.local` gets no
    /// special treatment here.
    pub(crate) fn expand_trust_domain_aliases(&self, values: &[String]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for value in values {
            let expanded: &[String] = if self.trust_domains.contains(value) {
                &self.trust_domains
            } else {
                core::slice::from_ref(value)
            };
            for item in expanded {
                if !out.contains(item) {
                    out.push(item.clone());
                }
            }
        }
        out
    }
}

/// `stringMatch`: equal, or either side a `*`, `prefix*` or `*suffix` pattern matching the
/// other (only a list entry that is exactly `*` is a match-all; `a` is never `*` here).
fn string_match(a: &str, list: &[String]) -> bool {
    list.iter().any(|s| {
        a == s
            || s == "*"
            || prefix_match(a, s)
            || prefix_match(s, a)
            || suffix_match(a, s)
            || suffix_match(s, a)
    })
}

/// `prefixMatch`: `pattern` ends with `*` and `a` starts with the rest.
fn prefix_match(a: &str, pattern: &str) -> bool {
    pattern.strip_suffix('*').is_some_and(|p| a.starts_with(p))
}

/// `suffixMatch`: `pattern` starts with `*` and `a` ends with the rest.
fn suffix_match(a: &str, pattern: &str) -> bool {
    pattern.strip_prefix('*').is_some_and(|p| a.ends_with(p))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| v.to_string()).collect()
    }

    #[test]
    fn cluster_local_becomes_every_trust_domain() {
        let bundle = Bundle::new("td1", &strings(&["some-td"]));
        assert_eq!(
            bundle.replace_trust_domain_aliases(&strings(&["cluster.local/ns/a/sa/b"])),
            strings(&["td1/ns/a/sa/b", "some-td/ns/a/sa/b"])
        );
    }

    #[test]
    fn alias_becomes_every_trust_domain() {
        let bundle = Bundle::new("td1", &strings(&["cluster.local", "some-td"]));
        assert_eq!(
            bundle.replace_trust_domain_aliases(&strings(&["some-td/ns/a/sa/b"])),
            strings(&[
                "td1/ns/a/sa/b",
                "cluster.local/ns/a/sa/b",
                "some-td/ns/a/sa/b"
            ])
        );
    }

    #[test]
    fn unknown_trust_domain_and_malformed_are_kept() {
        let bundle = Bundle::new("td1", &[]);
        let input = strings(&[
            "other/ns/a/sa/b",
            "*/ns/a/sa/b",
            "a/b",
            "spiffe://td1/ns/a/sa/b",
        ]);
        assert_eq!(bundle.replace_trust_domain_aliases(&input), input);
    }

    #[test]
    fn wildcard_trust_domain_is_kept_for_the_matching_ones() {
        let bundle = Bundle::new("new-td", &strings(&["old-td", "some-trustdomain"]));
        assert_eq!(
            bundle.replace_trust_domain_aliases(&strings(&["*-td/ns/foo/sa/x"])),
            strings(&["*-td/ns/foo/sa/x", "some-trustdomain/ns/foo/sa/x"])
        );
        let bundle = Bundle::new("td1", &strings(&["foobar"]));
        assert_eq!(
            bundle.replace_trust_domain_aliases(&strings(&["*bar/ns/foo/sa/x"])),
            strings(&["td1/ns/foo/sa/x", "*bar/ns/foo/sa/x"])
        );
    }

    #[test]
    fn expand_trust_domains() {
        let bundle = Bundle::new("td1", &strings(&["td2"]));
        assert_eq!(
            bundle.expand_trust_domain_aliases(&strings(&["td2", "x", "td1", "x"])),
            strings(&["td1", "td2", "x"])
        );
        // `cluster.local` is only expanded when it is in the bundle.
        assert_eq!(
            bundle.expand_trust_domain_aliases(&strings(&["cluster.local"])),
            strings(&["cluster.local"])
        );
    }

    #[test]
    fn string_match_forms() {
        let list = strings(&["abc"]);
        assert!(string_match("abc", &list));
        assert!(string_match("ab*", &list));
        assert!(string_match("*bc", &list));
        assert!(!string_match("abd", &list));
        assert!(string_match("anything", &strings(&["*"])));
        assert!(string_match("abc", &strings(&["a*"])));
    }
}
