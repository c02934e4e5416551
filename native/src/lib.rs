//! # cordon-native
//!
//! cordon's native twin: the same filter as the `.wasm`, built as an Envoy 1.40 dynamic
//! module (`envoy.filters.http.dynamic_modules`). Envoy loads `libcordon_native.so` with
//! `dynamic_module_config: {name: cordon_native}` (from `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`),
//! `filter_name: cordon`, and `filter_config` a `google.protobuf.StringValue` holding the
//! plugin configuration JSON the `.wasm` takes.
//!
//! Everything between the proxy and the engine is the filter crate's glue
//! ([`cordon_filter::config`], [`cordon_filter::attributes`], [`cordon_filter::decide`]),
//! shared with the `.wasm` through its [`cordon_filter::host::Host`] trait; this crate only
//! implements that trait over Envoy's dynamic-module ABI.
//!
//! - `abi`: the FFI boundary, the one module allowed unsafe code: the bindings, the
//!   exported event hooks (each under `catch_unwind`: a panic denies the request, 403, and
//!   counts it), and the `Host` over Envoy's callbacks.
//! - `module`: the rest, safe: the loaded configuration shared by every worker thread,
//!   where each property comes from, the JWT payload read back from filter state.
//!
//! What differs from the `.wasm`, because of what the ABI offers (README, "The native
//! twin"): the configuration must name its `workload` (no node metadata), and the verified
//! JWT payload reaches cordon through filter state `cordon.jwt_payload`, which an
//! `envoy.filters.http.set_filter_state` filter fills from `jwt_authn`'s metadata. The
//! decision is filter state `cordon.decision`; counters are Envoy's dynamic-module stats.

mod abi;
mod module;
