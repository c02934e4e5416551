//! Evaluating one request against a compiled [`PolicySet`]: Istio's decision order in one
//! place, and no heap allocation once the scratch memory has warmed up.

use alloc::string::String;
use alloc::vec::Vec;

use crate::compile::{AttributeIndex, PolicySet, RuleInfo};
use crate::identity;
use crate::index::{Joined, TemplateScratch};
use crate::model::{Action, Attribute, MAX_CLAIM_DEPTH};
use crate::path::{normalize, PathRejection};
use crate::request::Request;
use crate::spiffe::{SpiffeError, SpiffeId};

/// A compiled rule, by position in [`PolicySet::rules`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RuleRef(pub(crate) u32);

impl RuleRef {
    /// Position in [`PolicySet::rules`].
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Why the decision is what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// An ALLOW rule matched (and no DENY rule did).
    AllowedByPolicy,
    /// No ALLOW policy applies to the workload, and no DENY rule matched.
    NoAllowPolicies,
    /// A DENY rule matched.
    DeniedByPolicy,
    /// ALLOW policies apply, but none of their rules matched.
    NoAllowMatch,
    /// Path normalization rejected the request path (HTTP 400).
    PathRejected(PathRejection),
    /// The headers the rules read hold more than `limits.max_header_bytes` (HTTP 431).
    HeadersTooLarge,
    /// Rules read the connection's peer address (`source.ip`), and the request carries
    /// `x-forwarded-for`, which made Envoy's `source.address` another address (see
    /// [`crate::Options::use_remote_address`]): refused rather than judged on an address a
    /// client chose.
    PeerAddressUnknown,
}

impl Reason {
    /// Whether rules were evaluated: the request was not refused before (a rejected path,
    /// headers over the limit, an unknown peer address).
    pub fn rules_evaluated(self) -> bool {
        matches!(
            self,
            Reason::AllowedByPolicy
                | Reason::NoAllowPolicies
                | Reason::DeniedByPolicy
                | Reason::NoAllowMatch
        )
    }

    /// A stable name for logs.
    pub fn name(self) -> &'static str {
        match self {
            Reason::AllowedByPolicy => "allowed_by_policy",
            Reason::NoAllowPolicies => "no_allow_policies",
            Reason::DeniedByPolicy => "denied_by_policy",
            Reason::NoAllowMatch => "no_allow_match",
            Reason::PathRejected(_) => "path_rejected",
            Reason::HeadersTooLarge => "headers_too_large",
            Reason::PeerAddressUnknown => "peer_address_unknown",
        }
    }
}

/// What the engine made of the peer identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    /// A valid SPIFFE ID.
    Verified,
    /// No peer identity (plaintext).
    None,
    /// A peer identity that is not a valid SPIFFE ID; identity fields still match its URI
    /// as a string, as Envoy's matchers do.
    Invalid(SpiffeError),
}

impl Identity {
    /// `verified`, `none` or `invalid`.
    pub fn name(self) -> &'static str {
        match self {
            Identity::Verified => "verified",
            Identity::None => "none",
            Identity::Invalid(_) => "invalid",
        }
    }
}

/// An allow-or-deny outcome and the rule that decided it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Whether the request is allowed.
    pub allowed: bool,
    /// The deciding rule, if a rule decided.
    pub rule: Option<RuleRef>,
}

/// The decision for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// HTTP status to answer a denied request with: 403, 400 for a rejected path, 431 for
    /// headers over the limit (200 when allowed).
    pub status: u16,
    /// Why.
    pub reason: Reason,
    /// The deciding rule: the first matching DENY rule, or the first matching ALLOW rule.
    pub policy: Option<RuleRef>,
    /// The first matching AUDIT rule.
    pub audit: Option<RuleRef>,
    /// What the decision would be if dry-run policies were enforced too (the same as the
    /// decision when no dry-run policy applies).
    pub dry_run: Outcome,
    /// What the engine made of the peer identity.
    pub identity: Identity,
}

/// Reusable memory for evaluations; one per thread. Create with [`PolicySet::new_scratch`].
#[derive(Debug, Clone)]
pub struct Scratch {
    set_id: u32,
    epoch: u32,
    /// Per value set: the epoch in which it last matched.
    stamps: Vec<u32>,
    /// Value sets matched in the current evaluation.
    matched: Vec<u32>,
    templates: Vec<Option<TemplateScratch>>,
    path: String,
}

impl Scratch {
    /// Whether value set `id` matched in the last evaluation.
    pub(crate) fn matched(&self, id: u32) -> bool {
        self.stamps
            .get(id as usize)
            .is_some_and(|stamp| *stamp == self.epoch)
    }

    pub(crate) fn for_set(set: &PolicySet) -> Scratch {
        Scratch {
            set_id: set.id,
            epoch: 0,
            stamps: alloc::vec![0; set.value_set_count],
            matched: Vec::with_capacity(set.value_set_count),
            templates: set.template_scratches(),
            path: String::with_capacity(256),
        }
    }
}

/// The values of the headers the rules read exceed `limits.max_header_bytes`.
struct HeadersTooLarge;

const CATEGORIES: usize = 6;

fn category(action: Action, dry_run: bool) -> usize {
    let base = match action {
        Action::Allow => 0,
        Action::Deny => 2,
        Action::Audit => 4,
    };
    base + usize::from(dry_run)
}

fn min_rule(a: Option<u32>, b: Option<u32>) -> Option<u32> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

impl PolicySet {
    /// Decides one request: DENY rules first, then ALLOW rules, as Istio does.
    ///
    /// `scratch` must come from [`PolicySet::new_scratch`] on this set; one from another
    /// set is replaced (which allocates) rather than misused.
    pub fn evaluate(&self, request: &Request<'_>, scratch: &mut Scratch) -> Decision {
        if scratch.set_id != self.id {
            *scratch = Scratch::for_set(self);
        }
        scratch.epoch = scratch.epoch.wrapping_add(1);
        if scratch.epoch == 0 {
            scratch.stamps.iter_mut().for_each(|stamp| *stamp = 0);
            scratch.epoch = 1;
        }
        let Scratch {
            epoch,
            stamps,
            matched,
            templates,
            path: path_buffer,
            ..
        } = scratch;
        let epoch = *epoch;
        matched.clear();

        let peer = match request.peer_identity {
            None => Identity::None,
            Some(raw) => match SpiffeId::parse(raw) {
                Ok(_) => Identity::Verified,
                Err(error) => Identity::Invalid(error),
            },
        };
        let mut path = None;
        if let Some(raw) = request.path {
            let normalized = if raw.len() > self.options.limits.max_path_bytes {
                Err(PathRejection::TooLong)
            } else {
                normalize(raw, self.options.path_normalization, path_buffer)
            };
            match normalized {
                Ok(normalized) => path = Some(normalized),
                Err(rejection) => return self.refused(Reason::PathRejected(rejection), 400, peer),
            }
        }
        if self.needs.peer_ip && !self.options.use_remote_address && forwarded(request) {
            // Headers over the limit answer 431 before the peer address is judged.
            if self.headers_too_large(request) {
                return self.refused(Reason::HeadersTooLarge, 431, peer);
            }
            return self.refused(Reason::PeerAddressUnknown, 403, peer);
        }

        let mark = |id: u32| {
            if let Some(stamp) = stamps.get_mut(id as usize) {
                if *stamp != epoch {
                    *stamp = epoch;
                    matched.push(id);
                }
            }
        };
        // The headers' size is counted as their values are matched (one pass over the
        // headers, not two); a request over the limit is refused whatever matched.
        if self
            .match_attributes(request, path, templates, mark)
            .is_err()
        {
            return self.refused(Reason::HeadersTooLarge, 431, peer);
        }
        let best = self.first_matching_rules(matched, stamps, epoch);
        self.decide(&best, peer)
    }

    /// Step 2 of [`PolicySet::evaluate`]: looks every attribute the set reads up in its
    /// index, calling `mark` with each value set the request matches. `Err` when the
    /// values of the headers the rules read exceed `limits.max_header_bytes` (what
    /// [`PolicySet::headers_too_large`] says): counting stops there, as does matching.
    fn match_attributes(
        &self,
        request: &Request<'_>,
        path: Option<&str>,
        templates: &mut [Option<TemplateScratch>],
        mut mark: impl FnMut(u32),
    ) -> Result<(), HeadersTooLarge> {
        let header_limit = self.options.limits.max_header_bytes;
        let mut header_bytes = 0usize;
        for (position, compiled) in self.attributes.iter().enumerate() {
            let template = templates.get_mut(position).and_then(Option::as_mut);
            match &compiled.index {
                AttributeIndex::Str(index) => {
                    let mut lookup = |value: &str| {
                        index.lookup_str(value, None, &mut mark);
                    };
                    match &compiled.attribute {
                        // Identity fields match the peer's URI as a string, as the
                        // matchers istiod generates do (`identity` module).
                        Attribute::Principal => {
                            if let Some(uri) = request.peer_identity {
                                if let Some(key) = identity::principal_key(uri) {
                                    lookup(key);
                                }
                                if !uri.is_empty() {
                                    index.lookup_presence(&mut mark);
                                }
                            }
                        }
                        Attribute::Namespace => {
                            if let Some(uri) = request.peer_identity {
                                let found = if index.slash_free() {
                                    identity::first_namespace_keys(uri, &mut |key| lookup(key))
                                } else {
                                    identity::namespace_keys(uri, &mut |key| lookup(key))
                                };
                                if found {
                                    index.lookup_presence(&mut mark);
                                }
                            }
                        }
                        Attribute::ServiceAccount => {
                            if let Some(uri) = request.peer_identity {
                                identity::service_account_keys(uri, &mut |namespace, account| {
                                    index.lookup(
                                        Joined::new(&[namespace, account]),
                                        None,
                                        &mut mark,
                                    );
                                });
                            }
                        }
                        Attribute::TrustDomain => {
                            if let Some(uri) = request.peer_identity {
                                let (spiffe, segment) = identity::trust_domain_key(uri);
                                if let Some(segment) = segment {
                                    lookup(segment);
                                }
                                if spiffe {
                                    index.lookup_presence(&mut mark);
                                }
                            }
                        }
                        Attribute::RequestPrincipal => {}
                        Attribute::Audience => {
                            if let Some(claims) = request.claims {
                                claims.any_value(&["aud"], &mut |value| {
                                    lookup(value);
                                    false
                                });
                            }
                        }
                        Attribute::Presenter => {
                            if let Some(claims) = request.claims {
                                claims.any_value(&["azp"], &mut |value| {
                                    lookup(value);
                                    false
                                });
                            }
                        }
                        Attribute::Claim(names) => {
                            if let Some(claims) = request.claims {
                                let mut keys = [""; MAX_CLAIM_DEPTH];
                                for (key, name) in keys.iter_mut().zip(names.iter()) {
                                    *key = name.as_str();
                                }
                                let depth = names.len().min(MAX_CLAIM_DEPTH);
                                let keys = keys.get(..depth).unwrap_or(&[]);
                                // Istio has jwt_authn split these two top-level claims at
                                // spaces (`normalize_payload_in_metadata`); no other claim,
                                // `scp` included, is split.
                                let spaced = matches!(keys, ["scope" | "permission"]);
                                claims.any_value(keys, &mut |value| {
                                    if spaced {
                                        value
                                            .split(' ')
                                            .filter(|item| !item.is_empty())
                                            .for_each(&mut lookup);
                                    } else {
                                        lookup(value);
                                    }
                                    false
                                });
                            }
                        }
                        Attribute::Host => {
                            // As Istio generates it: exact, case-insensitive, port included.
                            if let Some(host) = request.host {
                                lookup(host);
                            }
                        }
                        Attribute::Method => {
                            if let Some(method) = request.method {
                                lookup(method);
                            }
                        }
                        Attribute::Path => {
                            if let Some(path) = path {
                                index.lookup_str(path, template, &mut mark);
                            }
                        }
                        Attribute::Header(name) => {
                            // Envoy 1.40 matches each header line on its own and never
                            // splits a value at commas (measured: docs/ENVOY-MEASUREMENTS.md).
                            let mut present = false;
                            let over = request.headers.any_value(name, &mut |value| {
                                present = true;
                                header_bytes = header_bytes.saturating_add(value.len());
                                if header_bytes > header_limit {
                                    return true;
                                }
                                lookup(value);
                                false
                            });
                            if over {
                                return Err(HeadersTooLarge);
                            }
                            // Istio writes `*` on a header as Envoy's `present_match`: a
                            // header sent with an empty value is present.
                            if present {
                                index.lookup_presence(&mut mark);
                            }
                        }
                        Attribute::Sni => {
                            if let Some(sni) = request.sni {
                                lookup(sni);
                            }
                        }
                        Attribute::SourceIp
                        | Attribute::RemoteIp
                        | Attribute::DestinationIp
                        | Attribute::DestinationPort => {}
                    }
                }
                AttributeIndex::Ip(index) => {
                    let address = match compiled.attribute {
                        Attribute::SourceIp => request.source_ip,
                        Attribute::RemoteIp => request.remote_ip.or(request.source_ip),
                        Attribute::DestinationIp => request.destination_ip,
                        _ => None,
                    };
                    if let Some(address) = address {
                        index.lookup(address, &mut mark);
                    }
                }
                AttributeIndex::Port(index) => {
                    if let Some(port) = request.destination_port {
                        index.lookup(port, &mut mark);
                    }
                }
                AttributeIndex::IssuerSubject(values) => {
                    // Each of `iss` and `sub` must be a string claim (a plain string
                    // matcher on the JWT metadata: a list never matches).
                    let claims = request.claims;
                    let issuer = claims.and_then(|claims| claims.string(&["iss"]));
                    let subject = claims.and_then(|claims| claims.string(&["sub"]));
                    if let (Some(issuer), Some(subject)) = (issuer, subject) {
                        for (issuer_pattern, subject_pattern, ids) in values {
                            if identity::claim_part_matches(issuer_pattern, issuer)
                                && identity::claim_part_matches(subject_pattern, subject)
                            {
                                ids.iter().for_each(|id| mark(*id));
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Step 3 of [`PolicySet::evaluate`]: the first rule of each category (action ×
    /// dry-run) whose terms the matched value sets satisfy.
    fn first_matching_rules(
        &self,
        matched: &[u32],
        stamps: &[u32],
        epoch: u32,
    ) -> [Option<u32>; CATEGORIES] {
        let mut best = [None::<u32>; CATEGORIES];
        let mut check = |term_id: u32| {
            let Some(term) = self.terms.get(term_id as usize) else {
                return;
            };
            let Some(rule) = self.rules.get(term.rule as usize) else {
                return;
            };
            let Some(slot) = best.get_mut(category(rule.role.action, rule.role.dry_run)) else {
                return;
            };
            if slot.is_some_and(|current| current <= term.rule) {
                return;
            }
            let stamped = |id: &u32| {
                stamps
                    .get(*id as usize)
                    .is_some_and(|stamp| *stamp == epoch)
            };
            let ids = |range: &core::ops::Range<u32>| {
                self.term_value_sets
                    .get(range.start as usize..range.end as usize)
                    .unwrap_or(&[])
            };
            if ids(&term.positive).iter().all(stamped) && !ids(&term.negative).iter().any(stamped) {
                *slot = Some(term.rule);
            }
        };
        for value_set in matched.iter() {
            let Some(range) = self.triggers.get(*value_set as usize) else {
                continue;
            };
            for term in self
                .trigger_terms
                .get(range.start as usize..range.end as usize)
                .unwrap_or(&[])
            {
                check(*term);
            }
        }
        for term in &self.always_terms {
            check(*term);
        }
        best
    }

    fn decide(&self, best: &[Option<u32>; CATEGORIES], identity: Identity) -> Decision {
        let get =
            |action: Action, dry_run: bool| best.get(category(action, dry_run)).copied().flatten();
        let outcome =
            |deny: Option<u32>, allow: Option<u32>, has_allow: bool| -> (Outcome, Reason) {
                if let Some(rule) = deny {
                    (
                        Outcome {
                            allowed: false,
                            rule: Some(RuleRef(rule)),
                        },
                        Reason::DeniedByPolicy,
                    )
                } else if !has_allow {
                    (
                        Outcome {
                            allowed: true,
                            rule: None,
                        },
                        Reason::NoAllowPolicies,
                    )
                } else if let Some(rule) = allow {
                    (
                        Outcome {
                            allowed: true,
                            rule: Some(RuleRef(rule)),
                        },
                        Reason::AllowedByPolicy,
                    )
                } else {
                    (
                        Outcome {
                            allowed: false,
                            rule: None,
                        },
                        Reason::NoAllowMatch,
                    )
                }
            };
        let (enforced, reason) = outcome(
            get(Action::Deny, false),
            get(Action::Allow, false),
            self.has_allow,
        );
        let dry_run = if self.has_dry_run {
            outcome(
                min_rule(get(Action::Deny, false), get(Action::Deny, true)),
                min_rule(get(Action::Allow, false), get(Action::Allow, true)),
                self.has_allow || self.has_dry_allow,
            )
            .0
        } else {
            enforced
        };
        Decision {
            allowed: enforced.allowed,
            status: if enforced.allowed { 200 } else { 403 },
            reason,
            policy: enforced.rule,
            audit: get(Action::Audit, false).map(RuleRef),
            dry_run,
            identity,
        }
    }

    /// Whether the values of the headers the rules read exceed `limits.max_header_bytes`.
    /// Counting stops at the limit, so an oversized request costs no more than the limit.
    fn headers_too_large(&self, request: &Request<'_>) -> bool {
        let limit = self.options.limits.max_header_bytes;
        let mut examined = 0usize;
        let counted = |name: &&String| {
            !(self.forwarded_for_presence_only && name.as_str() == crate::compile::FORWARDED_FOR)
        };
        self.needs.headers.iter().filter(counted).any(|name| {
            request.headers.any_value(name, &mut |value| {
                examined = examined.saturating_add(value.len());
                examined > limit
            })
        })
    }

    fn refused(&self, reason: Reason, status: u16, identity: Identity) -> Decision {
        Decision {
            allowed: false,
            status,
            reason,
            policy: None,
            audit: None,
            dry_run: Outcome {
                allowed: false,
                rule: None,
            },
            identity,
        }
    }

    /// The compiled rule a decision names.
    pub fn rule(&self, rule: RuleRef) -> Option<&RuleInfo> {
        self.rules.get(rule.index())
    }

    /// Istio's name of a rule (`ns[<ns>]-policy[<name>]-rule[<index>]`), or "" if unknown.
    pub fn rule_id(&self, rule: RuleRef) -> &str {
        self.rule(rule).map_or("", |info| info.id.as_str())
    }
}

/// Whether the request carries `x-forwarded-for` (any line, even empty).
pub(crate) fn forwarded(request: &Request<'_>) -> bool {
    request
        .headers
        .any_value(crate::compile::FORWARDED_FOR, &mut |_| true)
}
