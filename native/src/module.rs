//! The native twin's state and the parts of its glue that need no unsafe code: one loaded
//! configuration shared by every worker thread, a [`Filter`] per worker over it, where
//! each property the shared glue asks for comes from in Envoy's dynamic-module ABI, and
//! the verified JWT payload turned back into the `metadata` the shared glue reads.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use cordon_filter::config::{self, ConfigError, FilterConfig};
use cordon_filter::decide::Filter;
use cordon_filter::encoding::proto;
use cordon_filter::host::{Counter, Host, LogLevel};

/// The filter state key the verified JWT payload is read from, as JSON: Envoy 1.40's
/// dynamic-module ABI reads dynamic metadata only as top-level strings, numbers, booleans
/// and lists, never the `google.protobuf.Struct` `jwt_authn` writes, so an
/// `envoy.filters.http.set_filter_state` filter placed between `jwt_authn` and cordon
/// copies it here with the format string
/// `%DYNAMIC_METADATA(<jwt.metadata_namespace>:<jwt.payload_key>)%` (see
/// `envoy/filter-native.yaml.tmpl` and `cordon config --native`). Filter state is set by
/// the proxy's configuration only; a client cannot write it.
pub const JWT_PAYLOAD_STATE: &str = "cordon.jwt_payload";

/// Attributes of Envoy's dynamic-module ABI (`envoy_dynamic_module_type_attribute_id` in
/// `abi.h` of Envoy 1.40), by their numbers there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attribute {
    /// `source.address`.
    SourceAddress = 24,
    /// `destination.address`.
    DestinationAddress = 26,
    /// `destination.port`.
    DestinationPort = 27,
    /// `connection.requested_server_name`.
    RequestedServerName = 30,
    /// `connection.subject_peer_certificate`.
    SubjectPeerCertificate = 33,
    /// `connection.dns_san_peer_certificate`.
    DnsSanPeerCertificate = 35,
    /// `connection.uri_san_peer_certificate`.
    UriSanPeerCertificate = 37,
}

/// Where a property the shared glue asks for (in proxy-wasm's naming) comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A string attribute, returned as its bytes.
    Text(Attribute),
    /// An integer attribute, returned as 8 little-endian bytes (proxy-wasm's encoding).
    Integer(Attribute),
    /// `metadata`: the JWT payload from [`JWT_PAYLOAD_STATE`], re-encoded.
    JwtPayload,
    /// Nothing the ABI offers (Istio's node metadata among them: the native twin needs
    /// the workload in its configuration).
    Unavailable,
}

/// Maps a property path to its source.
pub fn source(path: &[&str]) -> Source {
    match path {
        ["source", "address"] => Source::Text(Attribute::SourceAddress),
        ["destination", "address"] => Source::Text(Attribute::DestinationAddress),
        ["destination", "port"] => Source::Integer(Attribute::DestinationPort),
        ["connection", "requested_server_name"] => Source::Text(Attribute::RequestedServerName),
        ["connection", "uri_san_peer_certificate"] => {
            Source::Text(Attribute::UriSanPeerCertificate)
        }
        ["connection", "dns_san_peer_certificate"] => {
            Source::Text(Attribute::DnsSanPeerCertificate)
        }
        ["connection", "subject_peer_certificate"] => {
            Source::Text(Attribute::SubjectPeerCertificate)
        }
        ["metadata"] => Source::JwtPayload,
        _ => Source::Unavailable,
    }
}

/// The `metadata` property as the shared glue reads it (an `envoy.config.core.v3.Metadata`
/// in protobuf wire bytes) from the payload JSON in filter state: `None` unless it is a
/// JSON object (the format string writes `-` or nothing when no token was verified).
pub fn metadata_from_payload(json: &[u8], namespace: &str, payload_key: &str) -> Option<Vec<u8>> {
    let serde_json::Value::Object(payload) = serde_json::from_slice(json).ok()? else {
        return None;
    };
    let mut fields = serde_json::Map::new();
    fields.insert(payload_key.to_string(), serde_json::Value::Object(payload));
    Some(proto::encode_metadata(&[(namespace, &fields)]))
}

/// A loaded configuration, shared by every worker thread.
#[derive(Debug)]
pub struct Module {
    /// One filter per worker thread, each over the same compiled configuration. A thread
    /// takes the slot it was given; the lock is never contended unless Envoy runs more
    /// threads than it said (then two threads share a slot, still correct).
    slots: Vec<Mutex<Filter>>,
    /// Counter ids from Envoy, in [`Counter::ALL`] order.
    counters: Vec<Option<usize>>,
    /// Where `jwt_authn` keeps the payload: `jwt.metadata_namespace`, `jwt.payload_key`.
    jwt: (String, String),
    /// The configured deny response, for a request the filter could not judge.
    deny: (u16, String),
    /// Whether the compiled policies read JWT claims (then a request without
    /// [`JWT_PAYLOAD_STATE`] is refused: the proxy lacks the filter that copies them).
    needs_claims: bool,
}

static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SLOT: Cell<Option<usize>> = const { Cell::new(None) };
}

/// This thread's slot number, given on first use.
fn thread_slot() -> usize {
    SLOT.with(|slot| match slot.get() {
        Some(number) => number,
        None => {
            let number = NEXT_SLOT.fetch_add(1, Ordering::Relaxed);
            slot.set(Some(number));
            number
        }
    })
}

impl Module {
    /// Loads the plugin configuration (the same JSON the `.wasm` takes) for `workers`
    /// worker threads. `host` logs and counts; it has no node metadata, so a configuration
    /// without a `workload` is refused (fail closed) rather than judged for no workload.
    pub fn load(
        bytes: &[u8],
        host: &dyn Host,
        workers: usize,
        counters: Vec<Option<usize>>,
    ) -> Result<Module, Vec<ConfigError>> {
        let config = config::load(bytes, host)?;
        if config.policies.options().workload.namespace.is_none() {
            return Err(vec![ConfigError {
                field: "workload".to_string(),
                message: "the native twin needs `workload` (namespace and labels) in its configuration: Envoy 1.40's dynamic-module ABI does not expose Istio's node metadata, which the .wasm falls back to".to_string(),
            }]);
        }
        for warning in config.policies.warnings() {
            host.log(LogLevel::Warn, &format!("cordon: {warning}"));
        }
        host.log(
            LogLevel::Info,
            &format!(
                "cordon: loaded {} rules (native)",
                config.policies.rules().len()
            ),
        );
        let jwt = (
            config.jwt.metadata_namespace.clone(),
            config.jwt.payload_key.clone(),
        );
        let deny = (config.deny.status, config.deny.body.clone());
        let needs_claims = config.policies.needs().claims;
        let config: Arc<FilterConfig> = Arc::new(config);
        let slots = (0..workers.max(1))
            .map(|_| Mutex::new(Filter::shared(Arc::clone(&config))))
            .collect();
        Ok(Module {
            slots,
            counters,
            jwt,
            deny,
            needs_claims,
        })
    }

    /// This thread's filter.
    pub fn filter(&self) -> Option<MutexGuard<'_, Filter>> {
        let count = self.slots.len().max(1);
        self.slots
            .get(thread_slot() % count)
            .map(|slot| slot.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The `metadata` property for a request: the payload JSON from filter state,
    /// re-encoded under the configured namespace and key.
    pub fn metadata(&self, payload_json: &[u8]) -> Option<Vec<u8>> {
        metadata_from_payload(payload_json, &self.jwt.0, &self.jwt.1)
    }

    /// Whether the policies read JWT claims, which reach the native twin only through
    /// [`JWT_PAYLOAD_STATE`].
    pub fn needs_claims(&self) -> bool {
        self.needs_claims
    }

    /// The configured deny response (status, body).
    pub fn deny_response(&self) -> (u16, &str) {
        (self.deny.0, &self.deny.1)
    }

    /// Envoy's id of a counter.
    pub fn counter_id(&self, counter: Counter) -> Option<usize> {
        let position = Counter::ALL
            .iter()
            .position(|candidate| *candidate == counter)?;
        self.counters.get(position).copied().flatten()
    }
}

/// The header that makes a `panic-probe` build panic (see `Cargo.toml`).
#[cfg(feature = "panic-probe")]
pub const PANIC_PROBE_HEADER: &str = "x-cordon-panic-probe";

/// Panics when the request carries [`PANIC_PROBE_HEADER`]: test builds only.
#[cfg(feature = "panic-probe")]
#[expect(clippy::panic, reason = "the probe exists to panic where a bug would")]
pub fn panic_probe(host: &dyn Host) {
    if host.header(PANIC_PROBE_HEADER).is_some() {
        panic!("panic probe");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;
    use cordon_filter::attributes::MetadataClaims;
    use cordon_filter::testing::FakeHost;

    #[test]
    fn every_property_the_glue_reads_has_a_source() {
        assert_eq!(
            source(&["connection", "uri_san_peer_certificate"]),
            Source::Text(Attribute::UriSanPeerCertificate)
        );
        assert_eq!(
            source(&["destination", "port"]),
            Source::Integer(Attribute::DestinationPort)
        );
        assert_eq!(source(&["metadata"]), Source::JwtPayload);
        assert_eq!(
            source(&["xds", "node", "metadata", "NAMESPACE"]),
            Source::Unavailable
        );
    }

    #[test]
    fn the_payload_json_reads_back_as_the_claims_jwt_authn_verified() {
        let json = br#"{"iss":"https://idp.shop.example","scope":"credits:write","n":7}"#;
        let metadata =
            metadata_from_payload(json, "envoy.filters.http.jwt_authn", "payload").unwrap();
        let claims =
            MetadataClaims::from_metadata(metadata, "envoy.filters.http.jwt_authn", "payload")
                .unwrap();
        let as_json = cordon_filter::attributes::claims_to_json(claims.payload());
        assert_eq!(as_json["scope"], "credits:write");
        assert_eq!(as_json["n"], 7);
        // No token verified: the format string writes `-` (or nothing).
        assert!(metadata_from_payload(b"-", "ns", "payload").is_none());
        assert!(metadata_from_payload(b"", "ns", "payload").is_none());
        assert!(metadata_from_payload(b"\"a string\"", "ns", "payload").is_none());
    }

    #[test]
    fn a_configuration_without_a_workload_is_refused() {
        let host = FakeHost::default();
        let errors = Module::load(br#"{"policies": []}"#, &host, 2, Vec::new()).unwrap_err();
        assert_eq!(errors[0].field, "workload");
        let module = Module::load(
            br#"{"policies": [], "workload": {"namespace": "finance", "labels": {}}}"#,
            &host,
            2,
            Vec::new(),
        )
        .unwrap();
        assert_eq!(module.slots.len(), 2);
        assert!(module.filter().is_some());
    }
}
