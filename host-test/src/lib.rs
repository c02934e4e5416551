//! A proxy-wasm ABI 0.2.1 host on wasmtime that plays Envoy, so that `cordon_filter.wasm` can be
//! tested as it ships, without Envoy.
//!
//! The host knows nothing of policies. It loads a module ([`Host::load`]), starts a plugin with
//! a configuration ([`Host::start`] / [`Host::start_with`]), and runs requests through it
//! ([`Plugin::handle`]), answering every host call the way Envoy 1.40 with proxy-wasm-cpp-host
//! answers it: the same statuses, the same property encodings ([`encode`]), the same header
//! map rules ([`HeaderMap`]), the same callback order.
//!
//! # Example
//!
//! ```no_run
//! use cordon_host::encode::encode_string;
//! use cordon_host::{Action, Host, HttpExchange};
//!
//! # fn main() -> anyhow::Result<()> {
//! let host = Host::load(&std::fs::read("cordon_filter.wasm")?)?;
//! let mut plugin = host.start(b"", br#"{"policies":[]}"#)?;
//! assert!(plugin.start_report().accepted);
//!
//! let request = HttpExchange::get("/reports", "ledger.shop")
//!     .property(["connection", "uri_san_peer_certificate"],
//!               encode_string("spiffe://cluster.local/ns/shop/sa/frontend"));
//! let outcome = plugin.handle(&request)?;
//! if let Some(reply) = outcome.local_response() {
//!     println!("denied with {}", reply.status);
//! } else {
//!     assert_eq!(outcome.action(), Action::Continue);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # What is served
//!
//! - Every `env.proxy_*` function an SDK 0.2.x module imports, with its exact signature.
//!   Outbound HTTP/gRPC calls and foreign functions answer the failure statuses the SDK
//!   accepts; shared data and queues work within the plugin.
//! - WASI preview1 as cpp-host serves it: stdout and stderr become info and error log lines;
//!   no files, arguments or environment; `random_get` is deterministic; clocks read the
//!   plugin's [`Clock`]. Other WASI functions answer `ENOSYS`.
//! - Every guest pointer is bounds-checked: a bad one answers `InvalidMemoryAccess` (6) as in
//!   cpp-host. A trap in the module becomes a [`HandleError`], never a host panic.
//!
//! # Checked against Envoy
//!
//! The conformance guest (`tests/guest`) was also run in Envoy 1.40.0 (V8 runtime, HTTP/1.1,
//! `direct_response` route). What Envoy did, and this host does likewise:
//!
//! - per request: `proxy_on_context_create`, `proxy_on_request_headers`, for a local reply
//!   `proxy_on_response_headers` (`:status`, the module's headers, `content-length`,
//!   `content-type`), then `proxy_on_log`, `proxy_on_done`, `proxy_on_delete`: the log
//!   callback comes before done;
//! - `proxy_get_header_map_value` answers the first occurrence of a repeated header, not the
//!   values joined (see [`RepeatedHeaders`]); the pairs show every occurrence;
//! - pseudo-headers arrive as `:authority`, `:path`, `:method`, `:scheme`, and Envoy adds
//!   `x-forwarded-proto` and `x-request-id` before the filter runs;
//! - a property the module sets reads back only through a one-segment path;
//! - the plugin configuration is readable in `proxy_on_configure` only; the request body
//!   buffer reads as Ok with no data while headers are processed; a metric defined twice gets
//!   two ids; a histogram cannot be read and a counter cannot be incremented by 0
//!   (BadArgument);
//! - each WASI `fd_write` is one log line (stdout info, stderr error): `eprintln!` on
//!   unbuffered stderr makes three lines;
//! - a panic is logged at critical, the request answered 503, and every later one too.
//!
//! # Not served
//!
//! Request and response bodies, upstream responses (only a local reply reaches
//! `proxy_on_response_headers`), and timers other than an explicit [`Plugin::tick`] (Envoy
//! ticks every period the module set).

mod abi;
pub mod encode;
mod error;
mod exchange;
mod headers;
mod host;
mod imports;
pub mod mesh;
mod metrics;
mod outcome;
mod plugin;
pub mod replay;
mod shared;
mod state;

pub use error::HandleError;
pub use exchange::{HttpExchange, Properties};
pub use headers::HeaderMap;
pub use host::{Host, StartOptions};
pub use metrics::{Metric, MetricType};
pub use outcome::{Action, LocalResponse, LogLevel, LogRecord, Outcome};
pub use plugin::{ConfigureReport, Plugin};
pub use state::{Clock, RepeatedHeaders};
