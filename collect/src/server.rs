//! The running collector: one gRPC listener (ALS and OTLP), one HTTP listener
//! (`/policies`, `/audit`, `/metrics`), the state with its sync and snapshot tickers, and
//! the alert sink.

use std::fmt::Write as _;
use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use cordon_lifecycle::audit::{Audit, AuditOptions};
use cordon_lifecycle::discover::DiscoverOptions;
use cordon_lifecycle::sources::PolicySource;
use cordon_lifecycle::time::{now, Millis};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;

use crate::als::Als;
use crate::otlp::Otlp;
use crate::record::Observed;
use crate::state::{Aggregates, Store};

/// The largest gRPC message accepted (Envoy's batches are far smaller; OTLP exporters
/// batch more).
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// How long in-flight streams get to finish after a shutdown signal before the final
/// snapshot (Envoy's access-log streams never end on their own).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// What the collector is started with.
#[derive(Debug, Clone)]
pub struct Config {
    /// gRPC address (ALS and OTLP).
    pub listen: SocketAddr,
    /// HTTP address (`/policies`, `/audit`, `/metrics`).
    pub http: SocketAddr,
    /// The state directory.
    pub state: PathBuf,
    /// Where alerts go (JSON lines); `None`: standard output.
    pub alerts: Option<PathBuf>,
    /// Alerts on the same (source, destination, method, path) within this many
    /// milliseconds are one.
    pub alert_window: Millis,
    /// How often the write-ahead segment is synced to disk.
    pub sync_interval: Duration,
    /// How often a snapshot is written (and on shutdown).
    pub snapshot_interval: Duration,
    /// How `/policies` learns (the options of `cordon discover`).
    pub discover: DiscoverOptions,
    /// Policies and options for `/audit`; `None`: `/audit` answers 404.
    pub audit: Option<(Vec<PolicySource>, AuditOptions)>,
}

/// Where a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// Envoy's gRPC Access Log Service.
    Als,
    /// OTLP logs.
    Otlp,
}

/// Why an entry is not a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// An outbound listener's entry (the node is the caller, not the destination).
    Outbound,
    /// A TCP entry (no HTTP request).
    Tcp,
    /// No request properties.
    Incomplete,
    /// An OTLP log record that carries no request.
    NotARequest,
}

impl Skip {
    fn name(self) -> &'static str {
        match self {
            Skip::Outbound => "outbound",
            Skip::Tcp => "tcp",
            Skip::Incomplete => "incomplete",
            Skip::NotARequest => "not_a_request",
        }
    }

    const ALL: [Skip; 4] = [
        Skip::Outbound,
        Skip::Tcp,
        Skip::Incomplete,
        Skip::NotARequest,
    ];
}

/// Counters since the process started.
#[derive(Debug, Default)]
struct Counters {
    als: AtomicU64,
    otlp: AtomicU64,
    skipped: [AtomicU64; 4],
}

/// What the gRPC services and the HTTP handlers share.
pub struct Shared {
    store: Mutex<Store>,
    snapshot_gate: Mutex<()>,
    alerts: Mutex<Box<dyn Write + Send>>,
    counters: Counters,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// Records a batch (write-ahead first) and writes the alerts it raises.
    pub fn ingest(&self, batch: &[Observed], input: Input) -> Result<()> {
        let alerts = lock(&self.store).append(batch, now())?;
        let counter = match input {
            Input::Als => &self.counters.als,
            Input::Otlp => &self.counters.otlp,
        };
        counter.fetch_add(batch.len() as u64, Ordering::Relaxed);
        if !alerts.is_empty() {
            let mut sink = lock(&self.alerts);
            for alert in alerts {
                writeln!(sink, "{alert}").context("cannot write an alert")?;
            }
            sink.flush().context("cannot write an alert")?;
        }
        Ok(())
    }

    /// Records a batch and syncs the write-ahead segment before returning (for inputs
    /// that acknowledge).
    pub fn ingest_durable(&self, batch: &[Observed], input: Input) -> Result<()> {
        self.ingest(batch, input)?;
        self.sync()
    }

    /// Counts an entry that is not a record.
    pub fn skipped(&self, skip: Skip) {
        if let Some(counter) = Skip::ALL
            .iter()
            .position(|known| *known == skip)
            .and_then(|at| self.counters.skipped.get(at))
        {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Syncs the current write-ahead segment.
    pub fn sync(&self) -> Result<()> {
        let handle = lock(&self.store).segment_handle()?;
        handle
            .sync_data()
            .context("cannot sync the write-ahead segment")
    }

    /// Writes a snapshot now.
    pub fn snapshot(&self) -> Result<()> {
        let _gate = lock(&self.snapshot_gate);
        let pending = lock(&self.store).begin_snapshot(now())?;
        pending.write()
    }

    /// The proposed policies now (YAML), as `cordon discover` would write them from the
    /// same records: a copy of the live aggregate, finished (the lock is held only for
    /// the copy, whose size is bounded as the aggregate's is).
    pub fn policies(&self) -> Result<String> {
        let discovery = lock(&self.store).aggregates().discovery().clone();
        Ok(discovery.finish().to_yaml())
    }

    /// The audit's findings now (JSON), as `cordon audit --format json` would report them
    /// from the same records; `None` without policies.
    pub fn audit(&self) -> Result<Option<serde_json::Value>> {
        let audit = lock(&self.store).aggregates().audit().cloned();
        Ok(audit.map(|audit| audit.finish().to_json()))
    }

    /// The Prometheus text exposition.
    pub fn metrics(&self) -> String {
        let (records, entries, denied, alerts) = {
            let store = lock(&self.store);
            let aggregates = store.aggregates();
            (
                aggregates.records(),
                aggregates.discovery().aggregate_entries(),
                aggregates.denied().clone(),
                store.book().raised(),
            )
        };
        let mut out = String::with_capacity(1024 + denied.len() * 160);
        let _ = writeln!(
            out,
            "# HELP cordon_collect_records_total Requests recorded (kept across restarts).\n\
             # TYPE cordon_collect_records_total counter\n\
             cordon_collect_records_total {records}"
        );
        let _ = writeln!(
            out,
            "# HELP cordon_collect_received_total Requests received since the process started, per input.\n\
             # TYPE cordon_collect_received_total counter\n\
             cordon_collect_received_total{{input=\"als\"}} {}\n\
             cordon_collect_received_total{{input=\"otlp\"}} {}",
            self.counters.als.load(Ordering::Relaxed),
            self.counters.otlp.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP cordon_collect_skipped_total Log entries that were not requests to the proxy's workload, since the process started.\n\
             # TYPE cordon_collect_skipped_total counter"
        );
        for (skip, counter) in Skip::ALL.iter().zip(&self.counters.skipped) {
            let _ = writeln!(
                out,
                "cordon_collect_skipped_total{{reason=\"{}\"}} {}",
                skip.name(),
                counter.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP cordon_collect_aggregate_entries (caller, method, path template) entries held by the discovery aggregate: memory grows with this, at most --max-paths per destination workload.\n\
             # TYPE cordon_collect_aggregate_entries gauge\n\
             cordon_collect_aggregate_entries {entries}"
        );
        let _ = writeln!(
            out,
            "# HELP cordon_collect_denied_total Requests the proxy refused, per source identity and destination workload (kept across restarts).\n\
             # TYPE cordon_collect_denied_total counter"
        );
        for ((source, destination), count) in &denied {
            let _ = writeln!(
                out,
                "cordon_collect_denied_total{{source=\"{}\",destination=\"{}\"}} {count}",
                label_value(source),
                label_value(destination)
            );
        }
        let _ = writeln!(
            out,
            "# HELP cordon_collect_alerts_total Lateral-movement alerts raised (kept across restarts).\n\
             # TYPE cordon_collect_alerts_total counter\n\
             cordon_collect_alerts_total {alerts}"
        );
        out
    }
}

/// A Prometheus label value, escaped.
fn label_value(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A collector bound to its ports, not yet serving.
#[derive(Debug)]
pub struct Collector {
    shared: Arc<Shared>,
    grpc: TcpListener,
    http: TcpListener,
    config: Config,
}

impl Collector {
    /// Opens the state directory (reading what it holds) and binds both ports.
    pub async fn bind(config: Config) -> Result<Collector> {
        let audit = match &config.audit {
            Some((sources, options)) => {
                Some(Audit::from_sources(sources.clone(), options.clone())?)
            }
            None => None,
        };
        let aggregates = Aggregates::new(config.discover.clone(), audit);
        let store = Store::open(&config.state, config.alert_window, aggregates)?;
        for warning in store.warnings() {
            eprintln!("cordon collect: warning: {warning}");
        }
        let alerts: Box<dyn Write + Send> = match &config.alerts {
            Some(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("cannot open {}", path.display()))?,
            ),
            None => Box::new(std::io::stdout()),
        };
        let grpc = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("--listen {}: cannot bind", config.listen))?;
        let http = TcpListener::bind(config.http)
            .await
            .with_context(|| format!("--http {}: cannot bind", config.http))?;
        let shared = Arc::new(Shared {
            store: Mutex::new(store),
            snapshot_gate: Mutex::new(()),
            alerts: Mutex::new(alerts),
            counters: Counters::default(),
        });
        Ok(Collector {
            shared,
            grpc,
            http,
            config,
        })
    }

    /// The gRPC address bound.
    pub fn grpc_addr(&self) -> Result<SocketAddr> {
        Ok(self.grpc.local_addr()?)
    }

    /// The HTTP address bound.
    pub fn http_addr(&self) -> Result<SocketAddr> {
        Ok(self.http.local_addr()?)
    }

    /// The shared state (for tests).
    pub fn shared(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }

    /// Serves until `shutdown` completes, then writes a final snapshot.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        let Collector {
            shared,
            grpc,
            http,
            config,
        } = self;
        let (stop_tx, stop_rx) = watch::channel(false);
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };

        let grpc_server = tonic::transport::Server::builder()
            .add_service(Als::server(Arc::clone(&shared)))
            .add_service(Otlp::server(Arc::clone(&shared)))
            .serve_with_incoming_shutdown(TcpListenerStream::new(grpc), stopped(stop_rx.clone()));
        let grpc_task = tokio::spawn(async move { grpc_server.await.map_err(anyhow::Error::from) });

        let router = Router::new()
            .route("/policies", get(policies))
            .route("/audit", get(audit))
            .route("/metrics", get(metrics))
            .route("/healthz", get(|| async { "ok\n" }))
            .with_state(Arc::clone(&shared));
        let http_stop = stopped(stop_rx.clone());
        let http_task = tokio::spawn(async move {
            axum::serve(http, router)
                .with_graceful_shutdown(http_stop)
                .await
                .map_err(anyhow::Error::from)
        });

        let ticker_shared = Arc::clone(&shared);
        let sync_interval = config.sync_interval;
        let snapshot_interval = config.snapshot_interval;
        let tickers = tokio::spawn(async move {
            let mut sync = tokio::time::interval(sync_interval);
            let mut snapshot = tokio::time::interval(snapshot_interval);
            sync.tick().await;
            snapshot.tick().await;
            loop {
                tokio::select! {
                    _ = sync.tick() => {
                        let shared = Arc::clone(&ticker_shared);
                        let synced = tokio::task::spawn_blocking(move || shared.sync()).await;
                        if let Ok(Err(error)) = synced {
                            eprintln!("cordon collect: {error:#}");
                        }
                    }
                    _ = snapshot.tick() => {
                        let shared = Arc::clone(&ticker_shared);
                        let written = tokio::task::spawn_blocking(move || shared.snapshot()).await;
                        if let Ok(Err(error)) = written {
                            eprintln!("cordon collect: snapshot failed: {error:#}");
                        }
                    }
                }
            }
        });

        shutdown.await;
        let _ = stop_tx.send(true);
        for task in [grpc_task, http_task] {
            match tokio::time::timeout(SHUTDOWN_GRACE, task).await {
                Ok(Ok(Ok(()))) | Err(_) => {}
                Ok(Ok(Err(error))) => eprintln!("cordon collect: {error:#}"),
                Ok(Err(error)) => eprintln!("cordon collect: {error}"),
            }
        }
        tickers.abort();
        let final_shared = Arc::clone(&shared);
        tokio::task::spawn_blocking(move || final_shared.snapshot())
            .await
            .map_err(|error| anyhow!("the final snapshot stopped: {error}"))??;
        Ok(())
    }
}

async fn blocking<T: Send + 'static>(
    shared: &Arc<Shared>,
    work: impl FnOnce(&Shared) -> Result<T> + Send + 'static,
) -> Result<T> {
    let shared = Arc::clone(shared);
    tokio::task::spawn_blocking(move || work(&shared))
        .await
        .map_err(|error| anyhow!("{error}"))?
}

fn failure(error: &anyhow::Error) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("cordon collect: {error:#}\n"),
    )
        .into_response()
}

async fn policies(State(shared): State<Arc<Shared>>) -> Response {
    match blocking(&shared, Shared::policies).await {
        Ok(yaml) => ([(header::CONTENT_TYPE, "application/yaml")], yaml).into_response(),
        Err(error) => failure(&error),
    }
}

async fn audit(State(shared): State<Arc<Shared>>) -> Response {
    match blocking(&shared, Shared::audit).await {
        Ok(Some(json)) => (
            [(header::CONTENT_TYPE, "application/json")],
            format!("{json}\n"),
        )
            .into_response(),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            "no policies to audit: start `cordon collect` with --policy\n",
        )
            .into_response(),
        Err(error) => failure(&error),
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    match blocking(&shared, |shared| Ok(shared.metrics())).await {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response(),
        Err(error) => failure(&error),
    }
}
