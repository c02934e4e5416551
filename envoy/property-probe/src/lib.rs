//! Logs, at info level, what the proxy answers for each property path named in the
//! request's `x-probe` header: `PROBE <path> len=<n> hex=<bytes>`, `PROBE <path> none`, or
//! `PROBE <path> err=<status>`. Every request continues untouched.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(ProbeRoot) });
}}

struct ProbeRoot;

impl Context for ProbeRoot {}

impl RootContext for ProbeRoot {
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Probe))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Probe;

impl Context for Probe {}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

impl HttpContext for Probe {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let probe = hostcalls::get_map_value(MapType::HttpRequestHeaders, "x-probe")
            .ok()
            .flatten()
            .unwrap_or_default();
        for spec in probe.split(';').filter(|spec| !spec.is_empty()) {
            let path: Vec<&str> = spec.split('|').collect();
            let message = match hostcalls::get_property(path.clone()) {
                Ok(Some(bytes)) => format!(
                    "PROBE {} len={} hex={}",
                    path.join("."),
                    bytes.len(),
                    hex(&bytes)
                ),
                Ok(None) => format!("PROBE {} none", path.join(".")),
                Err(status) => format!("PROBE {} err={status:?}", path.join(".")),
            };
            let _ = hostcalls::log(LogLevel::Info, &message);
        }
        Action::Continue
    }
}
