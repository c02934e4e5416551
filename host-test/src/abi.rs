//! Numbers of the proxy-wasm ABI 0.2.1, as the Rust SDK 0.2.x and proxy-wasm-cpp-host use them.

/// `WasmResult` values a host call returns.
///
/// The SDK's own `Status` enum stops at `InternalFailure` (10) and has no 6 or 12: any status a
/// wrapper does not list makes it `panic!`, so each host call below answers only with statuses the
/// SDK wrapper for it accepts, except where Envoy itself answers otherwise (then the guest would
/// crash under Envoy too, and reproducing that is the point).
pub(crate) mod status {
    pub(crate) const OK: u32 = 0;
    pub(crate) const NOT_FOUND: u32 = 1;
    pub(crate) const BAD_ARGUMENT: u32 = 2;
    pub(crate) const INVALID_MEMORY_ACCESS: u32 = 6;
    pub(crate) const EMPTY: u32 = 7;
    pub(crate) const CAS_MISMATCH: u32 = 8;
    pub(crate) const INTERNAL_FAILURE: u32 = 10;
}

/// `BufferType` values.
pub(crate) mod buffer {
    pub(crate) const HTTP_REQUEST_BODY: u32 = 0;
    pub(crate) const HTTP_RESPONSE_BODY: u32 = 1;
    pub(crate) const VM_CONFIGURATION: u32 = 6;
    pub(crate) const PLUGIN_CONFIGURATION: u32 = 7;
    /// The largest defined buffer type (`CallData`).
    pub(crate) const MAX: u32 = 8;
}

/// `MapType` values.
pub(crate) mod map {
    pub(crate) const REQUEST_HEADERS: u32 = 0;
    pub(crate) const RESPONSE_HEADERS: u32 = 2;
    /// The largest defined map type (`HttpCallResponseTrailers`).
    pub(crate) const MAX: u32 = 7;
}

/// `StreamType` values: request, response, downstream, upstream.
pub(crate) mod stream {
    pub(crate) const MAX: u32 = 3;
}

/// WASI preview1 `errno` values the stubs answer with.
pub(crate) mod errno {
    pub(crate) const SUCCESS: u32 = 0;
    pub(crate) const BADF: u32 = 8;
    pub(crate) const FAULT: u32 = 21;
    pub(crate) const NOSYS: u32 = 52;
    pub(crate) const NOTSUP: u32 = 58;
}
