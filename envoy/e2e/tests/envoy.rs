//! End to end: a real Envoy 1.40 (V8) with `cordon_filter.wasm` behind mTLS and
//! `jwt_authn`, real clients, real responses. Each test starts its own Envoy on free
//! loopback ports (at most two at a time) and stops it by process id when done; a failing
//! test keeps its work directory (configuration, Envoy's log, the access log) and prints
//! where it is.
//!
//! Envoy comes from `ENVOY_BIN` or `.tools/envoy` (`scripts/setup.sh`); the module from
//! `CORDON_WASM` or a fresh build. Neither missing is a skip: the suite fails.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cordon_e2e::client::{KeepAlive, Request, Response, Via};
use cordon_e2e::envoy::{Envoy, Options};
use cordon_e2e::tools::{shop_claims, shop_config};
use serde_json::{json, Value};

const ORDER_ENGINE: &str = "spiffe://cluster.local/ns/shop/sa/order-engine";
const FRONTEND: &str = "spiffe://cluster.local/ns/shop/sa/frontend";

fn start(plugin: Value) -> Envoy {
    Envoy::start(plugin).unwrap_or_else(|error| panic!("starting Envoy: {error}"))
}

fn send(envoy: &Envoy, request: Request<'_>) -> Response {
    request
        .send(envoy)
        .unwrap_or_else(|error| panic!("sending {request:?}: {error}"))
}

fn token(envoy: &Envoy, scope: &str) -> String {
    envoy.pki().token(&shop_claims(scope)).unwrap()
}

fn post_credits<'a>(via: Via<'a>, token: &str) -> Request<'a> {
    Request::new(via, "POST", "/v1/credits").bearer(token)
}

/// Cordon's decision for one access-log entry (the filter state
/// `wasm.cordon.decision`), or `None` when the request never reached the filter.
fn decision_of(entry: &Value) -> Option<Value> {
    entry
        .get("cordon")
        .and_then(Value::as_str)
        .map(|state| serde_json::from_str(state).expect("the filter state is JSON"))
}

/// A policy set with one DENY policy in `finance` (which selects every workload there).
fn deny_config(name: &str, paths: &[&str]) -> Value {
    json!({
        "policies": [{
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": {"name": name, "namespace": "finance"},
            "spec": {"action": "DENY", "rules": [{"to": [{"operation": {"paths": paths}}]}]}
        }],
        "workload": {"namespace": "finance", "labels": {"app": "billing-service"}},
    })
}

fn counter(envoy: &Envoy, name: &str) -> u64 {
    envoy.cordon_counter(name).unwrap()
}

/// Waits (bounded) until a cordon counter reaches `at_least`.
fn wait_counter(envoy: &mut Envoy, name: &str, at_least: u64) {
    envoy
        .wait_for(
            Duration::from_secs(10),
            &format!("wasmcustom.cordon.{name} >= {at_least}"),
            |envoy| Ok(envoy.cordon_counter(name)? >= at_least),
        )
        .unwrap_or_else(|error| panic!("{error}"));
}

#[test]
fn shop_policy_is_enforced_by_peer_certificate() {
    let mut envoy = start(shop_config().unwrap());
    let write = token(&envoy, "credits:write");

    let allowed = send(&envoy, post_credits(Via::Mtls("order-engine"), &write));
    assert_eq!(
        allowed.status, 200,
        "order-engine may POST /v1/credits: {allowed:?}"
    );
    assert_eq!(allowed.body, "ok");

    let frontend = send(&envoy, post_credits(Via::Mtls("frontend"), &write));
    assert_eq!(frontend.status, 403, "frontend may not: {frontend:?}");
    assert_eq!(frontend.body, "RBAC: access denied");

    let plaintext = send(&envoy, post_credits(Via::Plain, &write));
    assert_eq!(
        plaintext.status, 403,
        "no certificate, no identity: {plaintext:?}"
    );

    let foreign = send(&envoy, post_credits(Via::Mtls("foreign"), &write));
    assert_eq!(foreign.status, 403, "another trust domain: {foreign:?}");

    let invalid = send(&envoy, post_credits(Via::Mtls("invalid-spiffe"), &write));
    assert_eq!(
        invalid.status, 403,
        "a SAN that is not a SPIFFE ID: {invalid:?}"
    );

    // The rest of the shop's billing rules, through the real proxy.
    let one = send(
        &envoy,
        Request::new(Via::Mtls("order-engine"), "GET", "/v1/credits/cr_1"),
    );
    assert_eq!(one.status, 200, "{one:?}");
    let list = send(
        &envoy,
        Request::new(Via::Mtls("order-engine"), "GET", "/v1/credits"),
    );
    assert_eq!(list.status, 403, "{list:?}");
    let ops = send(
        &envoy,
        Request::new(Via::Mtls("ops"), "POST", "/admin/reindex"),
    );
    assert_eq!(ops.status, 200, "finance-ops may use /admin: {ops:?}");

    // What cordon saw: the identity from the certificate, never anything else.
    let records = envoy.decision_records_at_least(5).unwrap();
    let principals: Vec<&str> = records
        .iter()
        .filter_map(|record| record.pointer("/source/principal").and_then(Value::as_str))
        .collect();
    assert_eq!(
        principals,
        [
            FRONTEND,
            "spiffe://evil.example/ns/shop/sa/order-engine",
            "spiffe://Cluster.Local/ns/shop/sa/order-engine",
            ORDER_ENGINE,
        ],
        "decision records name the denied peers: {records:#?}"
    );
    let identities: Vec<&str> = records
        .iter()
        .filter_map(|record| record.pointer("/decision/identity").and_then(Value::as_str))
        .collect();
    assert_eq!(
        identities,
        ["verified", "none", "verified", "invalid", "verified"]
    );
    envoy.access_log_entries(8).unwrap();
}

#[test]
fn stats_show_counters_and_access_log_shows_decisions() {
    let mut envoy = start(shop_config().unwrap());
    let write = token(&envoy, "credits:write");
    assert_eq!(
        send(&envoy, post_credits(Via::Mtls("order-engine"), &write)).status,
        200
    );
    assert_eq!(
        send(&envoy, post_credits(Via::Mtls("frontend"), &write)).status,
        403
    );
    let escaped = Request::new(Via::Mtls("order-engine"), "GET", "/v1/credits%2Fcr_1");
    assert_eq!(send(&envoy, escaped).status, 400);

    wait_counter(&mut envoy, "requests.path_rejected", 1);
    let stats = envoy.stats().unwrap();
    let cordon: BTreeMap<&str, &str> = stats
        .iter()
        .filter_map(|(name, value)| {
            name.strip_prefix("wasmcustom.cordon.")
                .map(|name| (name, value.as_str()))
        })
        .collect();
    let expected: BTreeMap<&str, &str> = [
        ("config.errors", "0"),
        ("requests.allowed", "1"),
        ("requests.audited", "2"),
        ("requests.denied", "2"),
        ("requests.dry_run_denied", "0"),
        ("requests.path_rejected", "1"),
    ]
    .into_iter()
    .collect();
    let without_loaded: BTreeMap<&str, &str> = cordon
        .iter()
        .filter(|(name, _)| **name != "config.loaded")
        .map(|(name, value)| (*name, *value))
        .collect();
    assert_eq!(without_loaded, expected, "all of /stats: {stats:#?}");
    // One plugin per listener, and the worker's copy: each loads the configuration.
    assert!(cordon["config.loaded"].parse::<u64>().unwrap() >= 1);
    let prometheus = envoy.admin("/stats/prometheus").unwrap();
    assert!(
        prometheus.contains("cordon"),
        "/stats/prometheus shows cordon's counters too"
    );

    let entries = envoy.access_log_entries(3).unwrap();
    let allowed = decision_of(&entries[0]).expect("the filter state is logged");
    assert_eq!(entries[0]["status"], 200);
    assert_eq!(entries[0]["peer"], ORDER_ENGINE);
    assert_eq!(allowed["allowed"], true);
    assert_eq!(allowed["reason"], "allowed_by_policy");
    assert_eq!(
        allowed["policy"],
        "ns[finance]-policy[billing-service-allow]-rule[0]"
    );
    assert_eq!(
        allowed["audit"],
        "ns[istio-system]-policy[audit-writes]-rule[0]"
    );
    let denied = decision_of(&entries[1]).unwrap();
    assert_eq!(entries[1]["status"], 403);
    assert_eq!(entries[1]["peer"], FRONTEND);
    assert_eq!(denied["allowed"], false);
    assert_eq!(denied["reason"], "no_allow_match");
    let rejected = decision_of(&entries[2]).unwrap();
    assert_eq!(entries[2]["status"], 400);
    assert_eq!(rejected["reason"], "path_rejected");
}

#[test]
fn forged_forwarded_client_cert_is_ignored() {
    let mut envoy = start(shop_config().unwrap());
    let write = token(&envoy, "credits:write");
    let forged = format!("By=spiffe://cluster.local/ns/finance/sa/billing;URI={ORDER_ENGINE}");

    let frontend =
        post_credits(Via::Mtls("frontend"), &write).header("x-forwarded-client-cert", &forged);
    let response = send(&envoy, frontend);
    assert_eq!(
        response.status, 403,
        "frontend claiming order-engine: {response:?}"
    );

    let plaintext = post_credits(Via::Plain, &write).header("x-forwarded-client-cert", &forged);
    let response = send(&envoy, plaintext);
    assert_eq!(
        response.status, 403,
        "no certificate claiming order-engine: {response:?}"
    );

    // The other way round: order-engine is still order-engine whatever it claims.
    let claim = format!("By=spiffe://cluster.local/ns/finance/sa/billing;URI={FRONTEND}");
    let order_engine =
        post_credits(Via::Mtls("order-engine"), &write).header("x-forwarded-client-cert", &claim);
    assert_eq!(send(&envoy, order_engine).status, 200);

    let records = envoy.decision_records_at_least(2).unwrap();
    assert_eq!(records.len(), 2, "{records:#?}");
    assert_eq!(
        records[0].pointer("/source/principal"),
        Some(&json!(FRONTEND))
    );
    assert_eq!(records[1].pointer("/source/principal"), Some(&Value::Null));
    // forward_client_cert_details: SANITIZE: the forged header never reaches the filter.
    for record in &records {
        assert_eq!(
            record.pointer("/request/headers/x-forwarded-client-cert"),
            None,
            "Envoy drops a client's x-forwarded-client-cert: {record}"
        );
    }
    envoy.access_log_entries(3).unwrap();
}

#[test]
fn path_confusion_never_reaches_a_denied_path() {
    // Only a DENY policy stands between any caller and /admin: nothing else is denied.
    let mut envoy = start(deny_config("admin-deny", &["/admin", "/admin/*"]));
    let get = |target: &str| send(&envoy, Request::new(Via::Plain, "GET", target));
    assert_eq!(get("/public/index.html").status, 200, "the control request");
    assert_eq!(
        get("/administrator").status,
        200,
        "/admin is not a prefix of /administrator"
    );
    assert_eq!(get("/admin").status, 403);

    let attempts = [
        "//admin",
        "/public/%2e%2e/admin",
        "/public/%2E%2E/admin",
        "/admin%2F",
        "/admin%2f",
        "/admin#x",
        "/admin?x",
        "/admin/?x=1",
        "/./admin",
        "/public/..%5Cadmin",
        "/public/..\\admin",
        "/public/../admin",
        "/%61dmin",
        "/admin/",
        "/admin/x/../",
        "/public/..;/admin",
        "///admin//x",
        "/admin%00",
    ];
    let mut reached = Vec::new();
    for target in attempts {
        let response = get(target);
        if !matches!(response.status, 400 | 403 | 404) {
            reached.push(format!(
                "{target} -> {} {:?}",
                response.status, response.body
            ));
        }
    }
    assert!(
        reached.is_empty(),
        "path confusion got past the DENY policy:\n{}",
        reached.join("\n")
    );
    let entries = envoy.access_log_entries(3 + attempts.len()).unwrap();
    for entry in &entries[3..] {
        // Either cordon refused it (403 by policy, 400 by normalization) or Envoy's codec
        // did before any filter ran (then there is no decision).
        if let Some(decision) = decision_of(entry) {
            assert_eq!(decision["allowed"], false, "{entry}");
        } else {
            assert_eq!(entry["status"], 400, "{entry}");
        }
    }
}

#[test]
fn api_scopes_come_from_verified_tokens_only() {
    let mut envoy = start(shop_config().unwrap());
    let pki = envoy.pki().clone();
    let engine = Via::Mtls("order-engine");
    let post = |token: &str| send(&envoy, post_credits(engine, token)).status;

    assert_eq!(post(&token(&envoy, "credits:write")), 200);
    assert_eq!(
        post(&token(&envoy, "orders:read credits:write")),
        200,
        "scope is a list"
    );
    assert_eq!(post(&token(&envoy, "credits:read")), 403);
    assert_eq!(
        post(&token(&envoy, "credits:writer")),
        403,
        "no prefix match"
    );
    let no_token = send(&envoy, Request::new(engine, "POST", "/v1/credits"));
    assert_eq!(no_token.status, 403);
    wait_counter(&mut envoy, "requests.allowed", 2);
    let allowed_before = counter(&envoy, "requests.allowed");

    let mut expired = shop_claims("credits:write");
    expired["exp"] = json!(1_000_000_000_u64);
    let expired = pki.token(&expired).unwrap();
    let response = send(&envoy, post_credits(engine, &expired));
    assert_eq!(response.status, 401, "expired: {response:?}");
    assert_eq!(response.body, "Jwt is expired");

    let forged = pki
        .badly_signed_token(&shop_claims("credits:write"))
        .unwrap();
    let response = send(&envoy, post_credits(engine, &forged));
    assert_eq!(response.status, 401, "bad signature: {response:?}");
    assert_eq!(response.body, "Jwt verification fails");

    let mut other_issuer = shop_claims("credits:write");
    other_issuer["iss"] = json!("https://idp.evil.example");
    let other_issuer = pki.token(&other_issuer).unwrap();
    let response = send(&envoy, post_credits(engine, &other_issuer));
    assert_ne!(response.status, 200, "unknown issuer: {response:?}");

    // A token in a header jwt_authn does not read is no token at all to cordon.
    let sneaked = Request::new(engine, "POST", "/v1/credits").header(
        "x-jwt-payload",
        r#"{"iss":"https://idp.shop.example","scope":"credits:write"}"#,
    );
    assert_eq!(send(&envoy, sneaked).status, 403);

    let entries = envoy.access_log_entries(9).unwrap();
    for entry in &entries[5..8] {
        assert_eq!(
            decision_of(entry),
            None,
            "a refused token never reaches cordon: {entry}"
        );
    }
    assert_eq!(
        counter(&envoy, "requests.allowed"),
        allowed_before,
        "no allow after the first two"
    );
}

#[test]
fn dry_run_policy_lets_requests_through_and_records_the_would_be_denial() {
    let mut config = deny_config("dry-deny", &["/v1/*"]);
    config["policies"][0]["metadata"]["annotations"] = json!({"istio.io/dry-run": "true"});
    let mut envoy = start(config);

    let response = send(&envoy, Request::new(Via::Plain, "GET", "/v1/credits"));
    assert_eq!(
        response.status, 200,
        "a dry-run DENY enforces nothing: {response:?}"
    );
    let other = send(&envoy, Request::new(Via::Plain, "GET", "/healthz"));
    assert_eq!(other.status, 200);

    wait_counter(&mut envoy, "requests.dry_run_denied", 1);
    assert_eq!(counter(&envoy, "requests.dry_run_denied"), 1);
    assert_eq!(counter(&envoy, "requests.denied"), 0);
    assert_eq!(counter(&envoy, "requests.allowed"), 2);

    // Both requests are in the access log once the second is: the log is complete.
    envoy.access_log_entries(2).unwrap();
    let records = envoy.decision_records_at_least(1).unwrap();
    assert_eq!(
        records.len(),
        1,
        "only the would-be denial is logged: {records:#?}"
    );
    let decision = &records[0]["decision"];
    assert_eq!(decision["allowed"], true);
    assert_eq!(decision["dry_run"]["allowed"], false);
    assert_eq!(
        decision["dry_run"]["policy"],
        "ns[finance]-policy[dry-deny]-rule[0]"
    );
    assert_eq!(records[0]["request"]["path"], "/v1/credits");

    let entries = envoy.access_log_entries(2).unwrap();
    let logged = decision_of(&entries[0]).unwrap();
    assert_eq!(logged["dry_run"]["allowed"], false);
    assert_eq!(
        decision_of(&entries[1]).unwrap()["dry_run"]["allowed"],
        true
    );
}

#[test]
fn global_dry_run_enforces_nothing_and_counts_what_it_would_deny() {
    let mut config = shop_config().unwrap();
    config["dry_run"] = json!(true);
    let mut envoy = start(config);
    let write = token(&envoy, "credits:write");

    let frontend = send(&envoy, post_credits(Via::Mtls("frontend"), &write));
    assert_eq!(frontend.status, 200, "dry run: {frontend:?}");
    let engine = send(&envoy, post_credits(Via::Mtls("order-engine"), &write));
    assert_eq!(engine.status, 200);

    wait_counter(&mut envoy, "requests.dry_run_denied", 1);
    assert_eq!(counter(&envoy, "requests.dry_run_denied"), 1);
    assert_eq!(counter(&envoy, "requests.denied"), 0);
    let records = envoy.decision_records_at_least(1).unwrap();
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0]["source"]["principal"], FRONTEND);
    assert_eq!(records[0]["decision"]["allowed"], true);
    assert_eq!(records[0]["decision"]["enforced"], false);
    assert_eq!(records[0]["decision"]["reason"], "no_allow_match");
}

#[test]
fn broken_configuration_at_start_fails_closed() {
    let broken = json!({"policies": [], "dry_runn": true});
    let mut envoy =
        Envoy::start_admin_only(Options::new(broken)).unwrap_or_else(|error| panic!("{error}"));
    envoy
        .wait_for(
            Duration::from_secs(30),
            "both listeners rejected",
            |envoy| Ok(envoy.stat("listener_manager.lds.update_rejected")? >= 1),
        )
        .unwrap();
    assert_eq!(
        envoy
            .stat("listener_manager.total_listeners_active")
            .unwrap(),
        0
    );
    let refused = send(&envoy, Request::new(Via::Plain, "GET", "/v1/credits"));
    assert_eq!(refused.status, 0, "nothing listens: {refused:?}");
    let refused = send(
        &envoy,
        Request::new(Via::Mtls("order-engine"), "GET", "/v1/credits/cr_1"),
    );
    assert_eq!(refused.status, 0, "nothing listens: {refused:?}");
    let log = envoy
        .wait_log("cordon: configuration rejected: dry_runn: unknown field `dry_runn`")
        .unwrap_or_else(|error| panic!("the filter says why: {error}"));
    assert!(
        log.contains("config rejected: Unable to create Wasm plugin cordon"),
        "{log}"
    );

    // Fixing the configuration brings the listeners up, without a restart.
    envoy.set_plugin_config(&shop_config().unwrap()).unwrap();
    envoy.wait_listeners(2, Duration::from_secs(30)).unwrap();
    let served = send(
        &envoy,
        Request::new(Via::Mtls("order-engine"), "GET", "/v1/credits/cr_1"),
    );
    assert_eq!(served.status, 200, "{served:?}");
}

#[test]
fn broken_configuration_update_is_refused_and_the_last_good_one_stays() {
    let mut envoy = start(shop_config().unwrap());
    let mut broken = shop_config().unwrap();
    // `*` inside a path value is an error in cordon (Istio would take it literally).
    broken["policies"][0]["spec"]["rules"][1]["to"][0]["operation"]["paths"] = json!(["/v1/*/x"]);
    envoy.set_plugin_config(&broken).unwrap();
    envoy
        .wait_for(
            Duration::from_secs(30),
            "the update to be rejected",
            |envoy| Ok(envoy.stat("listener_manager.lds.update_rejected")? >= 1),
        )
        .unwrap();
    let log = envoy.log();
    assert!(
        log.contains(
            "cordon: configuration rejected: policies[0].spec.rules[1].to[0].operation.paths[0]"
        ),
        "the filter names the field: {log}"
    );
    assert!(counter(&envoy, "config.errors") >= 1);
    assert_eq!(
        envoy
            .stat("listener_manager.total_listeners_active")
            .unwrap(),
        2
    );
    // Requests are still judged by the last configuration Envoy accepted.
    let one = send(
        &envoy,
        Request::new(Via::Mtls("order-engine"), "GET", "/v1/credits/cr_1"),
    );
    assert_eq!(one.status, 200, "{one:?}");
    let frontend = send(
        &envoy,
        Request::new(Via::Mtls("frontend"), "GET", "/v1/credits/cr_1"),
    );
    assert_eq!(frontend.status, 403, "{frontend:?}");
}

/// A policy set for the reload test: `/blocked` is denied, with a body naming `version`.
fn versioned_config(version: u32) -> Value {
    let mut config = deny_config("blocked", &["/blocked"]);
    config["deny_response"] =
        json!({"status": 403, "body": format!("denied by version {version}")});
    config
}

#[test]
fn configuration_change_under_load_loses_no_request() {
    const CLIENTS: usize = 4;
    const UPDATES: u32 = 6;
    const MAX_REQUESTS_PER_CLIENT: usize = 100_000;
    let mut options = Options::new(versioned_config(0));
    // A listener whose filter chain changed drains its connections: with the immediate
    // strategy each old connection gets `connection: close` on its next response.
    options.args = ["--drain-time-s", "5", "--drain-strategy", "immediate"]
        .map(String::from)
        .to_vec();
    let mut envoy = Envoy::start_with(options).unwrap_or_else(|error| panic!("{error}"));
    let port = envoy.ports().plain;

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut client = KeepAlive::new(port);
                let mut seen: BTreeMap<String, usize> = BTreeMap::new();
                let mut failures = Vec::new();
                for number in 0..MAX_REQUESTS_PER_CLIENT {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let path = if number % 2 == 0 { "/open" } else { "/blocked" };
                    match client.get(path) {
                        Ok((status, body)) => {
                            let expected = match path {
                                "/open" => status == 200 && body == "ok",
                                _ => status == 403 && body.starts_with("denied by version "),
                            };
                            if !expected {
                                failures.push(format!("{path} -> {status} {body:?}"));
                            }
                            *seen.entry(format!("{path} {status} {body}")).or_default() += 1;
                        }
                        Err(error) => failures.push(format!("{path} -> {error}")),
                    }
                }
                (seen, failures, client.connections)
            })
        })
        .collect();

    let started = Instant::now();
    std::thread::sleep(Duration::from_millis(300));
    for version in 1..=UPDATES {
        let before = envoy.stat("listener_manager.lds.update_success").unwrap();
        envoy.set_plugin_config(&versioned_config(version)).unwrap();
        envoy
            .wait_for(Duration::from_secs(30), "the LDS update", |envoy| {
                Ok(envoy.stat("listener_manager.lds.update_success")? > before)
            })
            .unwrap();
        std::thread::sleep(Duration::from_millis(250));
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed();

    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut connections = 0;
    for client in clients {
        let (client_seen, client_failures, client_connections) = client.join().unwrap();
        for (key, count) in client_seen {
            *seen.entry(key).or_default() += count;
        }
        failures.extend(client_failures);
        connections += client_connections;
    }
    let total: usize = seen.values().sum();
    eprintln!("{total} requests in {elapsed:?} over {connections} connections: {seen:#?}");
    assert!(
        failures.is_empty(),
        "{} of {total} requests failed; first ones: {:#?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    assert!(total >= 400, "the load was real: {total} requests");
    assert_eq!(
        envoy.stat("listener_manager.lds.update_rejected").unwrap(),
        0
    );
    assert_eq!(
        envoy.stat("listener_manager.lds.update_success").unwrap(),
        u64::from(UPDATES) + 1
    );
    for version in [0, UPDATES] {
        let key = format!("/blocked 403 denied by version {version}");
        assert!(
            seen.contains_key(&key),
            "requests were judged by version {version} too: {seen:#?}"
        );
    }
    assert!(
        connections > CLIENTS as u32,
        "draining made clients reconnect to the new configuration"
    );
    assert_eq!(envoy.stat("http.ingress.downstream_rq_5xx").unwrap(), 0);
}

#[test]
fn a_header_that_is_not_utf8_never_opens_the_door_and_the_filter_recovers() {
    let mut envoy = start(shop_config().unwrap());
    let bad = Request::new(Via::Plain, "GET", "/v1/credits").header_bytes("x-note", b"caf\xe9");
    let response = send(&envoy, bad);
    assert!(
        matches!(response.status, 400 | 403 | 503),
        "refused, whatever happens inside: {response:?}"
    );
    // failure_policy FAIL_RELOAD: whatever that request did to the VM, the next ones are
    // judged again (bounded wait for the reload).
    envoy
        .wait_for(
            Duration::from_secs(15),
            "the filter to answer again",
            |envoy| {
                let ok = Request::new(Via::Mtls("order-engine"), "GET", "/v1/credits/cr_1")
                    .send(envoy)?;
                Ok(ok.status == 200)
            },
        )
        .unwrap();
    let frontend = send(
        &envoy,
        Request::new(Via::Mtls("frontend"), "GET", "/v1/credits/cr_1"),
    );
    assert_eq!(frontend.status, 403);
}

/// Regression: the proxy-wasm SDK's string reads (`get_map`, `get_map_value`) unwrap
/// `String::from_utf8`, so a header value that is not UTF-8 used to panic the VM whenever
/// the filter read the header map (every denied request, for its decision record; every
/// request when a rule reads a header): Envoy answered 503 and, with FAIL_CLOSED, every
/// later request too. The filter now reads headers as bytes (f5081cd).
#[test]
fn a_header_that_is_not_utf8_is_judged_like_any_other() {
    let envoy = start(shop_config().unwrap());
    let bad = Request::new(Via::Plain, "GET", "/v1/credits").header_bytes("x-note", b"caf\xe9");
    let response = send(&envoy, bad);
    assert_eq!(response.status, 403, "{response:?}");
    assert!(
        !envoy.log().contains("cordon: panic"),
        "{}",
        envoy.log_tail(40)
    );
}

#[test]
fn a_certificate_with_two_uri_sans_is_seen_by_its_first_san() {
    let mut envoy = start(shop_config().unwrap());
    let write = token(&envoy, "credits:write");
    // frontend first, order-engine second.
    let response = send(&envoy, post_credits(Via::Mtls("two-uris"), &write));
    assert_eq!(response.status, 403, "{response:?}");
    let records = envoy.decision_records_at_least(1).unwrap();
    assert_eq!(
        records[0]["source"]["principal"], FRONTEND,
        "Envoy's connection.uri_san_peer_certificate is the first URI SAN only"
    );
    assert_eq!(records[0]["decision"]["identity"], "verified");
    let entries = envoy.access_log_entries(1).unwrap();
    assert_eq!(
        entries[0]["peer"],
        format!("{FRONTEND},{ORDER_ENGINE}"),
        "%DOWNSTREAM_PEER_URI_SAN% lists both"
    );
}

/// KNOWN LIMITATION, tracked as an expected failure (SECURITY.md, "Identities": "Known
/// limit: Envoy gives the filter only the first URI SAN of a certificate"). An X509-SVID
/// has exactly one URI SAN, but Envoy's `connection.uri_san_peer_certificate` gives the
/// filter only the first one, and cordon takes it as a verified identity: a certificate
/// `URI:<order-engine>, URI:<frontend>` is order-engine to cordon, so its POST is allowed.
/// The right answer is no identity (403), as for any peer whose certificate is not a valid
/// SVID.
///
/// This test asserts today's behaviour, so that every run lists it by name (`test
/// known_limitation_… ok` means the limitation is still there) and it fails the day the
/// behaviour changes. When it fails with a 403, the limitation is fixed: assert 403 and
/// `identity: none` here, rename the test, and remove the paragraph from SECURITY.md.
#[test]
fn known_limitation_security_md_a_certificate_with_two_uri_sans_is_its_first_san() {
    let mut envoy = start(shop_config().unwrap());
    let write = token(&envoy, "credits:write");
    let response = send(
        &envoy,
        post_credits(Via::Mtls("two-uris-order-engine-first"), &write),
    );
    assert_eq!(
        response.status, 200,
        "the two-URI-SAN limitation (SECURITY.md, Identities) changed: {response:?}"
    );
    let entries = envoy.access_log_entries(1).unwrap();
    assert_eq!(
        entries[0]["peer"],
        format!("{ORDER_ENGINE},{FRONTEND}"),
        "%DOWNSTREAM_PEER_URI_SAN% lists both SANs"
    );
    let decision = decision_of(&entries[0]).expect("the filter state is logged");
    assert_eq!(decision["allowed"], true, "{decision}");
    assert_eq!(decision["identity"], "verified", "{decision}");
    assert_eq!(
        decision["policy"], "ns[finance]-policy[billing-service-allow]-rule[0]",
        "{decision}"
    );
    eprintln!(
        "KNOWN LIMITATION (SECURITY.md, Identities): a certificate with two URI SANs is judged \
         by its first; expected no identity and 403, got {} as {ORDER_ENGINE}",
        response.status
    );
}

/// Claims of every JSON type, as `jwt_authn` verified them, are matched as Envoy's RBAC
/// metadata matchers match them: only strings, and the string elements of lists (the
/// filter reads the typed `metadata` message, see `docs/ENVOY-MEASUREMENTS.md`).
#[test]
fn jwt_claims_of_every_json_type_match_only_as_strings() {
    let rule = |path: &str, key: &str, values: &[&str]| json!({"to": [{"operation": {"paths": [path]}}], "when": [{"key": key, "values": values}]});
    let mut envoy = start(json!({
        "policies": [{
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": {"name": "claims", "namespace": "finance"},
            "spec": {"rules": [
                rule("/true", "request.auth.claims[groups]", &["true"]),
                rule("/seven", "request.auth.claims[groups]", &["7"]),
                rule("/admin", "request.auth.claims[groups]", &["admin"]),
                rule("/b", "request.auth.claims[groups]", &["b"]),
                rule("/team", "request.auth.claims[org][team]", &["blue"]),
                {"to": [{"operation": {"paths": ["/principal"]}}],
                 "from": [{"source": {"requestPrincipals": ["https://idp.shop.example/alice"]}}]}
            ]}
        }],
        "workload": {"namespace": "finance", "labels": {"app": "billing-service"}},
    }));
    let pki = envoy.pki().clone();
    let status = |claims: Value, path: &str| {
        let mut token =
            json!({"iss": "https://idp.shop.example", "sub": "alice", "exp": 1_900_000_000_u64});
        for (key, value) in claims.as_object().unwrap() {
            token[key] = value.clone();
        }
        let token = pki.token(&token).unwrap();
        send(&envoy, Request::new(Via::Plain, "GET", path).bearer(&token)).status
    };
    let cases = [
        (json!({"groups": true}), "/true", 403),
        (json!({"groups": true}), "/admin", 403),
        (json!({"groups": 7}), "/seven", 403),
        (json!({"groups": {"a": "b"}}), "/b", 403),
        (json!({"groups": {"admin": ""}}), "/admin", 403),
        (json!({"groups": [7, "admin"]}), "/admin", 200),
        (json!({"groups": [7, "admin"]}), "/seven", 403),
        (json!({"groups": [true, "b"]}), "/true", 403),
        (json!({"groups": "admin"}), "/admin", 200),
        (
            json!({"groups": null, "org": {"team": "blue"}}),
            "/team",
            200,
        ),
        (json!({"groups": [null], "nick": null}), "/principal", 200),
        (json!({"org": "blue"}), "/team", 403),
    ];
    let mut failures = Vec::new();
    for (claims, path, expected) in &cases {
        let got = status(claims.clone(), path);
        if got != *expected {
            failures.push(format!("{claims} on {path}: {got}, expected {expected}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");

    // Decision records keep every claim's type.
    let records = envoy.decision_records_at_least(1).unwrap();
    let denied_true = records
        .iter()
        .find(|record| record["request"]["path"] == "/true")
        .expect("a record for /true");
    assert_eq!(
        denied_true["request"]["auth"]["claims"]["groups"],
        json!(true)
    );
    assert_eq!(
        denied_true["request"]["auth"]["claims"]["exp"],
        json!(1_900_000_000_u64)
    );
}
