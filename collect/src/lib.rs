//! # cordon-collect
//!
//! `cordon collect`: a long-running receiver for Envoy's access-log stream that maps and
//! audits live, and raises an alert the moment an identity tries to reach a workload its
//! segment does not allow.
//!
//! - **Input** (one gRPC port): Envoy's Access Log Service ([`als`]) and OTLP logs
//!   ([`otlp`]), each entry mapped to the engine's traffic record ([`record`]).
//! - **State** ([`state`]): the aggregates `cordon discover` and `cordon audit` build,
//!   bounded by templated paths, fed every record after it is written ahead to a
//!   segment, snapshotted atomically, and read back on start; several collectors' state
//!   directories merge ([`state::load_discovery`]) into what one collector over all
//!   records would hold.
//! - **Output** ([`server`]): `GET /policies` (what `cordon discover` would write from
//!   the same records), `GET /audit` (what `cordon audit --format json` would report),
//!   `GET /metrics` (Prometheus text), and alerts as JSON lines ([`alerts`]).
//!
//! The crate never judges a match itself: `/policies` and `/audit` finish copies of
//! `cordon_lifecycle`'s `Discovery` and `Audit`, which call the engine.

pub mod alerts;
pub mod als;
pub mod otlp;
pub mod record;
pub mod server;
pub mod state;

pub use server::{Collector, Config};

/// Runs a collector until SIGINT or SIGTERM, then writes a final snapshot.
pub fn run(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let collector = Collector::bind(config).await?;
        eprintln!(
            "cordon collect: gRPC (ALS, OTLP) on {}, HTTP on {}",
            collector.grpc_addr()?,
            collector.http_addr()?
        );
        collector.serve(shutdown_signal()).await
    })
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
