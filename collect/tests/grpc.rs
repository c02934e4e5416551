//! The collector in process, fed through its gRPC port by tonic clients: Envoy's ALS
//! stream and OTLP exports. `/policies` must be what `cordon discover` writes from the
//! same records, `/metrics` must count them, alerts must be one per deduplication key, and
//! a restart on the same state directory must keep everything.

#![allow(clippy::indexing_slicing)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cordon_collect::als::envoy_side;
use cordon_collect::otlp::attribute;
use cordon_collect::record::{from_line, Observed};
use cordon_collect::{Collector, Config};
use cordon_lifecycle::discover::{DiscoverOptions, Discovery};
use cordon_lifecycle::synthetic::Generator;
use envoy_types::pb::envoy::service::accesslog::v3::access_log_service_client::AccessLogServiceClient;
use envoy_types::pb::envoy::service::accesslog::v3::stream_access_logs_message::{
    HttpAccessLogEntries, Identifier, LogEntries,
};
use envoy_types::pb::envoy::service::accesslog::v3::StreamAccessLogsMessage;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn scratch(name: &str) -> Result<PathBuf> {
    let dir =
        std::env::temp_dir().join(format!("cordon-collect-grpc-{}-{name}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn config(state: &Path, alerts: &Path) -> Config {
    Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        http: SocketAddr::from(([127, 0, 0, 1], 0)),
        state: state.to_path_buf(),
        alerts: Some(alerts.to_path_buf()),
        alert_window: 300_000,
        sync_interval: Duration::from_millis(200),
        snapshot_interval: Duration::from_secs(3600),
        discover: DiscoverOptions::default(),
        audit: None,
    }
}

struct Running {
    grpc: SocketAddr,
    http: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start(config: Config) -> Result<Running> {
    let collector = Collector::bind(config).await?;
    let (grpc, http) = (collector.grpc_addr()?, collector.http_addr()?);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(collector.serve(async move {
        let _ = stopped.await;
    }));
    Ok(Running {
        grpc,
        http,
        stop,
        task,
    })
}

impl Running {
    async fn stop(self) -> Result<()> {
        let _ = self.stop.send(());
        self.task.await??;
        Ok(())
    }
}

async fn get(http: SocketAddr, path: &str) -> Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(http).await?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let text = String::from_utf8(response)?;
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no HTTP head")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or("no status")?;
    // Bodies are small and sent whole (content-length): no chunked decoding needed.
    Ok((status, body.to_string()))
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|line| line.starts_with(name) && line.get(name.len()..name.len() + 1) == Some(" "))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

fn traffic(records: usize, seed: u64) -> Result<(Vec<String>, Vec<Observed>)> {
    let lines: Vec<String> = Generator::new(records, seed).map(|r| r.line).collect();
    let observed = lines
        .iter()
        .filter_map(|line| from_line(line.as_bytes()).transpose())
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok((lines, observed))
}

fn discover(lines: &[String]) -> Result<String> {
    let mut direct = Discovery::new(DiscoverOptions::default());
    for line in lines {
        direct.add_line(line.as_bytes())?;
    }
    Ok(direct.finish().to_yaml())
}

/// The alerts a stream must raise: one per (source, destination, method, path).
fn expected_alerts(observed: &[Observed]) -> BTreeSet<(String, String, String, String)> {
    observed
        .iter()
        .filter(|o| o.denied())
        .map(|o| {
            let path = o.record.path.clone().unwrap_or_default();
            let path = path.split('?').next().unwrap_or("").to_string();
            (
                o.source_identity().unwrap_or("").to_string(),
                o.destination_label(),
                o.record.method.clone().unwrap_or_default(),
                path,
            )
        })
        .collect()
}

fn alerts_in(file: &Path) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    Ok(text
        .lines()
        .map(serde_json::from_str)
        .collect::<std::result::Result<_, _>>()?)
}

/// One ALS stream per destination workload, as each workload's proxy would open one.
async fn send_als(grpc: SocketAddr, observed: &[Observed]) -> Result<()> {
    let mut by_workload: BTreeMap<String, Vec<&Observed>> = BTreeMap::new();
    for record in observed {
        by_workload
            .entry(record.destination_label())
            .or_default()
            .push(record);
    }
    let mut client = AccessLogServiceClient::connect(format!("http://{grpc}")).await?;
    for records in by_workload.values() {
        let Some(first) = records.first() else {
            continue;
        };
        let mut messages = Vec::new();
        for (index, chunk) in records.chunks(50).enumerate() {
            messages.push(StreamAccessLogsMessage {
                identifier: (index == 0).then(|| Identifier {
                    node: Some(envoy_side::node(first)),
                    log_name: "cordon".into(),
                }),
                log_entries: Some(LogEntries::HttpLogs(HttpAccessLogEntries {
                    log_entry: chunk.iter().map(|o| envoy_side::entry(o)).collect(),
                })),
            });
        }
        client
            .stream_access_logs(tokio_stream::iter(messages))
            .await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn als_stream_maps_alerts_and_survives_a_restart() -> Result<()> {
    let dir = scratch("als")?;
    let (state, alerts) = (dir.join("state"), dir.join("alerts.jsonl"));
    let (lines, observed) = traffic(2_000, 11)?;
    let expected = discover(&lines)?;

    let running = start(config(&state, &alerts)).await?;
    send_als(running.grpc, &observed).await?;
    let (status, policies) = get(running.http, "/policies").await?;
    assert_eq!(status, 200);
    assert_eq!(
        policies, expected,
        "/policies is what `cordon discover` writes"
    );

    let (_, metrics) = get(running.http, "/metrics").await?;
    assert_eq!(
        metric(&metrics, "cordon_collect_records_total"),
        Some(observed.len() as f64)
    );
    let denied = observed.iter().filter(|o| o.denied()).count();
    assert!(denied > 0);
    let denied_metric: f64 = metrics
        .lines()
        .filter(|line| line.starts_with("cordon_collect_denied_total{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(denied_metric, denied as f64);

    let wanted = expected_alerts(&observed);
    let raised = alerts_in(&alerts)?;
    assert_eq!(raised.len(), wanted.len(), "one alert per key: {raised:?}");
    assert_eq!(
        metric(&metrics, "cordon_collect_alerts_total"),
        Some(wanted.len() as f64)
    );
    for alert in &raised {
        assert_eq!(alert["alert"], "lateral_movement");
        assert_eq!(alert["record"]["source"]["principal"], alert["source"]);
        assert_eq!(alert["record"]["decision"]["allowed"], false);
    }
    let (status, _) = get(running.http, "/audit").await?;
    assert_eq!(status, 404, "no --policy: nothing to audit");
    running.stop().await?;

    // Restart on the same state: the same policies and counts; the same denied requests
    // again raise no alert inside the window.
    let running = start(config(&state, &alerts)).await?;
    let (_, policies) = get(running.http, "/policies").await?;
    assert_eq!(policies, expected, "a restart keeps the state");
    let (_, metrics) = get(running.http, "/metrics").await?;
    assert_eq!(
        metric(&metrics, "cordon_collect_records_total"),
        Some(observed.len() as f64)
    );
    let again: Vec<Observed> = observed.iter().filter(|o| o.denied()).cloned().collect();
    send_als(running.grpc, &again).await?;
    assert_eq!(
        alerts_in(&alerts)?.len(),
        wanted.len(),
        "deduplicated across the restart"
    );
    let (_, metrics) = get(running.http, "/metrics").await?;
    assert_eq!(
        metric(&metrics, "cordon_collect_alerts_total"),
        Some(wanted.len() as f64)
    );
    running.stop().await?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

fn otlp_record(observed: &Observed) -> LogRecord {
    let record = &observed.record;
    let mut attributes = Vec::new();
    let mut put = |key: &str, value: Option<String>| {
        if let Some(value) = value {
            attributes.push(attribute(key, &value));
        }
    };
    put("source.principal", record.principal.clone());
    put("connection.mtls", record.mtls.map(|m| m.to_string()));
    put("request.method", record.method.clone());
    put("request.path", record.path.clone());
    put("request.host", record.host.clone());
    put(
        "destination.port",
        record.destination_port.map(|p| p.to_string()),
    );
    put(
        "destination.namespace",
        record.destination_namespace.clone(),
    );
    put(
        "destination.labels",
        Some(serde_json::to_string(&record.destination_labels).unwrap_or_default()),
    );
    put(
        "cordon.decision",
        observed.decision.as_ref().map(Value::to_string),
    );
    let nanos = observed
        .time
        .and_then(|ms| u64::try_from(ms).ok())
        .map_or(0, |ms| ms * 1_000_000);
    LogRecord {
        time_unix_nano: nanos,
        attributes,
        ..LogRecord::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_export_maps_like_als() -> Result<()> {
    let dir = scratch("otlp")?;
    let (state, alerts) = (dir.join("state"), dir.join("alerts.jsonl"));
    let (lines, observed) = traffic(1_500, 5)?;
    let expected = discover(&lines)?;
    let running = start(config(&state, &alerts)).await?;
    let mut client = LogsServiceClient::connect(format!("http://{}", running.grpc)).await?;
    for chunk in observed.chunks(200) {
        let request = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: chunk.iter().map(otlp_record).collect(),
                    ..ScopeLogs::default()
                }],
                ..ResourceLogs::default()
            }],
        };
        client.export(request).await?;
    }
    // A record that is no request is skipped and counted.
    client
        .export(ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![LogRecord::default()],
                    ..ScopeLogs::default()
                }],
                ..ResourceLogs::default()
            }],
        })
        .await?;
    let (_, policies) = get(running.http, "/policies").await?;
    assert_eq!(policies, expected);
    let (_, metrics) = get(running.http, "/metrics").await?;
    assert_eq!(
        metric(&metrics, "cordon_collect_records_total"),
        Some(observed.len() as f64)
    );
    assert!(
        metrics.contains("cordon_collect_skipped_total{reason=\"not_a_request\"} 1"),
        "{metrics}"
    );
    assert_eq!(alerts_in(&alerts)?.len(), expected_alerts(&observed).len());
    running.stop().await?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// An ALLOW policy for the synthetic shop's `orders` workload (the generator's other
/// workloads have none, so requests to them are allowed; callers it does not name are
/// denied at `orders`).
fn orders_policy() -> Value {
    serde_json::json!({
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": "orders", "namespace": "shop"},
        "spec": {
            "selector": {"matchLabels": {"app": "orders"}},
            "action": "ALLOW",
            "rules": [{
                "from": [{"source": {"principals": ["cluster.local/ns/shop/sa/frontend"]}}],
                "to": [{"operation": {"methods": ["GET"]}}],
            }],
        },
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_counts_are_what_cordon_audit_reports_and_survive_a_restart() -> Result<()> {
    use cordon_lifecycle::audit::{Audit, AuditOptions};
    use cordon_lifecycle::sources::PolicySource;

    let dir = scratch("audit")?;
    let (state, alerts) = (dir.join("state"), dir.join("alerts.jsonl"));
    let (lines, observed) = traffic(1_500, 21)?;
    let sources = vec![PolicySource {
        file: PathBuf::from("orders.yaml"),
        value: orders_policy(),
        locations: Default::default(),
    }];
    let mut direct = Audit::from_sources(sources.clone(), AuditOptions::default())?;
    for line in &lines {
        let _ = direct.add_line(line.as_bytes());
    }
    let expected = direct.finish().to_json();
    assert!(
        expected["findings"]
            .as_array()
            .is_some_and(|findings| findings.len() > 1),
        "{expected}"
    );
    let with_audit = || {
        let mut config = config(&state, &alerts);
        config.audit = Some((sources.clone(), AuditOptions::default()));
        config
    };

    let running = start(with_audit()).await?;
    send_als(running.grpc, &observed).await?;
    let (status, body) = get(running.http, "/audit").await?;
    assert_eq!(status, 200);
    let live: Value = serde_json::from_str(&body)?;
    assert_eq!(live["findings"], expected["findings"]);
    assert_eq!(live["summary"]["judged"], expected["summary"]["judged"]);
    assert_eq!(live["summary"]["denied"], expected["summary"]["denied"]);
    running.stop().await?;

    // The snapshot holds the audit's counts: the same findings after a restart.
    let running = start(with_audit()).await?;
    let (_, body) = get(running.http, "/audit").await?;
    let restarted: Value = serde_json::from_str(&body)?;
    assert_eq!(restarted, live);
    running.stop().await?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
