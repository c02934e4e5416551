//! `cordon config`: the plugin configuration for Envoy, or an Istio WasmPlugin with it, or
//! (`--rbac`) the Envoy RBAC filters istiod would generate for the same policies.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use cordon_rbac::{MeshSettings, Workload};
use serde_json::{json, Map, Value};

use super::common::load_valid_policies;
use super::term::print;

/// Prints the configuration.
pub fn run(
    policy: &[PathBuf],
    workload_namespace: Option<String>,
    workload_labels: &[String],
    istio: bool,
    image: &str,
) -> Result<ExitCode> {
    let policies = load_valid_policies(policy)?;
    let labels = parse_labels(workload_labels, workload_namespace.as_deref())?;
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
        print(&format!("{}\n", serde_json::to_string_pretty(&config)?))?;
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
    print(&manifest)?;
    Ok(ExitCode::SUCCESS)
}

/// `--workload-label key=value` options, checked.
fn parse_labels(
    workload_labels: &[String],
    workload_namespace: Option<&str>,
) -> Result<Map<String, Value>> {
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
    Ok(labels)
}

/// What `--config` contributes to the RBAC translation.
struct PluginSettings {
    mesh: MeshSettings,
    workload: Option<Workload>,
    policies: Vec<Value>,
}

fn plugin_string(map: &Map<String, Value>, key: &str) -> Result<Option<String>> {
    match map.get(key) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => bail!("`{key}`: expected a string"),
    }
}

/// Reads the filter's plugin configuration for the settings istiod has equivalents of,
/// saying on stderr what has none.
fn read_plugin_config(path: &Path) -> Result<PluginSettings> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let value: Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a JSON plugin configuration", path.display()))?;
    let Some(map) = value.as_object() else {
        bail!(
            "{}: the plugin configuration must be a JSON object",
            path.display()
        );
    };
    let place = |error: anyhow::Error| error.context(format!("{}", path.display()));
    if let Some(unknown) = map
        .keys()
        .find(|key| !cordon_filter::config::KEYS.contains(&key.as_str()))
    {
        bail!("{}: unknown field `{unknown}`", path.display());
    }
    let defaults = MeshSettings::default();
    let mut mesh = MeshSettings {
        trust_domain: plugin_string(map, "trust_domain")
            .map_err(place)?
            .unwrap_or(defaults.trust_domain),
        trust_domain_aliases: Vec::new(),
        root_namespace: plugin_string(map, "root_namespace")
            .map_err(place)?
            .unwrap_or(defaults.root_namespace),
        path_normalization: defaults.path_normalization,
    };
    if let Some(aliases) = map.get("trust_domain_aliases") {
        let Some(items) = aliases.as_array() else {
            bail!(
                "{}: `trust_domain_aliases`: expected a list of strings",
                path.display()
            );
        };
        for item in items {
            let Some(alias) = item.as_str() else {
                bail!(
                    "{}: `trust_domain_aliases`: expected a list of strings",
                    path.display()
                );
            };
            mesh.trust_domain_aliases.push(alias.to_string());
        }
    }
    // cordon's default mode is STRICT.
    let mode = plugin_string(map, "path_normalization")
        .map_err(place)?
        .unwrap_or_else(|| "STRICT".to_string());
    mesh.path_normalization = if mode == "STRICT" {
        eprintln!(
            "note: path_normalization STRICT is cordon-only; istiod has no such mode. Using Istio's \
             nearest, MERGE_SLASHES (normalize_path and merge_slashes: dot segments resolved, \
             slashes merged), which unlike STRICT forwards %2F, %5C and %00 instead of \
             answering 400."
        );
        "MERGE_SLASHES".to_string()
    } else {
        mode
    };
    let workload = match map.get("workload") {
        None => None,
        Some(value) => {
            let namespace = value
                .get("namespace")
                .map(|n| {
                    n.as_str()
                        .map(str::to_string)
                        .context("`workload.namespace`: expected a string")
                })
                .transpose()
                .map_err(place)?;
            let mut labels = BTreeMap::new();
            if let Some(map) = value.get("labels").and_then(Value::as_object) {
                for (key, label) in map {
                    let Some(label) = label.as_str() else {
                        bail!(
                            "{}: `workload.labels.{key}`: expected a string",
                            path.display()
                        );
                    };
                    labels.insert(key.clone(), label.to_string());
                }
            }
            Some(Workload { namespace, labels })
        }
    };
    let policies = match map.get("policies") {
        None => Vec::new(),
        Some(Value::Array(items)) => items.clone(),
        Some(_) => bail!("{}: `policies`: expected a list", path.display()),
    };
    for (key, meaning) in [
        ("identity", "istiod's RBAC filter matches the peer certificate (`authenticated`)"),
        ("jwt", "istiod's RBAC filter reads `envoy.filters.http.jwt_authn` / `payload`"),
        ("trusted_proxy_hops", "Istio sets `xff_num_trusted_hops` on the connection manager from the proxy's `numTrustedProxies`, not in the RBAC filter"),
        ("dry_run", "Istio dry-runs per policy (`istio.io/dry-run`), not per filter"),
        ("deny_response", "Envoy's RBAC filter answers 403 `RBAC: access denied`"),
    ] {
        if map.contains_key(key) {
            eprintln!("note: `{key}` is a cordon setting with no effect on istiod's translation: {meaning}.");
        }
    }
    Ok(PluginSettings {
        mesh,
        workload,
        policies,
    })
}

/// `cordon config --rbac`: prints `{"http_filters": [...], "http_connection_manager": {...},
/// "runtime": {...}}`, what istiod would configure in the workload's sidecar for the
/// policies.
pub fn run_rbac(
    policy: &[PathBuf],
    workload_namespace: Option<String>,
    workload_labels: &[String],
    config: Option<&Path>,
) -> Result<ExitCode> {
    let plugin = config.map(read_plugin_config).transpose()?;
    let labels = parse_labels(workload_labels, workload_namespace.as_deref())?;
    let (mesh, plugin_workload, mut policies) = match plugin {
        Some(plugin) => (plugin.mesh, plugin.workload, plugin.policies),
        None => (MeshSettings::default(), None, Vec::new()),
    };
    if !policy.is_empty() {
        policies.extend(load_valid_policies(policy)?);
    }
    // The command line names the workload; otherwise the plugin configuration's `workload`;
    // otherwise none (every policy applies).
    let workload = match workload_namespace {
        Some(namespace) => Workload {
            namespace: Some(namespace),
            labels: labels
                .iter()
                .map(|(key, value)| (key.clone(), value.as_str().unwrap_or_default().to_string()))
                .collect(),
        },
        None => plugin_workload.unwrap_or_default(),
    };
    let translation = cordon_rbac::translate(&policies, &workload, &mesh)
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    let out = json!({
        "http_filters": translation.http_filters,
        "http_connection_manager": translation.connection_manager,
        // The static runtime layer istiod's bootstrap gives every sidecar that bears on RBAC.
        "runtime": cordon_rbac::istio_runtime(),
    });
    print(&format!("{}\n", serde_json::to_string_pretty(&out)?))?;
    Ok(ExitCode::SUCCESS)
}
