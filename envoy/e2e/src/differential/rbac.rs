//! The oracle: istiod's translation of AuthorizationPolicy into Envoy's native RBAC
//! filters (crate `cordon-rbac`), behind one adapter function.
//!
//! Until `cordon-rbac` lands this holds a stand-in with the same signature that translates
//! only the simplest policies (ALLOW/DENY, exact principals, methods and paths) and
//! refuses the rest, so that the harness can be exercised end to end.

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// Mesh-wide settings istiod reads from MeshConfig.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshSettings {
    /// `trustDomain`.
    pub trust_domain: String,
    /// `trustDomainAliases`.
    pub trust_domain_aliases: Vec<String>,
    /// `rootNamespace`.
    pub root_namespace: String,
    /// `pathNormalization`: `NONE`, `BASE`, `MERGE_SLASHES` or `DECODE_AND_MERGE_SLASHES`.
    pub path_normalization: String,
}

/// The workload receiving the requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// Its namespace.
    pub namespace: Option<String>,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
}

/// What istiod would send the workload's Envoy.
#[derive(Debug, Clone, PartialEq)]
pub struct Translation {
    /// Complete `HttpFilter` objects, in order.
    pub http_filters: Vec<Value>,
    /// The connection manager's path settings (`normalize_path`, `merge_slashes`,
    /// `path_with_escaped_slashes_action`).
    pub connection_manager: Value,
}

/// The translation of `policies` for `workload`, or why there is none.
pub fn translate(
    policies: &[Value],
    workload: &Workload,
    mesh: &MeshSettings,
) -> std::result::Result<Translation, String> {
    stand_in::translate(policies, workload, mesh)
}

mod stand_in {
    use super::super::at;
    use super::*;

    pub fn translate(
        policies: &[Value],
        workload: &Workload,
        mesh: &MeshSettings,
    ) -> std::result::Result<Translation, String> {
        let mut deny = serde_json::Map::new();
        let mut allow = serde_json::Map::new();
        let mut any_allow = false;
        for policy in policies {
            let namespace = at(policy, "/metadata/namespace")
                .as_str()
                .unwrap_or_default();
            if workload.namespace.as_deref() != Some(namespace) && namespace != mesh.root_namespace
            {
                continue;
            }
            if at(policy, "/spec").get("selector").is_some() {
                return Err("stand-in: selectors".into());
            }
            let name = at(policy, "/metadata/name").as_str().unwrap_or_default();
            let action = at(policy, "/spec/action").as_str().unwrap_or("ALLOW");
            let target = match action {
                "ALLOW" => {
                    any_allow = true;
                    &mut allow
                }
                "DENY" => &mut deny,
                other => return Err(format!("stand-in: action {other}")),
            };
            let rules = at(policy, "/spec/rules")
                .as_array()
                .cloned()
                .unwrap_or_default();
            for (index, rule) in rules.iter().enumerate() {
                let mut principals = vec![];
                for from in at(rule, "/from").as_array().into_iter().flatten() {
                    let values = at(from, "/source/principals")
                        .as_array()
                        .ok_or("stand-in: only principals")?;
                    principals.push(json!({"or_ids": {"ids": values.iter().map(|v| json!({
                        "authenticated": {"principal_name": {"exact": format!("spiffe://{}", v.as_str().unwrap_or_default())}}
                    })).collect::<Vec<_>>()}}));
                }
                let mut permissions = vec![];
                for to in at(rule, "/to").as_array().into_iter().flatten() {
                    let operation = at(to, "/operation");
                    if let Some(methods) = at(operation, "/methods").as_array() {
                        permissions.push(
                            json!({"or_rules": {"rules": methods.iter().map(|m| json!({
                            "header": {"name": ":method", "string_match": {"exact": m}}
                        })).collect::<Vec<_>>()}}),
                        );
                    }
                    if let Some(paths) = at(operation, "/paths").as_array() {
                        permissions.push(json!({"or_rules": {"rules": paths.iter().map(|p| json!({
                            "url_path": {"path": {"exact": p}}
                        })).collect::<Vec<_>>()}}));
                    }
                }
                if principals.is_empty() {
                    principals.push(json!({"any": true}));
                }
                if permissions.is_empty() {
                    permissions.push(json!({"any": true}));
                }
                target.insert(
                    format!("ns[{namespace}]-policy[{name}]-rule[{index}]"),
                    json!({"permissions": [{"and_rules": {"rules": permissions}}],
                           "principals": [{"and_ids": {"ids": principals}}]}),
                );
            }
        }
        let filter = |action: &str, policies: serde_json::Map<String, Value>| {
            json!({"name": "envoy.filters.http.rbac", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
                "rules": {"action": action, "policies": policies}}})
        };
        let mut http_filters = vec![];
        if !deny.is_empty() {
            http_filters.push(filter("DENY", deny));
        }
        if any_allow {
            http_filters.push(filter("ALLOW", allow));
        }
        let connection_manager = match mesh.path_normalization.as_str() {
            "NONE" => {
                json!({"normalize_path": false, "path_with_escaped_slashes_action": "KEEP_UNCHANGED"})
            }
            "BASE" => {
                json!({"normalize_path": true, "path_with_escaped_slashes_action": "KEEP_UNCHANGED"})
            }
            "MERGE_SLASHES" => {
                json!({"normalize_path": true, "merge_slashes": true, "path_with_escaped_slashes_action": "KEEP_UNCHANGED"})
            }
            "DECODE_AND_MERGE_SLASHES" => {
                json!({"normalize_path": true, "merge_slashes": true, "path_with_escaped_slashes_action": "UNESCAPE_AND_FORWARD"})
            }
            other => return Err(format!("stand-in: path normalization {other}")),
        };
        Ok(Translation {
            http_filters,
            connection_manager,
        })
    }
}
