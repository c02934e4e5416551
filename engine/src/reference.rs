//! A deliberately simple interpreter of the same semantics as the compiled evaluator: a
//! linear scan over policies and rules, as Envoy's RBAC filter does. It allocates freely
//! and optimizes nothing, so that it is easy to check by reading. Tests compare it with
//! [`PolicySet::evaluate`](crate::PolicySet::evaluate); benchmarks use it as the baseline.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::compile::Options;
use crate::identity;
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
    let reads_peer_ip = policies
        .iter()
        .flat_map(|policy| policy.rules.iter())
        .flat_map(|rule| rule.from.iter().chain(&rule.when))
        .flat_map(|clause| clause.fields.iter())
        .any(|field| field.attribute == Attribute::SourceIp);
    if reads_peer_ip && !options.use_remote_address && crate::evaluate::forwarded(request) {
        return ReferenceDecision {
            allowed: false,
            status: 403,
            policy: None,
            audit: None,
            dry_run: (false, None),
        };
    }
    let context = Judge {
        request,
        path: path.as_deref(),
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

/// One request as the reference interpreter judges it, for tools that need more than the
/// deciding rule (which rules match, which of a field's values): the one place outside
/// the compiled evaluator that says whether a value, field or rule matches.
#[derive(Debug, Clone, Copy)]
pub struct Judge<'j, 'a> {
    /// The request.
    pub request: &'j Request<'a>,
    /// Its path, already normalized (see [`crate::path::normalize`]); `None` when absent.
    pub path: Option<&'j str>,
    /// The options it is judged under (trust domain and aliases matter here).
    pub options: &'j Options,
}

impl Judge<'_, '_> {
    /// Whether a rule matches: any `from` clause, any `to` clause, every `when`.
    pub fn rule_matches(&self, rule: &Rule) -> bool {
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

    /// Whether a field matches: any of its values (a negated field: none of them).
    pub fn field_matches(&self, field: &Field) -> bool {
        let matched = field
            .values
            .iter()
            .any(|matcher| self.value_matches(&field.attribute, matcher));
        matched != field.negated
    }

    /// Whether one value of a field matches the request (negation not applied).
    pub fn value_matches(&self, attribute: &Attribute, matcher: &Matcher) -> bool {
        match attribute {
            Attribute::Principal
            | Attribute::Namespace
            | Attribute::ServiceAccount
            | Attribute::TrustDomain => {
                let (Some(uri), Matcher::Str(pattern)) = (self.request.peer_identity, matcher)
                else {
                    return false;
                };
                self.with_aliases(attribute, pattern)
                    .iter()
                    .any(|pattern| identity_matches(attribute, pattern, uri))
            }
            Attribute::RequestPrincipal => match matcher {
                Matcher::Str(pattern) => self.request_principal_matches(pattern),
                _ => false,
            },
            attribute => self
                .values(attribute)
                .iter()
                .any(|value| self.one_value_matches(attribute, matcher, value)),
        }
    }

    fn one_value_matches(&self, attribute: &Attribute, matcher: &Matcher, value: &str) -> bool {
        match matcher {
            // Envoy's `present_match`, which Istio generates for `*` on a header: any value,
            // empty included (`values` holds something only when the header is present).
            Matcher::Str(StringPattern::Presence) if matches!(attribute, Attribute::Header(_)) => {
                true
            }
            Matcher::Str(pattern) => pattern.matches(value, attribute.folds_case()),
            Matcher::Path(pattern) => pattern.matches(value),
            Matcher::Ip(block) => value.parse().is_ok_and(|address| block.contains(address)),
            Matcher::Port(port) => value.parse::<u16>() == Ok(*port),
        }
    }

    /// The patterns a principal or trust domain value stands for under istiod's trust
    /// domain rewriting.
    fn with_aliases(&self, attribute: &Attribute, pattern: &StringPattern) -> Vec<StringPattern> {
        let bundle = identity::trust_domain_bundle(
            self.options.trust_domain.as_deref(),
            &self.options.trust_domain_aliases,
        );
        let texts = match attribute {
            Attribute::Principal => identity::principal_with_aliases(&pattern.to_istio(), &bundle),
            Attribute::TrustDomain => {
                identity::trust_domain_with_aliases(&pattern.to_istio(), &bundle)
            }
            _ => return alloc::vec![pattern.clone()],
        };
        texts
            .iter()
            .map(|text| StringPattern::parse(text))
            .collect()
    }

    /// istiod's request principal: `iss` and `sub` string claims, each matched on its own.
    fn request_principal_matches(&self, pattern: &StringPattern) -> bool {
        let Some(claims) = self.request.claims else {
            return false;
        };
        let (issuer, subject) = identity::request_principal_parts(&pattern.to_istio());
        match (claims.string(&["iss"]), claims.string(&["sub"])) {
            (Some(iss), Some(sub)) => {
                identity::claim_part_matches(&issuer, iss)
                    && identity::claim_part_matches(&subject, sub)
            }
            _ => false,
        }
    }

    fn values(&self, attribute: &Attribute) -> Vec<String> {
        attribute_values(attribute, self.request, self.path)
    }
}

/// istiod's matcher for one identity value on the peer's URI, read straight off the
/// regexes it generates (see the `identity` module's table), by brute force.
fn identity_matches(attribute: &Attribute, pattern: &StringPattern, uri: &str) -> bool {
    let scheme = "spiffe://";
    let body = uri.strip_prefix(scheme);
    // Every `(i, j)` with `/ns/` at `i` and a `/` at `j` after it: the `X` of `/ns/X/`.
    let ns_spans = || {
        (0..uri.len()).flat_map(move |i| {
            (i + 4..uri.len()).filter_map(move |j| {
                let opens = uri.get(i..).is_some_and(|rest| rest.starts_with("/ns/"));
                let closes = uri.as_bytes().get(j) == Some(&b'/');
                if opens && closes {
                    uri.get(i + 4..j)
                } else {
                    None
                }
            })
        })
    };
    match attribute {
        Attribute::Principal => match pattern {
            StringPattern::Presence => !uri.is_empty(),
            StringPattern::Exact(text) => body == Some(text.as_str()),
            StringPattern::Prefix(text) => body.is_some_and(|body| body.starts_with(text.as_str())),
            StringPattern::Suffix(text) => body.is_some_and(|body| body.ends_with(text.as_str())),
        },
        Attribute::Namespace => ns_spans().any(|namespace| match pattern {
            StringPattern::Presence => true,
            other => other.matches(namespace, false),
        }),
        Attribute::ServiceAccount => {
            let Some((namespace, account)) = pattern.text().split_once('/') else {
                return false;
            };
            let Some(body) = body else {
                return false;
            };
            let opening = format!("/ns/{namespace}/");
            (1..body.len()).any(|i| {
                let Some(tail) = body
                    .get(i..)
                    .and_then(|rest| rest.strip_prefix(opening.as_str()))
                else {
                    return false;
                };
                (0..tail.len()).any(|k| {
                    let starts_segment =
                        k == 0 || (k >= 2 && tail.as_bytes().get(k - 1) == Some(&b'/'));
                    let after = tail
                        .get(k..)
                        .and_then(|rest| rest.strip_prefix("sa/"))
                        .and_then(|rest| rest.strip_prefix(account));
                    starts_segment
                        && after.is_some_and(|after| {
                            after.is_empty() || (after.starts_with('/') && after.len() > 1)
                        })
                })
            })
        }
        Attribute::TrustDomain => {
            let Some(body) = body else {
                return false;
            };
            let segment = body.split_once('/').map(|(segment, _)| segment);
            match pattern {
                StringPattern::Presence => true,
                StringPattern::Exact(text) => segment == Some(text.as_str()),
                StringPattern::Prefix(text) => {
                    segment.is_some_and(|s| s.starts_with(text.as_str()))
                }
                StringPattern::Suffix(text) => segment.is_some_and(|s| s.ends_with(text.as_str())),
            }
        }
        _ => false,
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
