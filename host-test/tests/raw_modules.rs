//! Edge cases no SDK module produces, with hand-written modules in the WebAssembly text
//! format: load-time refusals, a failing guest allocator, a trapping one.

use cordon_host::encode::encode_pairs;
use cordon_host::{HandleError, Host, HttpExchange};

/// A minimal proxy-wasm module whose `proxy_on_request_headers` asks for the request header
/// pairs, then reports the status under property `status` and the returned bytes under
/// property `pairs`. `alloc` is the body of its allocator.
fn module(alloc: &str) -> String {
    format!(
        r#"(module
  (import "env" "proxy_get_header_map_pairs" (func $pairs (param i32 i32 i32) (result i32)))
  (import "env" "proxy_set_property" (func $set (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "status")
  (data (i32.const 6) "pairs")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) {alloc})
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (i32.store (i32.const 16) (call $pairs (i32.const 0) (i32.const 32) (i32.const 36)))
    (drop (call $set (i32.const 0) (i32.const 6) (i32.const 16) (i32.const 4)))
    (drop (call $set (i32.const 6) (i32.const 5) (i32.load (i32.const 32)) (i32.load (i32.const 36))))
    (i32.const 0))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_delete") (param i32)))"#
    )
}

fn request() -> HttpExchange {
    HttpExchange::get("/a", "h").header("X-Two", "2")
}

#[test]
fn pairs_land_in_memory_from_the_guest_allocator() {
    let host = Host::load(module("(i32.const 1024)").as_bytes()).unwrap();
    let mut plugin = host.start(b"", b"").unwrap();
    let outcome = plugin.handle(&request()).unwrap();
    assert_eq!(
        outcome.property_set(["status"]),
        Some(&0u32.to_le_bytes()[..])
    );
    let want = encode_pairs(&[
        (":authority", "h"),
        (":path", "/a"),
        (":method", "GET"),
        (":scheme", "http"),
        ("x-two", "2"),
    ]);
    assert_eq!(outcome.property_set(["pairs"]), Some(&want[..]));
}

#[test]
fn a_null_allocation_answers_invalid_memory_access() {
    let host = Host::load(module("(i32.const 0)").as_bytes()).unwrap();
    let mut plugin = host.start(b"", b"").unwrap();
    let outcome = plugin.handle(&request()).unwrap();
    assert_eq!(
        outcome.property_set(["status"]),
        Some(&6u32.to_le_bytes()[..])
    );
}

#[test]
fn an_allocation_past_the_end_of_memory_answers_invalid_memory_access() {
    let host = Host::load(module("(i32.const 65530)").as_bytes()).unwrap();
    let mut plugin = host.start(b"", b"").unwrap();
    let outcome = plugin.handle(&request()).unwrap();
    assert_eq!(
        outcome.property_set(["status"]),
        Some(&6u32.to_le_bytes()[..])
    );
}

#[test]
fn a_trapping_allocator_traps_the_callback_that_needed_it() {
    let host = Host::load(module("(unreachable)").as_bytes()).unwrap();
    let mut plugin = host.start(b"", b"").unwrap();
    match plugin.handle(&request()) {
        Err(HandleError::Trap {
            callback, message, ..
        }) => {
            assert_eq!(callback, "proxy_on_request_headers");
            assert!(message.contains("unreachable"), "{message}");
        }
        other => panic!("expected a trap, got {other:?}"),
    }
}

#[test]
fn a_module_without_the_abi_marker_is_refused() {
    let wat = module("(i32.const 0)").replace(r#"(func (export "proxy_abi_version_0_2_1"))"#, "");
    let error = Host::load(wat.as_bytes()).err().unwrap();
    assert!(
        error.to_string().contains("proxy_abi_version_0_2_1"),
        "{error:#}"
    );
}

#[test]
fn an_import_the_host_does_not_serve_is_refused_at_load() {
    let wat = module("(i32.const 0)").replace(
        "(memory",
        r#"(import "env" "proxy_teleport" (func (param i32) (result i32)))
  (memory"#,
    );
    let error = Host::load(wat.as_bytes()).err().unwrap();
    assert!(format!("{error:#}").contains("proxy_teleport"), "{error:#}");
}

#[test]
fn unknown_wasi_functions_answer_enosys() {
    let wat = module("(i32.const 1024)")
        .replace(
            "(memory",
            r#"(import "wasi_snapshot_preview1" "path_open"
    (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (memory"#,
        )
        .replace(
            "(i32.store (i32.const 16) (call $pairs",
            "(i32.store (i32.const 20) (call $open (i32.const 0) (i32.const 0) (i32.const 0) \
             (i32.const 0) (i32.const 0) (i64.const 0) (i64.const 0) (i32.const 0) (i32.const 0)))\n    \
             (drop (call $set (i32.const 11) (i32.const 4) (i32.const 20) (i32.const 4)))\n    \
             (i32.store (i32.const 16) (call $pairs",
        )
        .replace("(data (i32.const 6)", "(data (i32.const 11) \"open\")\n  (data (i32.const 6)");
    let host = Host::load(wat.as_bytes()).unwrap();
    let mut plugin = host.start(b"", b"").unwrap();
    let outcome = plugin.handle(&request()).unwrap();
    assert_eq!(
        outcome.property_set(["open"]),
        Some(&52u32.to_le_bytes()[..])
    );
}
