//! `env.proxy_*`: the proxy-wasm ABI 0.2.1 host calls, answered the way Envoy answers them.
//!
//! Signatures follow the SDK 0.2.5 `extern "C"` declarations (`usize` and pointers are `i32` on
//! wasm32, `u64`/`i64` are `i64`). Each answer is a status the SDK wrapper for that call accepts,
//! unless Envoy answers otherwise; the module docs of `abi.rs` say why.

use anyhow::Result;
use wasmtime::{Caller, Linker};

use super::guest::{read, return_scratch, split, write_u32, write_u64};
use crate::abi::{buffer, map, status, stream};
use crate::headers::HeaderMap;
use crate::metrics::MetricError;
use crate::outcome::{LocalResponse, LogLevel, Outcome};
use crate::state::{Phase, RepeatedHeaders, State};

type Ret = wasmtime::Result<u32>;

/// Shorthand for the answer to a guest pointer the host cannot use.
const BAD_MEMORY: Ret = Ok(status::INVALID_MEMORY_ACCESS);

pub(super) fn define(linker: &mut Linker<State>) -> Result<()> {
    const ENV: &str = "env";
    // Logging, time, timers, lifecycle.
    linker.func_wrap(ENV, "proxy_log", log)?;
    linker.func_wrap(ENV, "proxy_get_log_level", get_log_level)?;
    linker.func_wrap(
        ENV,
        "proxy_get_current_time_nanoseconds",
        get_current_time_nanoseconds,
    )?;
    linker.func_wrap(
        ENV,
        "proxy_set_tick_period_milliseconds",
        set_tick_period_milliseconds,
    )?;
    linker.func_wrap(ENV, "proxy_set_effective_context", set_effective_context)?;
    linker.func_wrap(ENV, "proxy_done", done)?;
    // Buffers.
    linker.func_wrap(ENV, "proxy_get_buffer_bytes", get_buffer_bytes)?;
    linker.func_wrap(ENV, "proxy_set_buffer_bytes", set_buffer_bytes)?;
    linker.func_wrap(ENV, "proxy_get_buffer_status", get_buffer_status)?;
    // Header maps.
    linker.func_wrap(ENV, "proxy_get_header_map_pairs", get_header_map_pairs)?;
    linker.func_wrap(ENV, "proxy_set_header_map_pairs", set_header_map_pairs)?;
    linker.func_wrap(ENV, "proxy_get_header_map_value", get_header_map_value)?;
    linker.func_wrap(ENV, "proxy_add_header_map_value", add_header_map_value)?;
    linker.func_wrap(
        ENV,
        "proxy_replace_header_map_value",
        replace_header_map_value,
    )?;
    linker.func_wrap(
        ENV,
        "proxy_remove_header_map_value",
        remove_header_map_value,
    )?;
    linker.func_wrap(ENV, "proxy_get_header_map_size", get_header_map_size)?;
    // Properties.
    linker.func_wrap(ENV, "proxy_get_property", get_property)?;
    linker.func_wrap(ENV, "proxy_set_property", set_property)?;
    // Stream control.
    linker.func_wrap(ENV, "proxy_send_local_response", send_local_response)?;
    linker.func_wrap(ENV, "proxy_continue_stream", continue_stream)?;
    linker.func_wrap(ENV, "proxy_close_stream", close_stream)?;
    // Metrics.
    linker.func_wrap(ENV, "proxy_define_metric", define_metric)?;
    linker.func_wrap(ENV, "proxy_increment_metric", increment_metric)?;
    linker.func_wrap(ENV, "proxy_record_metric", record_metric)?;
    linker.func_wrap(ENV, "proxy_get_metric", get_metric)?;
    // Shared data and queues.
    linker.func_wrap(ENV, "proxy_get_shared_data", get_shared_data)?;
    linker.func_wrap(ENV, "proxy_set_shared_data", set_shared_data)?;
    linker.func_wrap(ENV, "proxy_register_shared_queue", register_shared_queue)?;
    linker.func_wrap(ENV, "proxy_resolve_shared_queue", resolve_shared_queue)?;
    linker.func_wrap(ENV, "proxy_enqueue_shared_queue", enqueue_shared_queue)?;
    linker.func_wrap(ENV, "proxy_dequeue_shared_queue", dequeue_shared_queue)?;
    // Outbound calls: this host has no upstream clusters.
    linker.func_wrap(ENV, "proxy_http_call", http_call)?;
    linker.func_wrap(ENV, "proxy_grpc_call", grpc_call)?;
    linker.func_wrap(ENV, "proxy_grpc_stream", grpc_stream)?;
    linker.func_wrap(ENV, "proxy_grpc_send", grpc_send)?;
    linker.func_wrap(ENV, "proxy_grpc_cancel", grpc_cancel_or_close)?;
    linker.func_wrap(ENV, "proxy_grpc_close", grpc_cancel_or_close)?;
    linker.func_wrap(ENV, "proxy_get_status", get_status)?;
    linker.func_wrap(ENV, "proxy_call_foreign_function", call_foreign_function)?;
    Ok(())
}

// --- Logging, time, timers, lifecycle -------------------------------------------------------

fn log(mut caller: Caller<'_, State>, level: u32, ptr: u32, len: u32) -> Ret {
    let Some(level) = LogLevel::from_abi(level) else {
        return Ok(status::BAD_ARGUMENT);
    };
    let Some((mem, state)) = split(&mut caller) else {
        return BAD_MEMORY;
    };
    let Some(message) = read(mem, ptr, len) else {
        return BAD_MEMORY;
    };
    state.log(level, message);
    Ok(status::OK)
}

fn get_log_level(mut caller: Caller<'_, State>, ret: u32) -> Ret {
    let Some((mem, state)) = split(&mut caller) else {
        return BAD_MEMORY;
    };
    if !write_u32(mem, ret, state.log_level.to_abi()) {
        return BAD_MEMORY;
    }
    Ok(status::OK)
}

fn get_current_time_nanoseconds(mut caller: Caller<'_, State>, ret: u32) -> Ret {
    let Some((mem, state)) = split(&mut caller) else {
        return BAD_MEMORY;
    };
    if !write_u64(mem, ret, state.clock.now_nanos()) {
        return BAD_MEMORY;
    }
    Ok(status::OK)
}

fn set_tick_period_milliseconds(mut caller: Caller<'_, State>, period: u32) -> Ret {
    caller.data_mut().tick_period_ms = period;
    Ok(status::OK)
}

/// cpp-host answers BadArgument for a context that does not exist (the SDK accepts both).
fn set_effective_context(caller: Caller<'_, State>, context_id: u32) -> Ret {
    let state = caller.data();
    let alive = context_id == state.root_id || state.phase == Phase::Request(context_id);
    Ok(if alive {
        status::OK
    } else {
        status::BAD_ARGUMENT
    })
}

/// cpp-host answers NotFound unless a root context's `proxy_on_done` returned false earlier,
/// which the SDK's `done()` would panic on; this host never asks a root context to finish, so
/// it accepts the call.
fn done(_caller: Caller<'_, State>) -> Ret {
    Ok(status::OK)
}

// --- Buffers ----------------------------------------------------------------------------------

/// Envoy has the VM configuration always and the plugin configuration only inside
/// `proxy_on_configure`.
fn config_buffer(state: &State, kind: u32) -> Option<&[u8]> {
    match kind {
        buffer::VM_CONFIGURATION => Some(&state.vm_config),
        buffer::PLUGIN_CONFIGURATION if state.phase == Phase::Configure => {
            Some(&state.plugin_config)
        }
        _ => None,
    }
}

/// The request and response bodies exist in Envoy while headers are processed, empty: reading
/// one answers Ok with no data (the SDK reads None), as Envoy 1.40 was seen to do.
fn is_body(kind: u32) -> bool {
    kind == buffer::HTTP_REQUEST_BODY || kind == buffer::HTTP_RESPONSE_BODY
}

fn get_buffer_bytes(
    mut caller: Caller<'_, State>,
    kind: u32,
    start: u32,
    max: u32,
    ptr_ptr: u32,
    size_ptr: u32,
) -> Ret {
    if kind > buffer::MAX {
        return Ok(status::BAD_ARGUMENT);
    }
    if is_body(kind) {
        return Ok(status::OK);
    }
    let state = caller.data_mut();
    let Some(data) = config_buffer(state, kind) else {
        return Ok(status::NOT_FOUND);
    };
    // Clamp as cpp-host does ("don't overread"): the SDK asks for `usize::MAX` bytes.
    let start = start as usize;
    let len = data.len().saturating_sub(start).min(max as usize);
    if len == 0 {
        // cpp-host answers Ok without touching the out-parameters; the SDK reads None.
        return Ok(status::OK);
    }
    let mut scratch = std::mem::take(&mut state.scratch);
    scratch.clear();
    scratch.extend_from_slice(
        config_buffer(state, kind)
            .and_then(|d| d.get(start..start + len))
            .unwrap_or_default(),
    );
    state.scratch = scratch;
    return_scratch(&mut caller, ptr_ptr, size_ptr)
}

fn set_buffer_bytes(
    mut caller: Caller<'_, State>,
    kind: u32,
    _start: u32,
    _size: u32,
    ptr: u32,
    len: u32,
) -> Ret {
    if kind > buffer::MAX {
        return Ok(status::BAD_ARGUMENT);
    }
    let Some((mem, state)) = split(&mut caller) else {
        return BAD_MEMORY;
    };
    if config_buffer(state, kind).is_some() {
        // The configuration buffers are read-only views in Envoy.
        return Ok(status::BAD_ARGUMENT);
    }
    if read(mem, ptr, len).is_none() {
        return BAD_MEMORY;
    }
    Ok(status::NOT_FOUND)
}

fn get_buffer_status(
    mut caller: Caller<'_, State>,
    kind: u32,
    len_ptr: u32,
    flags_ptr: u32,
) -> Ret {
    if kind > buffer::MAX {
        return Ok(status::BAD_ARGUMENT);
    }
    let Some((mem, state)) = split(&mut caller) else {
        return BAD_MEMORY;
    };
    let len = if is_body(kind) {
        Some(0)
    } else {
        config_buffer(state, kind).map(<[u8]>::len)
    };
    let Some(len) = len else {
        return Ok(status::NOT_FOUND);
    };
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    if !(write_u32(mem, len_ptr, len) && write_u32(mem, flags_ptr, 0)) {
        return BAD_MEMORY;
    }
    Ok(status::OK)
}

// --- Header maps ------------------------------------------------------------------------------

/// The map `kind` names, if Envoy has it at this point: the request headers during a request,
/// and the local reply's headers once that reply is on its way. No other map exists while a
/// request's headers are processed.
fn header_map(outcome: &mut Outcome, in_request: bool, kind: u32) -> Option<&mut HeaderMap> {
    if !in_request {
        return None;
    }
    match kind {
        map::REQUEST_HEADERS => Some(&mut outcome.request_headers),
        map::RESPONSE_HEADERS if outcome.response_available => Some(&mut outcome.response_headers),
        _ => None,
    }
}

/// Envoy answers every other map as empty pairs, not as an error.
fn get_header_map_pairs(
    mut caller: Caller<'_, State>,
    kind: u32,
    ptr_ptr: u32,
    size_ptr: u32,
) -> Ret {
    if kind > map::MAX {
        return Ok(status::BAD_ARGUMENT);
    }
    let state = caller.data_mut();
    let in_request = state.in_request();
    let State {
        outcome, scratch, ..
    } = state;
    scratch.clear();
    if let Some(headers) = header_map(outcome, in_request, kind) {
        headers.encode_into(scratch);
    }
    return_scratch(&mut caller, ptr_ptr, size_ptr)
}

fn set_header_map_pairs(mut caller: Caller<'_, State>, kind: u32, ptr: u32, len: u32) -> Ret {
    if kind > map::MAX {
        return Ok(status::BAD_ARGUMENT);
    }
    let Some((mem, state)) = split(&mut caller) else {
        return BAD_MEMORY;
    };
    let Some(pairs) = read(mem, ptr, len) else {
        return BAD_MEMORY;
    };
    let in_request = state.in_request();
    let Some(headers) = header_map(&mut state.outcome, in_request, kind) else {
        return Ok(status::BAD_ARGUMENT);
    };
    headers.replace_all_from_pairs(pairs);
    Ok(status::OK)
}

fn get_header_map_value(
    mut caller: Caller<'_, State>,
    kind: u32,
    key_ptr: u32,
    key_len: u32,
    ptr_ptr: u32,
    size_ptr: u32,
) -> Ret {
    if kind > map::MAX {
        return Ok(status::BAD_ARGUMENT);
    }
    let Some((mem, state)) = split(&mut caller) else {
        return BAD_MEMORY;
    };
    let Some(key) = read(mem, key_ptr, key_len) else {
        return BAD_MEMORY;
    };
    let in_request = state.in_request();
    let State {
        outcome,
        scratch,
        repeated_headers,
        ..
    } = state;
    let Some(headers) = header_map(outcome, in_request, kind) else {
        return Ok(status::BAD_ARGUMENT);
    };
    scratch.clear();
    let found = match repeated_headers {
        RepeatedHeaders::First => match headers.get_bytes(key) {
            Some(value) => {
                scratch.extend_from_slice(value);
                true
            }
            None => false,
        },
        RepeatedHeaders::Joined => headers.join_values(key, scratch),
    };
    if !found {
        return Ok(status::NOT_FOUND);
    }
    return_scratch(&mut caller, ptr_ptr, size_ptr)
}

/// add and replace share their checks; `replace` picks the operation.
fn edit_header(
    caller: &mut Caller<'_, State>,
    kind: u32,
    key: (u32, u32),
    value: (u32, u32),
    replace: bool,
) -> Ret {
    if kind > map::MAX {
        return Ok(status::BAD_ARGUMENT);
    }
    let Some((mem, state)) = split(caller) else {
        return BAD_MEMORY;
    };
    let (Some(key), Some(value)) = (read(mem, key.0, key.1), read(mem, value.0, value.1)) else {
        return BAD_MEMORY;
    };
    let in_request = state.in_request();
    let Some(headers) = header_map(&mut state.outcome, in_request, kind) else {
        return Ok(status::BAD_ARGUMENT);
    };
    if replace {
        headers.replace(key, value);
    } else {
        headers.append(key, value);
    }
    Ok(status::OK)
}

fn add_header_map_value(
    mut caller: Caller<'_, State>,
    kind: u32,
    key_ptr: u32,
    key_len: u32,
    value_ptr: u32,
    value_len: u32,
) -> Ret {
    edit_header(
        &mut caller,
        kind,
        (key_ptr, key_len),
        (value_ptr, value_len),
        false,
    )
}

fn replace_header_map_value(
    mut caller: Caller<'_, State>,
    kind: u32,
    key_ptr: u32,
    key_len: u32,
    value_ptr: u32,
    value_len: u32,
) -> Ret {
    edit_header(
        &mut caller,
        kind,
        (key_ptr, key_len),
        (value_ptr, value_len),
        true,
    )
}

fn remove_header_map_value(
    mut caller: Caller<'_, State>,
    kind: u32,
    key_ptr: u32,
    key_len: u32,
) -> Ret {
    if kind > map::MAX {
        return Ok(status::BAD_ARGUMENT);
    }
    let Some((mem, state)) = split(&mut caller) else {
        return BAD_MEMORY;
    };
    let Some(key) = read(mem, key_ptr, key_len) else {
        return BAD_MEMORY;
    };
    let in_request = state.in_request();
    let Some(headers) = header_map(&mut state.outcome, in_request, kind) else {
        return Ok(status::BAD_ARGUMENT);
    };
    headers.remove(key);
    Ok(status::OK)
}

fn get_header_map_size(mut caller: Caller<'_, State>, kind: u32, ret: u32) -> Ret {
    if kind > map::MAX {
        return Ok(status::BAD_ARGUMENT);
    }
    let Some((mem, state)) = split(&mut caller) else {
        return BAD_MEMORY;
    };
    let in_request = state.in_request();
    let size = header_map(&mut state.outcome, in_request, kind).map_or(0, |h| h.len());
    if !write_u32(mem, ret, u32::try_from(size).unwrap_or(u32::MAX)) {
        return BAD_MEMORY;
    }
    Ok(status::OK)
}

// --- Properties -------------------------------------------------------------------------------

fn get_property(
    mut caller: Caller<'_, State>,
    path_ptr: u32,
    path_len: u32,
    ptr_ptr: u32,
    size_ptr: u32,
) -> Ret {
    let Some((mem, state)) = split(&mut caller) else {
        return BAD_MEMORY;
    };
    let Some(path) = read(mem, path_ptr, path_len) else {
        return BAD_MEMORY;
    };
    if !state.property_into_scratch(path) {
        return Ok(status::NOT_FOUND);
    }
    return_scratch(&mut caller, ptr_ptr, size_ptr)
}

/// Envoy stores the value as filter state `wasm.<path>`, and has nowhere to store it outside a
/// request: it answers NotFound there, which the SDK's `set_property` panics on.
fn set_property(
    mut caller: Caller<'_, State>,
    path_ptr: u32,
    path_len: u32,
    value_ptr: u32,
    value_len: u32,
) -> Ret {
    let Some((mem, state)) = split(&mut caller) else {
        return BAD_MEMORY;
    };
    let (Some(path), Some(value)) = (
        read(mem, path_ptr, path_len),
        read(mem, value_ptr, value_len),
    ) else {
        return BAD_MEMORY;
    };
    if !state.in_request() {
        return Ok(status::NOT_FOUND);
    }
    let set = &mut state.outcome.properties_set;
    match set.iter_mut().find(|(k, _)| k == path) {
        Some((_, old)) => {
            old.clear();
            old.extend_from_slice(value);
        }
        None => set.push((path.to_vec(), value.to_vec())),
    }
    Ok(status::OK)
}

// --- Stream control ---------------------------------------------------------------------------

#[allow(clippy::too_many_arguments)] // The ABI's signature.
fn send_local_response(
    mut caller: Caller<'_, State>,
    status_code: u32,
    details_ptr: u32,
    details_len: u32,
    body_ptr: u32,
    body_len: u32,
    headers_ptr: u32,
    headers_len: u32,
    grpc_status: i32,
) -> Ret {
    let Some((mem, state)) = split(&mut caller) else {
        return BAD_MEMORY;
    };
    let (Some(details), Some(body), Some(pairs)) = (
        read(mem, details_ptr, details_len),
        read(mem, body_ptr, body_len),
        read(mem, headers_ptr, headers_len),
    ) else {
        return BAD_MEMORY;
    };
    // Envoy replies once per stream; a second reply, or one outside a request, goes nowhere.
    if state.in_request() && state.outcome.local_response.is_none() {
        let mut headers = Vec::new();
        // cpp-host's `toPairs` reads malformed pairs as no headers.
        let parsed = crate::encode::for_each_pair(pairs, |k, v| {
            headers.push((
                String::from_utf8_lossy(k).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            ));
        });
        if parsed.is_err() {
            headers.clear();
        }
        state.outcome.local_response = Some(LocalResponse {
            status: status_code,
            details: String::from_utf8_lossy(details).into_owned(),
            body: body.to_vec(),
            headers,
            grpc_status: (grpc_status >= 0).then_some(grpc_status),
        });
    }
    Ok(status::OK)
}

fn continue_stream(mut caller: Caller<'_, State>, kind: u32) -> Ret {
    if kind > stream::MAX {
        return Ok(status::BAD_ARGUMENT);
    }
    let state = caller.data_mut();
    if state.in_request() {
        state.outcome.continued = true;
    }
    Ok(status::OK)
}

fn close_stream(mut caller: Caller<'_, State>, kind: u32) -> Ret {
    if kind > stream::MAX {
        return Ok(status::BAD_ARGUMENT);
    }
    let state = caller.data_mut();
    if state.in_request() {
        state.outcome.closed = true;
    }
    Ok(status::OK)
}

// --- Metrics ----------------------------------------------------------------------------------

fn metric_status(error: MetricError) -> u32 {
    match error {
        MetricError::NotFound => status::NOT_FOUND,
        MetricError::BadArgument => status::BAD_ARGUMENT,
    }
}

fn define_metric(
    mut caller: Caller<'_, State>,
    kind: u32,
    name_ptr: u32,
    name_len: u32,
    ret: u32,
) -> Ret {
    let Some((mem, state)) = split(&mut caller) else {
        return BAD_MEMORY;
    };
    let Some(name) = read(mem, name_ptr, name_len) else {
        return BAD_MEMORY;
    };
    let id = match state.metrics.define(kind, name) {
        Ok(id) => id,
        Err(e) => return Ok(metric_status(e)),
    };
    if !write_u32(mem, ret, id) {
        return BAD_MEMORY;
    }
    Ok(status::OK)
}

fn increment_metric(mut caller: Caller<'_, State>, id: u32, offset: i64) -> Ret {
    Ok(match caller.data_mut().metrics.increment(id, offset) {
        Ok(()) => status::OK,
        Err(e) => metric_status(e),
    })
}

fn record_metric(mut caller: Caller<'_, State>, id: u32, value: u64) -> Ret {
    Ok(match caller.data_mut().metrics.record(id, value) {
        Ok(()) => status::OK,
        Err(e) => metric_status(e),
    })
}

fn get_metric(mut caller: Caller<'_, State>, id: u32, ret: u32) -> Ret {
    let Some((mem, state)) = split(&mut caller) else {
        return BAD_MEMORY;
    };
    let value = match state.metrics.get(id) {
        Ok(value) => value,
        Err(e) => return Ok(metric_status(e)),
    };
    if !write_u64(mem, ret, value) {
        return BAD_MEMORY;
    }
    Ok(status::OK)
}

// --- Shared data and queues -------------------------------------------------------------------

fn get_shared_data(
    mut caller: Caller<'_, State>,
    key_ptr: u32,
    key_len: u32,
    ptr_ptr: u32,
    size_ptr: u32,
    cas_ptr: u32,
) -> Ret {
    let Some((mem, state)) = split(&mut caller) else {
        return BAD_MEMORY;
    };
    let Some(key) = read(mem, key_ptr, key_len) else {
        return BAD_MEMORY;
    };
    let State {
        shared, scratch, ..
    } = state;
    let Some((value, cas)) = shared.get(key) else {
        return Ok(status::NOT_FOUND);
    };
    scratch.clear();
    scratch.extend_from_slice(value);
    let answered = return_scratch(&mut caller, ptr_ptr, size_ptr)?;
    if answered != status::OK {
        return Ok(answered);
    }
    let Some((mem, _)) = split(&mut caller) else {
        return BAD_MEMORY;
    };
    if !write_u32(mem, cas_ptr, cas) {
        return BAD_MEMORY;
    }
    Ok(status::OK)
}

fn set_shared_data(
    mut caller: Caller<'_, State>,
    key_ptr: u32,
    key_len: u32,
    value_ptr: u32,
    value_len: u32,
    cas: u32,
) -> Ret {
    let Some((mem, state)) = split(&mut caller) else {
        return BAD_MEMORY;
    };
    let (Some(key), Some(value)) = (read(mem, key_ptr, key_len), read(mem, value_ptr, value_len))
    else {
        return BAD_MEMORY;
    };
    Ok(match state.shared.set(key, value, cas) {
        Ok(()) => status::OK,
        Err(crate::shared::CasMismatch) => status::CAS_MISMATCH,
    })
}

fn register_shared_queue(
    mut caller: Caller<'_, State>,
    name_ptr: u32,
    name_len: u32,
    ret: u32,
) -> Ret {
    let Some((mem, state)) = split(&mut caller) else {
        return BAD_MEMORY;
    };
    let Some(name) = read(mem, name_ptr, name_len) else {
        return BAD_MEMORY;
    };
    let id = state.shared.register_queue(name);
    if !write_u32(mem, ret, id) {
        return BAD_MEMORY;
    }
    Ok(status::OK)
}

fn resolve_shared_queue(
    mut caller: Caller<'_, State>,
    vm_id_ptr: u32,
    vm_id_len: u32,
    name_ptr: u32,
    name_len: u32,
    ret: u32,
) -> Ret {
    let Some((mem, state)) = split(&mut caller) else {
        return BAD_MEMORY;
    };
    let (Some(_vm_id), Some(name)) = (
        read(mem, vm_id_ptr, vm_id_len),
        read(mem, name_ptr, name_len),
    ) else {
        return BAD_MEMORY;
    };
    let Some(id) = state.shared.resolve_queue(name) else {
        return Ok(status::NOT_FOUND);
    };
    if !write_u32(mem, ret, id) {
        return BAD_MEMORY;
    }
    Ok(status::OK)
}

fn enqueue_shared_queue(mut caller: Caller<'_, State>, id: u32, ptr: u32, len: u32) -> Ret {
    let Some((mem, state)) = split(&mut caller) else {
        return BAD_MEMORY;
    };
    let Some(value) = read(mem, ptr, len) else {
        return BAD_MEMORY;
    };
    Ok(match state.shared.enqueue(id, value) {
        Some(()) => status::OK,
        None => status::NOT_FOUND,
    })
}

fn dequeue_shared_queue(
    mut caller: Caller<'_, State>,
    id: u32,
    ptr_ptr: u32,
    size_ptr: u32,
) -> Ret {
    let state = caller.data_mut();
    let value = match state.shared.dequeue(id) {
        None => return Ok(status::NOT_FOUND),
        Some(None) => return Ok(status::EMPTY),
        Some(Some(value)) => value,
    };
    state.scratch.clear();
    state.scratch.extend_from_slice(&value);
    return_scratch(&mut caller, ptr_ptr, size_ptr)
}

// --- Outbound calls ---------------------------------------------------------------------------

/// Checks that every `(ptr, len)` region lies in guest memory.
fn regions_ok(caller: &mut Caller<'_, State>, regions: &[(u32, u32)]) -> bool {
    match split(caller) {
        Some((mem, _)) => regions.iter().all(|&(p, l)| read(mem, p, l).is_some()),
        None => false,
    }
}

/// Envoy answers BadArgument for a cluster it does not know, and this host knows none.
#[allow(clippy::too_many_arguments)] // The ABI's signature.
fn http_call(
    mut caller: Caller<'_, State>,
    upstream_ptr: u32,
    upstream_len: u32,
    headers_ptr: u32,
    headers_len: u32,
    body_ptr: u32,
    body_len: u32,
    trailers_ptr: u32,
    trailers_len: u32,
    _timeout_ms: u32,
    _token_ptr: u32,
) -> Ret {
    let regions = [
        (upstream_ptr, upstream_len),
        (headers_ptr, headers_len),
        (body_ptr, body_len),
        (trailers_ptr, trailers_len),
    ];
    if !regions_ok(&mut caller, &regions) {
        return BAD_MEMORY;
    }
    Ok(status::BAD_ARGUMENT)
}

/// InternalFailure: one of the two failures the SDK's `dispatch_grpc_call` accepts.
#[allow(clippy::too_many_arguments)] // The ABI's signature.
fn grpc_call(
    mut caller: Caller<'_, State>,
    service_ptr: u32,
    service_len: u32,
    service_name_ptr: u32,
    service_name_len: u32,
    method_ptr: u32,
    method_len: u32,
    metadata_ptr: u32,
    metadata_len: u32,
    message_ptr: u32,
    message_len: u32,
    _timeout_ms: u32,
    _token_ptr: u32,
) -> Ret {
    let regions = [
        (service_ptr, service_len),
        (service_name_ptr, service_name_len),
        (method_ptr, method_len),
        (metadata_ptr, metadata_len),
        (message_ptr, message_len),
    ];
    if !regions_ok(&mut caller, &regions) {
        return BAD_MEMORY;
    }
    Ok(status::INTERNAL_FAILURE)
}

#[allow(clippy::too_many_arguments)] // The ABI's signature.
fn grpc_stream(
    mut caller: Caller<'_, State>,
    service_ptr: u32,
    service_len: u32,
    service_name_ptr: u32,
    service_name_len: u32,
    method_ptr: u32,
    method_len: u32,
    metadata_ptr: u32,
    metadata_len: u32,
    _token_ptr: u32,
) -> Ret {
    let regions = [
        (service_ptr, service_len),
        (service_name_ptr, service_name_len),
        (method_ptr, method_len),
        (metadata_ptr, metadata_len),
    ];
    if !regions_ok(&mut caller, &regions) {
        return BAD_MEMORY;
    }
    Ok(status::INTERNAL_FAILURE)
}

/// No call was ever started, so every token is unknown.
fn grpc_send(
    mut caller: Caller<'_, State>,
    _token: u32,
    ptr: u32,
    len: u32,
    _end_stream: u32,
) -> Ret {
    if !regions_ok(&mut caller, &[(ptr, len)]) {
        return BAD_MEMORY;
    }
    Ok(status::NOT_FOUND)
}

fn grpc_cancel_or_close(_caller: Caller<'_, State>, _token: u32) -> Ret {
    Ok(status::NOT_FOUND)
}

/// Status of the last gRPC call: none was made, so code 0 and no message.
fn get_status(mut caller: Caller<'_, State>, code_ptr: u32, ptr_ptr: u32, size_ptr: u32) -> Ret {
    let Some((mem, _)) = split(&mut caller) else {
        return BAD_MEMORY;
    };
    if !(write_u32(mem, code_ptr, 0) && write_u32(mem, ptr_ptr, 0) && write_u32(mem, size_ptr, 0)) {
        return BAD_MEMORY;
    }
    Ok(status::OK)
}

/// No foreign functions are registered; NotFound is what Envoy answers for an unknown name.
fn call_foreign_function(
    mut caller: Caller<'_, State>,
    name_ptr: u32,
    name_len: u32,
    args_ptr: u32,
    args_len: u32,
    _ret_ptr: u32,
    _ret_len: u32,
) -> Ret {
    if !regions_ok(&mut caller, &[(name_ptr, name_len), (args_ptr, args_len)]) {
        return BAD_MEMORY;
    }
    Ok(status::NOT_FOUND)
}
