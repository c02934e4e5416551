//! The filter's linear memory after `on_configure`, by the size of its policy set: what
//! each Envoy worker's VM keeps resident, since wasm memory never shrinks. The policies
//! are the load benchmark's (`envoy/load/bench.py`, `cordon_config`): one ALLOW policy of
//! N rules, each `GET /api/svc-<i>/*` for `x-caller: caller-<i>`.
//!
//! ```sh
//! cargo build -p cordon-filter --release --target wasm32-wasip1
//! cargo run --release -p cordon-host --example config_memory -- \
//!     target/wasm32-wasip1/release/cordon_filter.wasm 0 1000 10000
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![allow(missing_docs)]

use std::fmt::Write as _;

use cordon_host::Host;

/// `cordon_config(n)` of `envoy/load/bench.py`, as JSON text.
fn config(rules: usize) -> String {
    let mut text = String::from(
        r#"{"policies": [{"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": {"name": "bench", "namespace": "bench"}, "spec": {"action": "ALLOW", "rules": ["#,
    );
    for i in 0..rules {
        if i > 0 {
            text.push_str(", ");
        }
        write!(
            text,
            r#"{{"to": [{{"operation": {{"methods": ["GET"], "paths": ["/api/svc-{i}/*"]}}}}], "when": [{{"key": "request.headers[x-caller]", "values": ["caller-{i}"]}}]}}"#
        )
        .unwrap();
    }
    text.push_str(r#"]}}], "workload": {"namespace": "bench", "labels": {"app": "bench"}}}"#);
    text
}

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: config_memory <cordon_filter.wasm> <rules>...";
    let wasm = std::fs::read(args.next().expect(usage)).expect("reading the .wasm");
    let host = Host::load(&wasm).unwrap();
    println!("| rules | configuration bytes | linear memory after on_configure |");
    println!("|---:|---:|---:|");
    for rules in args {
        let rules: usize = rules.parse().expect(usage);
        let configuration = config(rules);
        let plugin = host.start(b"", configuration.as_bytes()).unwrap();
        assert!(
            plugin.is_configured(),
            "{rules} rules: the configuration was refused: {:?}",
            plugin.start_report()
        );
        println!(
            "| {rules} | {} | {:.1} MiB ({} bytes) |",
            configuration.len(),
            plugin.memory_bytes() as f64 / f64::from(1 << 20),
            plugin.memory_bytes()
        );
    }
}
