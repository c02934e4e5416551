//! What the filter needs from the proxy, as a trait: the proxy-wasm SDK implements it in
//! the module that ships, tests implement it in memory.

/// Log levels, as proxy-wasm numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Trace.
    Trace,
    /// Debug.
    Debug,
    /// Info.
    Info,
    /// Warn.
    Warn,
    /// Error.
    Error,
    /// Critical.
    Critical,
}

impl LogLevel {
    /// Reads `trace`, `debug`, `info`, `warn`, `error` or `critical`.
    pub fn from_name(name: &str) -> Option<LogLevel> {
        Some(match name {
            "trace" => LogLevel::Trace,
            "debug" => LogLevel::Debug,
            "info" => LogLevel::Info,
            "warn" => LogLevel::Warn,
            "error" => LogLevel::Error,
            "critical" => LogLevel::Critical,
            _ => return None,
        })
    }
}

/// Counters the filter keeps, each defined once per plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Counter {
    /// `cordon.requests.allowed`.
    Allowed,
    /// `cordon.requests.denied`.
    Denied,
    /// `cordon.requests.dry_run_denied`: would have been denied had dry-run policies been
    /// enforced (or the whole filter not been in dry-run mode).
    DryRunDenied,
    /// `cordon.requests.audited`.
    Audited,
    /// `cordon.requests.path_rejected`: answered 400 by path normalization.
    PathRejected,
    /// `cordon.config.errors`: configurations rejected.
    ConfigErrors,
    /// `cordon.config.loaded`: configurations accepted.
    ConfigLoaded,
}

impl Counter {
    /// Every counter, in definition order.
    pub const ALL: [Counter; 7] = [
        Counter::Allowed,
        Counter::Denied,
        Counter::DryRunDenied,
        Counter::Audited,
        Counter::PathRejected,
        Counter::ConfigErrors,
        Counter::ConfigLoaded,
    ];

    /// The metric name as defined with the proxy (Envoy shows it under `wasmcustom.`).
    pub fn name(self) -> &'static str {
        match self {
            Counter::Allowed => "cordon.requests.allowed",
            Counter::Denied => "cordon.requests.denied",
            Counter::DryRunDenied => "cordon.requests.dry_run_denied",
            Counter::Audited => "cordon.requests.audited",
            Counter::PathRejected => "cordon.requests.path_rejected",
            Counter::ConfigErrors => "cordon.config.errors",
            Counter::ConfigLoaded => "cordon.config.loaded",
        }
    }
}

/// The proxy, as the filter sees it. Every method is one host call at most.
pub trait Host {
    /// A property by path segments (`["connection", "mtls"]`), in Envoy's encoding;
    /// `None` when absent.
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;
    /// One request header (for a repeated header, Envoy 1.40 answers the first value).
    fn header(&self, name: &str) -> Option<String>;
    /// Every request header, one pair per value, in arrival order.
    fn headers(&self) -> Vec<(String, String)>;
    /// Every value of the request headers named in `names` (lowercase; pseudo-headers
    /// such as `:path` included), one `(name, value)` pair per value, in arrival order: a
    /// part of [`Host::headers`], or `None` when the proxy cannot read it for less than the
    /// whole map (then the filter calls [`Host::headers`]). The `.wasm` keeps the default:
    /// proxy-wasm reads the whole map in one call, and its single-header read answers only
    /// the first value of a repeated header. The native twin gets views of the map from
    /// Envoy and copies only these.
    fn named_headers(&self, _names: &[String]) -> Option<Vec<(String, String)>> {
        None
    }
    /// Answers the request locally.
    fn send_response(&self, status: u16, headers: &[(&str, &str)], body: &[u8]);
    /// Sets a property (Envoy keeps it as filter state `wasm.<name>`).
    fn set_property(&self, path: &[&str], value: &[u8]);
    /// Writes a log line.
    fn log(&self, level: LogLevel, message: &str);
    /// Adds to a counter.
    fn increment(&self, counter: Counter, delta: i64);
    /// The proxy's clock, in nanoseconds since the Unix epoch.
    fn now_nanos(&self) -> u64;
}
