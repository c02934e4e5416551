//! The proxy-wasm glue: the SDK's root and HTTP contexts, and [`Host`] over its host
//! calls. Only built for wasm32; everything it calls is tested natively.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::UNIX_EPOCH;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{
    Action, BufferType, ContextType, LogLevel as SdkLevel, MapType, MetricType,
};

use crate::config;
use crate::decide::{log_config_errors, Filter, Verdict};
use crate::host::{Counter, Host, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(SdkLevel::Trace);
    // A panic must never be a silent trap: say what happened before the VM aborts.
    std::panic::set_hook(Box::new(|info| {
        let _ = hostcalls::log(SdkLevel::Critical, &format!("cordon: panic: {info}"));
    }));
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(CordonRoot::default()) });
}}

/// Metric ids, defined once per VM.
#[derive(Debug, Default, Clone)]
struct Metrics {
    ids: Vec<Option<u32>>,
}

impl Metrics {
    fn define() -> Metrics {
        let ids = Counter::ALL
            .iter()
            .map(|counter| hostcalls::define_metric(MetricType::Counter, counter.name()).ok())
            .collect();
        Metrics { ids }
    }
}

struct ProxyHost {
    metrics: Rc<Metrics>,
}

fn sdk_level(level: LogLevel) -> SdkLevel {
    match level {
        LogLevel::Trace => SdkLevel::Trace,
        LogLevel::Debug => SdkLevel::Debug,
        LogLevel::Info => SdkLevel::Info,
        LogLevel::Warn => SdkLevel::Warn,
        LogLevel::Error => SdkLevel::Error,
        LogLevel::Critical => SdkLevel::Critical,
    }
}

impl Host for ProxyHost {
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        hostcalls::get_property(path.to_vec()).ok().flatten()
    }

    // The SDK's string reads (`get_map`, `get_map_value`) unwrap `String::from_utf8`, and
    // header values are whatever bytes the client sent (Envoy admits obs-text): read bytes
    // and replace what is not UTF-8. Replacement keeps every match a policy value (always
    // UTF-8) has against the raw bytes, and adds none the client could not get by sending
    // U+FFFD itself. Header names stay strings: Envoy's codecs admit only tokens there.
    fn header(&self, name: &str) -> Option<String> {
        hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name)
            .ok()
            .flatten()
            .map(text)
    }

    fn headers(&self) -> Vec<(String, String)> {
        hostcalls::get_map_bytes(MapType::HttpRequestHeaders)
            .unwrap_or_default()
            .into_iter()
            .map(|(name, value)| (name, text(value)))
            .collect()
    }

    fn send_response(&self, status: u16, headers: &[(&str, &str)], body: &[u8]) {
        let _ = hostcalls::send_http_response(u32::from(status), headers.to_vec(), Some(body));
    }

    fn set_property(&self, path: &[&str], value: &[u8]) {
        let _ = hostcalls::set_property(path.to_vec(), Some(value));
    }

    fn log(&self, level: LogLevel, message: &str) {
        let _ = hostcalls::log(sdk_level(level), message);
    }

    fn increment(&self, counter: Counter, delta: i64) {
        let position = Counter::ALL
            .iter()
            .position(|candidate| *candidate == counter);
        if let Some(Some(id)) = position.and_then(|position| self.metrics.ids.get(position)) {
            let _ = hostcalls::increment_metric(*id, delta);
        }
    }

    fn now_nanos(&self) -> u64 {
        hostcalls::get_current_time()
            .ok()
            .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |elapsed| {
                u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
            })
    }
}

/// Header bytes as text, invalid UTF-8 replaced with U+FFFD.
fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes)
        .unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned())
}

#[derive(Default)]
struct CordonRoot {
    /// `None` until a configuration loads, or after one fails: requests are then refused.
    filter: Option<Rc<Filter>>,
    metrics: Rc<RefCell<Option<Rc<Metrics>>>>,
}

impl CordonRoot {
    fn host(&self) -> ProxyHost {
        let mut slot = self.metrics.borrow_mut();
        let metrics = slot
            .get_or_insert_with(|| Rc::new(Metrics::define()))
            .clone();
        ProxyHost { metrics }
    }
}

impl Context for CordonRoot {}

impl RootContext for CordonRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let host = self.host();
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        match config::load(&bytes, &host) {
            Ok(config) => {
                for warning in config.policies.warnings() {
                    host.log(LogLevel::Warn, &format!("cordon: {warning}"));
                }
                host.log(
                    LogLevel::Info,
                    &format!("cordon: loaded {} rules", config.policies.rules().len()),
                );
                host.increment(Counter::ConfigLoaded, 1);
                // In-flight requests hold the previous Rc and finish under it.
                self.filter = Some(Rc::new(Filter::new(config)));
                true
            }
            Err(errors) => {
                log_config_errors(&host, &errors);
                self.filter = None;
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(CordonRequest {
            filter: self.filter.clone(),
            host: self.host(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct CordonRequest {
    filter: Option<Rc<Filter>>,
    host: ProxyHost,
}

impl Context for CordonRequest {}

impl HttpContext for CordonRequest {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(filter) = &self.filter else {
            // No valid configuration: fail closed.
            self.host.send_response(
                503,
                &[("content-type", "text/plain")],
                b"cordon: no valid configuration",
            );
            return Action::Pause;
        };
        match filter.on_request_headers(&self.host) {
            Verdict::Continue => Action::Continue,
            Verdict::Stop => Action::Pause,
        }
    }
}

// Keep the plugin buffer type referenced for readers looking for where configuration comes from.
const _: BufferType = BufferType::PluginConfiguration;
