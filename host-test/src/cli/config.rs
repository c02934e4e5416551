//! `cordon config`: the plugin configuration for Envoy, or an Istio WasmPlugin with it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use serde_json::{json, Map, Value};

use super::common::load_valid_policies;

/// Prints the configuration.
pub fn run(
    policy: &[PathBuf],
    workload_namespace: Option<String>,
    workload_labels: &[String],
    istio: bool,
    image: &str,
) -> Result<ExitCode> {
    let policies = load_valid_policies(policy)?;
    let mut labels = Map::new();
    for label in workload_labels {
        let Some((key, value)) = label.split_once('=') else {
            bail!("--workload-label `{label}`: expected key=value");
        };
        if key.is_empty() {
            bail!("--workload-label `{label}`: the key is empty");
        }
        labels.insert(key.to_string(), Value::String(value.to_string()));
    }
    if !labels.is_empty() && workload_namespace.is_none() {
        bail!("--workload-label needs --workload-namespace: labels select policies only within a namespace");
    }
    let mut config = Map::new();
    config.insert("policies".into(), Value::Array(policies));
    if let Some(namespace) = &workload_namespace {
        config.insert(
            "workload".into(),
            json!({"namespace": namespace, "labels": labels}),
        );
    }
    let config = Value::Object(config);
    // The configuration must be one the filter accepts: compile it as the filter will.
    if let Some(policies) = config.get("policies").and_then(Value::as_array) {
        cordon_engine::PolicySet::compile(policies, cordon_engine::Options::default())
            .map_err(|error| anyhow::anyhow!("{error}"))?;
    }
    if !istio {
        println!("{}", serde_json::to_string_pretty(&config)?);
        return Ok(ExitCode::SUCCESS);
    }
    // In Istio the sidecar's node metadata names the workload; the selector picks the pods.
    let namespace = workload_namespace.unwrap_or_else(|| "istio-system".to_string());
    let mut manifest = String::new();
    manifest.push_str(
        "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata:\n  name: cordon\n",
    );
    manifest.push_str(&format!("  namespace: {}\nspec:\n", json!(namespace)));
    if !labels.is_empty() {
        manifest.push_str("  selector:\n    matchLabels:\n");
        for (key, value) in &labels {
            manifest.push_str(&format!("      {}: {}\n", json!(key), value));
        }
    }
    manifest.push_str(&format!("  url: {}\n", json!(image)));
    manifest.push_str(
        "  # AUTHZ runs after Istio's authentication filters (jwt_authn), as cordon needs.\n",
    );
    manifest.push_str("  phase: AUTHZ\n  failStrategy: FAIL_CLOSE\n");
    let mut plugin_config = config;
    if let Some(object) = plugin_config.as_object_mut() {
        object.remove("workload");
    }
    // JSON is YAML: the policies stay byte-for-byte what `cordon check` validated.
    manifest.push_str(&format!("  pluginConfig: {plugin_config}\n"));
    print!("{manifest}");
    Ok(ExitCode::SUCCESS)
}
