//! The plugin configuration: one JSON object (Istio passes a WasmPlugin's `pluginConfig`
//! as JSON). Unknown keys are errors, so a typo never silently changes enforcement.

use std::collections::BTreeMap;

use cordon_engine::model::stream::{PolicyList, ReadPolicies};
use cordon_engine::{Limits, Options, PathNormalization, PolicySet, Workload};
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::encoding::decode_pairs;
use crate::host::{Host, LogLevel};

/// Where the peer identity comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentitySource {
    /// The URI SAN of the verified client certificate (the default).
    PeerCertificate,
    /// The `URI=` of the element the nearest hop appended to `x-forwarded-client-cert`.
    /// Only for proxies behind a trusted hop that verified the client certificate.
    ForwardedClientCert,
}

/// How denied requests are answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DenyResponse {
    /// HTTP status (default 403).
    pub status: u16,
    /// Body (default `RBAC: access denied`, what Istio users see from Envoy's RBAC filter).
    pub body: String,
}

/// Decision log settings.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionLog {
    /// Whether to log at all.
    pub enabled: bool,
    /// Proxy log level of decision records.
    pub level: LogLevel,
    /// Fraction of allowed requests logged, from 0 to 1; denied and dry-run-denied
    /// requests are always logged.
    pub allow_sample_rate: f64,
}

/// Where verified JWT claims are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtSource {
    /// Dynamic metadata namespace of the JWT filter.
    pub metadata_namespace: String,
    /// Key under which the filter stores the payload (`payload_in_metadata`).
    pub payload_key: String,
}

/// Everything the filter runs with, compiled.
#[derive(Debug)]
pub struct FilterConfig {
    /// The compiled policies.
    pub policies: PolicySet,
    /// Identity source.
    pub identity: IdentitySource,
    /// JWT claims source.
    pub jwt: JwtSource,
    /// Deny response.
    pub deny: DenyResponse,
    /// Decision log.
    pub log: DecisionLog,
    /// Enforce nothing: evaluate and log what would happen.
    pub dry_run: bool,
    /// Proxies in front of this one whose `x-forwarded-for` entries are trusted; `remote.ip`
    /// is the entry that many places from the right, as Envoy's `xff_num_trusted_hops`
    /// picks it. 0 (the default): `remote.ip` is `source.ip`.
    pub trusted_proxy_hops: usize,
}

/// Every key of the plugin configuration; any other is an error.
pub const KEYS: &[&str] = &[
    "policies",
    "workload",
    "root_namespace",
    "trust_domain",
    "trust_domain_aliases",
    "path_normalization",
    "identity",
    "jwt",
    "deny_response",
    "decision_log",
    "dry_run",
    "limits",
    "trusted_proxy_hops",
    "use_remote_address",
];

/// A configuration problem: the field and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path of the field (`deny_response.status`, `policies[2].spec.rules[0]...`).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

fn error(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.to_string(),
        message: message.into(),
    }
}

fn object<'v>(
    value: &'v Value,
    field: &str,
    keys: &[&str],
) -> Result<&'v Map<String, Value>, ConfigError> {
    let map = value
        .as_object()
        .ok_or_else(|| error(field, "expected an object"))?;
    if let Some(unknown) = map.keys().find(|key| !keys.contains(&key.as_str())) {
        let location = if field.is_empty() {
            unknown.clone()
        } else {
            format!("{field}.{unknown}")
        };
        return Err(error(&location, format!("unknown field `{unknown}`")));
    }
    Ok(map)
}

fn string(map: &Map<String, Value>, key: &str, field: &str) -> Result<Option<String>, ConfigError> {
    match map.get(key) {
        None => Ok(None),
        Some(Value::String(text)) if !text.is_empty() => Ok(Some(text.clone())),
        Some(Value::String(_)) => Err(error(&join(field, key), "must not be empty")),
        Some(_) => Err(error(&join(field, key), "expected a string")),
    }
}

fn join(field: &str, key: &str) -> String {
    if field.is_empty() {
        key.to_string()
    } else {
        format!("{field}.{key}")
    }
}

/// Reads the configuration and compiles its policies. `host` supplies Istio's node
/// metadata (`NAMESPACE`, `LABELS`) when the configuration names no workload. Returns
/// every error found.
///
/// The text is read twice and never held as one JSON tree (20 to 50 times its size, and a
/// wasm VM's memory never shrinks): first every setting but `policies`, as small JSON
/// values; then, with the limits those settings give, the policies themselves, each rule
/// validated as it streams in (`cordon_engine::model::stream`).
pub fn load(bytes: &[u8], host: &dyn Host) -> Result<FilterConfig, Vec<ConfigError>> {
    let settings = read_settings(bytes)?;
    let value = Value::Object(settings.values);
    let root = object(&value, "", KEYS).map_err(|e| vec![e])?;
    // The filter only decides: the validated policies and per-rule field lists that
    // `explain` reads are never kept (nor held all at once while compiling).
    let mut options = Options {
        explain: false,
        ..Options::default()
    };
    let single = |result: Result<(), ConfigError>| result.map_err(|e| vec![e]);

    single((|| {
        if let Some(namespace) = string(root, "root_namespace", "")? {
            options.root_namespace = namespace;
        }
        options.trust_domain = string(root, "trust_domain", "")?;
        if let Some(aliases) = root.get("trust_domain_aliases") {
            let items = aliases
                .as_array()
                .ok_or_else(|| error("trust_domain_aliases", "expected a list of strings"))?;
            for (position, item) in items.iter().enumerate() {
                let alias = item
                    .as_str()
                    .filter(|alias| !alias.is_empty())
                    .ok_or_else(|| {
                        error(
                            &format!("trust_domain_aliases[{position}]"),
                            "expected a non-empty string",
                        )
                    })?;
                options.trust_domain_aliases.push(alias.to_string());
            }
        }
        if let Some(mode) = string(root, "path_normalization", "")? {
            options.path_normalization = PathNormalization::from_name(&mode).ok_or_else(|| {
                error(
                    "path_normalization",
                    format!("unknown mode `{mode}`: expected STRICT, NONE, BASE, MERGE_SLASHES or DECODE_AND_MERGE_SLASHES"),
                )
            })?;
        }
        options.workload = match root.get("workload") {
            Some(value) => workload(value)?,
            None => node_workload(host),
        };
        if let Some(value) = root.get("limits") {
            options.limits = limits(value)?;
        }
        options.use_remote_address = match root.get("use_remote_address") {
            None => false,
            Some(Value::Bool(flag)) => *flag,
            Some(_) => return Err(error("use_remote_address", "expected true or false")),
        };
        Ok(())
    })())?;

    let identity = single_value(root.get("identity").map(identity_source))?
        .unwrap_or(IdentitySource::PeerCertificate);
    let jwt = single_value(root.get("jwt").map(jwt_source))?.unwrap_or_else(|| JwtSource {
        metadata_namespace: "envoy.filters.http.jwt_authn".to_string(),
        payload_key: "payload".to_string(),
    });
    let deny = single_value(root.get("deny_response").map(deny_response))?.unwrap_or_else(|| {
        DenyResponse {
            status: 403,
            body: "RBAC: access denied".to_string(),
        }
    });
    let log = single_value(root.get("decision_log").map(decision_log))?.unwrap_or(DecisionLog {
        enabled: true,
        level: LogLevel::Info,
        allow_sample_rate: 0.0,
    });
    let dry_run = match root.get("dry_run") {
        None => false,
        Some(Value::Bool(flag)) => *flag,
        Some(_) => return Err(vec![error("dry_run", "expected true or false")]),
    };
    let trusted_proxy_hops = match root.get("trusted_proxy_hops") {
        None => 0,
        Some(hops) => hops
            .as_u64()
            .and_then(|hops| usize::try_from(hops).ok())
            .filter(|hops| *hops <= 16)
            .ok_or_else(|| {
                vec![error(
                    "trusted_proxy_hops",
                    "expected an integer from 0 to 16",
                )]
            })?,
    };
    match settings.policies {
        None => {
            return Err(vec![error(
                "policies",
                "missing: give a list of AuthorizationPolicy objects (it may be empty)",
            )])
        }
        Some(PoliciesShape::List) => {}
        Some(PoliciesShape::Other) => {
            return Err(vec![error(
                "policies",
                "expected a list of AuthorizationPolicy objects",
            )])
        }
    }
    let read = read_policies(bytes, options.limits)?;
    let policies = PolicySet::compile_read(read, options).map_err(|failure| {
        failure
            .errors
            .iter()
            .map(|problem| {
                let mut field = format!("policies[{}]", problem.index);
                if !problem.field.is_empty() {
                    field.push('.');
                    field.push_str(&problem.field);
                }
                error(
                    &field,
                    format!("policy `{}`: {}", problem.policy, problem.message),
                )
            })
            .collect::<Vec<_>>()
    })?;
    Ok(FilterConfig {
        policies,
        identity,
        jwt,
        deny,
        log,
        dry_run,
        trusted_proxy_hops,
    })
}

fn not_json(problem: &serde_json::Error) -> Vec<ConfigError> {
    vec![error(
        "",
        format!(
            "plugin configuration is not valid JSON (line {}, column {}): {problem}",
            problem.line(),
            problem.column()
        ),
    )]
}

/// What `policies` holds, as far as the first pass looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PoliciesShape {
    List,
    Other,
}

/// The first pass: every setting but `policies` as a JSON value, and the shape of
/// `policies` (skipped, not held).
struct Settings {
    values: Map<String, Value>,
    policies: Option<PoliciesShape>,
}

fn read_settings(bytes: &[u8]) -> Result<Settings, Vec<ConfigError>> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let settings = SettingsVisitor
        .deserialize(&mut deserializer)
        .and_then(|settings| deserializer.end().map(|()| settings))
        .map_err(|problem| not_json(&problem))?;
    settings.ok_or_else(|| vec![error("", "expected an object")])
}

/// The second pass: the policies, read with `limits` (the list is valid JSON and a list:
/// the first pass said so).
fn read_policies(bytes: &[u8], limits: Limits) -> Result<ReadPolicies, Vec<ConfigError>> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    PoliciesVisitor { limits }
        .deserialize(&mut deserializer)
        .map_err(|problem| vec![error("policies", problem.to_string())])?
        .ok_or_else(|| vec![error("policies", "missing")])
}

/// The configuration object in the first pass; `None` when it is not an object.
struct SettingsVisitor;

impl<'de> DeserializeSeed<'de> for SettingsVisitor {
    type Value = Option<Settings>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for SettingsVisitor {
    type Value = Option<Settings>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the plugin configuration object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut settings = Settings {
            values: Map::new(),
            policies: None,
        };
        while let Some(key) = map.next_key::<String>()? {
            if key == "policies" {
                settings.policies = Some(map.next_value_seed(ShapeSeed)?);
            } else {
                let value = map.next_value::<Value>()?;
                settings.values.insert(key, value);
            }
        }
        Ok(Some(settings))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// `policies` in the first pass: skipped, its shape noted.
struct ShapeSeed;

impl<'de> DeserializeSeed<'de> for ShapeSeed {
    type Value = PoliciesShape;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ShapeSeed {
    type Value = PoliciesShape;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a list of AuthorizationPolicy objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(PoliciesShape::List)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(PoliciesShape::Other)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(PoliciesShape::Other)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(PoliciesShape::Other)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(PoliciesShape::Other)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(PoliciesShape::Other)
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(PoliciesShape::Other)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(PoliciesShape::Other)
    }
}

/// The configuration object in the second pass: `policies` read, every other key skipped
/// (the last `policies` counts, as in a JSON value).
struct PoliciesVisitor {
    limits: Limits,
}

impl<'de> DeserializeSeed<'de> for PoliciesVisitor {
    type Value = Option<ReadPolicies>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for PoliciesVisitor {
    type Value = Option<ReadPolicies>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the plugin configuration object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut read = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == "policies" {
                // An earlier list is dropped before the next is read.
                drop(read.take());
                read = Some(map.next_value_seed(PolicyList::new(self.limits).without_locations())?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(read)
    }
}

fn single_value<T>(value: Option<Result<T, ConfigError>>) -> Result<Option<T>, Vec<ConfigError>> {
    value.transpose().map_err(|e| vec![e])
}

fn workload(value: &Value) -> Result<Workload, ConfigError> {
    let map = object(value, "workload", &["namespace", "labels"])?;
    let mut labels = BTreeMap::new();
    if let Some(value) = map.get("labels") {
        let entries = value
            .as_object()
            .ok_or_else(|| error("workload.labels", "expected an object of strings"))?;
        for (key, label) in entries {
            let label = label
                .as_str()
                .ok_or_else(|| error(&format!("workload.labels.{key}"), "expected a string"))?;
            labels.insert(key.clone(), label.to_string());
        }
    }
    Ok(Workload {
        namespace: string(map, "namespace", "workload")?,
        labels,
    })
}

/// Istio's sidecar node metadata: `NAMESPACE` (a string) and `LABELS` (a map). Envoy 1.40
/// serves the node under `xds.node` (measured); older hosts used `node`.
fn node_workload(host: &dyn Host) -> Workload {
    let node_property = |key: &str| {
        host.property(&["xds", "node", "metadata", key])
            .or_else(|| host.property(&["node", "metadata", key]))
    };
    let namespace = node_property("NAMESPACE")
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .filter(|namespace| !namespace.is_empty());
    let mut labels = BTreeMap::new();
    if namespace.is_some() {
        if let Some(bytes) = node_property("LABELS") {
            for (key, value) in decode_pairs(&bytes).unwrap_or_default() {
                if let (Ok(key), Ok(value)) = (std::str::from_utf8(key), std::str::from_utf8(value))
                {
                    labels.insert(key.to_string(), value.to_string());
                }
            }
        }
    }
    Workload { namespace, labels }
}

fn identity_source(value: &Value) -> Result<IdentitySource, ConfigError> {
    let map = object(value, "identity", &["source"])?;
    match string(map, "source", "identity")?.as_deref() {
        None | Some("peer_certificate") => Ok(IdentitySource::PeerCertificate),
        Some("x_forwarded_client_cert") => Ok(IdentitySource::ForwardedClientCert),
        Some(other) => Err(error(
            "identity.source",
            format!("unknown source `{other}`: expected `peer_certificate` or `x_forwarded_client_cert`"),
        )),
    }
}

fn jwt_source(value: &Value) -> Result<JwtSource, ConfigError> {
    let map = object(value, "jwt", &["metadata_namespace", "payload_key"])?;
    Ok(JwtSource {
        metadata_namespace: string(map, "metadata_namespace", "jwt")?
            .unwrap_or_else(|| "envoy.filters.http.jwt_authn".to_string()),
        payload_key: string(map, "payload_key", "jwt")?.unwrap_or_else(|| "payload".to_string()),
    })
}

fn deny_response(value: &Value) -> Result<DenyResponse, ConfigError> {
    let map = object(value, "deny_response", &["status", "body"])?;
    let status = match map.get("status") {
        None => 403,
        Some(status) => status
            .as_u64()
            .and_then(|status| u16::try_from(status).ok())
            .filter(|status| (400..=599).contains(status))
            .ok_or_else(|| {
                error(
                    "deny_response.status",
                    "expected an HTTP error status from 400 to 599",
                )
            })?,
    };
    let body = match map.get("body") {
        None => "RBAC: access denied".to_string(),
        Some(Value::String(body)) => body.clone(),
        Some(_) => return Err(error("deny_response.body", "expected a string")),
    };
    Ok(DenyResponse { status, body })
}

fn decision_log(value: &Value) -> Result<DecisionLog, ConfigError> {
    let map = object(
        value,
        "decision_log",
        &["enabled", "level", "allow_sample_rate"],
    )?;
    let enabled = match map.get("enabled") {
        None => true,
        Some(Value::Bool(flag)) => *flag,
        Some(_) => return Err(error("decision_log.enabled", "expected true or false")),
    };
    let level = match string(map, "level", "decision_log")? {
        None => LogLevel::Info,
        Some(name) => LogLevel::from_name(&name).ok_or_else(|| {
            error(
                "decision_log.level",
                format!(
                    "unknown level `{name}`: expected trace, debug, info, warn, error or critical"
                ),
            )
        })?,
    };
    let allow_sample_rate = match map.get("allow_sample_rate") {
        None => 0.0,
        Some(rate) => rate
            .as_f64()
            .filter(|rate| (0.0..=1.0).contains(rate))
            .ok_or_else(|| {
                error(
                    "decision_log.allow_sample_rate",
                    "expected a number from 0 to 1",
                )
            })?,
    };
    Ok(DecisionLog {
        enabled,
        level,
        allow_sample_rate,
    })
}

fn limits(value: &Value) -> Result<Limits, ConfigError> {
    const NAMES: &[&str] = &[
        "max_policies",
        "max_rules",
        "max_terms_per_rule",
        "max_terms",
        "max_values_per_attribute",
        "max_automaton_bytes",
        "max_path_bytes",
        "max_header_bytes",
    ];
    let map = object(value, "limits", NAMES)?;
    let mut limits = Limits::default();
    for (key, setting) in map {
        let number = setting
            .as_u64()
            .and_then(|number| usize::try_from(number).ok())
            .filter(|number| *number > 0)
            .ok_or_else(|| error(&format!("limits.{key}"), "expected a positive integer"))?;
        match key.as_str() {
            "max_policies" => limits.max_policies = number,
            "max_rules" => limits.max_rules = number,
            "max_terms_per_rule" => limits.max_terms_per_rule = number,
            "max_terms" => limits.max_terms = number,
            "max_values_per_attribute" => limits.max_values_per_attribute = number,
            "max_automaton_bytes" => limits.max_automaton_bytes = number,
            "max_path_bytes" => limits.max_path_bytes = number,
            _ => limits.max_header_bytes = number,
        }
    }
    Ok(limits)
}
