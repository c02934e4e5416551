//! The filter's plugin configuration from arbitrary bytes: every input is loaded or
//! refused with at least one error, nothing panics; a loaded filter then judges a few
//! requests (forged forwarded headers included) without panicking, and answers every
//! request it refuses.
#![no_main]

use cordon_filter::config;
use cordon_filter::decide::{Filter, Verdict};
use cordon_fuzz::FakeHost;
use libfuzzer_sys::fuzz_target;

fn hosts() -> Vec<FakeHost> {
    let mut plain = FakeHost::default();
    plain.headers = vec![
        (":method".into(), "GET".into()),
        (":path".into(), "/public/%2e%2e/admin?x".into()),
        (":authority".into(), "billing.finance.svc.cluster.local:8080".into()),
        ("x-forwarded-for".into(), "1.2.3.4, 10.0.0.1".into()),
        (
            "x-forwarded-client-cert".into(),
            "By=spiffe://cluster.local/ns/finance/sa/billing;URI=spiffe://cluster.local/ns/shop/sa/order-engine".into(),
        ),
        ("x-user".into(), "user".into()),
        ("x-user".into(), "admin".into()),
    ];
    let mut mtls = FakeHost::default()
        .with_property(
            &["connection", "uri_san_peer_certificate"],
            b"spiffe://cluster.local/ns/shop/sa/order-engine",
        )
        .with_property(&["connection", "mtls"], &[1])
        .with_property(&["source", "address"], b"10.0.0.5:41234")
        .with_property(&["destination", "address"], b"10.0.1.7:8080")
        .with_property(&["destination", "port"], &8080u64.to_le_bytes());
    mtls.headers = vec![
        (":method".into(), "POST".into()),
        (":path".into(), "/v1/credits".into()),
        (":authority".into(), "billing".into()),
    ];
    vec![plain, mtls]
}

fuzz_target!(|data: &[u8]| {
    let loaded = config::load(data, &FakeHost::default());
    let config = match loaded {
        Ok(config) => config,
        Err(errors) => {
            assert!(!errors.is_empty(), "a refusal must say why");
            for error in &errors {
                let _ = error.to_string();
            }
            return;
        }
    };
    let filter = Filter::new(config);
    for host in hosts() {
        let verdict = filter.on_request_headers(&host);
        if verdict == Verdict::Stop {
            assert!(
                host.response.borrow().is_some(),
                "a stopped request is answered"
            );
        }
    }
});
