//! Partial (three-valued) evaluation: questions about a class of requests rather than
//! one request, such as "any request from service account `shop/frontend`". A field about
//! the peer identity is decided against the whole class of peers (yes for all of them, no
//! for any, or some); every other field depends on what the class leaves open and is
//! *maybe*. `cordon blast-radius` asks these questions; the answers come from the same
//! matchers the engine enforces (identity values are compared as languages of peer URIs,
//! [`crate::relation`]), so no tool judges a match on its own.

use alloc::vec::Vec;

use crate::compile::Options;
use crate::identity;
use crate::model::{Attribute, Clause, Field, Matcher, Rule};
use crate::pattern::StringPattern;
pub use crate::relation::PeerClass;

/// A three-valued answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Truth {
    /// For every request of the class.
    Yes,
    /// For some requests of the class, depending on what the class leaves open.
    Maybe,
    /// For none.
    No,
}

impl core::ops::Not for Truth {
    type Output = Truth;

    fn not(self) -> Truth {
        match self {
            Truth::Yes => Truth::No,
            Truth::No => Truth::Yes,
            Truth::Maybe => Truth::Maybe,
        }
    }
}

impl Truth {
    /// Disjunction.
    pub fn or(self, other: Truth) -> Truth {
        match (self, other) {
            (Truth::Yes, _) | (_, Truth::Yes) => Truth::Yes,
            (Truth::Maybe, _) | (_, Truth::Maybe) => Truth::Maybe,
            _ => Truth::No,
        }
    }

    /// Conjunction.
    pub fn and(self, other: Truth) -> Truth {
        match (self, other) {
            (Truth::No, _) | (_, Truth::No) => Truth::No,
            (Truth::Maybe, _) | (_, Truth::Maybe) => Truth::Maybe,
            _ => Truth::Yes,
        }
    }

    fn of(known: Option<bool>) -> Truth {
        match known {
            Some(true) => Truth::Yes,
            Some(false) => Truth::No,
            None => Truth::Maybe,
        }
    }
}

/// Whether the field is about the peer identity (the only attributes a [`PeerClass`]
/// decides).
pub fn is_identity(attribute: &Attribute) -> bool {
    matches!(
        attribute,
        Attribute::Principal
            | Attribute::Namespace
            | Attribute::ServiceAccount
            | Attribute::TrustDomain
    )
}

/// One value of a field against every request from `peer` (negation not applied).
pub fn value_truth(
    attribute: &Attribute,
    matcher: &Matcher,
    peer: &PeerClass,
    options: &Options,
) -> Truth {
    let Matcher::Str(pattern) = matcher else {
        return Truth::Maybe;
    };
    if !is_identity(attribute) {
        return Truth::Maybe;
    }
    // istiod's trust domain rewriting: the value stands for each of these.
    let bundle = identity::trust_domain_bundle(
        options.trust_domain.as_deref(),
        &options.trust_domain_aliases,
    );
    let texts = match attribute {
        Attribute::Principal => identity::principal_with_aliases(&pattern.to_istio(), &bundle),
        Attribute::TrustDomain => identity::trust_domain_with_aliases(&pattern.to_istio(), &bundle),
        _ => alloc::vec![pattern.to_istio()],
    };
    texts.iter().fold(Truth::No, |truth, text| {
        let pattern = StringPattern::parse(text);
        truth.or(Truth::of(crate::relation::identity_value_over(
            attribute, &pattern, peer,
        )))
    })
}

/// A field (any of its values; a negated field: none of them) against every request from
/// `peer`.
pub fn field_truth(field: &Field, peer: &PeerClass, options: &Options) -> Truth {
    let any = field.values.iter().fold(Truth::No, |truth, matcher| {
        truth.or(value_truth(&field.attribute, matcher, peer, options))
    });
    if field.negated {
        !any
    } else {
        any
    }
}

/// A clause (all of its fields), with the fields left open (`Maybe`).
pub fn clause_truth<'c>(
    clause: &'c Clause,
    peer: &PeerClass,
    options: &Options,
) -> (Truth, Vec<&'c Field>) {
    let mut truth = Truth::Yes;
    let mut open = Vec::new();
    for field in &clause.fields {
        match field_truth(field, peer, options) {
            Truth::No => return (Truth::No, Vec::new()),
            Truth::Maybe => {
                truth = Truth::Maybe;
                open.push(field);
            }
            Truth::Yes => {}
        }
    }
    (truth, open)
}

/// Who may use a rule: its `from` clauses (any) and `when` conditions (all) against every
/// request from `peer`, with, for a `Maybe`, the open fields of each `from` clause that is
/// not ruled out and of each open condition. The rule's `to` operations are left to the
/// caller (they say what is allowed, not who).
pub fn rule_source_truth<'r>(
    rule: &'r Rule,
    peer: &PeerClass,
    options: &Options,
) -> (Truth, Vec<Vec<&'r Field>>, Vec<&'r Field>) {
    let mut from_truth = if rule.from.is_empty() {
        Truth::Yes
    } else {
        Truth::No
    };
    let mut from_open = Vec::new();
    for clause in &rule.from {
        let (truth, open) = clause_truth(clause, peer, options);
        from_truth = from_truth.or(truth);
        if truth == Truth::Maybe {
            from_open.push(open);
        }
    }
    if from_truth == Truth::Yes {
        from_open.clear();
    }
    let mut truth = from_truth;
    let mut when_open = Vec::new();
    for clause in &rule.when {
        let (clause_truth, open) = clause_truth(clause, peer, options);
        truth = truth.and(clause_truth);
        when_open.extend(open);
    }
    if truth == Truth::No {
        return (Truth::No, Vec::new(), Vec::new());
    }
    (truth, from_open, when_open)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::model::parse_policies;
    use alloc::string::ToString;
    use serde_json::json;

    fn rule(from: serde_json::Value) -> Rule {
        let (policies, _, errors) = parse_policies(&[json!({
            "metadata": {"name": "p", "namespace": "shop"},
            "spec": {"rules": [{"from": [{"source": from}]}]}
        })]);
        assert!(errors.is_empty(), "{errors:?}");
        policies[0].rules[0].clone()
    }

    fn truth(from: serde_json::Value, peer: &PeerClass) -> Truth {
        rule_source_truth(&rule(from), peer, &Options::default()).0
    }

    #[test]
    fn identity_fields_against_classes_of_peers() {
        let account = PeerClass::ServiceAccount {
            namespace: "shop".to_string(),
            name: "frontend".to_string(),
        };
        let namespace = PeerClass::Namespace("shop".to_string());
        let one = PeerClass::Uri("spiffe://cluster.local/ns/shop/sa/frontend".to_string());
        assert_eq!(
            truth(json!({"serviceAccounts": ["frontend"]}), &account),
            Truth::Yes
        );
        assert_eq!(
            truth(json!({"serviceAccounts": ["frontend"]}), &namespace),
            Truth::Maybe
        );
        assert_eq!(
            truth(json!({"serviceAccounts": ["shop/db"]}), &account),
            Truth::No
        );
        assert_eq!(truth(json!({"namespaces": ["shop"]}), &account), Truth::Yes);
        assert_eq!(
            truth(json!({"namespaces": ["sh*"]}), &namespace),
            Truth::Yes
        );
        assert_eq!(
            truth(json!({"namespaces": ["other"]}), &namespace),
            Truth::No
        );
        // A principal names one trust domain; the class spans all of them.
        assert_eq!(
            truth(
                json!({"principals": ["cluster.local/ns/shop/sa/frontend"]}),
                &account
            ),
            Truth::Maybe
        );
        assert_eq!(
            truth(
                json!({"principals": ["cluster.local/ns/shop/sa/frontend"]}),
                &one
            ),
            Truth::Yes
        );
        assert_eq!(
            truth(json!({"notPrincipals": ["*"]}), &PeerClass::Plaintext),
            Truth::Yes
        );
        assert_eq!(
            truth(json!({"principals": ["*"]}), &PeerClass::Plaintext),
            Truth::No
        );
        assert_eq!(
            truth(json!({"principals": ["*"]}), &PeerClass::Authenticated),
            Truth::Yes
        );
        // What the class leaves open is Maybe.
        assert_eq!(
            truth(json!({"ipBlocks": ["10.0.0.0/8"]}), &one),
            Truth::Maybe
        );
        let open_rule = rule(json!({"namespaces": ["shop"], "requestPrincipals": ["*"]}));
        let (_, from_open, _) = rule_source_truth(&open_rule, &account, &Options::default());
        assert_eq!(from_open.len(), 1);
        assert_eq!(from_open[0][0].attribute, Attribute::RequestPrincipal);
    }
}
