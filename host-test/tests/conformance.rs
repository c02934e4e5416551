//! Conformance of the host against a real SDK 0.2.x module (`tests/guest`), built for
//! wasm32-wasip1 the way the cordon filter is, then driven through `cordon_host::Host`.
//!
//! The guest logs one `key=value` fact per line; the tests assert on those lines and on what
//! the host recorded.

// Helpers of a test binary fail the test the way a `#[test]` body does.
#![expect(
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail loudly, like the #[test] functions they serve"
)]

use std::sync::OnceLock;
use std::time::Instant;

use cordon_host::encode::{encode_bool, encode_double, encode_int64, encode_pairs, encode_string};
use cordon_host::{
    Action, Clock, HandleError, Host, HttpExchange, LogLevel, MetricType, Plugin, Properties,
    RepeatedHeaders, StartOptions,
};

#[path = "support/guest.rs"]
mod guest;

const JWT_PAYLOAD: [&str; 4] = [
    "metadata",
    "filter_metadata",
    "envoy.filters.http.jwt_authn",
    "payload",
];

fn host() -> &'static Host {
    static HOST: OnceLock<Host> = OnceLock::new();
    HOST.get_or_init(|| Host::load(guest::wasm()).expect("the guest loads"))
}

fn options(plugin_config: &str) -> StartOptions {
    let mut options = StartOptions::new(b"vm-config".to_vec(), plugin_config.as_bytes().to_vec());
    options.log_level = LogLevel::Info;
    options
        .properties
        .insert(["plugin_name"], encode_string("cordon-test"));
    options
}

fn start(plugin_config: &str) -> Plugin {
    host()
        .start_with(options(plugin_config))
        .expect("the plugin starts")
}

/// The request most tests send: pseudo-headers, a repeated header, mixed-case names, and one
/// property of each encoding.
fn exchange() -> HttpExchange {
    let payload = encode_pairs(&[
        ("sub", encode_string("frontend")),
        ("scope", encode_string("ledger:list reports:read")),
        ("iat", encode_double(1_700_000_000.5)),
    ]);
    HttpExchange::get("/reports?x=1", "ledger.shop")
        .header("x-multi", "1")
        .header("X-Single", "only")
        .header("x-multi", "2")
        .header("x-replace-me", "old")
        .header("x-remove-me", "gone")
        .property(["source", "address"], encode_string("10.0.0.7:51234"))
        .property(["destination", "port"], encode_int64(8443))
        .property(["connection", "mtls"], encode_bool(true))
        .property(
            ["connection", "uri_san_peer_certificate"],
            encode_string("spiffe://cluster.local/ns/shop/sa/frontend"),
        )
        .property(JWT_PAYLOAD, payload)
        .property(
            JWT_PAYLOAD.iter().copied().chain(["scope"]),
            encode_string("ledger:list reports:read"),
        )
        .property(
            JWT_PAYLOAD.iter().copied().chain(["iat"]),
            encode_double(1_700_000_000.5),
        )
        .property(["cordon", "empty"], Vec::new())
}

fn messages(logs: &[cordon_host::LogRecord]) -> Vec<String> {
    logs.iter().map(|l| l.message.clone()).collect()
}

/// The value after `key=` in the first log line starting with `key=`.
fn fact<'a>(lines: &'a [String], key: &str) -> &'a str {
    let prefix = format!("{key}=");
    lines
        .iter()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no log line `{prefix}...` in {lines:#?}"))
}

#[test]
fn start_runs_vm_start_then_configure_and_reports_acceptance() {
    let plugin = start("verbose");
    let report = plugin.start_report();
    assert!(report.vm_started && report.accepted);
    assert!(plugin.is_configured());
    let lines = messages(&report.logs);
    assert_eq!(fact(&lines, "vm_start size"), "9 config=vm-config");
    // The plugin configuration is only readable inside on_configure, as in Envoy.
    assert_eq!(fact(&lines, "vm_start plugin_config"), "none");
    assert_eq!(fact(&lines, "configure size"), "7 config=verbose");
    assert_eq!(fact(&lines, "configure plugin_name"), "cordon-test");
    // No request, so no request properties.
    assert_eq!(fact(&lines, "configure source.address"), "<none>");
    // Envoy hands out a new id for each definition, even of the same name.
    assert_eq!(fact(&lines, "configure metric_redefined_same_id"), "false");
    assert_eq!(lines.last().map(String::as_str), Some("configure accepted"));
    assert_eq!(plugin.tick_period_ms(), 1000);
}

#[test]
fn a_rejected_configuration_is_reported_and_blocks_requests_until_reconfigured() {
    let mut plugin = start("reject");
    let report = plugin.start_report().clone();
    assert!(report.vm_started);
    assert!(!report.accepted);
    assert!(messages(&report.logs).contains(&"configure rejected".to_string()));
    assert_eq!(
        plugin.handle(&exchange()).err(),
        Some(HandleError::NotConfigured)
    );

    let again = plugin.reconfigure(b"quiet").expect("reconfigure runs");
    assert!(again.accepted);
    assert_eq!(
        fact(&messages(&again.logs), "configure size"),
        "5 config=quiet"
    );
    let outcome = plugin
        .handle(&exchange())
        .expect("served after reconfiguration");
    assert_eq!(outcome.action(), Action::Continue);

    let rejected = plugin.reconfigure(b"reject").expect("reconfigure runs");
    assert!(!rejected.accepted && !plugin.is_configured());
}

#[test]
fn headers_pairs_show_every_occurrence_and_single_values_the_first() {
    let mut plugin = start("verbose");
    let outcome = plugin.handle(&exchange()).expect("served");
    let lines = messages(outcome.logs());
    assert_eq!(
        fact(&lines, "pairs :authority"),
        "ledger.shop;:path=/reports?x=1;:method=GET;:scheme=http;x-multi=1;x-single=only;\
         x-multi=2;x-replace-me=old;x-remove-me=gone"
    );
    // Envoy's getHeaderMapValue answers the first occurrence only.
    assert_eq!(fact(&lines, "header x-multi"), "1");
    assert_eq!(fact(&lines, "header X-Single"), "only");
    assert_eq!(fact(&lines, "header x-missing"), "<none>");
    assert_eq!(fact(&lines, "header :path"), "/reports?x=1");
    assert_eq!(fact(&lines, "lifecycle request_headers 2 n"), "9 eos=true");
}

#[test]
fn joined_mode_answers_repeated_headers_joined_by_comma() {
    let mut options = options("verbose");
    options.repeated_headers = RepeatedHeaders::Joined;
    let mut plugin = host().start_with(options).expect("starts");
    let outcome = plugin.handle(&exchange()).expect("served");
    assert_eq!(fact(&messages(outcome.logs()), "header x-multi"), "1,2");
}

#[test]
fn properties_arrive_as_envoy_encodes_them() {
    let mut plugin = start("verbose");
    let outcome = plugin.handle(&exchange()).expect("served");
    let lines = messages(outcome.logs());
    assert_eq!(fact(&lines, "prop source.address"), "10.0.0.7:51234");
    assert_eq!(fact(&lines, "prop destination.port"), "8443");
    assert_eq!(fact(&lines, "prop connection.mtls"), "true");
    assert_eq!(
        fact(&lines, "prop connection.uri_san_peer_certificate"),
        "spiffe://cluster.local/ns/shop/sa/frontend"
    );
    assert_eq!(fact(&lines, "prop payload.keys"), "sub,scope,iat");
    assert_eq!(
        fact(&lines, "prop payload.map.scope"),
        "ledger:list reports:read"
    );
    assert_eq!(fact(&lines, "prop payload.map.iat"), "1700000000.5");
    assert_eq!(
        fact(&lines, "prop payload.scope"),
        "ledger:list reports:read"
    );
    assert_eq!(fact(&lines, "prop payload.iat"), "1700000000.5");
    assert_eq!(fact(&lines, "prop request.missing"), "<none>");
    // Plugin-wide properties are visible inside requests too.
    assert_eq!(fact(&lines, "prop plugin_name"), "cordon-test");
    // An empty value is answered as pointer 0 / length 0, which SDK 0.2.x reads as absent.
    assert_eq!(fact(&lines, "prop empty"), "<none>");
}

#[test]
fn properties_set_by_the_module_are_recorded_and_readable() {
    let mut plugin = start("verbose");
    let outcome = plugin.handle(&exchange()).expect("served");
    assert_eq!(
        outcome.property_set(["cordon", "decision"]),
        Some(&b"allow"[..])
    );
    assert_eq!(
        outcome.property_set(["cordon", "header_count"]),
        Some(&9i64.to_le_bytes()[..])
    );
    assert_eq!(outcome.property_set(["cordon_flat"]), Some(&b"flat"[..]));
    assert_eq!(outcome.properties_set().len(), 3);
    // Envoy finds filter state by the first path segment: only one-segment paths read back.
    let lines = messages(outcome.logs());
    assert_eq!(fact(&lines, "prop readback"), "<none>");
    assert_eq!(fact(&lines, "prop readback_flat"), "flat");
}

#[test]
fn header_edits_show_in_the_outcome() {
    let mut plugin = start("verbose");
    let outcome = plugin.handle(&exchange()).expect("served");
    let headers = outcome.request_headers();
    assert_eq!(headers.get_str("x-cordon"), Some("seen"));
    assert_eq!(
        headers.get_all("x-replace-me").collect::<Vec<_>>(),
        vec![&b"new"[..]]
    );
    assert_eq!(headers.get("x-remove-me"), None);
    assert_eq!(headers.get_all("x-multi").count(), 2);
    assert_eq!(headers.len(), 9);
}

#[test]
fn a_local_response_is_captured_with_status_body_and_headers() {
    let mut plugin = start("verbose");
    let outcome = plugin
        .handle(&exchange().header("x-cordon-deny", "1"))
        .expect("served");
    assert_eq!(outcome.action(), Action::Pause);
    let reply = outcome.local_response().expect("a local response");
    assert_eq!(reply.status, 403);
    assert_eq!(reply.body, b"denied by cordon");
    assert_eq!(
        reply.headers,
        vec![("x-cordon-reason".to_string(), "denied".to_string())]
    );
    assert_eq!(reply.details, "");
    assert_eq!(reply.grpc_status, None);
    // Envoy runs the local reply back through the module's response-headers callback.
    let lines = messages(outcome.logs());
    assert_eq!(
        fact(&lines, "lifecycle response_headers 2 n"),
        "4 status=403"
    );
    assert_eq!(
        outcome.response_headers().to_pairs(),
        [
            (":status", "403"),
            ("x-cordon-reason", "denied"),
            ("content-length", "16"),
            ("content-type", "text/plain")
        ]
        .map(|(n, v)| (n.to_string(), v.to_string()))
    );
    assert_eq!(plugin.metric("cordon_denied_total"), Some(1));

    let allowed = plugin.handle(&exchange()).expect("served");
    assert!(allowed.local_response().is_none());
    assert!(allowed.response_headers().is_empty());
    assert_eq!(allowed.action(), Action::Continue);
}

#[test]
fn metrics_persist_across_requests() {
    let mut plugin = start("verbose");
    for _ in 0..3 {
        plugin.handle(&exchange()).expect("served");
    }
    let outcome = plugin
        .handle(&HttpExchange::get("/a", "h"))
        .expect("served");
    let lines = messages(outcome.logs());
    assert_eq!(fact(&lines, "metric requests_total"), "4");
    // Envoy refuses to read a histogram and to add 0 to a counter.
    assert_eq!(fact(&lines, "metric histogram_get"), "Some(BadArgument)");
    assert_eq!(
        fact(&lines, "metric counter_increment_zero"),
        "Some(BadArgument)"
    );
    let metrics = plugin.metrics();
    assert!(metrics.contains(&("cordon_requests_total".to_string(), MetricType::Counter, 4)));
    assert!(metrics.contains(&("cordon_denied_total".to_string(), MetricType::Counter, 0)));
    assert!(metrics.contains(&("cordon_last_header_count".to_string(), MetricType::Gauge, 4)));
    let path_len = "/reports?x=1".len() as u64 * 3 + 2;
    assert!(metrics.contains(&(
        "cordon_path_length".to_string(),
        MetricType::Histogram,
        path_len
    )));
    let histogram = plugin
        .metric_details()
        .iter()
        .find(|m| m.kind == MetricType::Histogram)
        .expect("the histogram");
    assert_eq!(histogram.samples, 4);
}

#[test]
fn logs_follow_the_level_and_capture_wasi_output() {
    let mut plugin = start("verbose");
    let outcome = plugin.handle(&exchange()).expect("served");
    let logs = outcome.logs();
    let lines = messages(logs);
    // The host level is Info: the debug line is dropped, the warn line kept.
    assert!(!outcome.logged("level debug line"));
    assert!(logs
        .iter()
        .any(|l| l.level == LogLevel::Warn && l.message == "level warn line"));
    assert_eq!(fact(&lines, "log_level"), "2");
    assert!(logs
        .iter()
        .any(|l| l.level == LogLevel::Info && l.message == "stdout line 2"));
    let stderr: Vec<&str> = logs
        .iter()
        .filter(|l| l.level == LogLevel::Error)
        .map(|l| l.message.as_str())
        .collect();
    // stderr is unbuffered: `eprintln!` writes each formatting piece with its own fd_write,
    // and cpp-host turns each write into a log line (the lone "\n" becomes an empty one).
    assert_eq!(stderr, ["stderr line ", "2", ""]);
    assert_eq!(fact(&lines, "hashmap len"), "1");

    let mut verbose = options("verbose");
    verbose.log_level = LogLevel::Trace;
    let mut plugin = host().start_with(verbose).expect("starts");
    let outcome = plugin.handle(&exchange()).expect("served");
    assert!(outcome
        .logs()
        .iter()
        .any(|l| l.level == LogLevel::Debug && l.message == "level debug line"));
    assert_eq!(fact(&messages(outcome.logs()), "log_level"), "0");
}

/// Envoy 1.40 runs the access-log pass (`proxy_on_log`) before destroying the filter
/// (`proxy_on_done`, then `proxy_on_delete`).
#[test]
fn lifecycle_follows_envoys_order_with_fresh_context_ids() {
    let mut plugin = start("verbose");
    for id in [2u32, 3, 4] {
        let outcome = plugin.handle(&exchange()).expect("served");
        assert_eq!(outcome.context_id(), id);
        assert_eq!(
            outcome.callbacks(),
            [
                "proxy_on_context_create",
                "proxy_on_request_headers",
                "proxy_on_log",
                "proxy_on_done",
                "proxy_on_delete"
            ]
        );
        let order: Vec<String> = messages(outcome.logs())
            .into_iter()
            .filter(|l| l.starts_with("lifecycle"))
            .map(|l| l.split(' ').take(3).collect::<Vec<_>>().join(" "))
            .collect();
        assert_eq!(
            order,
            [
                format!("lifecycle create {id}"),
                format!("lifecycle request_headers {id}"),
                format!("lifecycle log {id}"),
                format!("lifecycle done {id}"),
                format!("lifecycle delete {id}"),
            ]
        );
    }
}

#[test]
fn unusual_arguments_get_cpp_host_statuses() {
    let mut plugin = start("verbose");
    let outcome = plugin.handle(&exchange()).expect("served");
    let lines = messages(outcome.logs());
    assert_eq!(fact(&lines, "raw oob_log_status"), "6");
    assert_eq!(fact(&lines, "raw bad_level_status"), "2");
    assert_eq!(fact(&lines, "raw bad_buffer_status"), "2");
    // The (empty) request body exists in Envoy while headers are processed.
    assert_eq!(fact(&lines, "raw request_body_status"), "0");
    assert_eq!(fact(&lines, "raw response_header_status"), "2");
    assert_eq!(fact(&lines, "raw oob_out_param_status"), "6");
    assert_eq!(fact(&lines, "request plugin_config"), "none");
    assert_eq!(fact(&lines, "response_headers_pairs"), "0");
    assert_eq!(fact(&lines, "shared value"), "shared-value cas_some=true");
    assert_eq!(fact(&lines, "shared stale_cas"), "Some(CasMismatch)");
    assert_eq!(fact(&lines, "http_call"), "Some(BadArgument)");
    assert_eq!(fact(&lines, "foreign"), "Some(NotFound)");
}

#[test]
fn the_clock_can_be_fixed() {
    let mut options = options("verbose");
    options.clock = Clock::Fixed(1_234_567_890_123_456_789);
    let mut plugin = host().start_with(options).expect("starts");
    let outcome = plugin.handle(&exchange()).expect("served");
    assert_eq!(
        fact(&messages(outcome.logs()), "time nanos"),
        "1234567890123456789"
    );
    plugin.set_clock(Clock::Fixed(5));
    let outcome = plugin.handle(&exchange()).expect("served");
    assert_eq!(fact(&messages(outcome.logs()), "time nanos"), "5");
}

#[test]
fn ticks_reach_the_root_context() {
    let mut plugin = start("quiet");
    let logs = plugin.tick().expect("ticks");
    assert_eq!(messages(&logs), ["tick"]);
}

fn assert_traps(header: &str, expect_in_message: &str) {
    let mut plugin = start("verbose");
    let error = plugin
        .handle(&exchange().header(header, "1"))
        .expect_err("the module traps");
    match &error {
        HandleError::Trap {
            callback, message, ..
        } => {
            assert_eq!(*callback, "proxy_on_request_headers");
            assert!(message.contains(expect_in_message), "{header}: {message}");
        }
        other => panic!("{header}: expected a trap, got {other:?}"),
    }
    assert!(plugin.is_failed());
    // A crashed VM serves nothing more.
    assert!(matches!(
        plugin.handle(&exchange()),
        Err(HandleError::Failed { .. })
    ));
    assert!(matches!(
        plugin.reconfigure(b"quiet"),
        Err(HandleError::Failed { .. })
    ));
}

#[test]
fn a_guest_panic_becomes_a_trap_error_with_the_panic_logged() {
    assert_traps("x-cordon-panic", "unreachable");
    let mut plugin = start("verbose");
    let error = plugin
        .handle(&exchange().header("x-cordon-panic", "1"))
        .expect_err("traps");
    let last = error.logs().last().expect("the panic hook logged");
    assert_eq!(last.level, LogLevel::Critical);
    assert!(last.message.contains("guest asked to panic"), "{last}");
}

#[test]
fn unreachable_and_proc_exit_become_trap_errors() {
    assert_traps("x-cordon-unreachable", "unreachable");
    assert_traps("x-cordon-exit", "proc_exit(3)");
}

#[test]
fn ten_thousand_requests_on_one_plugin() {
    let mut plugin = start("quiet");
    let shared = std::sync::Arc::new(Properties::new().with(
        ["connection", "uri_san_peer_certificate"],
        encode_string("spiffe://cluster.local/ns/shop/sa/frontend"),
    ));
    let allow = HttpExchange::get("/reports", "ledger.shop").with_properties(shared.clone());
    let deny = allow.clone().header("x-cordon-deny", "1");
    let started = Instant::now();
    for i in 0..10_000 {
        let exchange = if i % 10 == 0 { &deny } else { &allow };
        let outcome = plugin.handle(exchange).expect("served");
        assert_eq!(outcome.local_response().is_some(), i % 10 == 0);
    }
    let elapsed = started.elapsed();
    println!(
        "10000 requests in {elapsed:?} ({:?} per request)",
        elapsed / 10_000
    );
    assert_eq!(plugin.metric("cordon_requests_total"), Some(10_000));
    assert_eq!(plugin.metric("cordon_denied_total"), Some(1_000));
}
