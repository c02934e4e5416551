//! A deliberately simple interpreter of the same semantics as the compiled evaluator: a
//! linear scan over policies and rules, as Envoy's RBAC filter does. It allocates freely
//! and optimizes nothing, so that it is easy to check by reading. Tests compare it with
//! [`PolicySet::evaluate`](crate::PolicySet::evaluate); benchmarks use it as the baseline.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::compile::Options;
use crate::model::{Action, Attribute, Field, Matcher, Policy, Rule};
use crate::path::{normalize, PathRejection};
use crate::pattern::StringPattern;
use crate::request::Request;
use crate::spiffe::SpiffeId;

/// The reference interpreter's decision, with rules named by their Istio ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferenceDecision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// 200, 403, or 400 for a rejected path.
    pub status: u16,
    /// The deciding rule's id.
    pub policy: Option<String>,
    /// The first matching AUDIT rule's id.
    pub audit: Option<String>,
    /// The decision with dry-run policies enforced too.
    pub dry_run: (bool, Option<String>),
}

/// Policies that apply to the workload of `options`, ready for [`evaluate`].
pub fn applicable(policies: &[Policy], options: &Options) -> Vec<Policy> {
    policies
        .iter()
        .filter(|policy| {
            !policy.targets_gateway
                && policy.applies_to(
                    options.workload.namespace.as_deref(),
                    &options.workload.labels,
                    &options.root_namespace,
                )
        })
        .cloned()
        .collect()
}

/// Decides a request by scanning every rule of the applicable policies.
pub fn evaluate(
    policies: &[Policy],
    options: &Options,
    request: &Request<'_>,
) -> ReferenceDecision {
    let policies = applicable(policies, options);
    let has_dry_run = policies.iter().any(|policy| policy.dry_run);
    let mut path_buffer = String::new();
    let path = match request.path {
        None => None,
        Some(raw) => {
            let normalized = if raw.len() > options.limits.max_path_bytes {
                Err(PathRejection::TooLong)
            } else {
                normalize(raw, options.path_normalization, &mut path_buffer)
            };
            match normalized {
                Ok(path) => Some(path.to_string()),
                Err(_) => {
                    return ReferenceDecision {
                        allowed: false,
                        status: 400,
                        policy: None,
                        audit: None,
                        dry_run: (false, None),
                    }
                }
            }
        }
    };
    if headers_too_large(&policies, options, request) {
        return ReferenceDecision {
            allowed: false,
            status: 431,
            policy: None,
            audit: None,
            dry_run: (false, None),
        };
    }
    let context = Context {
        request,
        path,
        options,
    };
    let first = |action: Action, dry_run: Option<bool>| -> Option<String> {
        policies
            .iter()
            .filter(|policy| {
                policy.action == action && dry_run.is_none_or(|flag| policy.dry_run == flag)
            })
            .flat_map(|policy| {
                policy
                    .rules
                    .iter()
                    .enumerate()
                    .map(move |(index, rule)| (policy, index, rule))
            })
            .find(|(_, _, rule)| context.rule_matches(rule))
            .map(|(policy, index, _)| policy.rule_id(index))
    };
    let has = |action: Action, dry_run: Option<bool>| {
        policies.iter().any(|policy| {
            policy.action == action && dry_run.is_none_or(|flag| policy.dry_run == flag)
        })
    };
    let decide =
        |deny: Option<String>, allow: Option<String>, has_allow: bool| match (deny, has_allow) {
            (Some(rule), _) => (false, Some(rule)),
            (None, false) => (true, None),
            (None, true) => (allow.is_some(), allow),
        };
    let (allowed, policy) = decide(
        first(Action::Deny, Some(false)),
        first(Action::Allow, Some(false)),
        has(Action::Allow, Some(false)),
    );
    let dry_run = if has_dry_run {
        decide(
            first(Action::Deny, None),
            first(Action::Allow, None),
            has(Action::Allow, None),
        )
    } else {
        (allowed, policy.clone())
    };
    ReferenceDecision {
        allowed,
        status: if allowed { 200 } else { 403 },
        policy,
        audit: first(Action::Audit, Some(false)),
        dry_run,
    }
}

/// Whether the values of every header the policies read, summed, exceed
/// `limits.max_header_bytes`.
fn headers_too_large(policies: &[Policy], options: &Options, request: &Request<'_>) -> bool {
    let mut names: Vec<&str> = policies
        .iter()
        .flat_map(|policy| policy.rules.iter())
        .flat_map(|rule| rule.from.iter().chain(&rule.to).chain(&rule.when))
        .flat_map(|clause| clause.fields.iter())
        .filter_map(|field| match &field.attribute {
            Attribute::Header(name) => Some(name.as_str()),
            _ => None,
        })
        .collect();
    names.sort_unstable();
    names.dedup();
    let mut total = 0usize;
    for name in names {
        request.headers.any_value(name, &mut |value| {
            total += value.len();
            false
        });
    }
    total > options.limits.max_header_bytes
}

struct Context<'r, 'a> {
    request: &'r Request<'a>,
    path: Option<String>,
    options: &'r Options,
}

impl Context<'_, '_> {
    fn rule_matches(&self, rule: &Rule) -> bool {
        let clause_matches =
            |fields: &[Field]| fields.iter().all(|field| self.field_matches(field));
        (rule.from.is_empty()
            || rule
                .from
                .iter()
                .any(|clause| clause_matches(&clause.fields)))
            && (rule.to.is_empty() || rule.to.iter().any(|clause| clause_matches(&clause.fields)))
            && rule
                .when
                .iter()
                .all(|clause| clause_matches(&clause.fields))
    }

    fn field_matches(&self, field: &Field) -> bool {
        let values = self.values(&field.attribute);
        let matched = field.values.iter().any(|matcher| {
            values
                .iter()
                .any(|value| self.value_matches(&field.attribute, matcher, value))
        });
        matched != field.negated
    }

    fn value_matches(&self, attribute: &Attribute, matcher: &Matcher, value: &str) -> bool {
        match matcher {
            // Envoy's `present_match`, which Istio generates for `*` on a header: any value,
            // empty included (`values` holds something only when the header is present).
            Matcher::Str(StringPattern::Presence) if matches!(attribute, Attribute::Header(_)) => {
                true
            }
            Matcher::Str(pattern) => {
                let fold = attribute.folds_case();
                if pattern.matches(value, fold) {
                    return true;
                }
                self.alias_variants(attribute, pattern)
                    .iter()
                    .any(|variant| variant.matches(value, fold))
            }
            Matcher::Path(pattern) => pattern.matches(value),
            Matcher::Ip(block) => value.parse().is_ok_and(|address| block.contains(address)),
            Matcher::Port(port) => value.parse::<u16>() == Ok(*port),
        }
    }

    fn alias_variants(&self, attribute: &Attribute, pattern: &StringPattern) -> Vec<StringPattern> {
        let names: Vec<&String> = self
            .options
            .trust_domain
            .iter()
            .chain(self.options.trust_domain_aliases.iter())
            .collect();
        let text = pattern.text();
        let (domain, rest) = match (attribute, pattern) {
            (Attribute::Principal, StringPattern::Exact(_) | StringPattern::Prefix(_)) => {
                match text.split_once('/') {
                    Some((domain, rest)) => (domain, Some(rest)),
                    None => return Vec::new(),
                }
            }
            (Attribute::TrustDomain, StringPattern::Exact(_)) => (text, None),
            _ => return Vec::new(),
        };
        if names.len() < 2 || !names.iter().any(|name| name.as_str() == domain) {
            return Vec::new();
        }
        names
            .iter()
            .map(|name| {
                let text = match rest {
                    Some(rest) => format!("{name}/{rest}"),
                    None => name.to_string(),
                };
                match pattern {
                    StringPattern::Prefix(_) => StringPattern::Prefix(text),
                    _ => StringPattern::Exact(text),
                }
            })
            .collect()
    }

    fn values(&self, attribute: &Attribute) -> Vec<String> {
        attribute_values(attribute, self.request, self.path.as_deref())
    }
}

/// Every value `request` has for `attribute`, as the reference interpreter compares them
/// (empty when the attribute is missing); `path` is the normalized path. Tools that need to
/// know which individual values a request uses (the `cordon audit` matcher) call this rather
/// than restating the rules.
pub fn attribute_values(
    attribute: &Attribute,
    request: &Request<'_>,
    path: Option<&str>,
) -> Vec<String> {
    let peer = request
        .peer_identity
        .and_then(|raw| SpiffeId::parse(raw).ok());
    let claim = |path: &[&str]| -> Vec<String> {
        let mut found = Vec::new();
        if let Some(claims) = request.claims {
            claims.any_value(path, &mut |value| {
                found.push(value.to_string());
                false
            });
        }
        found
    };
    let one = |value: Option<&str>| {
        value
            .map(ToString::to_string)
            .into_iter()
            .collect::<Vec<_>>()
    };
    match attribute {
        Attribute::Principal => one(peer.map(|id| id.principal())),
        Attribute::Namespace => one(peer.and_then(|id| id.namespace())),
        Attribute::ServiceAccount => peer
            .and_then(|id| Some(format!("{}/{}", id.namespace()?, id.service_account()?)))
            .into_iter()
            .collect(),
        Attribute::TrustDomain => one(peer.map(|id| id.trust_domain())),
        Attribute::RequestPrincipal => {
            let mut principals = Vec::new();
            for issuer in claim(&["iss"]) {
                for subject in claim(&["sub"]) {
                    principals.push(format!("{issuer}/{subject}"));
                }
            }
            principals
        }
        Attribute::Audience => claim(&["aud"]),
        Attribute::Presenter => claim(&["azp"]),
        Attribute::Claim(names) => {
            let path: Vec<&str> = names.iter().map(String::as_str).collect();
            let values = claim(&path);
            if matches!(path.as_slice(), ["scope" | "permission"]) {
                values
                    .iter()
                    .flat_map(|value| value.split(' '))
                    .filter(|item| !item.is_empty())
                    .map(ToString::to_string)
                    .collect()
            } else {
                values
            }
        }
        Attribute::SourceIp => request
            .source_ip
            .map(|ip| ip.to_string())
            .into_iter()
            .collect(),
        Attribute::RemoteIp => request
            .remote_ip
            .or(request.source_ip)
            .map(|ip| ip.to_string())
            .into_iter()
            .collect(),
        Attribute::DestinationIp => request
            .destination_ip
            .map(|ip| ip.to_string())
            .into_iter()
            .collect(),
        Attribute::DestinationPort => request
            .destination_port
            .map(|port| port.to_string())
            .into_iter()
            .collect(),
        Attribute::Host => one(request.host),
        Attribute::Method => one(request.method),
        Attribute::Path => path.map(ToString::to_string).into_iter().collect(),
        Attribute::Header(name) => {
            let mut found = Vec::new();
            request.headers.any_value(name, &mut |value| {
                found.push(value.to_string());
                false
            });
            found
        }
        Attribute::Sni => one(request.sni),
    }
}
