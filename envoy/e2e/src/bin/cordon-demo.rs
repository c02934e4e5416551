//! The main job on the built-in example: start Envoy with cordon and the shop policies (as
//! the billing-service workload in `finance`), send requests as several workloads, print
//! who was allowed and who was denied and why, then stop Envoy. `scripts/demo.sh` builds
//! the filter and runs this.

use std::process::ExitCode;

use cordon_e2e::client::{Request, Via};
use cordon_e2e::envoy::Envoy;
use cordon_e2e::tools::{self, shop_claims};
use serde_json::Value;

/// One line of the demo.
struct Case {
    who: &'static str,
    via: Via<'static>,
    method: &'static str,
    path: &'static str,
    token: Token,
    xfcc: Option<&'static str>,
    story: &'static str,
}

#[derive(Clone, Copy)]
enum Token {
    None,
    Scope(&'static str),
    Expired,
}

const ORDER_ENGINE: Via<'static> = Via::Mtls("order-engine");
const FRONTEND: Via<'static> = Via::Mtls("frontend");

fn cases() -> Vec<Case> {
    let case = |who, via, method, path, token, story| Case {
        who,
        via,
        method,
        path,
        token,
        xfcc: None,
        story,
    };
    vec![
        case("shop/order-engine", ORDER_ENGINE, "POST", "/v1/credits", Token::Scope("orders:read credits:write"),
             "money moves through the order engine, for a user with credits:write"),
        case("shop/order-engine", ORDER_ENGINE, "POST", "/v1/credits", Token::Scope("credits:read"),
             "the user's token lacks credits:write"),
        case("shop/order-engine", ORDER_ENGINE, "POST", "/v1/credits", Token::None,
             "no end-user token"),
        case("shop/order-engine", ORDER_ENGINE, "POST", "/v1/credits", Token::Expired,
             "an expired token (jwt_authn refuses it before cordon)"),
        case("shop/order-engine", ORDER_ENGINE, "GET", "/v1/credits/cr_20931", Token::None,
             "reads one credit"),
        case("shop/order-engine", ORDER_ENGINE, "GET", "/v1/credits", Token::None,
             "lists every credit: not allowed"),
        case("shop/frontend", FRONTEND, "POST", "/v1/credits", Token::Scope("credits:write"),
             "lateral movement: a compromised frontend replays a user's token"),
        case("shop/frontend", FRONTEND, "GET", "/v1/credits/cr_20931", Token::None,
             "lateral movement: frontend reads billing directly"),
        Case {
            xfcc: Some("By=spiffe://cluster.local/ns/finance/sa/billing;URI=spiffe://cluster.local/ns/shop/sa/order-engine"),
            ..case("shop/frontend", FRONTEND, "POST", "/v1/credits", Token::Scope("credits:write"),
                   "frontend forges x-forwarded-client-cert claiming order-engine")
        },
        case("evil.example/.../order-engine", Via::Mtls("foreign"), "POST", "/v1/credits", Token::Scope("credits:write"),
             "an order-engine from another trust domain"),
        case("(no certificate)", Via::Plain, "GET", "/v1/credits/cr_20931", Token::None,
             "a pod outside the mesh"),
        case("finance-ops/ledger-operator", Via::Mtls("ops"), "POST", "/admin/reindex", Token::None,
             "an operator runs the admin reindex"),
        case("shop/order-engine", ORDER_ENGINE, "GET", "/admin/reindex", Token::None,
             "the admin API is finance-ops only"),
        case("shop/order-engine", ORDER_ENGINE, "GET", "//admin/reindex", Token::None,
             "'//' to dodge the rule: slashes are merged first"),
        case("shop/order-engine", ORDER_ENGINE, "GET", "/v1/credits/%2e%2e/%2e%2e/admin/reindex", Token::None,
             "an encoded '..' traversal"),
        case("shop/order-engine", ORDER_ENGINE, "GET", "/admin%2Freindex", Token::None,
             "an encoded slash: refused before any policy"),
    ]
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("cordon-demo: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let error = |error: cordon_e2e::Error| error.to_string();
    println!("cordon demo: the shop example (policies/examples/shop), enforced by cordon_filter.wasm in Envoy");
    println!("  Envoy: {}", tools::envoy_bin().map_err(error)?.display());
    println!(
        "  filter: {}",
        tools::filter_wasm().map_err(error)?.display()
    );
    println!("  protected workload: billing-service in namespace finance");
    println!("  making a test CA, workload certificates and a JWT signing key...");
    let pki = tools::Pki::shared().map_err(error)?;
    println!(
        "  starting Envoy (mTLS listener requiring client certificates, jwt_authn, cordon)..."
    );
    let mut envoy = Envoy::start(tools::shop_config().map_err(error)?).map_err(error)?;
    let ports = envoy.ports();
    println!(
        "  Envoy {} is ready: mTLS https://localhost:{}, plaintext http://127.0.0.1:{}, admin http://127.0.0.1:{}\n",
        envoy.pid(),
        ports.mtls,
        ports.plain,
        ports.admin
    );

    let mut rows = vec![[
        "caller".to_string(),
        "request".to_string(),
        "JWT scope".to_string(),
        "status".to_string(),
        "cordon's decision".to_string(),
        "what this shows".to_string(),
    ]];
    for (number, case) in cases().iter().enumerate() {
        let mut request = Request::new(case.via, case.method, case.path);
        let scope = match case.token {
            Token::None => "-".to_string(),
            Token::Scope(scope) => {
                request = request.bearer(&pki.token(&shop_claims(scope)).map_err(error)?);
                scope.to_string()
            }
            Token::Expired => {
                let mut claims = shop_claims("credits:write");
                if let Some(fields) = claims.as_object_mut() {
                    fields.insert("exp".to_string(), Value::from(1_000_000_000_u64));
                }
                request = request.bearer(&pki.token(&claims).map_err(error)?);
                "credits:write (expired)".to_string()
            }
        };
        if let Some(xfcc) = case.xfcc {
            request = request.header("x-forwarded-client-cert", xfcc);
        }
        // No response at all (refused, reset) is a row of the table, not a status.
        let status = match request.send(&envoy) {
            Ok(response) => response.status.to_string(),
            Err(failure) => format!("no response ({failure})"),
        };
        let entries = envoy.access_log_entries(number + 1).map_err(error)?;
        let decision = entries
            .get(number)
            .and_then(|entry| entry.get("cordon"))
            .and_then(Value::as_str)
            .map_or_else(|| "never reached cordon".to_string(), describe);
        rows.push([
            case.who.to_string(),
            format!("{} {}", case.method, case.path),
            scope,
            status,
            decision,
            case.story.to_string(),
        ]);
    }
    print_table(&rows);

    println!("\ncordon's counters (Envoy /stats):");
    let stats = envoy.stats().map_err(error)?;
    for (name, value) in stats
        .iter()
        .filter(|(name, _)| name.starts_with("wasmcustom.cordon."))
    {
        println!("  {name}: {value}");
    }
    let denied = envoy.decision_records().len();
    println!("decision records in Envoy's log (`cordon.decision {{...}}` lines): {denied}");
    envoy.stop();
    drop(envoy);
    tools::remove_scratch();
    println!("Envoy stopped.");
    Ok(())
}

/// The filter state `wasm.cordon.decision`, for a person.
fn describe(state: &str) -> String {
    let Ok(decision) = serde_json::from_str::<Value>(state) else {
        return state.to_string();
    };
    let text = |key: &str| decision.get(key).and_then(Value::as_str);
    let policy = text("policy").map(short_rule).unwrap_or_default();
    match text("reason").unwrap_or("?") {
        "allowed_by_policy" => format!("allow: {policy}"),
        "denied_by_policy" => format!("deny: {policy}"),
        "no_allow_match" => "deny: no ALLOW rule matches".to_string(),
        "path_rejected" => "deny: path rejected before any policy".to_string(),
        other if decision.get("allowed") == Some(&Value::Bool(true)) => format!("allow: {other}"),
        other => format!("deny: {other}"),
    }
}

/// `ns[finance]-policy[admin-deny]-rule[0]` as `finance/admin-deny rule 0`.
fn short_rule(rule: &str) -> String {
    let parts: Vec<&str> = rule
        .split(['[', ']'])
        .filter(|part| !part.is_empty() && !part.starts_with('-') && *part != "ns")
        .collect();
    match parts.as_slice() {
        [namespace, name, index] => format!("{namespace}/{name} rule {index}"),
        _ => rule.to_string(),
    }
}

fn print_table(rows: &[[String; 6]]) {
    let mut widths = [0usize; 6];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for (number, row) in rows.iter().enumerate() {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
        if number == 0 {
            let rule: Vec<String> = widths.iter().map(|width| "-".repeat(*width)).collect();
            println!("{}", rule.join("  "));
        }
    }
}
