//! A proxy in memory, for tests and fuzz targets (cargo feature `test-host`): the one
//! fake [`Host`] every native test of the filter's glue runs against.
//!
//! Properties and request headers are given up front; everything the filter does to the
//! proxy is recorded: each host call it makes, the local response, the properties it sets,
//! the log lines and the counters. Headers are read as Envoy 1.40 reads them: one pair per
//! value, and [`Host::header`] answers the first value of a repeated header.
//!
//! ```
//! use cordon_filter::host::Host;
//! use cordon_filter::testing::FakeHost;
//!
//! let host = FakeHost::request("GET", "/v1/credits", "billing")
//!     .peer("spiffe://cluster.local/ns/shop/sa/order-engine");
//! assert_eq!(host.header(":path").as_deref(), Some("/v1/credits"));
//! assert_eq!(host.calls.borrow().as_slice(), ["header :path"]);
//! ```

use std::cell::RefCell;
use std::collections::BTreeMap;

use crate::host::{Counter, Host, LogLevel};

/// What [`Host::now_nanos`] answers: a fixed instant (2026-11-30), so records are
/// reproducible.
pub const NOW_NANOS: u64 = 1_796_000_000_000_000_000;

/// A proxy in memory: see the [module documentation](self).
#[derive(Debug, Default, Clone)]
pub struct FakeHost {
    /// Properties by path segments, in Envoy's encoding.
    pub properties: BTreeMap<Vec<String>, Vec<u8>>,
    /// Request headers, one pair per value, in arrival order.
    pub headers: Vec<(String, String)>,
    /// Every host call the filter made that reads the request: `property a.b`,
    /// `header <name>`, `headers`.
    pub calls: RefCell<Vec<String>>,
    /// The local response sent, if any: status and body.
    pub response: RefCell<Option<(u16, Vec<u8>)>>,
    /// The properties the filter set, by path joined with `.`.
    pub set: RefCell<BTreeMap<String, Vec<u8>>>,
    /// Log lines, with their levels.
    pub logs: RefCell<Vec<(LogLevel, String)>>,
    /// Counters by metric name.
    pub counters: RefCell<BTreeMap<&'static str, i64>>,
    /// Whether [`Host::named_headers`] answers (as the native twin's host does: `named
    /// headers <names>` in `calls`) rather than `None` (as the `.wasm`'s does).
    pub named: bool,
}

impl FakeHost {
    /// A request with these pseudo-headers (`:method`, `:path`, `:authority`) and nothing
    /// else: no peer certificate, so plaintext.
    pub fn request(method: &str, path: &str, authority: &str) -> FakeHost {
        FakeHost::default()
            .with_header(":method", method)
            .with_header(":path", path)
            .with_header(":authority", authority)
    }

    /// Adds a property.
    #[must_use]
    pub fn with_property(mut self, path: &[&str], value: &[u8]) -> FakeHost {
        self.properties.insert(
            path.iter().map(ToString::to_string).collect(),
            value.to_vec(),
        );
        self
    }

    /// Adds a request header line.
    #[must_use]
    pub fn with_header(mut self, name: &str, value: &str) -> FakeHost {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// A verified mTLS peer: its certificate's URI SAN, and `connection.mtls`.
    #[must_use]
    pub fn peer(self, uri: &str) -> FakeHost {
        self.with_property(&["connection", "uri_san_peer_certificate"], uri.as_bytes())
            .with_property(&["connection", "mtls"], &[1])
    }

    /// Answers [`Host::named_headers`], as the native twin's host does.
    #[must_use]
    pub fn answering_named_headers(mut self) -> FakeHost {
        self.named = true;
        self
    }

    /// The status of the local response, if one was sent.
    pub fn status(&self) -> Option<u16> {
        self.response.borrow().as_ref().map(|(status, _)| *status)
    }

    /// A counter's value (0 when never incremented).
    pub fn counter(&self, counter: Counter) -> i64 {
        self.counters
            .borrow()
            .get(counter.name())
            .copied()
            .unwrap_or(0)
    }
}

impl Host for FakeHost {
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        self.calls
            .borrow_mut()
            .push(format!("property {}", path.join(".")));
        self.properties
            .iter()
            .find(|(key, _)| key.iter().map(String::as_str).eq(path.iter().copied()))
            .map(|(_, value)| value.clone())
    }

    fn header(&self, name: &str) -> Option<String> {
        self.calls.borrow_mut().push(format!("header {name}"));
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    }

    fn headers(&self) -> Vec<(String, String)> {
        self.calls.borrow_mut().push("headers".to_string());
        self.headers.clone()
    }

    fn named_headers(&self, names: &[String]) -> Option<Vec<(String, String)>> {
        if !self.named {
            return None;
        }
        self.calls
            .borrow_mut()
            .push(format!("named headers {}", names.join(",")));
        let wanted = |key: &str| names.iter().any(|name| key.eq_ignore_ascii_case(name));
        Some(
            self.headers
                .iter()
                .filter(|(key, _)| wanted(key))
                .cloned()
                .collect(),
        )
    }

    fn send_response(&self, status: u16, _headers: &[(&str, &str)], body: &[u8]) {
        *self.response.borrow_mut() = Some((status, body.to_vec()));
    }

    fn set_property(&self, path: &[&str], value: &[u8]) {
        self.set.borrow_mut().insert(path.join("."), value.to_vec());
    }

    fn log(&self, level: LogLevel, message: &str) {
        self.logs.borrow_mut().push((level, message.to_string()));
    }

    fn increment(&self, counter: Counter, delta: i64) {
        *self
            .counters
            .borrow_mut()
            .entry(counter.name())
            .or_default() += delta;
    }

    fn now_nanos(&self) -> u64 {
        NOW_NANOS
    }
}
