//! `cordon config`: the plugin configuration for Envoy, or an Istio WasmPlugin with it, or
//! (`--rbac`) the Envoy RBAC filters istiod would generate for the same policies.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use cordon_engine::model::parse_policies;
use cordon_lifecycle::yaml::quote;
use cordon_rbac::{MeshSettings, Workload};
use serde_json::{json, Map, Value};

use super::common::load_valid_policies;
use super::term::print;

pub mod native;

/// The `WasmPlugin` options of `cordon config --istio`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct IstioOptions {
    /// With `--istio`: the WasmPlugin's `url`, where you pushed the image `cordon pack`
    /// wrote (e.g. `oci://ghcr.io/you/cordon:0.1.0`). Required: no cordon image is
    /// published anywhere.
    #[arg(long)]
    pub image: Option<String>,
    /// With `--istio`: a WasmPlugin for a gateway (Istio's `match` mode `CLIENT`, which a
    /// gateway's traffic is; sidecars get `SERVER`, inbound only). Needs
    /// `--workload-namespace` and the gateway's `--workload-label`s.
    #[arg(long)]
    pub gateway: bool,
    /// With `--istio`: the WasmPlugin's `sha256`: for an `oci://` image the manifest
    /// digest `cordon pack` printed, for an `http(s)://` or `file://` module the module's
    /// SHA-256. 64 hex digits, `sha256:` prefix optional.
    #[arg(long)]
    pub sha256: Option<String>,
    /// With `--istio`: the WasmPlugin's `imagePullSecret`, a docker-registry Secret in
    /// the plugin's namespace.
    #[arg(long)]
    pub image_pull_secret: Option<String>,
    /// With `--istio`: the WasmPlugin's `imagePullPolicy` (Istio's default: `IfNotPresent`,
    /// `Always` for a `latest` tag).
    #[arg(long, value_enum)]
    pub image_pull_policy: Option<PullPolicy>,
    /// The mesh's root namespace (Istio's MeshConfig `rootNamespace`; default
    /// `istio-system`): its policies apply to every namespace. Decides which policies
    /// apply, where a mesh-wide WasmPlugin lives, and is written into the plugin
    /// configuration as `root_namespace`.
    #[arg(long, value_name = "NAMESPACE")]
    pub root_namespace: Option<String>,
}

impl IstioOptions {
    /// The root namespace: `--root-namespace`, else the engine's (Istio's) default.
    fn root_namespace(&self) -> Result<String> {
        match &self.root_namespace {
            Some(namespace) if !is_dns1123_label(namespace) => bail!(
                "--root-namespace `{namespace}`: a namespace is a DNS-1123 label (lowercase letters, digits and `-`, at most 63)"
            ),
            Some(namespace) => Ok(namespace.clone()),
            None => Ok(cordon_engine::Options::default().root_namespace),
        }
    }

    /// Fails naming the first WasmPlugin-only option given, with `why` it does not apply.
    fn refuse_wasm_plugin_options(&self, why: &str) -> Result<()> {
        let given = [
            ("--image", self.image.is_some()),
            ("--gateway", self.gateway),
            ("--sha256", self.sha256.is_some()),
            ("--image-pull-secret", self.image_pull_secret.is_some()),
            ("--image-pull-policy", self.image_pull_policy.is_some()),
        ];
        match given.iter().find(|(_, given)| *given) {
            Some((flag, _)) => bail!("{flag} is a WasmPlugin option: {why}"),
            None => Ok(()),
        }
    }

    /// The engine options the filter will run with.
    fn engine_options(&self) -> Result<cordon_engine::Options> {
        Ok(cordon_engine::Options {
            root_namespace: self.root_namespace()?,
            ..cordon_engine::Options::default()
        })
    }

    /// Adds `root_namespace` to a plugin configuration when it is not the default, which
    /// the filter assumes.
    fn write_root_namespace(&self, config: &mut Map<String, Value>) -> Result<()> {
        if self.root_namespace.is_some() {
            config.insert(
                "root_namespace".into(),
                Value::String(self.root_namespace()?),
            );
        }
        Ok(())
    }
}

/// A WasmPlugin's `imagePullPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PullPolicy {
    /// Pull when the proxy does not have the image.
    #[value(name = "IfNotPresent")]
    IfNotPresent,
    /// Pull whenever the plugin changes.
    #[value(name = "Always")]
    Always,
}

/// Prints the configuration.
pub fn run(
    policy: &[PathBuf],
    workload_namespace: Option<String>,
    workload_labels: &[String],
    istio: bool,
    options: &IstioOptions,
) -> Result<ExitCode> {
    let policies = load_valid_policies(policy)?;
    let labels = parse_labels(workload_labels, workload_namespace.as_deref())?;
    // The configuration must be one the filter accepts: compile it as the filter will.
    cordon_engine::PolicySet::compile(&policies, options.engine_options()?)
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    if !istio {
        options.refuse_wasm_plugin_options("it needs --istio")?;
        let mut config = Map::new();
        options.write_root_namespace(&mut config)?;
        config.insert("policies".into(), Value::Array(policies));
        if let Some(namespace) = &workload_namespace {
            config.insert(
                "workload".into(),
                json!({"namespace": namespace, "labels": labels}),
            );
        }
        print(&format!(
            "{}\n",
            serde_json::to_string_pretty(&Value::Object(config))?
        ))?;
        return Ok(ExitCode::SUCCESS);
    }
    let manifest = wasm_plugin(policies, workload_namespace, &labels, options)?;
    print(&manifest)?;
    Ok(ExitCode::SUCCESS)
}

/// The WasmPlugin manifest: its name, namespace and selector from the workload, and
/// `pluginConfig` the policies that can apply to a workload it selects.
fn wasm_plugin(
    policies: Vec<Value>,
    workload_namespace: Option<String>,
    labels: &BTreeMap<String, String>,
    options: &IstioOptions,
) -> Result<String> {
    let root_namespace = options.root_namespace()?;
    let Some(image) = options.image.as_deref() else {
        bail!(
            "--istio needs --image: the WasmPlugin's url, where you pushed the image `cordon pack` \
             writes (e.g. oci://ghcr.io/you/cordon:{}); no cordon image is published anywhere",
            env!("CARGO_PKG_VERSION")
        );
    };
    check_image(image)?;
    let sha256 = options
        .sha256
        .as_deref()
        .map(|sha| check_sha256(sha, image))
        .transpose()?;
    if let Some(secret) = &options.image_pull_secret {
        if !is_dns1123_subdomain(secret) {
            bail!("--image-pull-secret `{secret}`: a Secret's name is a DNS-1123 subdomain (lowercase letters, digits, `-` and `.`, at most 253)");
        }
    }
    if let Some(namespace) = &workload_namespace {
        if !is_dns1123_label(namespace) {
            bail!("--workload-namespace `{namespace}`: a namespace is a DNS-1123 label (lowercase letters, digits and `-`, at most 63)");
        }
    }
    for (key, value) in labels {
        if key.contains('*') || value.contains('*') || value.len() > 63 {
            bail!("--workload-label `{key}={value}`: Istio's selector takes no `*`, and label values of at most 63 characters");
        }
    }
    if options.gateway && (workload_namespace.is_none() || labels.is_empty()) {
        bail!(
            "--gateway needs --workload-namespace and the gateway's --workload-label (e.g. \
             istio=ingressgateway): without a selector the plugin would run on every workload's \
             outbound traffic"
        );
    }
    // In the root namespace a WasmPlugin selects workloads of every namespace.
    let namespace = workload_namespace.unwrap_or_else(|| root_namespace.clone());
    let any_namespace = namespace == root_namespace;
    let (applied, left_out) = applicable(
        &policies,
        &namespace,
        any_namespace,
        labels,
        &root_namespace,
    )?;
    let selected = if labels.is_empty() {
        format!("every workload in namespace {namespace}")
    } else {
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("the workloads labelled {} in {namespace}", labels.join(","))
    };
    if !left_out.is_empty() {
        eprintln!(
            "note: {} of {} policies can apply to {selected}; left out: {}",
            applied.len(),
            policies.len(),
            left_out.join(", ")
        );
    }
    if applied.is_empty() {
        eprintln!("warning: no policy applies to {selected}: this WasmPlugin allows every request");
    }

    let mut out = String::new();
    out.push_str(&format!(
        "# Written by cordon {} (cordon_filter.wasm sha256\n# {}):\n# the policies that can apply to {selected}.\n",
        env!("CARGO_PKG_VERSION"),
        super::common::EMBEDDED_WASM_SHA256,
    ));
    out.push_str("apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata:\n");
    out.push_str(&format!(
        "  name: {}\n  namespace: {}\nspec:\n",
        plugin_name(workload_selected(&namespace, labels, any_namespace)),
        quote(&namespace)
    ));
    if !labels.is_empty() {
        out.push_str("  selector:\n    matchLabels:\n");
        for (key, value) in labels {
            out.push_str(&format!("      {}: {}\n", yaml_key(key), quote(value)));
        }
    }
    out.push_str(&format!("  url: {}\n", quote(image)));
    if let Some(sha256) = sha256 {
        out.push_str(&format!("  sha256: {}\n", quote(&sha256)));
    }
    if let Some(policy) = options.image_pull_policy {
        let policy = match policy {
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Always => "Always",
        };
        out.push_str(&format!("  imagePullPolicy: {policy}\n"));
    }
    if let Some(secret) = &options.image_pull_secret {
        out.push_str(&format!("  imagePullSecret: {}\n", quote(secret)));
    }
    out.push_str("  # The proxy-wasm root context the module registers.\n");
    out.push_str("  pluginName: cordon\n  type: HTTP\n");
    out.push_str(
        "  # AUTHZ runs after Istio's authentication filters (jwt_authn), as cordon needs.\n",
    );
    out.push_str("  phase: AUTHZ\n");
    if options.gateway {
        out.push_str(
            "  # A gateway's traffic is CLIENT traffic to Istio (its listeners are outbound).\n",
        );
        out.push_str("  match:\n  - mode: CLIENT\n");
    } else {
        out.push_str(
            "  # Inbound traffic only: the policies protect this workload, not what it calls.\n",
        );
        out.push_str("  match:\n  - mode: SERVER\n");
    }
    out.push_str("  # A module that cannot be fetched or started refuses traffic.\n");
    out.push_str("  failStrategy: FAIL_CLOSE\n");
    // No `workload`: each proxy reads its own namespace and labels from Istio's node
    // metadata and keeps the policies that apply to it, as istiod would.
    out.push_str("  pluginConfig:\n");
    let mut plugin_config = Map::new();
    options.write_root_namespace(&mut plugin_config)?;
    plugin_config.insert("policies".into(), Value::Array(applied));
    block(&Value::Object(plugin_config), 4, &mut out);
    Ok(out)
}

/// The policies that can apply to some workload the WasmPlugin selects, and the names of
/// the others with why. The engine says what applies (`cordon_engine::model::Policy::applies_to`, the test the
/// filter runs with its node's metadata): a selected workload may carry labels beyond the
/// selector, so a policy can apply when the workload that carries the selector's labels
/// plus the policy's own selector (in the policy's namespace, when the plugin is in the
/// root namespace) is one it applies to. Policies bound through `targetRef(s)` are ones
/// the filter never applies.
fn applicable(
    policies: &[Value],
    namespace: &str,
    any_namespace: bool,
    labels: &BTreeMap<String, String>,
    root_namespace: &str,
) -> Result<(Vec<Value>, Vec<String>)> {
    let (parsed, _, errors) = parse_policies(policies);
    if let Some(error) = errors.first() {
        bail!("{error}");
    }
    let mut applied = Vec::new();
    let mut left_out = Vec::new();
    for policy in &parsed {
        if policy.targets_gateway {
            left_out.push(format!(
                "{} (bound with targetRef, which the filter does not enforce)",
                policy.qualified_name()
            ));
            continue;
        }
        let mut witness = policy.selector.clone().unwrap_or_default();
        witness.extend(labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        let witness_namespace = if any_namespace {
            policy.namespace.as_str()
        } else {
            namespace
        };
        if policy.applies_to(Some(witness_namespace), &witness, root_namespace) {
            if let Some(value) = policies.get(policy.index) {
                applied.push(value.clone());
            }
        } else if policy.namespace != namespace && policy.namespace != root_namespace {
            left_out.push(format!(
                "{} (namespace {})",
                policy.qualified_name(),
                policy.namespace
            ));
        } else {
            left_out.push(format!(
                "{} (its selector excludes the workloads selected)",
                policy.qualified_name()
            ));
        }
    }
    Ok((applied, left_out))
}

/// What the name is derived from: the namespace and selector (`None` for the whole mesh).
fn workload_selected<'a>(
    namespace: &'a str,
    labels: &'a BTreeMap<String, String>,
    any_namespace: bool,
) -> Option<(&'a str, &'a BTreeMap<String, String>)> {
    if any_namespace && labels.is_empty() {
        None
    } else {
        Some((namespace, labels))
    }
}

/// The WasmPlugin's name: `cordon` for the whole mesh; else `cordon-<namespace>-<labels>-<hash>`,
/// a DNS-1123 label (at most 63 characters) whose readable part is the namespace and
/// selector with other characters turned to `-`, and whose hash (the first 8 hex digits of
/// the SHA-256 of namespace and sorted labels) keeps two selectors apart when the readable
/// parts coincide or are cut short. The same workload always gets the same name.
fn plugin_name(selected: Option<(&str, &BTreeMap<String, String>)>) -> String {
    let Some((namespace, labels)) = selected else {
        return "cordon".to_string();
    };
    let mut canonical = format!("{namespace}\n");
    let mut readable = namespace.to_string();
    for (key, value) in labels {
        canonical.push_str(&format!("{key}={value}\n"));
        readable.push_str(&format!("-{key}-{value}"));
    }
    let mut part = String::new();
    for ch in readable.chars() {
        let ch = ch.to_ascii_lowercase();
        let ch = if ch.is_ascii_lowercase() || ch.is_ascii_digit() {
            ch
        } else {
            '-'
        };
        if !(ch == '-' && (part.is_empty() || part.ends_with('-'))) {
            part.push(ch);
        }
    }
    // "cordon-" + part + "-" + 8 hex digits <= 63.
    let part: String = part.chars().take(47).collect();
    let part = part.trim_end_matches('-');
    let hash = cordon_oci::sha256_hex(canonical.as_bytes());
    let hash = hash.get(..8).unwrap_or_default();
    if part.is_empty() {
        format!("cordon-{hash}")
    } else {
        format!("cordon-{part}-{hash}")
    }
}

/// A DNS-1123 label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
fn is_dns1123_label(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 63
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !text.starts_with('-')
        && !text.ends_with('-')
}

/// A DNS-1123 subdomain: labels joined by `.`, at most 253 characters.
fn is_dns1123_subdomain(text: &str) -> bool {
    text.len() <= 253 && text.split('.').all(is_dns1123_label)
}

/// The `url` Istio accepts: a scheme of `oci`, `http`, `https` or `file`, or none (`oci`).
fn check_image(image: &str) -> Result<()> {
    if image.is_empty() || image.chars().any(char::is_whitespace) {
        bail!("--image `{image}`: expected a URL such as oci://ghcr.io/you/cordon:0.1.0");
    }
    if let Some((scheme, _)) = image.split_once("://") {
        if !["oci", "http", "https", "file"].contains(&scheme) {
            bail!("--image `{image}`: Istio fetches modules over oci://, http://, https:// or file://, not {scheme}://");
        }
    }
    Ok(())
}

/// `--sha256`, as the 64 lowercase hex digits Istio's schema takes; it must agree with a
/// digest the image reference pins (`@sha256:`).
fn check_sha256(sha: &str, image: &str) -> Result<String> {
    let hex = sha.strip_prefix("sha256:").unwrap_or(sha);
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        bail!("--sha256 `{sha}`: expected 64 lowercase hex digits (the manifest digest `cordon pack` printed)");
    }
    if let Some((_, pinned)) = image.split_once("@sha256:") {
        if pinned != hex {
            bail!("--sha256 {hex} differs from the digest the image pins (@sha256:{pinned}); Istio refuses the pair");
        }
    }
    Ok(hex.to_string())
}

/// A mapping key: plain when YAML reads it back as that string, else quoted.
fn yaml_key(key: &str) -> String {
    let plain = key.bytes().enumerate().all(|(position, b)| {
        b.is_ascii_alphabetic() || (position > 0 && (b.is_ascii_digit() || b"_-./".contains(&b)))
    }) && !matches!(
        key.to_ascii_lowercase().as_str(),
        "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n" | "null"
    );
    if plain {
        key.to_string()
    } else {
        quote(key)
    }
}

/// A scalar (or empty collection) as YAML on one line; `None` for what needs a block.
fn inline(value: &Value) -> Option<String> {
    match value {
        Value::Null => Some("null".to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        Value::Number(number) => Some(number.to_string()),
        Value::String(text) => Some(quote(text)),
        Value::Array(items) if items.is_empty() => Some("[]".to_string()),
        Value::Object(map) if map.is_empty() => Some("{}".to_string()),
        Value::Array(_) | Value::Object(_) => None,
    }
}

/// Writes a mapping or sequence as block YAML indented by `indent` spaces (sequences
/// under a key at the key's own indentation, as kubectl writes them). Strings are
/// double-quoted, so they read back exactly.
fn block(value: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                match inline(item) {
                    Some(text) => out.push_str(&format!("{pad}{}: {text}\n", yaml_key(key))),
                    None => {
                        out.push_str(&format!("{pad}{}:\n", yaml_key(key)));
                        let inner = if item.is_array() { indent } else { indent + 2 };
                        block(item, inner, out);
                    }
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                match inline(item) {
                    Some(text) => out.push_str(&format!("{pad}- {text}\n")),
                    None => {
                        let mut nested = String::new();
                        block(item, indent + 2, &mut nested);
                        // The first line's indentation becomes the item's dash.
                        out.push_str(&pad);
                        out.push_str("- ");
                        out.push_str(nested.get(indent + 2..).unwrap_or_default());
                    }
                }
            }
        }
        scalar => {
            if let Some(text) = inline(scalar) {
                out.push_str(&format!("{pad}{text}\n"));
            }
        }
    }
}

/// `--workload-label key=value` options, checked.
fn parse_labels(
    workload_labels: &[String],
    workload_namespace: Option<&str>,
) -> Result<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    for label in workload_labels {
        let Some((key, value)) = label.split_once('=') else {
            bail!("--workload-label `{label}`: expected key=value");
        };
        if key.is_empty() {
            bail!("--workload-label `{label}`: the key is empty");
        }
        labels.insert(key.to_string(), value.to_string());
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
    options: &IstioOptions,
    policy: &[PathBuf],
    workload_namespace: Option<String>,
    workload_labels: &[String],
    config: Option<&Path>,
) -> Result<ExitCode> {
    options.refuse_wasm_plugin_options("--rbac writes Envoy RBAC filters, which have none")?;
    let plugin = config.map(read_plugin_config).transpose()?;
    let labels = parse_labels(workload_labels, workload_namespace.as_deref())?;
    let (mut mesh, plugin_workload, mut policies) = match plugin {
        Some(plugin) => (plugin.mesh, plugin.workload, plugin.policies),
        None => (MeshSettings::default(), None, Vec::new()),
    };
    if options.root_namespace.is_some() {
        mesh.root_namespace = options.root_namespace()?;
    }
    if !policy.is_empty() {
        policies.extend(load_valid_policies(policy)?);
    }
    // The command line names the workload; otherwise the plugin configuration's `workload`;
    // otherwise none (every policy applies).
    let workload = match workload_namespace {
        Some(namespace) => Workload {
            namespace: Some(namespace),
            labels,
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
