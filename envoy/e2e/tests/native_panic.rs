//! A panic in the native twin never reaches Envoy: the hook catches it, the request is
//! denied (403, the configured body) and counted, the panic is logged, and the next
//! request is judged as always. Runs a build with the `panic-probe` feature, where a
//! request carrying `x-cordon-panic-probe` panics inside the filter.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use cordon_e2e::client::{Request, Via};
use cordon_e2e::envoy::{Envoy, Options, Twin};
use cordon_e2e::tools::{self, shop_config};

#[test]
fn a_panic_is_denied_counted_and_logged_and_envoy_carries_on() {
    let module = tools::native_panic_probe().unwrap_or_else(|error| panic!("{error}"));
    let mut options = Options::new(shop_config().unwrap()).twin(Twin::Native);
    options.wasm = Some(module);
    let mut envoy = Envoy::start_with(options).unwrap_or_else(|error| panic!("{error}"));
    let read = |probe: bool| {
        let mut request = Request::new(Via::Mtls("order-engine"), "GET", "/v1/credits/cr_1");
        if probe {
            request = request.header("x-cordon-panic-probe", "1");
        }
        request.send(&envoy).unwrap()
    };
    let refused = read(true);
    assert_eq!(refused.status, 403, "{refused:?}");
    assert_eq!(refused.body, "RBAC: access denied");
    // The same request without the probe is allowed: the 403 above was the panic's.
    assert_eq!(read(false).status, 200);
    assert_eq!(read(true).status, 403);
    assert_eq!(read(false).status, 200);
    assert!(envoy.exit_status().is_none(), "Envoy is still running");
    assert_eq!(envoy.cordon_counter("requests.denied").unwrap(), 2);
    assert_eq!(envoy.cordon_counter("requests.allowed").unwrap(), 2);
    let log = envoy.wait_log("cordon: panic: ").unwrap();
    assert!(log.contains("panic probe"), "{log}");
}
