//! AuthorizationPolicy objects read from JSON into the shape istiod works on
//! (`istio.io/api/security/v1beta1` plus the config metadata it keeps), without any
//! validation beyond the types of the fields: that is the caller's choice (see
//! [`crate::translate`]).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// `spec.action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Allow,
    Deny,
    Audit,
    Custom,
}

/// One policy, as istiod's `model.AuthorizationPolicy` holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Policy {
    pub(crate) name: String,
    pub(crate) namespace: String,
    /// `metadata.annotations["istio.io/dry-run"]`.
    pub(crate) dry_run_annotation: Option<String>,
    pub(crate) action: Action,
    /// `spec.selector.matchLabels` (`None` when there is no selector).
    pub(crate) selector: Option<BTreeMap<String, String>>,
    /// `spec.targetRef` or a non-empty `spec.targetRefs`.
    pub(crate) has_target_refs: bool,
    /// `spec.rules`; `None` for a `null` rule.
    pub(crate) rules: Vec<Option<Rule>>,
}

/// `Rule`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Rule {
    /// `from[].source` (`None`: a `from` entry without `source`).
    pub(crate) from: Vec<Option<Source>>,
    /// `to[].operation`.
    pub(crate) to: Vec<Option<Operation>>,
    pub(crate) when: Vec<Condition>,
}

/// `Source`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Source {
    pub(crate) principals: Vec<String>,
    pub(crate) not_principals: Vec<String>,
    pub(crate) request_principals: Vec<String>,
    pub(crate) not_request_principals: Vec<String>,
    pub(crate) namespaces: Vec<String>,
    pub(crate) not_namespaces: Vec<String>,
    pub(crate) service_accounts: Vec<String>,
    pub(crate) not_service_accounts: Vec<String>,
    pub(crate) trust_domains: Vec<String>,
    pub(crate) not_trust_domains: Vec<String>,
    pub(crate) ip_blocks: Vec<String>,
    pub(crate) not_ip_blocks: Vec<String>,
    pub(crate) remote_ip_blocks: Vec<String>,
    pub(crate) not_remote_ip_blocks: Vec<String>,
}

/// `Operation`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Operation {
    pub(crate) hosts: Vec<String>,
    pub(crate) not_hosts: Vec<String>,
    pub(crate) ports: Vec<String>,
    pub(crate) not_ports: Vec<String>,
    pub(crate) methods: Vec<String>,
    pub(crate) not_methods: Vec<String>,
    pub(crate) paths: Vec<String>,
    pub(crate) not_paths: Vec<String>,
}

/// `Condition`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Condition {
    pub(crate) key: String,
    pub(crate) values: Vec<String>,
    pub(crate) not_values: Vec<String>,
}

type Result<T> = core::result::Result<T, String>;

fn object<'v>(value: &'v Value, field: &str) -> Result<&'v Map<String, Value>> {
    value
        .as_object()
        .ok_or_else(|| format!("{field}: expected an object"))
}

fn optional_object<'v>(
    map: &'v Map<String, Value>,
    key: &str,
    field: &str,
) -> Result<Option<&'v Map<String, Value>>> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => object(value, &format!("{field}{key}")).map(Some),
    }
}

fn optional_array<'v>(map: &'v Map<String, Value>, key: &str, field: &str) -> Result<&'v [Value]> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(format!("{field}{key}: expected a list")),
    }
}

fn optional_string<'v>(
    map: &'v Map<String, Value>,
    key: &str,
    field: &str,
) -> Result<Option<&'v str>> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(format!("{field}{key}: expected a string")),
    }
}

fn strings(map: &Map<String, Value>, key: &str, field: &str) -> Result<Vec<String>> {
    optional_array(map, key, field)?
        .iter()
        .enumerate()
        .map(|(i, item)| {
            item.as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("{field}{key}[{i}]: expected a string"))
        })
        .collect()
}

/// Reads one policy object.
pub(crate) fn read(value: &Value) -> Result<Policy> {
    let root = object(value, "policy")?;
    let metadata =
        optional_object(root, "metadata", "")?.ok_or_else(|| "metadata: missing".to_string())?;
    let name = optional_string(metadata, "name", "metadata.")?
        .ok_or_else(|| "metadata.name: missing".to_string())?
        .to_string();
    let namespace = optional_string(metadata, "namespace", "metadata.")?
        .unwrap_or("default")
        .to_string();
    let dry_run_annotation = match optional_object(metadata, "annotations", "metadata.")? {
        None => None,
        Some(annotations) => {
            optional_string(annotations, "istio.io/dry-run", "metadata.annotations.")?
                .map(str::to_string)
        }
    };
    let empty = Map::new();
    let spec = optional_object(root, "spec", "")?.unwrap_or(&empty);
    let action = match optional_string(spec, "action", "spec.")? {
        None | Some("ALLOW") => Action::Allow,
        Some("DENY") => Action::Deny,
        Some("AUDIT") => Action::Audit,
        Some("CUSTOM") => Action::Custom,
        Some(other) => return Err(format!("spec.action: unknown action `{other}`")),
    };
    let selector = match optional_object(spec, "selector", "spec.")? {
        None => None,
        Some(selector) => {
            let mut labels = BTreeMap::new();
            if let Some(match_labels) = optional_object(selector, "matchLabels", "spec.selector.")?
            {
                for (key, value) in match_labels {
                    let text = value.as_str().ok_or_else(|| {
                        format!("spec.selector.matchLabels.{key}: expected a string")
                    })?;
                    labels.insert(key.clone(), text.to_string());
                }
            }
            Some(labels)
        }
    };
    let has_target_refs = optional_object(spec, "targetRef", "spec.")?.is_some()
        || !optional_array(spec, "targetRefs", "spec.")?.is_empty();
    let mut rules = Vec::new();
    for (i, item) in optional_array(spec, "rules", "spec.")?.iter().enumerate() {
        if item.is_null() {
            rules.push(None);
            continue;
        }
        rules.push(Some(rule(item, &format!("spec.rules[{i}]."))?));
    }
    Ok(Policy {
        name,
        namespace,
        dry_run_annotation,
        action,
        selector,
        has_target_refs,
        rules,
    })
}

fn rule(value: &Value, field: &str) -> Result<Rule> {
    let map = object(value, field)?;
    let mut rule = Rule::default();
    for (i, item) in optional_array(map, "from", field)?.iter().enumerate() {
        let location = format!("{field}from[{i}].");
        let entry = object(item, &location)?;
        rule.from
            .push(match optional_object(entry, "source", &location)? {
                None => None,
                Some(source) => Some(read_source(source, &format!("{location}source."))?),
            });
    }
    for (i, item) in optional_array(map, "to", field)?.iter().enumerate() {
        let location = format!("{field}to[{i}].");
        let entry = object(item, &location)?;
        rule.to
            .push(match optional_object(entry, "operation", &location)? {
                None => None,
                Some(operation) => {
                    Some(read_operation(operation, &format!("{location}operation."))?)
                }
            });
    }
    for (i, item) in optional_array(map, "when", field)?.iter().enumerate() {
        let location = format!("{field}when[{i}].");
        let condition = object(item, &location)?;
        rule.when.push(Condition {
            key: optional_string(condition, "key", &location)?
                .unwrap_or_default()
                .to_string(),
            values: strings(condition, "values", &location)?,
            not_values: strings(condition, "notValues", &location)?,
        });
    }
    Ok(rule)
}

fn read_source(map: &Map<String, Value>, field: &str) -> Result<Source> {
    Ok(Source {
        principals: strings(map, "principals", field)?,
        not_principals: strings(map, "notPrincipals", field)?,
        request_principals: strings(map, "requestPrincipals", field)?,
        not_request_principals: strings(map, "notRequestPrincipals", field)?,
        namespaces: strings(map, "namespaces", field)?,
        not_namespaces: strings(map, "notNamespaces", field)?,
        service_accounts: strings(map, "serviceAccounts", field)?,
        not_service_accounts: strings(map, "notServiceAccounts", field)?,
        trust_domains: strings(map, "trustDomains", field)?,
        not_trust_domains: strings(map, "notTrustDomains", field)?,
        ip_blocks: strings(map, "ipBlocks", field)?,
        not_ip_blocks: strings(map, "notIpBlocks", field)?,
        remote_ip_blocks: strings(map, "remoteIpBlocks", field)?,
        not_remote_ip_blocks: strings(map, "notRemoteIpBlocks", field)?,
    })
}

fn read_operation(map: &Map<String, Value>, field: &str) -> Result<Operation> {
    Ok(Operation {
        hosts: strings(map, "hosts", field)?,
        not_hosts: strings(map, "notHosts", field)?,
        ports: strings(map, "ports", field)?,
        not_ports: strings(map, "notPorts", field)?,
        methods: strings(map, "methods", field)?,
        not_methods: strings(map, "notMethods", field)?,
        paths: strings(map, "paths", field)?,
        not_paths: strings(map, "notPaths", field)?,
    })
}

impl Policy {
    /// Whether a sidecar of this workload gets the policy (istiod's
    /// `ListAuthorizationPolicies` for a non-gateway proxy): policies with `targetRef(s)`
    /// never; otherwise those of the root namespace and the workload's namespace whose
    /// selector (if any) the labels satisfy. Without a namespace every policy applies, as in
    /// cordon's `Policy::applies_to`.
    pub(crate) fn applies_to(
        &self,
        namespace: Option<&str>,
        labels: &BTreeMap<String, String>,
        root_namespace: &str,
    ) -> bool {
        if self.has_target_refs {
            return false;
        }
        let Some(namespace) = namespace else {
            return true;
        };
        if self.namespace != namespace && self.namespace != root_namespace {
            return false;
        }
        match &self.selector {
            None => true,
            Some(selector) => selector
                .iter()
                .all(|(key, value)| labels.get(key) == Some(value)),
        }
    }

    /// `isDryRun`: the annotation read with Go's `strconv.ParseBool` (`1`, `t`, `T`, `TRUE`,
    /// `true`, `True` are true; anything unparsable is false).
    pub(crate) fn is_dry_run(&self) -> bool {
        matches!(
            self.dry_run_annotation.as_deref(),
            Some("1" | "t" | "T" | "TRUE" | "true" | "True")
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;
    use serde_json::json;

    #[test]
    fn reads_a_full_policy() {
        let policy = read(&json!({
            "metadata": {"name": "p", "namespace": "ns", "annotations": {"istio.io/dry-run": "True"}},
            "spec": {
                "action": "DENY",
                "selector": {"matchLabels": {"app": "a"}},
                "rules": [null, {
                    "from": [{"source": {"principals": ["x"], "notIpBlocks": ["1.2.3.4"]}}, {}],
                    "to": [{"operation": {"paths": ["/a"]}}],
                    "when": [{"key": "k", "notValues": ["v"]}]
                }]
            }
        }))
        .unwrap();
        assert_eq!(policy.action, Action::Deny);
        assert!(policy.is_dry_run());
        assert_eq!(policy.rules.len(), 2);
        assert!(policy.rules[0].is_none());
        let rule = policy.rules[1].as_ref().unwrap();
        assert_eq!(
            rule.from[0].as_ref().unwrap().principals,
            vec!["x".to_string()]
        );
        assert!(rule.from[1].is_none());
        assert_eq!(rule.to[0].as_ref().unwrap().paths, vec!["/a".to_string()]);
        assert_eq!(rule.when[0].not_values, vec!["v".to_string()]);
    }

    #[test]
    fn defaults_and_errors() {
        let policy = read(&json!({"metadata": {"name": "p"}})).unwrap();
        assert_eq!(policy.namespace, "default");
        assert_eq!(policy.action, Action::Allow);
        assert!(policy.rules.is_empty());
        assert!(read(&json!({"metadata": {}})).is_err());
        assert!(read(&json!({"metadata": {"name": "p"}, "spec": {"action": "NOPE"}})).is_err());
        assert!(read(&json!({"metadata": {"name": "p"}, "spec": {"rules": [{"from": [{"source": {"principals": [1]}}]}]}})).is_err());
    }

    #[test]
    fn dry_run_follows_go_parse_bool() {
        for (text, expected) in [
            ("true", true),
            ("1", true),
            ("T", true),
            ("tRUE", false),
            ("yes", false),
            ("false", false),
        ] {
            let policy = read(
                &json!({"metadata": {"name": "p", "annotations": {"istio.io/dry-run": text}}}),
            )
            .unwrap();
            assert_eq!(policy.is_dry_run(), expected, "{text}");
        }
    }

    #[test]
    fn selection() {
        let labels: BTreeMap<String, String> = [("app".to_string(), "a".to_string())].into();
        let read_policy = |v: Value| read(&v).unwrap();
        let selected = read_policy(
            json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {"selector": {"matchLabels": {"app": "a"}}}}),
        );
        assert!(selected.applies_to(Some("ns"), &labels, "istio-system"));
        assert!(!selected.applies_to(Some("other"), &labels, "istio-system"));
        assert!(!selected.applies_to(Some("ns"), &BTreeMap::new(), "istio-system"));
        let root = read_policy(json!({"metadata": {"name": "p", "namespace": "istio-system"}}));
        assert!(root.applies_to(Some("any"), &BTreeMap::new(), "istio-system"));
        let targeted = read_policy(
            json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {"targetRefs": [{"kind": "Gateway", "name": "g"}]}}),
        );
        assert!(!targeted.applies_to(Some("ns"), &labels, "istio-system"));
        assert!(!targeted.applies_to(None, &labels, "istio-system"));
        assert!(selected.applies_to(None, &BTreeMap::new(), "istio-system"));
    }
}
