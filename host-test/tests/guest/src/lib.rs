//! Conformance guest for the cordon test host.
//!
//! Plugin configuration: whitespace-separated words. `reject` makes `on_configure` answer
//! false; `quiet` makes requests do only what the cordon filter does per request (read two
//! headers and a property, bump a counter, maybe deny), for throughput runs. Otherwise every
//! request exercises the host calls and logs what it saw, one `key=value` fact per line.
//!
//! Request headers that steer it: `x-cordon-deny` (answer 403), `x-cordon-panic`,
//! `x-cordon-unreachable`, `x-cordon-exit` (three ways to trap).

use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| Box::new(Root::default()));
}}

// Raw imports, to hand the host arguments the SDK never would.
#[link(wasm_import_module = "env")]
extern "C" {
    #[link_name = "proxy_log"]
    fn raw_log(level: u32, ptr: *const u8, len: usize) -> u32;
    #[link_name = "proxy_get_buffer_bytes"]
    fn raw_get_buffer_bytes(
        kind: u32,
        start: usize,
        max: usize,
        ret_ptr: *mut *mut u8,
        ret_len: *mut usize,
    ) -> u32;
    #[link_name = "proxy_get_header_map_value"]
    fn raw_get_header_map_value(
        kind: u32,
        key: *const u8,
        key_len: usize,
        ret_ptr: *mut *mut u8,
        ret_len: *mut usize,
    ) -> u32;
    #[link_name = "proxy_get_property"]
    fn raw_get_property(
        path: *const u8,
        len: usize,
        ret_ptr: *mut *mut u8,
        ret_len: *mut usize,
    ) -> u32;
}

fn info(message: &str) {
    let _ = hostcalls::log(LogLevel::Info, message);
}

#[derive(Clone, Copy, Default)]
struct Metrics {
    requests: u32,
    denied: u32,
    header_count: u32,
    path_length: u32,
}

#[derive(Default)]
struct Root {
    quiet: bool,
    metrics: Metrics,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_vm_start(&mut self, vm_configuration_size: usize) -> bool {
        let vm = self.get_vm_configuration().unwrap_or_default();
        info(&format!(
            "vm_start size={vm_configuration_size} config={}",
            String::from_utf8_lossy(&vm)
        ));
        // Envoy hands the plugin configuration to on_configure only.
        let plugin = self.get_plugin_configuration();
        info(&format!(
            "vm_start plugin_config={}",
            if plugin.is_some() { "some" } else { "none" }
        ));
        true
    }

    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        let config = String::from_utf8_lossy(&config).into_owned();
        info(&format!(
            "configure size={plugin_configuration_size} config={config}"
        ));
        let name = self.get_property(vec!["plugin_name"]);
        info(&format!("configure plugin_name={}", show_str(name)));
        let request_level = self.get_property(vec!["source", "address"]);
        info(&format!(
            "configure source.address={}",
            show_str(request_level)
        ));
        if config.split_whitespace().any(|w| w == "reject") {
            info("configure rejected");
            return false;
        }
        self.quiet = config.split_whitespace().any(|w| w == "quiet");
        self.metrics = Metrics {
            requests: define(MetricType::Counter, "cordon_requests_total"),
            denied: define(MetricType::Counter, "cordon_denied_total"),
            header_count: define(MetricType::Gauge, "cordon_last_header_count"),
            path_length: define(MetricType::Histogram, "cordon_path_length"),
        };
        // Defining the same metric twice must answer the same id.
        let again = define(MetricType::Counter, "cordon_requests_total");
        info(&format!(
            "configure metric_redefined_same_id={}",
            again == self.metrics.requests
        ));
        self.set_tick_period(Duration::from_millis(1000));
        info("configure accepted");
        true
    }

    fn on_tick(&mut self) {
        info("tick");
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        if !self.quiet {
            info(&format!("lifecycle create {context_id}"));
        }
        Some(Box::new(Request {
            id: context_id,
            quiet: self.quiet,
            metrics: self.metrics,
        }))
    }
}

fn define(kind: MetricType, name: &str) -> u32 {
    hostcalls::define_metric(kind, name).unwrap_or(0)
}

struct Request {
    id: u32,
    quiet: bool,
    metrics: Metrics,
}

impl Request {
    fn deny(&self) -> Action {
        let _ = hostcalls::increment_metric(self.metrics.denied, 1);
        self.send_http_response(
            403,
            vec![("x-cordon-reason", "denied")],
            Some(b"denied by cordon"),
        );
        Action::Pause
    }

    fn traps(&self) {
        if self.get_http_request_header("x-cordon-panic").is_some() {
            panic!("guest asked to panic");
        }
        if self
            .get_http_request_header("x-cordon-unreachable")
            .is_some()
        {
            core::arch::wasm32::unreachable();
        }
        if self.get_http_request_header("x-cordon-exit").is_some() {
            std::process::exit(3);
        }
    }

    fn report_headers(&self, num_headers: usize, end_of_stream: bool) {
        info(&format!(
            "lifecycle request_headers {} n={num_headers} eos={end_of_stream}",
            self.id
        ));
        let pairs: Vec<String> = self
            .get_http_request_headers()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        info(&format!("pairs {}", pairs.join(";")));
        for name in ["x-multi", "X-Single", "x-missing", ":path"] {
            let value = self.get_http_request_header(name);
            info(&format!(
                "header {name}={}",
                value.as_deref().unwrap_or("<none>")
            ));
        }
    }

    fn report_properties(&self) {
        let p = |path: &[&str]| self.get_property(path.to_vec());
        info(&format!(
            "prop source.address={}",
            show_str(p(&["source", "address"]))
        ));
        let port =
            p(&["destination", "port"]).and_then(|b| Some(i64::from_le_bytes(b.try_into().ok()?)));
        info(&format!("prop destination.port={}", show(port)));
        let mtls = p(&["connection", "mtls"]).map(|b| b == [1]);
        info(&format!("prop connection.mtls={}", show(mtls)));
        let san = p(&["connection", "uri_san_peer_certificate"]);
        info(&format!(
            "prop connection.uri_san_peer_certificate={}",
            show_str(san)
        ));
        let payload_path = [
            "metadata",
            "filter_metadata",
            "envoy.filters.http.jwt_authn",
            "payload",
        ];
        if let Some(map) = p(&payload_path) {
            let pairs = decode_pairs(&map);
            let keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
            info(&format!("prop payload.keys={}", keys.join(",")));
            for (k, v) in &pairs {
                if k == "iat" {
                    let iat = v.as_slice().try_into().ok().map(f64::from_le_bytes);
                    info(&format!("prop payload.map.iat={}", show(iat)));
                } else {
                    info(&format!(
                        "prop payload.map.{k}={}",
                        String::from_utf8_lossy(v)
                    ));
                }
            }
        } else {
            info("prop payload=<none>");
        }
        let mut leaf = payload_path.to_vec();
        leaf.push("scope");
        info(&format!("prop payload.scope={}", show_str(p(&leaf))));
        leaf.pop();
        leaf.push("iat");
        let iat = p(&leaf).and_then(|b| Some(f64::from_le_bytes(b.try_into().ok()?)));
        info(&format!("prop payload.iat={}", show(iat)));
        info(&format!(
            "prop request.missing={}",
            show_str(p(&["request", "missing"]))
        ));
        info(&format!(
            "prop plugin_name={}",
            show_str(p(&["plugin_name"]))
        ));
        info(&format!("prop empty={}", show_str(p(&["cordon", "empty"]))));
    }

    fn exercise(&self, num_headers: usize) {
        // Filter state, read back through get_property as Envoy allows.
        self.set_property(vec!["cordon", "decision"], Some(b"allow"));
        self.set_property(
            vec!["cordon", "header_count"],
            Some(&(num_headers as i64).to_le_bytes()),
        );
        info(&format!(
            "prop readback={}",
            show_str(self.get_property(vec!["cordon", "decision"]))
        ));
        // Envoy finds filter state by the first path segment only: a one-segment path reads back.
        self.set_property(vec!["cordon_flat"], Some(b"flat"));
        info(&format!(
            "prop readback_flat={}",
            show_str(self.get_property(vec!["cordon_flat"]))
        ));

        // Metrics.
        let _ = hostcalls::increment_metric(self.metrics.requests, 1);
        let _ = hostcalls::record_metric(self.metrics.header_count, num_headers as u64);
        let path = self.get_http_request_header(":path").unwrap_or_default();
        let _ = hostcalls::record_metric(self.metrics.path_length, path.len() as u64);
        let total = hostcalls::get_metric(self.metrics.requests);
        info(&format!("metric requests_total={}", show(total.ok())));
        let histogram = hostcalls::get_metric(self.metrics.path_length);
        info(&format!("metric histogram_get={:?}", histogram.err()));
        let zero = hostcalls::increment_metric(self.metrics.requests, 0);
        info(&format!("metric counter_increment_zero={:?}", zero.err()));

        // Header edits.
        self.add_http_request_header("x-cordon", "seen");
        self.set_http_request_header("x-replace-me", Some("new"));
        self.set_http_request_header("x-remove-me", None);

        // Time, log levels, WASI output, randomness.
        let nanos = self
            .get_current_time()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos());
        info(&format!("time nanos={}", show(nanos.ok())));
        let _ = hostcalls::log(LogLevel::Debug, "level debug line");
        let _ = hostcalls::log(LogLevel::Warn, "level warn line");
        let level = hostcalls::get_log_level().map(|l| l as u32);
        info(&format!("log_level={}", show(level.ok())));
        println!("stdout line {}", self.id);
        eprintln!("stderr line {}", self.id);
        let mut seeded: HashMap<u32, u32> = HashMap::new();
        seeded.insert(1, 2);
        info(&format!("hashmap len={}", seeded.len()));

        // Shared data.
        let _ = self.set_shared_data("cordon-key", Some(b"shared-value"), None);
        let (value, cas) = self.get_shared_data("cordon-key");
        info(&format!(
            "shared value={} cas_some={}",
            show_str(value),
            cas.is_some()
        ));
        let stale = self.set_shared_data("cordon-key", Some(b"x"), Some(cas.unwrap_or(0) + 1000));
        info(&format!("shared stale_cas={:?}", stale.err()));

        // Calls with no upstream answer errors the SDK accepts.
        let call = self.dispatch_http_call("nowhere", vec![], None, vec![], Duration::from_secs(1));
        info(&format!("http_call={:?}", call.err()));
        let foreign = hostcalls::call_foreign_function("nothing", None);
        info(&format!("foreign={:?}", foreign.err()));

        // Arguments the SDK never sends, through raw imports.
        unsafe {
            let oob = raw_log(2, 0xFFFF_FF00 as *const u8, 0x1000);
            info(&format!("raw oob_log_status={oob}"));
            let bad_level = raw_log(9, b"x".as_ptr(), 1);
            info(&format!("raw bad_level_status={bad_level}"));
            let mut ptr: *mut u8 = std::ptr::null_mut();
            let mut len: usize = 0;
            let bad_buffer = raw_get_buffer_bytes(99, 0, 10, &mut ptr, &mut len);
            info(&format!("raw bad_buffer_status={bad_buffer}"));
            let no_body = raw_get_buffer_bytes(0, 0, 10, &mut ptr, &mut len);
            info(&format!("raw request_body_status={no_body}"));
            let key = b"x-single";
            let response_map =
                raw_get_header_map_value(2, key.as_ptr(), key.len(), &mut ptr, &mut len);
            info(&format!("raw response_header_status={response_map}"));
            let oob_out = raw_get_property(
                b"plugin_name".as_ptr(),
                11,
                0xFFFF_FFF0 as *mut *mut u8,
                &mut len,
            );
            info(&format!("raw oob_out_param_status={oob_out}"));
        }
        let _ = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX).map(|b| {
            info(&format!(
                "request plugin_config={}",
                if b.is_some() { "some" } else { "none" }
            ))
        });
        let _ = hostcalls::get_map(MapType::HttpResponseHeaders)
            .map(|m| info(&format!("response_headers_pairs={}", m.len())));
    }
}

impl Context for Request {
    fn on_done(&mut self) -> bool {
        if !self.quiet {
            info(&format!("lifecycle done {}", self.id));
        }
        true
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if !self.quiet {
            info(&format!("lifecycle delete {}", self.id));
        }
    }
}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, num_headers: usize, end_of_stream: bool) -> Action {
        if self.quiet {
            // What the cordon filter does per request, and no more.
            let _path = self.get_http_request_header(":path");
            let _method = self.get_http_request_header(":method");
            let _peer = self.get_property(vec!["connection", "uri_san_peer_certificate"]);
            let _ = hostcalls::increment_metric(self.metrics.requests, 1);
            if self.get_http_request_header("x-cordon-deny").is_some() {
                return self.deny();
            }
            return Action::Continue;
        }
        self.report_headers(num_headers, end_of_stream);
        self.traps();
        self.report_properties();
        self.exercise(num_headers);
        if self.get_http_request_header("x-cordon-deny").is_some() {
            return self.deny();
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, num_headers: usize, _end_of_stream: bool) -> Action {
        if !self.quiet {
            let status = self.get_http_response_header(":status").unwrap_or_default();
            info(&format!(
                "lifecycle response_headers {} n={num_headers} status={status}",
                self.id
            ));
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        if !self.quiet {
            info(&format!("lifecycle log {}", self.id));
        }
    }
}

fn show<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "<none>".to_string(), |v| v.to_string())
}

fn show_str(value: Option<Vec<u8>>) -> String {
    value.map_or_else(
        || "<none>".to_string(),
        |v| String::from_utf8_lossy(&v).into_owned(),
    )
}

/// The proxy-wasm pairs format: u32 count, count × (u32 key_len, u32 value_len), then
/// `key\0value\0` each.
fn decode_pairs(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let u32_at = |at: usize| -> Option<usize> {
        Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?) as usize)
    };
    let mut out = Vec::new();
    let Some(count) = u32_at(0) else { return out };
    let mut data = 4 + count * 8;
    for i in 0..count {
        let (Some(klen), Some(vlen)) = (u32_at(4 + i * 8), u32_at(8 + i * 8)) else {
            break;
        };
        let (Some(k), Some(v)) = (
            bytes.get(data..data + klen),
            bytes.get(data + klen + 1..data + klen + 1 + vlen),
        ) else {
            break;
        };
        out.push((String::from_utf8_lossy(k).into_owned(), v.to_vec()));
        data += klen + vlen + 2;
    }
    out
}
