//! The mesh's settings, as the filter takes them: the CLI's `--config <plugin.json>` is the
//! very JSON object the filter's plugin configuration is (`path_normalization`,
//! `root_namespace`, `trust_domain`, `trust_domain_aliases`, `identity`, `jwt`, `limits`,
//! `trusted_proxy_hops`, …), read by the filter's own parser
//! ([`cordon_filter::config::load`]), so every command judges requests under the settings
//! the mesh runs with, and the defaults are the filter's. `policies` is optional here.
//!
//! # Example
//!
//! ```
//! use cordon_host::mesh::MeshConfig;
//! use cordon_engine::PathNormalization;
//!
//! let mesh = MeshConfig::from_value(&serde_json::json!({"path_normalization": "BASE"}), None).unwrap();
//! assert_eq!(mesh.options.path_normalization, PathNormalization::Base);
//! assert!(MeshConfig::from_value(&serde_json::json!({"path_normalisation": "BASE"}), None).is_err());
//! ```

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context as _, Result};
use cordon_engine::Options;
use cordon_filter::config::{IdentitySource, JwtSource};
use serde_json::{Map, Value};

/// A parsed `--config`.
#[derive(Debug, Clone)]
pub struct MeshConfig {
    /// The file it came from, if any.
    pub file: Option<PathBuf>,
    /// Every key but `policies`, as written: merged into each plugin configuration the
    /// `.wasm` is started with.
    pub settings: Map<String, Value>,
    /// Its `policies` (none when absent).
    pub policies: Vec<Value>,
    /// The engine options the filter derives from it (`workload` as the configuration
    /// names it; when it names none, every policy applies).
    pub options: Options,
    /// Where the peer identity comes from.
    pub identity: IdentitySource,
    /// Where verified JWT claims are read.
    pub jwt: JwtSource,
    /// `trusted_proxy_hops`, when the configuration sets it.
    pub trusted_proxy_hops: Option<usize>,
}

/// A filter host with nothing to say: no node metadata, so a configuration without
/// `workload` applies every policy.
struct NoProxy;

impl cordon_filter::host::Host for NoProxy {
    fn property(&self, _path: &[&str]) -> Option<Vec<u8>> {
        None
    }
    fn header(&self, _name: &str) -> Option<String> {
        None
    }
    fn headers(&self) -> Vec<(String, String)> {
        Vec::new()
    }
    fn send_response(&self, _status: u16, _headers: &[(&str, &str)], _body: &[u8]) {}
    fn set_property(&self, _path: &[&str], _value: &[u8]) {}
    fn log(&self, _level: cordon_filter::host::LogLevel, _message: &str) {}
    fn increment(&self, _counter: cordon_filter::host::Counter, _delta: i64) {}
    fn now_nanos(&self) -> u64 {
        0
    }
}

impl Default for MeshConfig {
    /// The filter's defaults.
    fn default() -> MeshConfig {
        MeshConfig {
            file: None,
            settings: Map::new(),
            policies: Vec::new(),
            options: Options::default(),
            identity: IdentitySource::PeerCertificate,
            jwt: JwtSource {
                metadata_namespace: "envoy.filters.http.jwt_authn".to_string(),
                payload_key: "payload".to_string(),
            },
            trusted_proxy_hops: None,
        }
    }
}

impl MeshConfig {
    /// Reads `--config`: `None` gives the filter's defaults.
    ///
    /// # Errors
    ///
    /// When the file cannot be read, is not JSON, or the filter would reject it; the
    /// message names the file and the field.
    pub fn load(path: Option<&Path>) -> Result<MeshConfig> {
        let Some(path) = path else {
            return Ok(MeshConfig::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let value: Value = serde_json::from_str(&text).map_err(|error| {
            anyhow!(
                "{}:{}:{}: not JSON: {error}",
                path.display(),
                error.line(),
                error.column()
            )
        })?;
        MeshConfig::from_value(&value, Some(path))
    }

    /// Parses a plugin configuration object with the filter's parser.
    ///
    /// # Errors
    ///
    /// When the filter would reject it: every problem, each as `field: message`, after the
    /// file's name when there is one.
    pub fn from_value(value: &Value, file: Option<&Path>) -> Result<MeshConfig> {
        let place = file.map_or_else(|| "--config".to_string(), |file| file.display().to_string());
        let object = value.as_object().ok_or_else(|| {
            anyhow!("{place}: expected a JSON object (the filter's plugin configuration)")
        })?;
        let mut full = object.clone();
        full.entry("policies")
            .or_insert_with(|| Value::Array(Vec::new()));
        let bytes = Value::Object(full).to_string();
        let parsed = cordon_filter::config::load(bytes.as_bytes(), &NoProxy).map_err(|errors| {
            let lines: Vec<String> = errors
                .iter()
                .map(|error| format!("{place}: {error}"))
                .collect();
            anyhow!("{}", lines.join("\n"))
        })?;
        let mut settings = object.clone();
        let policies = match settings.remove("policies") {
            Some(Value::Array(policies)) => policies,
            _ => Vec::new(),
        };
        Ok(MeshConfig {
            file: file.map(Path::to_path_buf),
            trusted_proxy_hops: settings
                .contains_key("trusted_proxy_hops")
                .then_some(parsed.trusted_proxy_hops),
            settings,
            policies,
            // The filter compiles without what `explain` reads; the CLI explains.
            options: Options {
                explain: true,
                ..parsed.policies.options().clone()
            },
            identity: parsed.identity,
            jwt: parsed.jwt,
        })
    }

    /// The engine options for a workload: the configuration's, with the workload the
    /// record names (or, when it names none, the configuration's).
    pub fn options_for(&self, workload: cordon_engine::Workload) -> Options {
        let mut options = self.options.clone();
        if workload.namespace.is_some() {
            options.workload = workload;
        }
        options
    }

    /// The configuration's policies followed by `others`.
    pub fn with_policies(&self, others: Vec<Value>) -> Vec<Value> {
        let mut all = self.policies.clone();
        all.extend(others);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cordon_engine::PathNormalization;
    use serde_json::json;

    #[test]
    fn defaults_are_the_filters() {
        let mesh = MeshConfig::from_value(&json!({}), None).unwrap();
        assert_eq!(mesh.options, Options::default());
        assert_eq!(mesh.identity, IdentitySource::PeerCertificate);
        assert_eq!(mesh.jwt, MeshConfig::default().jwt);
        assert_eq!(mesh.trusted_proxy_hops, None);
    }

    #[test]
    fn settings_and_policies_are_read_and_errors_name_the_field() {
        let mesh = MeshConfig::from_value(
            &json!({
                "path_normalization": "BASE", "root_namespace": "mesh-root",
                "trust_domain": "td", "trusted_proxy_hops": 2,
                "identity": {"source": "x_forwarded_client_cert"},
                "jwt": {"metadata_namespace": "ns", "payload_key": "claims"},
                "policies": [{"metadata": {"name": "p", "namespace": "a"}, "spec": {}}]
            }),
            Some(Path::new("mesh.json")),
        )
        .unwrap();
        assert_eq!(mesh.options.path_normalization, PathNormalization::Base);
        assert_eq!(mesh.options.root_namespace, "mesh-root");
        assert_eq!(mesh.trusted_proxy_hops, Some(2));
        assert_eq!(mesh.identity, IdentitySource::ForwardedClientCert);
        assert_eq!(mesh.jwt.payload_key, "claims");
        assert_eq!(mesh.policies.len(), 1);
        assert!(!mesh.settings.contains_key("policies"));

        let error = MeshConfig::from_value(
            &json!({"limits": {"max_rules": 0}}),
            Some(Path::new("mesh.json")),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            error,
            "mesh.json: limits.max_rules: expected a positive integer"
        );
        let error = MeshConfig::from_value(
            &json!({"policies": [{"metadata": {"name": "p"}, "spec": {"action": "NOPE"}}]}),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.starts_with("--config: policies[0].spec.action"),
            "{error}"
        );
    }
}
