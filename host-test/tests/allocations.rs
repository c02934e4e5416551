//! Serving a request allocates nothing in the host once its buffers have grown: counted
//! around a run of quiet requests (the guest reads two headers and a property and bumps a
//! counter, as the cordon filter does per request).

use std::alloc::System;
use std::sync::Arc;

use cordon_host::encode::encode_string;
use cordon_host::{Host, HttpExchange, Properties};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

#[path = "support/guest.rs"]
mod guest;

#[test]
fn a_steady_request_allocates_nothing_in_the_host() {
    let host = Host::load(guest::wasm()).unwrap();
    let mut plugin = host.start(b"", b"quiet").unwrap();
    let properties = Arc::new(Properties::new().with(
        ["connection", "uri_san_peer_certificate"],
        encode_string("spiffe://cluster.local/ns/shop/sa/frontend"),
    ));
    let allow = HttpExchange::get("/reports", "ledger.shop")
        .header("x-request-id", "7")
        .with_properties(properties);
    for _ in 0..100 {
        plugin.handle(&allow).unwrap();
    }
    let region = Region::new(GLOBAL);
    for _ in 0..1_000 {
        plugin.handle(&allow).unwrap();
    }
    let change = region.change();
    assert_eq!(
        change.allocations + change.reallocations,
        0,
        "host allocations in 1000 requests: {change:?}"
    );
}
