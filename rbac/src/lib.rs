//! # cordon-rbac: istiod's translation, as a product feature
//!
//! Istio does not evaluate AuthorizationPolicy itself: istiod translates the policies that
//! select a workload into configuration for Envoy's HTTP RBAC filter
//! (`envoy.filters.http.rbac`) and pushes it to the workload's sidecar. cordon promises to
//! decide exactly as that configuration does, so this crate re-expresses istiod's
//! translation in Rust, following istiod's code structure one function at a time
//! (istio/istio at commit `86c9f01fd735fb01d8192f5bcaf0d424afb7f14c`):
//!
//! | istiod (Go) | here |
//! |---|---|
//! | `pilot/pkg/security/authz/builder/builder.go` (`build`, `buildHTTP`, `policyName`, `isDryRun`, `shadowRuleStatPrefix`) | [`translate`] |
//! | `pilot/pkg/security/authz/model/model.go` (`New`, `MigrateTrustDomain`, `Generate`, `checkError`) | `model::Model` |
//! | `pilot/pkg/security/authz/model/{generator,permission,principal,util}.go` | `model::Generator` |
//! | `pilot/pkg/security/authz/matcher/{string,header,metadata,template}.go` | `matcher` |
//! | `pilot/pkg/security/trustdomain/{bundle,util}.go` | `trustdomain::Bundle` |
//! | `pilot/pkg/model/authorization.go`, `policyattachment.go` (which policies a sidecar gets) | `policy::Policy::applies_to` |
//! | `pilot/pkg/networking/core/listener_builder.go` (MeshConfig `pathNormalization`) | [`Translation::connection_manager`] |
//! | `pkg/bootstrap/config.go` (`extractRuntimeFlags`, the sidecar's static runtime) | [`istio_runtime`] |
//!
//! It is the oracle cordon's engine is tested against in a real Envoy: the same policies,
//! once through cordon and once through this translation into Envoy's own RBAC filter, must
//! give the same decisions. It shares nothing with the engine's matchers; it uses
//! `cordon_engine::model::parse_policies` only to refuse what cordon refuses
//! ([`translate`]), and [`translate_unvalidated`] skips even that.
//!
//! To stand in for an Istio sidecar, an Envoy needs all three: the filters (after
//! `jwt_authn`, before the router), the connection manager fields, and the runtime layer.
//!
//! Scope: the HTTP filters of a sidecar's inbound listener, for ALLOW, DENY and AUDIT
//! policies (CUSTOM needs ext_authz and is not translated); principals matched with
//! `authenticated` (the peer certificate), as for a sidecar with mTLS (waypoints and
//! HBONE use filter state instead).
//!
//! ```
//! use cordon_rbac::{translate, MeshSettings, Workload};
//! use serde_json::json;
//!
//! let policy = json!({
//!     "apiVersion": "security.istio.io/v1",
//!     "kind": "AuthorizationPolicy",
//!     "metadata": {"name": "allow-orders", "namespace": "shop"},
//!     "spec": {"rules": [{"from": [{"source": {"namespaces": ["orders"]}}]}]}
//! });
//! let workload = Workload { namespace: Some("shop".into()), labels: Default::default() };
//! let out = translate(&[policy], &workload, &MeshSettings::default()).unwrap();
//! assert_eq!(out.http_filters.len(), 1);
//! assert_eq!(out.http_filters[0]["name"], "envoy.filters.http.rbac");
//! assert_eq!(out.connection_manager["normalize_path"], true);
//! ```

mod matcher;
mod model;
mod policy;
mod trustdomain;

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{json, Map, Value};

use model::{Model, RbacAction};
use policy::{Action, Policy};
use trustdomain::Bundle;

/// The `@type` of the HTTP RBAC filter's configuration.
pub const RBAC_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";
/// The name istiod gives the HTTP RBAC filter (`wellknown.HTTPRoleBasedAccessControl`).
pub const RBAC_FILTER_NAME: &str = "envoy.filters.http.rbac";
/// `shadow_rules_stat_prefix` of a filter whose dry-run rules are ALLOW, and (as istiod
/// computes it from a missing shadow rule set) of every filter without dry-run rules.
pub const SHADOW_ALLOW_STAT_PREFIX: &str = "istio_dry_run_allow_";
/// `shadow_rules_stat_prefix` of a filter whose dry-run rules are DENY.
pub const SHADOW_DENY_STAT_PREFIX: &str = "istio_dry_run_deny_";

/// The runtime flags istiod's bootstrap (`pkg/bootstrap/config.go`, `extractRuntimeFlags`)
/// puts in every sidecar's static runtime layer that bear on what the RBAC filter decides:
/// RE2 programs up to 32768 instructions (Envoy's default limit, 100, refuses the
/// `safe_regex` of a long service account or namespace and with it the whole listener),
/// and a path with a `#fragment` stripped to the path rather than answered 400. An Envoy
/// standing in for an Istio sidecar needs them in `layered_runtime`, e.g.
/// `{"layers": [{"name": "istio", "static_layer": istio_runtime()}]}`. (The other flags
/// istiod sets there concern listeners, heap accounting and load balancing.)
pub fn istio_runtime() -> Value {
    json!({
        "re2.max_program_size.error_level": 32768,
        "envoy.reloadable_features.http_reject_path_with_fragment": false,
    })
}

/// The mesh-wide settings the translation depends on (istiod's MeshConfig).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshSettings {
    /// `trustDomain`; default `cluster.local`.
    pub trust_domain: String,
    /// `trustDomainAliases`; default none.
    pub trust_domain_aliases: Vec<String>,
    /// `rootNamespace`: its policies apply to every workload; default `istio-system`.
    pub root_namespace: String,
    /// `pathNormalization.normalization`: `NONE`, `BASE` (Istio's default; `DEFAULT` is
    /// read as `BASE`, as istiod does), `MERGE_SLASHES` or `DECODE_AND_MERGE_SLASHES`.
    pub path_normalization: String,
}

impl Default for MeshSettings {
    fn default() -> Self {
        MeshSettings {
            trust_domain: "cluster.local".to_string(),
            trust_domain_aliases: Vec::new(),
            root_namespace: "istio-system".to_string(),
            path_normalization: "BASE".to_string(),
        }
    }
}

/// The workload whose sidecar the configuration is for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Workload {
    /// Its namespace; `None` means every policy applies (cordon's convention for a proxy
    /// outside any mesh), whatever its namespace and selector.
    pub namespace: Option<String>,
    /// Its labels, matched against `spec.selector.matchLabels`.
    pub labels: BTreeMap<String, String>,
}

/// What istiod would configure in the workload's sidecar.
#[derive(Debug, Clone, PartialEq)]
pub struct Translation {
    /// The HTTP RBAC filters, in the order istiod inserts them (AUDIT, then DENY, then
    /// ALLOW; an action without selected policies has no filter). Each a complete
    /// `HttpFilter`: `{"name": "envoy.filters.http.rbac", "typed_config": {"@type":
    /// "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC", ...}}`, in proto3
    /// JSON with snake_case field names and default values left out, as Envoy accepts it in
    /// a static or LDS configuration. They go after `jwt_authn` and before the router.
    pub http_filters: Vec<Value>,
    /// The HttpConnectionManager fields istiod sets for the path normalization mode:
    /// `normalize_path`, `merge_slashes`, `path_with_escaped_slashes_action`. The RBAC
    /// filter sees the path after this normalization.
    pub connection_manager: Value,
}

/// Why a translation was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TranslateError {
    /// cordon rejects the policies (every error, as `cordon check` reports them).
    Rejected(Vec<cordon_engine::PolicyError>),
    /// A policy is not a well-formed AuthorizationPolicy object (wrong JSON types, no
    /// name, unknown action): Kubernetes would not have stored it.
    Malformed {
        /// Position of the policy in the input.
        index: usize,
        /// The field and the problem.
        message: String,
    },
    /// Two different policies have the same namespace and name, which Kubernetes cannot
    /// hold (istiod keys its RBAC policies by name, so one would silently replace the
    /// other). The same object given twice is read once.
    Duplicate(String),
    /// `path_normalization` is not one of Istio's modes.
    PathNormalization(String),
}

impl fmt::Display for TranslateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TranslateError::Rejected(errors) => {
                write!(f, "cordon rejects the policies:")?;
                for error in errors {
                    write!(f, "\n  {error}")?;
                }
                Ok(())
            }
            TranslateError::Malformed { index, message } => {
                write!(f, "policy #{index} is not a valid AuthorizationPolicy object: {message}")
            }
            TranslateError::Duplicate(name) => write!(
                f,
                "two policies are named `{name}`: Kubernetes holds one object per namespace and name"
            ),
            TranslateError::PathNormalization(mode) => write!(
                f,
                "unknown path normalization `{mode}`: Istio has `NONE`, `BASE`, `MERGE_SLASHES` and `DECODE_AND_MERGE_SLASHES`"
            ),
        }
    }
}

impl std::error::Error for TranslateError {}

/// The HTTP RBAC filters and connection manager settings istiod would give the sidecar of
/// `workload` for these AuthorizationPolicy objects (JSON form, as `kubectl get -o json`
/// prints them or `cordon` reads them).
///
/// The policies are first validated by cordon (`cordon_engine::model::parse_policies`):
/// anything cordon rejects is refused here too, so the translation is only ever compared
/// with cordon on input both accept. Policies not selecting the workload, and those bound
/// with `targetRef(s)`, are left out, as istiod leaves them out of a sidecar's
/// configuration.
pub fn translate(
    policies: &[Value],
    workload: &Workload,
    mesh: &MeshSettings,
) -> Result<Translation, TranslateError> {
    let (_, _, errors) = cordon_engine::model::parse_policies(policies);
    if !errors.is_empty() {
        return Err(TranslateError::Rejected(errors));
    }
    translate_unvalidated(policies, workload, mesh)
}

/// [`translate`] without cordon's validation: istiod's translation of any structurally
/// well-formed policy, including values Istio's admission webhook or cordon would refuse
/// (those then take istiod's error paths: an invalid value drops an ALLOW rule and widens
/// a DENY or AUDIT rule; an unknown `when` key drops the rule). CUSTOM policies are
/// skipped (their filters are ext_authz's). For reproducing istiod's own test cases.
pub fn translate_unvalidated(
    policies: &[Value],
    workload: &Workload,
    mesh: &MeshSettings,
) -> Result<Translation, TranslateError> {
    let connection_manager = connection_manager(&mesh.path_normalization)?;
    let mut read = Vec::with_capacity(policies.len());
    let mut names: BTreeMap<String, &Value> = BTreeMap::new();
    for (index, value) in policies.iter().enumerate() {
        let policy =
            policy::read(value).map_err(|message| TranslateError::Malformed { index, message })?;
        let qualified = format!("{}/{}", policy.namespace, policy.name);
        match names.get(&qualified) {
            // The same object given twice (a YAML and a JSON copy): one object.
            Some(&first) if first == value => continue,
            Some(_) => return Err(TranslateError::Duplicate(qualified)),
            None => {
                names.insert(qualified, value);
            }
        }
        read.push(policy);
    }
    // `ListAuthorizationPolicies`: the root namespace's policies, then the workload's, each
    // in input order (istiod's is creation time).
    let namespace = workload.namespace.as_deref();
    let selected: Vec<&Policy> = read
        .iter()
        .filter(|p| p.applies_to(namespace, &workload.labels, &mesh.root_namespace))
        .collect();
    let root_first: Vec<&Policy> = selected
        .iter()
        .filter(|p| p.namespace == mesh.root_namespace)
        .chain(
            selected
                .iter()
                .filter(|p| p.namespace != mesh.root_namespace),
        )
        .copied()
        .collect();
    let bundle = Bundle::new(&mesh.trust_domain, &mesh.trust_domain_aliases);
    let mut http_filters = Vec::new();
    for (action, rbac_action) in [
        (Action::Audit, RbacAction::Log),
        (Action::Deny, RbacAction::Deny),
        (Action::Allow, RbacAction::Allow),
    ] {
        let of_action: Vec<&Policy> = root_first
            .iter()
            .filter(|p| p.action == action)
            .copied()
            .collect();
        if let Some(filter) = build(&of_action, rbac_action, &bundle) {
            http_filters.push(filter);
        }
    }
    Ok(Translation {
        http_filters,
        connection_manager,
    })
}

/// `policyName`: `ns[<namespace>]-policy[<name>]-rule[<index>]`.
fn policy_name(namespace: &str, name: &str, rule: usize) -> String {
    format!("ns[{namespace}]-policy[{name}]-rule[{rule}]")
}

/// `rbacPolicyMatchNever`: what a policy without rules becomes.
fn match_never() -> Value {
    json!({
        "permissions": [{"not_rule": {"any": true}}],
        "principals": [{"not_id": {"any": true}}]
    })
}

/// `Builder.build` then `buildHTTP` for one action: `None` without policies.
fn build(policies: &[&Policy], action: RbacAction, bundle: &Bundle) -> Option<Value> {
    if policies.is_empty() {
        return None;
    }
    let mut enforce: Option<Map<String, Value>> = None;
    let mut shadow: Option<Map<String, Value>> = None;
    for policy in policies {
        let current = if policy.is_dry_run() {
            shadow.get_or_insert_with(Map::new)
        } else {
            enforce.get_or_insert_with(Map::new)
        };
        for (index, rule) in policy.rules.iter().enumerate() {
            let name = policy_name(&policy.namespace, &policy.name, index);
            // A null rule is skipped.
            let Some(rule) = rule else { continue };
            // An unknown `when` key skips the rule, whatever the action.
            let Ok(mut model) = Model::new(&policy.namespace, rule) else {
                continue;
            };
            model.migrate_trust_domain(bundle);
            // Only ALLOW rules fail here (checkError): the rule is left out.
            if let Ok(generated) = model.generate(action) {
                current.insert(name, generated);
            }
        }
        if policy.rules.is_empty() {
            current.insert(
                policy_name(&policy.namespace, &policy.name, 0),
                match_never(),
            );
        }
    }
    let rbac = |policies: Map<String, Value>| {
        let mut rbac = Map::new();
        if let Some(name) = action.json_name() {
            rbac.insert("action".into(), Value::String(name.into()));
        }
        if !policies.is_empty() {
            rbac.insert("policies".into(), Value::Object(policies));
        }
        Value::Object(rbac)
    };
    let mut config = Map::new();
    config.insert("@type".into(), Value::String(RBAC_TYPE.into()));
    // `shadowRuleStatPrefix(nil)` reads the action of a nil rule set: ALLOW.
    let stat_prefix = match (&shadow, action) {
        (None, _) | (Some(_), RbacAction::Allow) => SHADOW_ALLOW_STAT_PREFIX,
        (Some(_), RbacAction::Deny) => SHADOW_DENY_STAT_PREFIX,
        (Some(_), RbacAction::Log) => "",
    };
    if let Some(policies) = enforce {
        config.insert("rules".into(), rbac(policies));
    }
    if let Some(policies) = shadow {
        config.insert("shadow_rules".into(), rbac(policies));
    }
    if !stat_prefix.is_empty() {
        config.insert(
            "shadow_rules_stat_prefix".into(),
            Value::String(stat_prefix.into()),
        );
    }
    Some(json!({"name": RBAC_FILTER_NAME, "typed_config": config}))
}

/// The HttpConnectionManager path settings istiod sets for a MeshConfig path normalization
/// mode (`listener_builder.go`): `KEEP_UNCHANGED` for escaped slashes, then per mode.
fn connection_manager(mode: &str) -> Result<Value, TranslateError> {
    let (normalize_path, merge_slashes, escaped_slashes) = match mode {
        "NONE" => (false, false, "KEEP_UNCHANGED"),
        "BASE" | "DEFAULT" => (true, false, "KEEP_UNCHANGED"),
        "MERGE_SLASHES" => (true, true, "KEEP_UNCHANGED"),
        "DECODE_AND_MERGE_SLASHES" => (true, true, "UNESCAPE_AND_FORWARD"),
        other => return Err(TranslateError::PathNormalization(other.to_string())),
    };
    Ok(json!({
        "normalize_path": normalize_path,
        "merge_slashes": merge_slashes,
        "path_with_escaped_slashes_action": escaped_slashes,
    }))
}

#[cfg(test)]
mod tests;
