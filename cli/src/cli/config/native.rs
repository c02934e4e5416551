//! `cordon config --native`: cordon's native twin (`libcordon_native.so`, an Envoy 1.40
//! dynamic module) as the two Envoy HTTP filters it takes, and (`--native --istio`) as an
//! Istio `EnvoyFilter` that inserts them on a workload's inbound sidecar traffic.
//!
//! The two filters: `envoy.filters.http.set_filter_state`, which copies the payload
//! `jwt_authn` verified into filter state `cordon.jwt_payload` as JSON (the dynamic-module
//! ABI cannot read jwt_authn's Struct metadata), then the module, whose `filter_config` is
//! the plugin configuration the `.wasm` takes. The configuration names its workload: the
//! native twin cannot read Istio's node metadata.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use cordon_lifecycle::yaml::quote;
use serde_json::{json, Map, Value};

use super::super::common::load_valid_policies;
use super::super::term::print;
use super::{applicable, is_dns1123_label, parse_labels, plugin_name, yaml_key, IstioOptions};

/// Prints the filters (or, with `istio`, the EnvoyFilter).
pub fn run(
    policy: &[PathBuf],
    workload_namespace: Option<String>,
    workload_labels: &[String],
    istio: bool,
    options: &IstioOptions,
) -> Result<ExitCode> {
    options.refuse_wasm_plugin_options(
        "--native writes Envoy filters (an EnvoyFilter with --istio), which have none",
    )?;
    let Some(namespace) = workload_namespace else {
        bail!(
            "--native needs --workload-namespace (and the workload's --workload-label): the native \
             twin cannot read Istio's node metadata, so its configuration names the workload"
        );
    };
    if !is_dns1123_label(&namespace) {
        bail!("--workload-namespace `{namespace}`: a namespace is a DNS-1123 label (lowercase letters, digits and `-`, at most 63)");
    }
    let labels = parse_labels(workload_labels, Some(&namespace))?;
    let policies = load_valid_policies(policy)?;
    // The configuration must be one the filter accepts: compile it as the filter will.
    cordon_engine::PolicySet::compile(&policies, options.engine_options()?)
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    let root_namespace = options.root_namespace()?;
    let (applied, left_out) = applicable(&policies, &namespace, false, &labels, &root_namespace)?;
    if !left_out.is_empty() {
        eprintln!(
            "note: {} of {} policies can apply to the workload; left out: {}",
            applied.len(),
            policies.len(),
            left_out.join(", ")
        );
    }
    if applied.is_empty() {
        eprintln!("warning: no policy applies to the workload: cordon will allow every request");
    }
    let mut config = Map::new();
    options.write_root_namespace(&mut config)?;
    config.insert("policies".into(), Value::Array(applied));
    config.insert(
        "workload".into(),
        json!({"namespace": namespace, "labels": labels}),
    );
    let config = Value::Object(config);
    let out = if istio {
        envoy_filter(&config, &namespace, &labels)?
    } else {
        let mut out = header(&namespace, &labels);
        out.push_str(
            "# Place these in the HTTP connection manager's http_filters after jwt_authn and before\n\
             # the router; run Envoy with ENVOY_DYNAMIC_MODULES_SEARCH_PATH naming the directory\n\
             # of libcordon_native.so (cargo build --release -p cordon-native).\n",
        );
        filters(&config, 0, &mut out)?;
        out
    };
    print(&out)?;
    Ok(ExitCode::SUCCESS)
}

fn header(namespace: &str, labels: &BTreeMap<String, String>) -> String {
    let selected: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(
        "# Written by cordon {}: cordon's native twin (libcordon_native.so) for the workload\n# {} in namespace {namespace}, with the policies that can apply to it.\n",
        env!("CARGO_PKG_VERSION"),
        if selected.is_empty() {
            "(every workload)".to_string()
        } else {
            selected.join(",")
        },
    )
}

/// The two HTTP filters, as a YAML sequence indented by `indent` spaces.
fn filters(config: &Value, indent: usize, out: &mut String) -> Result<()> {
    let pad = " ".repeat(indent);
    let (namespace, payload_key) = ("envoy.filters.http.jwt_authn", "payload");
    out.push_str(&format!(
        "{pad}- name: envoy.filters.http.set_filter_state\n\
         {pad}  typed_config:\n\
         {pad}    \"@type\": type.googleapis.com/envoy.extensions.filters.http.set_filter_state.v3.Config\n\
         {pad}    # The payload jwt_authn verified, as JSON, for cordon (filter state is written by\n\
         {pad}    # the proxy's configuration only, never by a client).\n\
         {pad}    on_request_headers:\n\
         {pad}    - object_key: cordon.jwt_payload\n\
         {pad}      factory_key: envoy.string\n\
         {pad}      format_string:\n\
         {pad}        text_format_source:\n\
         {pad}          inline_string: \"%DYNAMIC_METADATA({namespace}:{payload_key})%\"\n\
         {pad}- name: envoy.filters.http.dynamic_modules\n\
         {pad}  typed_config:\n\
         {pad}    \"@type\": type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter\n\
         {pad}    # libcordon_native.so from ENVOY_DYNAMIC_MODULES_SEARCH_PATH. A configuration the\n\
         {pad}    # filter rejects fails closed (Envoy refuses the listener).\n\
         {pad}    dynamic_module_config: {{name: cordon_native}}\n\
         {pad}    filter_name: cordon\n\
         {pad}    filter_config:\n\
         {pad}      \"@type\": type.googleapis.com/google.protobuf.StringValue\n"
    ));
    // A literal block reads back exactly when every character is printable ASCII (the
    // pretty JSON's lines); otherwise one double-quoted line, which always does.
    let pretty = serde_json::to_string_pretty(config)?;
    if pretty
        .chars()
        .all(|ch| ch == '\n' || (' '..='~').contains(&ch))
    {
        out.push_str(&format!("{pad}      value: |-\n"));
        for line in pretty.lines() {
            out.push_str(&format!("{pad}        {line}\n"));
        }
    } else {
        out.push_str(&format!(
            "{pad}      value: {}\n",
            quote(&serde_json::to_string(config)?)
        ));
    }
    Ok(())
}

/// The EnvoyFilter: in the workload's namespace, selecting it by its labels, inserting the
/// two filters before the router on inbound sidecar traffic (after Istio's jwt_authn and
/// RBAC, which come earlier in the chain).
fn envoy_filter(
    config: &Value,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> Result<String> {
    let mut out = header(namespace, labels);
    out.push_str(
        "# The sidecar needs the module and the variable that says where it is, e.g. with the pod\n\
         # annotations sidecar.istio.io/userVolume and userVolumeMount (a volume holding\n\
         # libcordon_native.so mounted at /etc/cordon) and proxy.istio.io/config:\n\
         # '{\"proxyMetadata\": {\"ENVOY_DYNAMIC_MODULES_SEARCH_PATH\": \"/etc/cordon\"}}'; and an\n\
         # istio-proxy built with Envoy's dynamic modules (istio/proxy#6955).\n",
    );
    out.push_str("apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata:\n");
    let selected = Some((namespace, labels));
    out.push_str(&format!(
        "  name: {}\n  namespace: {}\nspec:\n",
        plugin_name(selected),
        quote(namespace)
    ));
    if !labels.is_empty() {
        out.push_str("  workloadSelector:\n    labels:\n");
        for (key, value) in labels {
            out.push_str(&format!("      {}: {}\n", yaml_key(key), quote(value)));
        }
    }
    out.push_str("  configPatches:\n");
    // One patch per filter, each inserted just before the router: in this order.
    let mut both = String::new();
    filters(config, 0, &mut both)?;
    let Some(split) = both.find("- name: envoy.filters.http.dynamic_modules") else {
        bail!("internal: the filters lost their module");
    };
    let (state, module) = both.split_at(split);
    for filter in [state, module] {
        out.push_str(
            "  - applyTo: HTTP_FILTER\n    match:\n      context: SIDECAR_INBOUND\n      listener:\n        filterChain:\n          filter:\n            name: envoy.filters.network.http_connection_manager\n            subFilter:\n              name: envoy.filters.http.router\n    patch:\n      operation: INSERT_BEFORE\n      value:\n",
        );
        // The filter's `- name:` item becomes the patch's value mapping.
        for (position, line) in filter.lines().enumerate() {
            let line = if position == 0 {
                line.strip_prefix("- ").unwrap_or(line)
            } else {
                line.strip_prefix("  ").unwrap_or(line)
            };
            out.push_str(&format!("        {line}\n"));
        }
    }
    Ok(out)
}
