//! # cordon-filter
//!
//! cordon's proxy-wasm filter: one `.wasm` that Envoy (and Istio, through a `WasmPlugin`)
//! loads to enforce Istio AuthorizationPolicy inline on every request.
//!
//! The filter is glue. Every decision is made by [`cordon_engine`]; every proxy access goes
//! through the [`host::Host`] trait, which the proxy-wasm SDK implements in the shipped
//! module (`proxy`, wasm32 only) and tests implement in memory.
//!
//! - [`config`]: the plugin configuration (JSON), validated, policies compiled.
//! - [`attributes`]: the request attributes the compiled policies need, read from the
//!   proxy: the verified peer certificate, addresses, headers, JWT claims.
//! - [`decide`]: the decision, the local response, counters, filter state, decision log.
//! - `testing` (cargo feature `test-host`): the in-memory proxy the filter's tests and the
//!   fuzz targets run the glue against.

pub mod attributes;
pub mod config;
pub mod decide;
pub mod encoding;
pub mod host;
#[cfg(feature = "test-host")]
pub mod testing;
pub mod xfcc;

#[cfg(target_arch = "wasm32")]
mod proxy;
