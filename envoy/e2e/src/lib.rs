//! cordon's end-to-end harness: a real Envoy 1.40 running cordon, as `cordon_filter.wasm`
//! (V8) or as its native twin `libcordon_native.so` (a dynamic module, [`envoy::Twin`]),
//! behind mTLS and `jwt_authn`, driven by real clients.
//!
//! - [`tools`] finds what the suite needs (the repository, Envoy, the filter modules, the
//!   test PKI) and fails with the command that fixes it when something is missing;
//! - [`envoy`] renders `envoy/envoy.yaml.tmpl` and `envoy/listeners.yaml.tmpl` (with the
//!   twin's `envoy/filter-<twin>.yaml.tmpl`), starts
//!   Envoy on free loopback ports, waits until it is ready, reads its stats and logs,
//!   changes its listeners through file-based LDS, and stops it (by process id) when
//!   dropped;
//! - [`client`] sends requests: through `curl` (mTLS client certificates, raw request
//!   targets, arbitrary header bytes) or a keep-alive HTTP/1.1 client for load;
//! - [`differential`] runs seeded random policies and requests through Envoy's native
//!   RBAC filters (as istiod configures them) and through cordon side by side, in one
//!   Envoy, and reports every disagreement.
//!
//! The tests are in `tests/`; `src/bin/cordon-demo.rs` is the main job on the shop example
//! (`scripts/demo.sh`). The Istio image packer is `cordon pack` (crate `cordon-oci`).

pub mod client;
pub mod differential;
pub mod envoy;
pub mod tools;

use std::fmt;

/// What went wrong, said for a person: which step, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(String);

impl Error {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Error {
        Error(message.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(error: std::io::Error) -> Error {
        Error(error.to_string())
    }
}

impl From<serde_json::Error> for Error {
    fn from(error: serde_json::Error) -> Error {
        Error(error.to_string())
    }
}

/// The harness's result.
pub type Result<T> = std::result::Result<T, Error>;

/// Adds context to an error.
pub(crate) trait Context<T> {
    /// Prefixes the error with what was being done.
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: fmt::Display> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|error| Error(format!("{}: {error}", what())))
    }
}
