//! The Envoy configuration of one batch: a bootstrap with file-based LDS, and one listener
//! per policy set on 127.0.0.1 and [::1]. Each listener has two filter chains that differ
//! only in their HTTP filters, picked by the ALPN protocol the client offers:
//! `cordon-diff-rbac` (the native RBAC filters istiod would send) and `cordon-diff-wasm`
//! (`cordon_filter.wasm` with the same policies). Both see the same address, port, SNI
//! and client certificate, behind the same mTLS (client certificate required),
//! `jwt_authn` (as Istio's RequestAuthentication makes it) and connection manager path
//! settings (as istiod sets them for the mesh's `pathNormalization`).

use std::path::Path;

use serde_json::{json, Map, Value};

use super::gen::{PolicySet, Ports};
use super::pki::Material;
use super::rbac::Translation;
use super::vocab;

/// The ALPN protocol that selects the RBAC chain.
pub const ALPN_RBAC: &str = "cordon-diff-rbac";
/// The ALPN protocol that selects the cordon chain.
pub const ALPN_WASM: &str = "cordon-diff-wasm";

/// The listener name of set `index`.
pub fn listener_name(index: usize) -> String {
    format!("set-{index}")
}

/// The bootstrap: admin on 127.0.0.1, node metadata of the workload, Istio's runtime
/// flags, listeners from `lds_dir/listeners.json`.
pub fn bootstrap(admin: u16, lds_dir: &Path) -> Value {
    json!({
        "node": {
            "id": "cordon-differential",
            "cluster": "billing.finance",
            "metadata": {
                "NAMESPACE": vocab::WORKLOAD_NAMESPACE,
                "LABELS": vocab::WORKLOAD_LABELS.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<Map<_, _>>(),
            },
        },
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        // The runtime flags istiod's bootstrap gives every sidecar that bear on RBAC (RE2
        // program size, `#fragment` stripped rather than refused).
        "layered_runtime": {"layers": [{"name": "istio", "static_layer": cordon_rbac::istio_runtime()}]},
        "dynamic_resources": {"lds_config": {
            "resource_api_version": "V3",
            "path_config_source": {
                "path": lds_dir.join("listeners.json").display().to_string(),
                "watched_directory": {"path": lds_dir.display().to_string()},
            },
        }},
    })
}

/// The LDS resource file for `listeners`.
pub fn lds(listeners: Vec<Value>) -> Value {
    json!({"resources": listeners})
}

/// One set's listener: the RBAC chain with `translation`, the cordon chain with the set's
/// plugin configuration.
pub fn listener(
    index: usize,
    ports: Ports,
    set: &PolicySet,
    translation: &Translation,
    material: &Material,
    wasm: &Path,
    access_log: &Path,
) -> Value {
    let wasm_filter = json!({
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": format!("cordon-{index}"),
                "root_id": "cordon",
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": set.plugin_config().to_string(),
                },
                "vm_config": {
                    "runtime": "envoy.wasm.runtime.v8",
                    "vm_id": "cordon",
                    "code": {"local": {"filename": wasm.display().to_string()}},
                },
                "failure_policy": "FAIL_RELOAD",
            },
        },
    });
    let rbac_chain = chain(
        index,
        ALPN_RBAC,
        translation.http_filters.clone(),
        &translation.connection_manager,
        material,
        None,
    );
    let wasm_chain = chain(
        index,
        ALPN_WASM,
        vec![wasm_filter],
        &translation.connection_manager,
        material,
        Some(access_log),
    );
    json!({
        "@type": "type.googleapis.com/envoy.config.listener.v3.Listener",
        "name": listener_name(index),
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": ports.v4}},
        "additional_addresses": [
            {"address": {"socket_address": {"address": "::1", "port_value": ports.v6}}}
        ],
        // A port another process holds must fail the bind (and the batch is retried),
        // never be shared: with SO_REUSEPORT the kernel would split the connections.
        "enable_reuse_port": false,
        "listener_filters": [{
            "name": "envoy.filters.listener.tls_inspector",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"},
        }],
        "filter_chains": [rbac_chain, wasm_chain],
    })
}

fn chain(
    index: usize,
    alpn: &str,
    authz: Vec<Value>,
    connection_manager: &Value,
    material: &Material,
    access_log: Option<&Path>,
) -> Value {
    let (cert, key) = material.server();
    let mut filters = vec![jwt_authn(material)];
    filters.extend(authz);
    filters.push(json!({
        "name": "envoy.filters.http.router",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
    }));
    let side = alpn.trim_start_matches("cordon-diff-");
    let mut hcm = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": format!("set{index}_{side}"),
        "codec_type": "HTTP1",
        // As istiod sets it on a sidecar's inbound listener (`buildSidecarInboundHTTPOpts`):
        // the downstream remote address (RBAC's `remote_ip`) then comes from the
        // rightmost `x-forwarded-for` entry when there is one; `direct_remote_ip` stays
        // the peer's.
        "use_remote_address": false,
        "forward_client_cert_details": "SANITIZE",
        "route_config": {"virtual_hosts": [{
            "name": "all",
            "domains": ["*"],
            "routes": [{"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "ok"}}}],
        }]},
        "http_filters": filters,
    });
    // The cordon chain logs cordon's decision per case (`x-diff-case`), so that a
    // disagreement's record says why cordon decided as it did.
    if let (Some(hcm), Some(path)) = (hcm.as_object_mut(), access_log) {
        hcm.insert(
            "access_log".into(),
            json!([{
                "name": "envoy.access_loggers.file",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                    "path": path.display().to_string(),
                    "log_format": {"json_format": {
                        "case": "%REQ(X-DIFF-CASE)%",
                        "status": "%RESPONSE_CODE%",
                        "cordon": "%FILTER_STATE(wasm.cordon.decision:PLAIN)%",
                    }},
                },
            }]),
        );
    }
    if let (Some(hcm), Some(settings)) = (hcm.as_object_mut(), connection_manager.as_object()) {
        for (name, value) in settings {
            hcm.insert(name.clone(), value.clone());
        }
    }
    json!({
        "name": side,
        "filter_chain_match": {"application_protocols": [alpn]},
        "transport_socket": {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                "require_client_certificate": true,
                "common_tls_context": {
                    "tls_certificates": [{
                        "certificate_chain": {"filename": cert.display().to_string()},
                        "private_key": {"filename": key.display().to_string()},
                    }],
                    "validation_context": {"trusted_ca": {"filename": material.ca().display().to_string()}},
                },
            },
        },
        "filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}],
    })
}

/// `jwt_authn` as istiod builds it for a RequestAuthentication with one JWT rule per
/// issuer of [`vocab::ISSUERS`] (`convertToEnvoyJwtConfig` in
/// `pilot/pkg/security/authn/policy_applier.go`): providers `origins-<i>` with the payload
/// in metadata under `payload` and `scope`/`permission` split at spaces, and the
/// requirement "any one provider, or all of {provider or missing}".
pub fn jwt_authn(material: &Material) -> Value {
    let mut providers = Map::new();
    let mut inner = Vec::new();
    let mut outer = Vec::new();
    for (index, issuer) in vocab::ISSUERS.iter().enumerate() {
        let name = format!("origins-{index}");
        providers.insert(
            name.clone(),
            json!({
                "issuer": issuer,
                "local_jwks": {"filename": material.jwks().display().to_string()},
                "payload_in_metadata": "payload",
                "normalize_payload_in_metadata": {"space_delimited_claims": ["permission", "scope"]},
            }),
        );
        inner.push(json!({"requires_any": {"requirements": [{"provider_name": name}, {"allow_missing": {}}]}}));
        outer.push(json!({"provider_name": name}));
    }
    outer.push(json!({"requires_all": {"requirements": inner}}));
    json!({
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": providers,
            "rules": [{"match": {"prefix": "/"}, "requires": {"requires_any": {"requirements": outer}}}],
            "bypass_cors_preflight": true,
        },
    })
}
