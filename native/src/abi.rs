//! The FFI boundary with Envoy: the only module of the workspace allowed unsafe code.
//!
//! Hand-written bindings for the part of Envoy 1.40's dynamic-module ABI
//! (`source/extensions/dynamic_modules/abi/abi.h`) that cordon uses: the event hooks Envoy
//! calls (`envoy_dynamic_module_on_*`, exported here) and the callbacks cordon calls
//! (`envoy_dynamic_module_callback_*`, exported by the Envoy binary and resolved when it
//! loads this library). Every hook runs its body under `catch_unwind`: a panic never
//! unwinds into Envoy; the request is denied (403) and counted, a configuration refused.
//!
//! Pointers Envoy hands over are valid for the duration of the hook (its `*_envoy_ptr`
//! objects and `envoy_buffer`s); buffers cordon hands over are copied by Envoy before the
//! callback returns.

#![allow(unsafe_code)]

use std::cell::Cell;
use std::ffi::{c_char, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::time::{SystemTime, UNIX_EPOCH};

use cordon_filter::decide::{log_config_errors, Verdict};
use cordon_filter::host::{Counter, Host, LogLevel};

use crate::module::{self, Module, Source, JWT_PAYLOAD_STATE};

/// The ABI version this module was written against: Envoy 1.40's
/// `ENVOY_DYNAMIC_MODULES_ABI_VERSION` (Envoy logs "Dynamic module ABI version v0.2.0
/// matched." when it loads the module; a mismatch is a warning there).
const ABI_VERSION: &[u8] = b"v0.2.0\0";

/// `envoy_dynamic_module_type_envoy_buffer`: bytes Envoy owns.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyBuffer {
    ptr: *const c_char,
    length: usize,
}

/// `envoy_dynamic_module_type_module_buffer`: bytes this module owns.
#[repr(C)]
#[derive(Clone, Copy)]
struct ModuleBuffer {
    ptr: *const c_char,
    length: usize,
}

impl ModuleBuffer {
    fn of(bytes: &[u8]) -> ModuleBuffer {
        ModuleBuffer {
            ptr: bytes.as_ptr().cast(),
            length: bytes.len(),
        }
    }
}

/// `envoy_dynamic_module_type_envoy_http_header`.
#[repr(C)]
#[derive(Clone, Copy)]
struct EnvoyHttpHeader {
    key_ptr: *const c_char,
    key_length: usize,
    value_ptr: *const c_char,
    value_length: usize,
}

/// `envoy_dynamic_module_type_module_http_header`.
#[repr(C)]
#[derive(Clone, Copy)]
struct ModuleHttpHeader {
    key_ptr: *const c_char,
    key_length: usize,
    value_ptr: *const c_char,
    value_length: usize,
}

/// How many header views [`EnvoyHost::with_header_views`] keeps on the stack (a request
/// with more takes one allocation).
const HEADER_VIEWS: usize = 16;

/// `envoy_dynamic_module_type_http_header_type_RequestHeader`.
const REQUEST_HEADERS: u32 = 0;
/// `..._status_Continue` of every `on_http_filter_*` status enum.
const CONTINUE: u32 = 0;
/// `envoy_dynamic_module_type_on_http_filter_request_headers_status_StopIteration`.
const STOP_ITERATION: u32 = 1;

extern "C" {
    fn envoy_dynamic_module_callback_log(level: u32, message: ModuleBuffer);
    fn envoy_dynamic_module_callback_get_concurrency() -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        config: *mut c_void,
        name: ModuleBuffer,
        label_names: *const ModuleBuffer,
        label_names_length: usize,
        counter_id: *mut usize,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_increment_counter(
        config: *mut c_void,
        id: usize,
        label_values: *const ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_increment_counter(
        filter: *mut c_void,
        id: usize,
        label_values: *const ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_get_header(
        filter: *mut c_void,
        header_type: u32,
        key: ModuleBuffer,
        result: *mut EnvoyBuffer,
        index: usize,
        optional_size: *mut usize,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_get_headers_size(
        filter: *mut c_void,
        header_type: u32,
    ) -> usize;
    fn envoy_dynamic_module_callback_http_get_headers(
        filter: *mut c_void,
        header_type: u32,
        result_headers: *mut EnvoyHttpHeader,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_send_response(
        filter: *mut c_void,
        status_code: u32,
        headers: *const ModuleHttpHeader,
        headers_length: usize,
        body: ModuleBuffer,
        details: ModuleBuffer,
    );
    fn envoy_dynamic_module_callback_http_set_filter_state_bytes(
        filter: *mut c_void,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_get_filter_state_bytes(
        filter: *mut c_void,
        key: ModuleBuffer,
        result: *mut EnvoyBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_filter_get_attribute_string(
        filter: *mut c_void,
        attribute: u32,
        result: *mut EnvoyBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_filter_get_attribute_int(
        filter: *mut c_void,
        attribute: u32,
        result: *mut u64,
    ) -> bool;
}

/// Copies an Envoy buffer (empty for a null pointer).
///
/// # Safety
/// `buffer` must be null or point to `length` readable bytes for the duration of the call.
unsafe fn copy(buffer: EnvoyBuffer) -> Vec<u8> {
    if buffer.ptr.is_null() || buffer.length == 0 {
        return Vec::new();
    }
    // SAFETY: the caller guarantees `length` readable bytes at `ptr`, non-null here.
    unsafe { std::slice::from_raw_parts(buffer.ptr.cast::<u8>(), buffer.length) }.to_vec()
}

/// Borrows an Envoy buffer (empty for a null pointer).
///
/// # Safety
/// `buffer` must be null or point to `length` readable bytes that stay valid and unchanged
/// while the returned slice lives (Envoy's views last until the hook returns).
unsafe fn view(buffer: &EnvoyBuffer) -> &[u8] {
    if buffer.ptr.is_null() || buffer.length == 0 {
        return &[];
    }
    // SAFETY: the caller guarantees `length` readable bytes at `ptr`, non-null here, for
    // as long as the slice (tied to `buffer`) lives.
    unsafe { std::slice::from_raw_parts(buffer.ptr.cast::<u8>(), buffer.length) }
}

/// Copies the key and value of a header Envoy returned.
///
/// # Safety
/// Both pointers must be null or point to their lengths in readable bytes.
unsafe fn copy_header(header: EnvoyHttpHeader) -> (Vec<u8>, Vec<u8>) {
    let key = EnvoyBuffer {
        ptr: header.key_ptr,
        length: header.key_length,
    };
    let value = EnvoyBuffer {
        ptr: header.value_ptr,
        length: header.value_length,
    };
    // SAFETY: forwarded from the caller's guarantee for the key.
    let key = unsafe { copy(key) };
    // SAFETY: forwarded from the caller's guarantee for the value.
    let value = unsafe { copy(value) };
    (key, value)
}

fn log_level(level: LogLevel) -> u32 {
    match level {
        LogLevel::Trace => 0,
        LogLevel::Debug => 1,
        LogLevel::Info => 2,
        LogLevel::Warn => 3,
        LogLevel::Error => 4,
        LogLevel::Critical => 5,
    }
}

fn log(level: LogLevel, message: &str) {
    // SAFETY: the message buffer is valid for the call; Envoy copies it into its log.
    unsafe {
        envoy_dynamic_module_callback_log(log_level(level), ModuleBuffer::of(message.as_bytes()))
    }
}

/// Text from bytes a client sent: invalid UTF-8 replaced, as the `.wasm` does.
fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes)
        .unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned())
}

/// Text from borrowed bytes a client sent: invalid UTF-8 replaced, as [`text`] does.
fn text_of(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(valid) => valid.to_owned(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
        })
}

/// The proxy while a configuration loads: logs and counts, and knows nothing of requests.
struct ConfigHost {
    config: *mut c_void,
    counters: Vec<Option<usize>>,
}

impl Host for ConfigHost {
    fn property(&self, _path: &[&str]) -> Option<Vec<u8>> {
        None
    }

    fn header(&self, _name: &str) -> Option<String> {
        None
    }

    fn headers(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    fn send_response(&self, _status: u16, _headers: &[(&str, &str)], _body: &[u8]) {}

    fn set_property(&self, _path: &[&str], _value: &[u8]) {}

    fn log(&self, level: LogLevel, message: &str) {
        log(level, message);
    }

    fn increment(&self, counter: Counter, delta: i64) {
        let position = Counter::ALL.iter().position(|each| *each == counter);
        let Some(Some(id)) = position.and_then(|at| self.counters.get(at)) else {
            return;
        };
        let value = u64::try_from(delta).unwrap_or(0);
        // SAFETY: `config` is the configuration object Envoy passed to the running
        // `on_http_filter_config_new`; `id` is a counter Envoy defined on it; no labels.
        unsafe {
            envoy_dynamic_module_callback_http_filter_config_increment_counter(
                self.config,
                *id,
                ptr::null(),
                0,
                value,
            )
        };
    }

    fn now_nanos(&self) -> u64 {
        now_nanos()
    }
}

/// The proxy during one request's hook.
struct EnvoyHost<'m> {
    filter: *mut c_void,
    module: &'m Module,
    /// Whether a local response was sent (a panic after it must not send another).
    responded: Cell<bool>,
}

impl EnvoyHost<'_> {
    /// Calls `visit` with views of every request header (nothing when Envoy has none):
    /// each entry points into Envoy's header map, valid until the hook returns. Up to
    /// [`HEADER_VIEWS`] entries are held on the stack.
    fn with_header_views(&self, visit: impl FnOnce(&[EnvoyHttpHeader])) {
        // SAFETY: `filter` is the live filter of the running hook.
        let count = unsafe {
            envoy_dynamic_module_callback_http_get_headers_size(self.filter, REQUEST_HEADERS)
        };
        if count == 0 {
            return;
        }
        let empty = EnvoyHttpHeader {
            key_ptr: ptr::null(),
            key_length: 0,
            value_ptr: ptr::null(),
            value_length: 0,
        };
        let mut stack = [empty; HEADER_VIEWS];
        let mut heap = Vec::new();
        let views = match stack.get_mut(..count) {
            Some(views) => views,
            None => {
                heap.resize(count, empty);
                heap.as_mut_slice()
            }
        };
        // SAFETY: `views` holds `count` writable entries, the number Envoy just reported
        // for this header map, which does not change within the hook.
        let found = unsafe {
            envoy_dynamic_module_callback_http_get_headers(
                self.filter,
                REQUEST_HEADERS,
                views.as_mut_ptr(),
            )
        };
        if found {
            visit(views);
        }
    }

    fn attribute_text(&self, attribute: module::Attribute) -> Option<Vec<u8>> {
        let mut result = EnvoyBuffer {
            ptr: ptr::null(),
            length: 0,
        };
        // SAFETY: `filter` is the live filter of the running hook; `result` is writable.
        let found = unsafe {
            envoy_dynamic_module_callback_http_filter_get_attribute_string(
                self.filter,
                attribute as u32,
                &mut result,
            )
        };
        // SAFETY: on success Envoy points `result` at bytes valid until the hook returns.
        found.then(|| unsafe { copy(result) })
    }

    fn attribute_integer(&self, attribute: module::Attribute) -> Option<u64> {
        let mut result = 0u64;
        // SAFETY: `filter` is the live filter of the running hook; `result` is writable.
        let found = unsafe {
            envoy_dynamic_module_callback_http_filter_get_attribute_int(
                self.filter,
                attribute as u32,
                &mut result,
            )
        };
        found.then_some(result)
    }

    fn filter_state(&self, key: &str) -> Option<Vec<u8>> {
        let mut result = EnvoyBuffer {
            ptr: ptr::null(),
            length: 0,
        };
        // SAFETY: `filter` is the live filter of the running hook; the key buffer lives
        // for the call; `result` is writable.
        let found = unsafe {
            envoy_dynamic_module_callback_http_get_filter_state_bytes(
                self.filter,
                ModuleBuffer::of(key.as_bytes()),
                &mut result,
            )
        };
        // SAFETY: on success Envoy points `result` at bytes valid until the hook returns.
        found.then(|| unsafe { copy(result) })
    }
}

impl Host for EnvoyHost<'_> {
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        match module::source(path) {
            Source::Text(attribute) => self.attribute_text(attribute),
            Source::Integer(attribute) => self
                .attribute_integer(attribute)
                .map(|value| value.to_le_bytes().to_vec()),
            Source::JwtPayload => self
                .filter_state(JWT_PAYLOAD_STATE)
                .and_then(|json| self.module.metadata(&json)),
            Source::Unavailable => None,
        }
    }

    fn header(&self, name: &str) -> Option<String> {
        let mut result = EnvoyBuffer {
            ptr: ptr::null(),
            length: 0,
        };
        // SAFETY: `filter` is the live filter of the running hook; the key buffer lives
        // for the call; `result` is writable; no count is asked for (null).
        let found = unsafe {
            envoy_dynamic_module_callback_http_get_header(
                self.filter,
                REQUEST_HEADERS,
                ModuleBuffer::of(name.as_bytes()),
                &mut result,
                0,
                ptr::null_mut(),
            )
        };
        if !found || result.ptr.is_null() {
            return None;
        }
        // SAFETY: Envoy points `result` at the value, valid until the hook returns.
        Some(text(unsafe { copy(result) }))
    }

    fn headers(&self) -> Vec<(String, String)> {
        let mut pairs = Vec::new();
        self.with_header_views(|views| {
            pairs = views
                .iter()
                .map(|header| {
                    // SAFETY: Envoy filled each entry with views of the header map, valid
                    // until the hook returns (or left it null, which reads as empty).
                    let (key, value) = unsafe { copy_header(*header) };
                    (text(key), text(value))
                })
                .collect();
        });
        pairs
    }

    fn named_headers(&self, names: &[String]) -> Option<Vec<(String, String)>> {
        let mut pairs = Vec::with_capacity(names.len());
        self.with_header_views(|views| {
            for header in views {
                let key = EnvoyBuffer {
                    ptr: header.key_ptr,
                    length: header.key_length,
                };
                // SAFETY: Envoy filled the entry with a view of the header map, valid until
                // the hook returns (or left it null, which reads as empty).
                let key = unsafe { view(&key) };
                let Some(name) = names
                    .iter()
                    .find(|name| key.eq_ignore_ascii_case(name.as_bytes()))
                else {
                    continue;
                };
                let value = EnvoyBuffer {
                    ptr: header.value_ptr,
                    length: header.value_length,
                };
                // SAFETY: as for the key.
                let value = unsafe { view(&value) };
                pairs.push((name.clone(), text_of(value)));
            }
        });
        Some(pairs)
    }

    fn send_response(&self, status: u16, headers: &[(&str, &str)], body: &[u8]) {
        let headers: Vec<ModuleHttpHeader> = headers
            .iter()
            .map(|(key, value)| ModuleHttpHeader {
                key_ptr: key.as_ptr().cast(),
                key_length: key.len(),
                value_ptr: value.as_ptr().cast(),
                value_length: value.len(),
            })
            .collect();
        self.responded.set(true);
        // SAFETY: `filter` is the live filter of the running hook; the header array, the
        // body and the details live for the call (Envoy copies them).
        unsafe {
            envoy_dynamic_module_callback_http_send_response(
                self.filter,
                u32::from(status),
                headers.as_ptr(),
                headers.len(),
                ModuleBuffer::of(body),
                ModuleBuffer::of(b"cordon_denied"),
            )
        };
    }

    fn set_property(&self, path: &[&str], value: &[u8]) {
        // One segment (the decision, on every request) needs no joined copy.
        let joined;
        let key = match path {
            [key] => *key,
            _ => {
                joined = path.join(".");
                joined.as_str()
            }
        };
        // SAFETY: `filter` is the live filter of the running hook; key and value live
        // for the call (Envoy copies them into filter state).
        unsafe {
            envoy_dynamic_module_callback_http_set_filter_state_bytes(
                self.filter,
                ModuleBuffer::of(key.as_bytes()),
                ModuleBuffer::of(value),
            )
        };
    }

    fn log(&self, level: LogLevel, message: &str) {
        log(level, message);
    }

    fn increment(&self, counter: Counter, delta: i64) {
        let Some(id) = self.module.counter_id(counter) else {
            return;
        };
        let value = u64::try_from(delta).unwrap_or(0);
        // SAFETY: `filter` is the live filter of the running hook, created from the
        // configuration that defined counter `id`; no labels.
        unsafe {
            envoy_dynamic_module_callback_http_filter_increment_counter(
                self.filter,
                id,
                ptr::null(),
                0,
                value,
            )
        };
    }

    fn now_nanos(&self) -> u64 {
        now_nanos()
    }
}

/// Called once when Envoy loads the library: installs a panic hook that writes the panic
/// to Envoy's log (the hooks catch it; the log says what happened) and returns the ABI
/// version.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    let installed = catch_unwind(|| {
        std::panic::set_hook(Box::new(|info| {
            log(LogLevel::Critical, &format!("cordon: panic: {info}"));
        }));
    });
    if installed.is_err() {
        return ptr::null();
    }
    ABI_VERSION.as_ptr().cast()
}

/// Defines cordon's counters on a new configuration; the ids, in [`Counter::ALL`] order.
fn define_counters(config: *mut c_void) -> Vec<Option<usize>> {
    Counter::ALL
        .iter()
        .map(|counter| {
            let mut id = 0usize;
            // SAFETY: `config` is the configuration object of the running
            // `on_http_filter_config_new`; the name lives for the call; `id` is writable.
            let result = unsafe {
                envoy_dynamic_module_callback_http_filter_config_define_counter(
                    config,
                    ModuleBuffer::of(counter.name().as_bytes()),
                    ptr::null(),
                    0,
                    &mut id,
                )
            };
            (result == 0).then_some(id)
        })
        .collect()
}

/// A new filter configuration (`filter_config`, the plugin JSON). Returns null, so Envoy
/// refuses the configuration, when it is invalid: fail closed, as the `.wasm` does.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    config_envoy: *mut c_void,
    name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> *const c_void {
    let loaded = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: Envoy passes the filter name and configuration valid for this hook.
        let name = unsafe { copy(name) };
        // SAFETY: as above.
        let bytes = unsafe { copy(config) };
        let counters = define_counters(config_envoy);
        let host = ConfigHost {
            config: config_envoy,
            counters: counters.clone(),
        };
        if name != b"cordon" {
            log(
                LogLevel::Critical,
                &format!(
                    "cordon: configuration rejected: filter_name: `{}` is not `cordon`",
                    String::from_utf8_lossy(&name)
                ),
            );
            host.increment(Counter::ConfigErrors, 1);
            return ptr::null();
        }
        // SAFETY: called on the main thread, as `on_http_filter_config_new` is.
        let workers = unsafe { envoy_dynamic_module_callback_get_concurrency() };
        let workers = usize::try_from(workers).unwrap_or(1);
        match Module::load(&bytes, &host, workers, counters) {
            Ok(module) => {
                host.increment(Counter::ConfigLoaded, 1);
                Box::into_raw(Box::new(module)).cast_const().cast()
            }
            Err(errors) => {
                log_config_errors(&host, &errors);
                ptr::null()
            }
        }
    }));
    loaded.unwrap_or_else(|_| {
        log(
            LogLevel::Critical,
            "cordon: configuration rejected: the filter panicked while loading it",
        );
        ptr::null()
    })
}

/// Releases a configuration: Envoy calls this once no stream uses it any more.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(config: *const c_void) {
    if config.is_null() {
        return;
    }
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `config` came from `Box::into_raw` in `on_http_filter_config_new` and
        // Envoy destroys it exactly once, after the last stream over it.
        drop(unsafe { Box::from_raw(config.cast_mut().cast::<Module>()) });
    }));
}

/// A new stream. Its state is the configuration's (one filter per worker thread), so the
/// stream's module pointer is the configuration itself: nothing is allocated per stream.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: *const c_void,
    _filter_envoy: *mut c_void,
) -> *const c_void {
    config
}

/// The request headers: the decision.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    filter_envoy: *mut c_void,
    filter_module: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    if cfg!(feature = "bench-empty") {
        return CONTINUE;
    }
    if filter_module.is_null() {
        return STOP_ITERATION;
    }
    // SAFETY: the module pointer is the `Module` from `on_http_filter_config_new`, which
    // Envoy keeps alive for as long as a stream over it exists.
    let module = unsafe { &*filter_module.cast::<Module>() };
    let host = EnvoyHost {
        filter: filter_envoy,
        module,
        responded: Cell::new(false),
    };
    let verdict = catch_unwind(AssertUnwindSafe(|| {
        if module.needs_claims() && host.filter_state(JWT_PAYLOAD_STATE).is_none() {
            // Without the filter that copies jwt_authn's payload, every token would read
            // as absent: refuse rather than judge without claims (fail closed).
            log(
                LogLevel::Error,
                "cordon: the policies read JWT claims but filter state cordon.jwt_payload is missing: put envoy.filters.http.set_filter_state before cordon (cordon config --native writes it); request denied",
            );
            return None;
        }
        #[cfg(feature = "panic-probe")]
        module::panic_probe(&host);
        module
            .filter()
            .map(|filter| filter.on_request_headers(&host))
    }));
    match verdict {
        Ok(Some(Verdict::Continue)) => CONTINUE,
        Ok(Some(Verdict::Stop)) => STOP_ITERATION,
        Ok(None) | Err(_) => {
            // Fail closed: the panic hook (or the line above) has logged what happened.
            host.increment(Counter::Denied, 1);
            if !host.responded.get() {
                let (status, body) = module.deny_response();
                host.send_response(status, &[("content-type", "text/plain")], body.as_bytes());
            }
            STOP_ITERATION
        }
    }
}

/// Request body frames: cordon decides on headers only.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    _filter_envoy: *mut c_void,
    _filter_module: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    CONTINUE
}

/// Request trailers: nothing to do.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    _filter_envoy: *mut c_void,
    _filter_module: *const c_void,
) -> u32 {
    CONTINUE
}

/// Response headers: nothing to do.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    _filter_envoy: *mut c_void,
    _filter_module: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    CONTINUE
}

/// Response body frames: nothing to do.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    _filter_envoy: *mut c_void,
    _filter_module: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    CONTINUE
}

/// Response trailers: nothing to do.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    _filter_envoy: *mut c_void,
    _filter_module: *const c_void,
) -> u32 {
    CONTINUE
}

/// The stream is complete: nothing to do.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    _filter_envoy: *mut c_void,
    _filter_module: *const c_void,
) {
}

/// The stream's filter is destroyed: it owned nothing.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_destroy(_filter_module: *const c_void) {}

// The hooks below belong to features cordon does not use (HTTP callouts and streams,
// schedulers, per-route configuration, watermarks); Envoy 1.40 resolves them when it
// loads a configuration, so they exist, and do nothing.

/// A local reply (cordon's own, or another filter's): let it go out.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_local_reply(
    _filter_envoy: *mut c_void,
    _filter_module: *const c_void,
    _response_code: u32,
    _details: EnvoyBuffer,
    _reset_imminent: bool,
) -> u32 {
    CONTINUE
}

/// Unused: cordon makes no HTTP callouts.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    _filter_envoy: *mut c_void,
    _filter_module: *const c_void,
    _callout_id: u64,
    _result: u32,
    _headers: *const c_void,
    _headers_size: usize,
    _body_chunks: *const c_void,
    _body_chunks_size: usize,
) {
}

/// Unused: cordon opens no HTTP streams.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _filter_envoy: *mut c_void,
    _filter_module: *const c_void,
    _stream_id: u64,
    _headers: *const c_void,
    _headers_size: usize,
    _end_stream: bool,
) {
}

/// Unused: cordon opens no HTTP streams.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _filter_envoy: *mut c_void,
    _filter_module: *const c_void,
    _stream_id: u64,
    _data: *const c_void,
    _data_count: usize,
    _end_stream: bool,
) {
}

/// Unused: cordon opens no HTTP streams.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _filter_envoy: *mut c_void,
    _filter_module: *const c_void,
    _stream_id: u64,
    _trailers: *const c_void,
    _trailers_size: usize,
) {
}

/// Unused: cordon opens no HTTP streams.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _filter_envoy: *mut c_void,
    _filter_module: *const c_void,
    _stream_id: u64,
) {
}

/// Unused: cordon opens no HTTP streams.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _filter_envoy: *mut c_void,
    _filter_module: *const c_void,
    _stream_id: u64,
    _reason: u32,
) {
}

/// Unused: cordon schedules nothing.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    _filter_envoy: *mut c_void,
    _filter_module: *const c_void,
    _event_id: u64,
) {
}

/// Unused: cordon schedules nothing.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    _config_envoy: *mut c_void,
    _config_module: *const c_void,
    _event_id: u64,
) {
}

/// Unused: cordon makes no HTTP callouts.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_callout_done(
    _config_envoy: *mut c_void,
    _config_module: *const c_void,
    _callout_id: u64,
    _result: u32,
    _headers: *const c_void,
    _headers_size: usize,
    _body_chunks: *const c_void,
    _body_chunks_size: usize,
) {
}

/// Unused: cordon opens no HTTP streams.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_headers(
    _config_envoy: *mut c_void,
    _config_module: *const c_void,
    _stream_id: u64,
    _headers: *const c_void,
    _headers_size: usize,
    _end_stream: bool,
) {
}

/// Unused: cordon opens no HTTP streams.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_data(
    _config_envoy: *mut c_void,
    _config_module: *const c_void,
    _stream_id: u64,
    _data: *const c_void,
    _data_count: usize,
    _end_stream: bool,
) {
}

/// Unused: cordon opens no HTTP streams.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_trailers(
    _config_envoy: *mut c_void,
    _config_module: *const c_void,
    _stream_id: u64,
    _trailers: *const c_void,
    _trailers_size: usize,
) {
}

/// Unused: cordon opens no HTTP streams.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_complete(
    _config_envoy: *mut c_void,
    _config_module: *const c_void,
    _stream_id: u64,
) {
}

/// Unused: cordon opens no HTTP streams.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_reset(
    _config_envoy: *mut c_void,
    _config_module: *const c_void,
    _stream_id: u64,
    _reason: u32,
) {
}

/// Unused: cordon writes no flow control.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _filter_envoy: *mut c_void,
    _filter_module: *const c_void,
) {
}

/// Unused: cordon writes no flow control.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _filter_envoy: *mut c_void,
    _filter_module: *const c_void,
) {
}

/// Per-route configuration: cordon has none, and refuses one (null) rather than ignore it.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_new(
    _name: EnvoyBuffer,
    _config: EnvoyBuffer,
) -> *const c_void {
    ptr::null()
}

/// Per-route configuration: never created.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_destroy(
    _config: *const c_void,
) {
}
