//! Packaging that deploys as generated: `cordon config --istio` against Istio's WasmPlugin
//! schema (the CRD vendored in `fixtures/istio-wasmplugin-crd.yaml`), the policies and
//! names it picks, `cordon pack`, and the module the binary carries (`--version`).
//!
//! Every command here runs without `CORDON_WASM`, on the module built into the binary.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "support/run.rs"]
mod run;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Output};

use run::{repo, stderr, stdout, tempdir};
use serde_json::{json, Value};

const SHOP_POLICIES: &str = "policies/examples/shop/policies.yaml";

/// `cordon` from the repository root, on its own module (no `CORDON_WASM`).
fn cordon(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cordon"))
        .args(args)
        .env_remove("CORDON_WASM")
        .current_dir(repo())
        .output()
        .unwrap()
}

fn one_document(text: &str) -> Value {
    let mut documents = cordon_lifecycle::sources::parse_documents(text)
        .unwrap_or_else(|error| panic!("{error:?}\n{text}"));
    assert_eq!(documents.len(), 1, "{text}");
    documents.remove(0).value
}

/// `cordon config --istio` with these arguments, which must succeed; the manifest and
/// what was said on stderr.
fn wasm_plugin(args: &[&str]) -> (Value, String, String) {
    let mut full = vec![
        "config",
        "--istio",
        "--policy",
        SHOP_POLICIES,
        "--image",
        "oci://registry.example.com/mesh/cordon:0.1.0",
    ];
    full.extend_from_slice(args);
    let output = cordon(&full);
    assert!(output.status.success(), "{args:?}: {}", stderr(&output));
    let text = stdout(&output);
    (one_document(&text), text, stderr(&output))
}

// ---------------------------------------------------------------------------------------
// A validator for the structural-schema subset Istio's CRD uses. Every keyword it meets
// must be one it checks, and every CEL rule (`x-kubernetes-validations`) one it has a
// check for, so a newer CRD cannot be half-checked in silence.

fn crd() -> Value {
    let text = std::fs::read_to_string(repo().join("cli/tests/fixtures/istio-wasmplugin-crd.yaml"))
        .unwrap();
    one_document(&text)
}

/// Every way `object` breaks the CRD: apiVersion and kind, the metadata Kubernetes
/// checks for every object, and the schema.
fn violations(object: &Value) -> Vec<String> {
    let crd = crd();
    let version = &crd["spec"]["versions"][0];
    let mut errors = Vec::new();
    let api_version = format!(
        "{}/{}",
        crd["spec"]["group"].as_str().unwrap(),
        version["name"].as_str().unwrap()
    );
    assert_eq!(api_version, "extensions.istio.io/v1alpha1");
    if object["apiVersion"] != api_version.as_str() {
        errors.push(format!("apiVersion {}", object["apiVersion"]));
    }
    if object["kind"] != crd["spec"]["names"]["kind"] {
        errors.push(format!("kind {}", object["kind"]));
    }
    match object["metadata"]["name"].as_str() {
        Some(name) if is_dns1123_subdomain(name) => {}
        other => errors.push(format!(
            "metadata.name {other:?} is not a DNS-1123 subdomain"
        )),
    }
    match object["metadata"]["namespace"].as_str() {
        Some(namespace) if is_dns1123_label(namespace) => {}
        other => errors.push(format!(
            "metadata.namespace {other:?} is not a DNS-1123 label"
        )),
    }
    let mut body = object.clone();
    for key in ["apiVersion", "kind", "metadata"] {
        body.as_object_mut().unwrap().remove(key);
    }
    validate(
        &version["schema"]["openAPIV3Schema"],
        &body,
        "",
        &mut errors,
    );
    errors
}

fn is_dns1123_label(text: &str) -> bool {
    regex::Regex::new("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
        .unwrap()
        .is_match(text)
        && text.len() <= 63
}

fn is_dns1123_subdomain(text: &str) -> bool {
    text.len() <= 253 && text.split('.').all(is_dns1123_label)
}

const KEYWORDS: &[&str] = &[
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "enum",
    "pattern",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "maxItems",
    "maxProperties",
    "format",
    "nullable",
    "description",
    "anyOf",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-validations",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-int-or-string",
];

fn validate(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    let schema = schema.as_object().unwrap();
    for keyword in schema.keys() {
        assert!(
            KEYWORDS.contains(&keyword.as_str()),
            "the validator does not know `{keyword}` (at {path}): teach it before trusting it"
        );
    }
    let at = if path.is_empty() { "." } else { path };
    if value.is_null() && schema.get("nullable") == Some(&Value::Bool(true)) {
        return;
    }
    if let Some(choices) = schema.get("anyOf").and_then(Value::as_array) {
        let fits = choices.iter().any(|choice| {
            let mut inner = Vec::new();
            validate(choice, value, path, &mut inner);
            inner.is_empty()
        });
        if !fits {
            errors.push(format!("{at}: matches none of anyOf"));
        }
    }
    let int_or_string = schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    if let Some(kind) = schema.get("type").and_then(Value::as_str) {
        let fits = match kind {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "boolean" => value.is_boolean(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            other => panic!("type {other} at {at}"),
        };
        if !fits && !(int_or_string && (value.is_string() || value.is_i64())) {
            errors.push(format!("{at}: expected {kind}, found {value}"));
            return;
        }
    }
    if schema.get("format").and_then(Value::as_str) == Some("int32")
        && value.as_i64().is_none_or(|n| i32::try_from(n).is_err())
    {
        errors.push(format!("{at}: not an int32: {value}"));
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.contains(value) {
            errors.push(format!("{at}: {value} is not one of {allowed:?}"));
        }
    }
    if let Some(text) = value.as_str() {
        let length = text.chars().count() as u64;
        if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
            if !regex::Regex::new(pattern).unwrap().is_match(text) {
                errors.push(format!("{at}: {text:?} does not match {pattern}"));
            }
        }
        if schema
            .get("minLength")
            .and_then(Value::as_u64)
            .is_some_and(|min| length < min)
        {
            errors.push(format!("{at}: shorter than minLength"));
        }
        if schema
            .get("maxLength")
            .and_then(Value::as_u64)
            .is_some_and(|max| length > max)
        {
            errors.push(format!("{at}: longer than maxLength"));
        }
    }
    if let Some(number) = value.as_f64() {
        if schema
            .get("minimum")
            .and_then(Value::as_f64)
            .is_some_and(|min| number < min)
        {
            errors.push(format!("{at}: below minimum"));
        }
        if schema
            .get("maximum")
            .and_then(Value::as_f64)
            .is_some_and(|max| number > max)
        {
            errors.push(format!("{at}: above maximum"));
        }
    }
    if let Some(items) = value.as_array() {
        if schema
            .get("maxItems")
            .and_then(Value::as_u64)
            .is_some_and(|max| items.len() as u64 > max)
        {
            errors.push(format!("{at}: more than maxItems"));
        }
        if let Some(item_schema) = schema.get("items") {
            for (index, item) in items.iter().enumerate() {
                validate(item_schema, item, &format!("{path}[{index}]"), errors);
            }
        }
        if schema.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("map") {
            let keys = schema["x-kubernetes-list-map-keys"].as_array().unwrap();
            let mut seen = BTreeSet::new();
            for item in items {
                let key: Vec<String> = keys
                    .iter()
                    .map(|k| item[k.as_str().unwrap()].to_string())
                    .collect();
                if !seen.insert(key.clone()) {
                    errors.push(format!("{at}: duplicate list-map key {key:?}"));
                }
            }
        }
    }
    if let Some(map) = value.as_object() {
        if schema
            .get("maxProperties")
            .and_then(Value::as_u64)
            .is_some_and(|max| map.len() as u64 > max)
        {
            errors.push(format!("{at}: more than maxProperties"));
        }
        for required in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if !map.contains_key(required.as_str().unwrap()) {
                errors.push(format!(
                    "{at}: missing required field `{}`",
                    required.as_str().unwrap()
                ));
            }
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        let preserve =
            schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
        for (key, item) in map {
            let inner = format!("{path}.{key}");
            if let Some(property) = properties.and_then(|properties| properties.get(key)) {
                validate(property, item, &inner, errors);
            } else if let Some(additional) = schema.get("additionalProperties") {
                validate(additional, item, &inner, errors);
            } else if !preserve {
                errors.push(format!("{at}: unknown field `{key}`"));
            }
        }
    }
    for rule in schema
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let message = rule["message"].as_str().unwrap();
        if let Some(problem) = cel(message, value) {
            errors.push(format!("{at}: {problem}"));
        }
    }
}

/// The CRD's CEL rules, each by its message; `Some` when `value` breaks it.
fn cel(message: &str, value: &Value) -> Option<String> {
    let broken = match message {
        "wildcard not allowed in label value match" => value.as_str().unwrap().contains('*'),
        "wildcard not allowed in label key match" => value
            .as_object()
            .unwrap()
            .keys()
            .any(|key| key.contains('*')),
        "key must not be empty" => value.as_object().unwrap().keys().any(String::is_empty),
        "cross namespace referencing is not currently supported" => {
            !value.as_str().unwrap().is_empty()
        }
        "url must have schema one of [http, https, file, oci]" => {
            let url = value.as_str().unwrap();
            url.split_once("://")
                .is_some_and(|(scheme, _)| !["http", "https", "file", "oci"].contains(&scheme))
        }
        "value may only be set when valueFrom is INLINE" => {
            value["valueFrom"] == "HOST" && value.get("value").is_some()
        }
        "only one of targetRefs or selector can be set" => {
            ["selector", "targetRef", "targetRefs"]
                .iter()
                .filter(|key| value.get(**key).is_some())
                .count()
                > 1
        }
        other => panic!("the validator has no check for the CEL rule `{other}`: add one"),
    };
    broken.then(|| message.to_string())
}

// ---------------------------------------------------------------------------------------

#[test]
fn every_manifest_config_istio_writes_is_a_valid_wasm_plugin() {
    let sha = "ab".repeat(32);
    let variants: Vec<Vec<&str>> = vec![
        vec![],
        vec![
            "--workload-namespace",
            "finance",
            "--workload-label",
            "app=billing-service",
        ],
        vec![
            "--workload-namespace",
            "shop",
            "--workload-label",
            "app=orders",
            "--workload-label",
            "app.kubernetes.io/version=v2",
            "--sha256",
            &sha,
            "--image-pull-secret",
            "registry-credentials",
            "--image-pull-policy",
            "Always",
        ],
        vec!["--workload-namespace", "finance"],
        vec![
            "--gateway",
            "--workload-namespace",
            "istio-system",
            "--workload-label",
            "istio=ingressgateway",
            "--image-pull-policy",
            "IfNotPresent",
        ],
    ];
    for args in &variants {
        let (manifest, text, _) = wasm_plugin(args);
        let errors = violations(&manifest);
        assert!(errors.is_empty(), "{args:?}: {errors:#?}\n{text}");
        let spec = &manifest["spec"];
        assert_eq!(spec["phase"], "AUTHZ");
        assert_eq!(spec["failStrategy"], "FAIL_CLOSE");
        assert_eq!(spec["pluginName"], "cordon");
        assert_eq!(spec["url"], "oci://registry.example.com/mesh/cordon:0.1.0");
        let mode = if args.contains(&"--gateway") {
            "CLIENT"
        } else {
            "SERVER"
        };
        assert_eq!(spec["match"], json!([{"mode": mode}]), "{args:?}");
        // Block YAML: the policies span many lines, not one JSON line.
        assert!(
            text.contains("  pluginConfig:\n    policies:\n    - "),
            "{args:?}:\n{text}"
        );
        assert!(text.lines().all(|line| line.len() < 160), "{text}");
        assert!(
            spec["pluginConfig"].get("workload").is_none(),
            "the node names it"
        );
    }
    let (manifest, ..) = wasm_plugin(&variants[2]);
    let spec = &manifest["spec"];
    assert_eq!(spec["sha256"], sha.as_str());
    assert_eq!(spec["imagePullSecret"], "registry-credentials");
    assert_eq!(spec["imagePullPolicy"], "Always");
    assert_eq!(
        spec["selector"]["matchLabels"],
        json!({"app": "orders", "app.kubernetes.io/version": "v2"})
    );
    assert_eq!(manifest["metadata"]["namespace"], "shop");

    // The checked-in example, too.
    let example = std::fs::read_to_string(repo().join("envoy/istio/wasmplugin.yaml")).unwrap();
    let errors = violations(&one_document(&example));
    assert!(
        errors.is_empty(),
        "envoy/istio/wasmplugin.yaml: {errors:#?}"
    );
}

#[test]
fn the_validator_rejects_what_istio_rejects() {
    let (manifest, ..) = wasm_plugin(&[
        "--workload-namespace",
        "shop",
        "--workload-label",
        "app=orders",
    ]);
    assert!(violations(&manifest).is_empty());
    type Change = Box<dyn Fn(&mut Value)>;
    let broken: Vec<(&str, Change)> = vec![
        (
            "is not one of",
            Box::new(|m| m["spec"]["match"][0]["mode"] = json!("INBOUND")),
        ),
        (
            "does not match",
            Box::new(|m| m["spec"]["sha256"] = json!("ABC")),
        ),
        (
            "missing required field `url`",
            Box::new(|m| {
                m["spec"].as_object_mut().unwrap().remove("url");
            }),
        ),
        (
            "unknown field `imagePullSecrets`",
            Box::new(|m| m["spec"]["imagePullSecrets"] = json!("x")),
        ),
        (
            "wildcard not allowed",
            Box::new(|m| m["spec"]["selector"]["matchLabels"]["app"] = json!("ord*")),
        ),
        (
            "only one of targetRefs or selector",
            Box::new(|m| {
                m["spec"]["targetRefs"] = json!([{"kind": "Gateway", "name": "g"}]);
            }),
        ),
        (
            "expected integer",
            Box::new(|m| m["spec"]["priority"] = json!("high")),
        ),
        (
            "url must have schema",
            Box::new(|m| m["spec"]["url"] = json!("ftp://x/y")),
        ),
        (
            "not a DNS-1123 subdomain",
            Box::new(|m| m["metadata"]["name"] = json!("Cordon_Shop")),
        ),
        ("kind", Box::new(|m| m["kind"] = json!("WasmPlugins"))),
    ];
    for (expected, change) in broken {
        let mut mutated = manifest.clone();
        change(&mut mutated);
        let errors = violations(&mutated);
        assert!(
            errors.iter().any(|error| error.contains(expected)),
            "{expected}: {errors:#?}"
        );
    }
}

fn policy_names(manifest: &Value) -> BTreeSet<String> {
    manifest["spec"]["pluginConfig"]["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|policy| {
            format!(
                "{}/{}",
                policy["metadata"]["namespace"].as_str().unwrap(),
                policy["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect()
}

/// The policies the engine keeps for a workload with exactly these labels.
fn engine_pick(namespace: &str, labels: &[(&str, &str)]) -> BTreeSet<String> {
    let documents =
        cordon_lifecycle::sources::load_policies(&[repo().join(SHOP_POLICIES)]).unwrap();
    let values: Vec<Value> = documents.into_iter().map(|source| source.value).collect();
    let options = cordon_engine::Options {
        workload: cordon_engine::Workload {
            namespace: Some(namespace.to_string()),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        },
        ..cordon_engine::Options::default()
    };
    let set = cordon_engine::PolicySet::compile(&values, options).unwrap();
    set.policies()
        .iter()
        .map(|policy| policy.qualified_name())
        .collect()
}

#[test]
fn only_the_policies_that_can_apply_to_the_selected_workloads() {
    let (finance, _, said) = wasm_plugin(&[
        "--workload-namespace",
        "finance",
        "--workload-label",
        "app=billing-service",
    ]);
    let expected: BTreeSet<String> = [
        "finance/billing-service-allow",
        "finance/admin-deny",
        "istio-system/audit-writes",
    ]
    .map(String::from)
    .into();
    assert_eq!(policy_names(&finance), expected);
    assert_eq!(
        policy_names(&finance),
        engine_pick("finance", &[("app", "billing-service")]),
        "the engine's own pick for a pod with exactly the selector's labels"
    );
    assert!(
        said.contains("left out: shop/orders-allow (namespace shop)"),
        "{said}"
    );

    let (orders, ..) = wasm_plugin(&[
        "--workload-namespace",
        "shop",
        "--workload-label",
        "app=orders",
    ]);
    assert_eq!(
        policy_names(&orders),
        engine_pick("shop", &[("app", "orders")])
    );
    assert_eq!(
        policy_names(&orders),
        ["shop/orders-allow", "istio-system/audit-writes"]
            .map(String::from)
            .into()
    );

    // The whole mesh: every policy; each proxy picks its own from Istio's node metadata.
    let (mesh, ..) = wasm_plugin(&[]);
    assert_eq!(policy_names(&mesh).len(), 4);
    assert_eq!(mesh["metadata"]["name"], "cordon");
    assert_eq!(mesh["metadata"]["namespace"], "istio-system");
    assert!(mesh["spec"].get("selector").is_none());

    // A workload selected by fewer labels than a policy's selector names may carry the
    // rest: that policy can apply, so it is kept (the proxy decides by its own labels).
    let dir = tempdir();
    let file = dir.join("narrow.yaml");
    std::fs::write(
        &file,
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: v2-only, namespace: shop}\n\
         spec:\n  selector: {matchLabels: {app: orders, version: v2}}\n  rules: [{to: [{operation: {methods: [GET]}}]}]\n\
         ---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: billing, namespace: shop}\n\
         spec:\n  selector: {matchLabels: {app: billing}}\n  rules: [{to: [{operation: {methods: [GET]}}]}]\n",
    )
    .unwrap();
    let output = cordon(&[
        "config",
        "--istio",
        "--image",
        "oci://r/c:1",
        "--policy",
        file.to_str().unwrap(),
        "--workload-namespace",
        "shop",
        "--workload-label",
        "app=orders",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let manifest = one_document(&stdout(&output));
    assert_eq!(policy_names(&manifest), ["shop/v2-only".to_string()].into());
    assert!(
        stderr(&output).contains("shop/billing (its selector excludes the workloads selected)"),
        "{}",
        stderr(&output)
    );

    // No policy applies: said loudly.
    let output = cordon(&[
        "config",
        "--istio",
        "--image",
        "oci://r/c:1",
        "--policy",
        file.to_str().unwrap(),
        "--workload-namespace",
        "other",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("warning: no policy applies"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn the_root_namespace_decides_what_applies_mesh_wide() {
    let finance = [
        "--workload-namespace",
        "finance",
        "--workload-label",
        "app=billing-service",
    ];
    // istio-system is only an ordinary namespace in a mesh whose root is elsewhere.
    let mut args = finance.to_vec();
    args.extend(["--root-namespace", "mesh-root"]);
    let (manifest, _, said) = wasm_plugin(&args);
    let expected: BTreeSet<String> = ["finance/billing-service-allow", "finance/admin-deny"]
        .map(String::from)
        .into();
    assert_eq!(policy_names(&manifest), expected);
    assert!(
        said.contains("istio-system/audit-writes (namespace istio-system)"),
        "{said}"
    );
    assert_eq!(
        manifest["spec"]["pluginConfig"]["root_namespace"],
        json!("mesh-root"),
        "the filter must be told the root namespace, or it applies istio-system's policies"
    );
    // Without the flag the default root namespace is not written: the filter assumes it.
    let (default_root, ..) = wasm_plugin(&finance);
    assert_eq!(
        default_root["spec"]["pluginConfig"].get("root_namespace"),
        None
    );

    // A mesh-wide plugin lives in the root namespace.
    let (mesh_wide, ..) = wasm_plugin(&["--root-namespace", "mesh-root"]);
    assert_eq!(mesh_wide["metadata"]["namespace"], json!("mesh-root"));

    // The plain plugin configuration carries it, and the native twin's too.
    let plain = cordon(&[
        "config",
        "--policy",
        SHOP_POLICIES,
        "--root-namespace",
        "mesh-root",
    ]);
    assert!(plain.status.success(), "{}", stderr(&plain));
    let plain: Value = serde_json::from_str(&stdout(&plain)).unwrap();
    assert_eq!(plain["root_namespace"], json!("mesh-root"));
    let native = cordon(&[
        "config",
        "--native",
        "--policy",
        SHOP_POLICIES,
        "--workload-namespace",
        "finance",
        "--root-namespace",
        "mesh-root",
    ]);
    assert!(native.status.success(), "{}", stderr(&native));
    assert!(
        stdout(&native).contains("\"root_namespace\": \"mesh-root\""),
        "{}",
        stdout(&native)
    );

    for (args, expected) in [
        (
            vec![
                "config",
                "--policy",
                SHOP_POLICIES,
                "--root-namespace",
                "Mesh_Root",
            ],
            "--root-namespace `Mesh_Root`: a namespace is a DNS-1123 label",
        ),
        (
            vec![
                "config",
                "--rbac",
                "--policy",
                SHOP_POLICIES,
                "--image",
                "oci://r/c:1",
            ],
            "--image is a WasmPlugin option: --rbac",
        ),
    ] {
        let output = cordon(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&output).contains(expected),
            "{args:?}: {}",
            stderr(&output)
        );
    }
}

#[test]
fn names_are_stable_dns_labels_unique_per_workload() {
    let selectors: Vec<Vec<&str>> = vec![
        vec![
            "--workload-namespace",
            "finance",
            "--workload-label",
            "app=billing-service",
        ],
        vec![
            "--workload-namespace",
            "shop",
            "--workload-label",
            "app=orders",
        ],
        vec!["--workload-namespace", "shop"],
        // Readable parts that coincide once `.` and `=` become `-`.
        vec!["--workload-namespace", "shop", "--workload-label", "a=b-c"],
        vec!["--workload-namespace", "shop", "--workload-label", "a-b=c"],
        vec!["--workload-namespace", "shop", "--workload-label", "a.b=c"],
        vec![
            "--workload-namespace",
            "a-namespace-with-a-rather-long-name-for-testing",
            "--workload-label",
            "app.kubernetes.io/name=an-application-with-a-long-name",
        ],
    ];
    let mut names = BTreeSet::new();
    for args in &selectors {
        let (first, ..) = wasm_plugin(args);
        let (again, ..) = wasm_plugin(args);
        let name = first["metadata"]["name"].as_str().unwrap().to_string();
        assert_eq!(again["metadata"]["name"], name.as_str(), "stable");
        assert!(is_dns1123_label(&name), "{name}");
        assert!(name.starts_with("cordon-"), "{name}");
        assert!(names.insert(name.clone()), "{name} twice");
    }
    assert!(
        names
            .iter()
            .any(|name| name.starts_with("cordon-finance-app-billing-service-")),
        "{names:?}"
    );
    // Label order on the command line does not change the name.
    let (one, ..) = wasm_plugin(&[
        "--workload-namespace",
        "shop",
        "--workload-label",
        "a=1",
        "--workload-label",
        "b=2",
    ]);
    let (two, ..) = wasm_plugin(&[
        "--workload-namespace",
        "shop",
        "--workload-label",
        "b=2",
        "--workload-label",
        "a=1",
    ]);
    assert_eq!(one["metadata"]["name"], two["metadata"]["name"]);
}

#[test]
fn bad_wasm_plugin_options_are_refused_naming_the_option() {
    let sha = "ab".repeat(32);
    let other = "cd".repeat(32);
    let pinned = format!("oci://r/c@sha256:{other}");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["config", "--istio", "--policy", SHOP_POLICIES],
            "--istio needs --image",
        ),
        (
            vec![
                "config",
                "--istio",
                "--policy",
                SHOP_POLICIES,
                "--image",
                "oci://r/c:1",
                "--sha256",
                "abc",
            ],
            "--sha256 `abc`",
        ),
        (
            vec![
                "config",
                "--istio",
                "--policy",
                SHOP_POLICIES,
                "--image",
                &pinned,
                "--sha256",
                &sha,
            ],
            "differs from the digest the image pins",
        ),
        (
            vec![
                "config",
                "--istio",
                "--policy",
                SHOP_POLICIES,
                "--image",
                "ftp://r/c",
            ],
            "--image `ftp://r/c`",
        ),
        (
            vec![
                "config",
                "--istio",
                "--policy",
                SHOP_POLICIES,
                "--image",
                "oci://r/c:1",
                "--image-pull-secret",
                "Bad_Secret",
            ],
            "--image-pull-secret `Bad_Secret`",
        ),
        (
            vec![
                "config",
                "--istio",
                "--policy",
                SHOP_POLICIES,
                "--image",
                "oci://r/c:1",
                "--gateway",
            ],
            "--gateway needs --workload-namespace",
        ),
        (
            vec![
                "config",
                "--istio",
                "--policy",
                SHOP_POLICIES,
                "--image",
                "oci://r/c:1",
                "--workload-namespace",
                "shop",
                "--workload-label",
                "app=a*",
            ],
            "takes no `*`",
        ),
        (
            vec!["config", "--policy", SHOP_POLICIES, "--sha256", &sha],
            "--sha256 is a WasmPlugin option: it needs --istio",
        ),
    ];
    for (args, expected) in cases {
        let output = cordon(&args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(expected),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(stdout(&output).is_empty(), "{args:?}");
    }
    // The digest the image pins, given again, is fine.
    let pinned_same = format!("oci://r/c@sha256:{sha}");
    let output = cordon(&[
        "config",
        "--istio",
        "--policy",
        SHOP_POLICIES,
        "--image",
        &pinned_same,
        "--sha256",
        &format!("sha256:{sha}"),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
}

/// The hex SHA-256 `cordon --version` names.
fn version_sha() -> String {
    let output = cordon(&["--version"]);
    assert!(output.status.success());
    let text = stdout(&output);
    let sha = text
        .split("sha256 ")
        .nth(1)
        .and_then(|rest| rest.get(..64))
        .unwrap_or_else(|| panic!("no sha256 in `{text}`"))
        .to_string();
    assert!(sha.bytes().all(|b| b.is_ascii_hexdigit()), "{text}");
    sha
}

#[test]
fn pack_writes_the_module_the_binary_carries_and_says_how_to_push_it() {
    let dir = tempdir();
    let out = dir.join("image");
    let output = cordon(&["pack", "--out", out.to_str().unwrap(), "--tag", "v9"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let image = cordon_oci::inspect(&out, "v9").unwrap();
    let module_sha = cordon_oci::sha256_hex(&image.wasm);
    assert_eq!(
        module_sha,
        version_sha(),
        "the layer is the module --version names"
    );
    let said = stdout(&output);
    let index_digest = image.index["manifests"][0]["digest"].as_str().unwrap();
    let dir_shown = out.display();
    for line in [
        format!("oras cp --from-oci-layout {dir_shown}:v9 REGISTRY/REPO:v9"),
        format!("skopeo copy oci:{dir_shown}:v9 docker://REGISTRY/REPO:v9"),
        format!("crane push {dir_shown} REGISTRY/REPO:v9"),
        format!("manifest: {index_digest}"),
        format!("--sha256 {}", index_digest.trim_start_matches("sha256:")),
        module_sha.clone(),
    ] {
        assert!(said.contains(&line), "{line}\n{said}");
    }

    // The module in the image is one the host runs, and it takes the pluginConfig that
    // `config --istio` writes.
    let host = cordon_host::Host::load(&image.wasm).unwrap();
    let (manifest, ..) = wasm_plugin(&[
        "--workload-namespace",
        "finance",
        "--workload-label",
        "app=billing-service",
    ]);
    let plugin = host
        .start(b"", manifest["spec"]["pluginConfig"].to_string().as_bytes())
        .unwrap();
    assert!(plugin.start_report().accepted);

    // Deterministic; a directory that is not an image layout is left alone (exit 2).
    let again = cordon(&[
        "pack",
        "--out",
        dir.join("again").to_str().unwrap(),
        "--tag",
        "v9",
    ]);
    assert!(again.status.success());
    let again = cordon_oci::inspect(&dir.join("again"), "v9").unwrap();
    assert_eq!(again.index["manifests"][0]["digest"], index_digest);
    std::fs::write(dir.join("notes.txt"), "mine").unwrap();
    let refused = cordon(&["pack", "--out", dir.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("is not an OCI image layout"),
        "{}",
        stderr(&refused)
    );
    assert!(dir.join("notes.txt").is_file());
    // A bad tag.
    let refused = cordon(&[
        "pack",
        "--out",
        dir.join("x").to_str().unwrap(),
        "--tag",
        "no/slash",
    ]);
    assert_eq!(refused.status.code(), Some(2));
}

/// `cargo install --path cli` into an empty prefix, then the installed binary, alone, from
/// a directory far from the repository, on the shop example: its module is the one it
/// carries (no `CORDON_WASM`, no workspace to find one in).
#[test]
fn cargo_install_gives_a_binary_that_works_anywhere() {
    let root = tempdir().join("prefix");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    // The shared target directory (the test binary sits in <target>/<profile>/deps), so
    // the install reuses what the workspace has built.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::current_exe()
                .unwrap()
                .ancestors()
                .nth(3)
                .unwrap()
                .to_path_buf()
        });
    let status = Command::new(cargo)
        // --debug: the release profile (fat LTO over Wasmtime) takes many minutes on a
        // small machine, and the module is embedded the same way in either profile.
        .args([
            "install",
            "--debug",
            "--quiet",
            "--offline",
            "--locked",
            "--path",
        ])
        .arg(repo().join("cli"))
        .arg("--root")
        .arg(&root)
        .env("CARGO_TARGET_DIR", target.join("install-test"))
        .env_remove("CORDON_WASM")
        .env_remove("CORDON_EMBED_WASM")
        .status()
        .unwrap();
    assert!(status.success(), "cargo install --path cli failed");
    let installed = root
        .join("bin")
        .join(format!("cordon{}", std::env::consts::EXE_SUFFIX));
    assert!(installed.is_file());

    // Everything it reads, copied away from the repository.
    let work = tempdir().join("elsewhere");
    std::fs::create_dir_all(&work).unwrap();
    for (from, to) in [
        ("policies/examples/shop/policies.yaml", "policies.yaml"),
        ("policies/examples/shop/traffic.jsonl", "traffic.jsonl"),
        ("policies/corpus/shop-example.json", "shop-example.json"),
    ] {
        std::fs::copy(repo().join(from), work.join(to)).unwrap();
    }
    // A binary that looked for a build on disk (the old default was
    // `$CARGO_TARGET_DIR/wasm32-wasip1/release/cordon_filter.wasm`, else the repository's
    // target directory) finds nothing here.
    let empty_target = tempdir().join("no-target");
    std::fs::create_dir_all(&empty_target).unwrap();
    let binary = std::fs::read(&installed).unwrap();
    assert!(
        !binary
            .windows(b"wasm32-wasip1/release/cordon_filter.wasm".len())
            .any(|window| window == b"wasm32-wasip1/release/cordon_filter.wasm"),
        "the binary names a module path"
    );
    let run = |args: &[&str]| -> Output {
        Command::new(&installed)
            .args(args)
            .current_dir(&work)
            .env_remove("CORDON_WASM")
            .env("CARGO_TARGET_DIR", &empty_target)
            .output()
            .unwrap()
    };
    let version = run(&["--version"]);
    assert!(version.status.success());
    assert!(
        stdout(&version).contains(&version_sha()),
        "{}",
        stdout(&version)
    );

    let tested = run(&["test", "shop-example.json"]);
    assert!(
        tested.status.success(),
        "{}{}",
        stdout(&tested),
        stderr(&tested)
    );
    assert!(
        stdout(&tested).contains(" passed, 0 failed"),
        "{}",
        stdout(&tested)
    );

    let simulated = run(&[
        "simulate",
        "--policy",
        "policies.yaml",
        "--traffic",
        "traffic.jsonl",
        "--format",
        "jsonl",
    ]);
    assert!(simulated.status.success(), "{}", stderr(&simulated));
    let decisions: Vec<Value> = stdout(&simulated)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert!(!decisions.is_empty());

    // The same binary, pointed at a module that is not there, fails (exit 2) naming it:
    // the runs above used the module it carries, not a file it found.
    let broken = Command::new(&installed)
        .args([
            "simulate",
            "--policy",
            "policies.yaml",
            "--traffic",
            "traffic.jsonl",
        ])
        .current_dir(&work)
        .env("CORDON_WASM", work.join("nowhere.wasm"))
        .output()
        .unwrap();
    assert_eq!(broken.status.code(), Some(2));
    assert!(
        stderr(&broken).contains("nowhere.wasm"),
        "{}",
        stderr(&broken)
    );
}
