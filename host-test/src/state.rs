//! Everything the host functions see: the data of the wasmtime `Store`.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use wasmtime::{Memory, TypedFunc};

use crate::exchange::{HttpExchange, Properties};
use crate::metrics::Metrics;
use crate::outcome::{LogLevel, LogRecord, Outcome};
use crate::shared::SharedData;

/// The time `proxy_get_current_time_nanoseconds` and WASI `clock_time_get` answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Clock {
    /// The host's real time.
    #[default]
    System,
    /// A fixed instant, in nanoseconds since the Unix epoch, for reproducible runs.
    Fixed(u64),
}

impl Clock {
    pub(crate) fn now_nanos(self) -> u64 {
        match self {
            Clock::Fixed(nanos) => nanos,
            Clock::System => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
                .unwrap_or(0),
        }
    }
}

/// How `proxy_get_header_map_value` answers for a header present several times.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RepeatedHeaders {
    /// The first occurrence only: what Envoy does (its `Context::getHeaderMapValue` returns
    /// `entry[0]`, with a TODO calling it a potential security issue; proxy-wasm/spec#53).
    /// `proxy_get_header_map_pairs` still shows every occurrence.
    #[default]
    First,
    /// Every occurrence joined by `,`, as Envoy's Lua filter and CEL do; useful to check that a
    /// module does not depend on which behaviour it gets.
    Joined,
}

/// Which module callback is running, which decides what the host calls may touch (Envoy has no
/// request headers, request properties or filter state outside a request, and gives the plugin
/// configuration only to `proxy_on_configure`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Idle,
    Configure,
    Request(u32),
}

pub(crate) struct State {
    pub(crate) memory: Option<Memory>,
    pub(crate) alloc: Option<TypedFunc<u32, u32>>,
    pub(crate) root_id: u32,
    pub(crate) phase: Phase,
    pub(crate) vm_config: Vec<u8>,
    pub(crate) plugin_config: Vec<u8>,
    pub(crate) plugin_properties: Properties,
    pub(crate) request_properties: Option<Arc<Properties>>,
    pub(crate) log_level: LogLevel,
    pub(crate) clock: Clock,
    pub(crate) repeated_headers: RepeatedHeaders,
    pub(crate) random: u64,
    pub(crate) metrics: Metrics,
    pub(crate) shared: SharedData,
    pub(crate) tick_period_ms: u32,
    /// Collects what the module does; outside requests only `logs` is used.
    pub(crate) outcome: Outcome,
    /// Bytes on their way into guest memory, reused so that answers allocate nothing.
    pub(crate) scratch: Vec<u8>,
}

impl State {
    pub(crate) fn new(root_id: u32, options: &crate::StartOptions) -> Self {
        Self {
            memory: None,
            alloc: None,
            root_id,
            phase: Phase::Idle,
            vm_config: options.vm_config.clone(),
            plugin_config: options.plugin_config.clone(),
            plugin_properties: options.properties.clone(),
            request_properties: None,
            log_level: options.log_level,
            clock: options.clock,
            repeated_headers: options.repeated_headers,
            // xorshift must not start at 0.
            random: options.random_seed.max(1),
            metrics: Metrics::default(),
            shared: SharedData::default(),
            tick_period_ms: 0,
            outcome: Outcome::default(),
            scratch: Vec::new(),
        }
    }

    pub(crate) fn in_request(&self) -> bool {
        matches!(self.phase, Phase::Request(_))
    }

    pub(crate) fn log(&mut self, level: LogLevel, message: &[u8]) {
        // Envoy drops lines under its `wasm` logger level before anyone can see them.
        if level >= self.log_level {
            let message = String::from_utf8_lossy(message).into_owned();
            self.outcome.logs.push(LogRecord { level, message });
        }
    }

    pub(crate) fn begin_request(&mut self, id: u32, exchange: &HttpExchange) {
        self.outcome.reset(id);
        for (name, value) in &exchange.headers {
            self.outcome
                .request_headers
                .append(name.as_bytes(), value.as_bytes());
        }
        self.request_properties = Some(Arc::clone(&exchange.properties));
        self.phase = Phase::Request(id);
    }

    pub(crate) fn end_request(&mut self) {
        self.request_properties = None;
        self.phase = Phase::Idle;
    }

    /// Property lookup in Envoy's order of precedence: this request's filter state (what the
    /// module set, one-segment paths only), then the request's attributes, then the plugin-wide ones (`node`, `plugin_*`).
    /// Writes the value to `scratch`; false when absent.
    pub(crate) fn property_into_scratch(&mut self, path: &[u8]) -> bool {
        let State {
            outcome,
            request_properties,
            plugin_properties,
            scratch,
            phase,
            ..
        } = self;
        let in_request = matches!(phase, Phase::Request(_));
        // Envoy stores what the module set as filter state `wasm.<path>` and finds filter
        // state by the first path segment, so only a one-segment path reads back.
        let own = if path.contains(&0) {
            None
        } else {
            outcome.property_set_raw(path)
        };
        let request_level = if in_request {
            own.or_else(|| request_properties.as_deref().and_then(|p| p.get_raw(path)))
        } else {
            None
        };
        match request_level.or_else(|| plugin_properties.get_raw(path)) {
            Some(value) => {
                scratch.clear();
                scratch.extend_from_slice(value);
                true
            }
            None => false,
        }
    }

    /// Deterministic bytes for WASI `random_get` (xorshift64*), so runs are reproducible.
    pub(crate) fn fill_random(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let mut x = self.random;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.random = x;
            let word = x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            for (dst, src) in chunk.iter_mut().zip(word) {
                *dst = src;
            }
        }
    }
}
