//! Throughput of `cordon collect` through the gRPC path (Envoy's ALS), for
//! `scripts/bench-collect.sh`, which runs the two halves on separate cores:
//!
//! - `collect-bench serve <state dir> <grpc port> <http port>`: the collector on a
//!   single-threaded runtime (one core: decoding, mapping, the write-ahead log, the table);
//! - `collect-bench send <grpc port> <http port> <records> <rounds> <batch>`: generates
//!   `records` synthetic requests (lifecycle's mesh generator), encodes them as Envoy
//!   would (one stream per destination workload, `batch` entries per message), sends them
//!   `rounds` times, waits until `/metrics` counts them all, and prints the rate;
//! - `collect-bench replay <grpc port> <traffic.jsonl>`: sends a traffic file (records or
//!   the filter's decision log) as Envoy would stream it: one ALS stream per destination
//!   workload, its node metadata naming the workload (docs/LIFECYCLE.md uses it on the
//!   shop example).
//!
//! The server's CPU time (from /proc) is what the script divides by: entries per
//! CPU-second on one core, whatever else the shared machine runs.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use cordon_collect::als::envoy_side;
use cordon_collect::record::{from_line, Observed};
use cordon_collect::{Collector, Config};
use cordon_lifecycle::discover::DiscoverOptions;
use cordon_lifecycle::synthetic::Generator;
use envoy_types::pb::envoy::service::accesslog::v3::access_log_service_client::AccessLogServiceClient;
use envoy_types::pb::envoy::service::accesslog::v3::stream_access_logs_message::{
    HttpAccessLogEntries, Identifier, LogEntries,
};
use envoy_types::pb::envoy::service::accesslog::v3::StreamAccessLogsMessage;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn argument<T: std::str::FromStr>(args: &[String], index: usize, name: &str) -> Result<T> {
    args.get(index)
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| format!("argument {index}: expected {name}").into())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("serve") => serve(
            argument(&args, 2, "a state directory")?,
            argument(&args, 3, "a gRPC port")?,
            argument(&args, 4, "an HTTP port")?,
        ),
        Some("send") => send(
            argument(&args, 2, "a gRPC port")?,
            argument(&args, 3, "an HTTP port")?,
            argument(&args, 4, "a record count")?,
            argument(&args, 5, "a round count")?,
            argument(&args, 6, "a batch size")?,
        ),
        Some("replay") => replay(
            argument(&args, 2, "a gRPC port")?,
            argument(&args, 3, "a traffic file")?,
        ),
        _ => Err("usage: collect-bench serve <state> <grpc port> <http port> | send <grpc port> <http port> <records> <rounds> <batch> | replay <grpc port> <traffic.jsonl>".into()),
    }
}

fn serve(state: PathBuf, grpc: u16, http: u16) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let collector = Collector::bind(Config {
            listen: SocketAddr::from(([127, 0, 0, 1], grpc)),
            http: SocketAddr::from(([127, 0, 0, 1], http)),
            state,
            alerts: Some(PathBuf::from("/dev/null")),
            alert_window: 300_000,
            sync_interval: Duration::from_secs(1),
            snapshot_interval: Duration::from_secs(3600),
            discover: DiscoverOptions::default(),
            audit: None,
        })
        .await?;
        collector
            .serve(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
        Ok(())
    })
}

async fn records_total(http: u16) -> Result<u64> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", http)).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await?;
    text.lines()
        .find_map(|line| line.strip_prefix("cordon_collect_records_total "))
        .and_then(|value| value.trim().parse().ok())
        .ok_or_else(|| "no cordon_collect_records_total".into())
}

fn streams(observed: &[Observed], batch: usize) -> Vec<Vec<StreamAccessLogsMessage>> {
    let mut by_workload: BTreeMap<String, Vec<&Observed>> = BTreeMap::new();
    for record in observed {
        by_workload
            .entry(record.destination_label())
            .or_default()
            .push(record);
    }
    by_workload
        .values()
        .filter_map(|records| {
            let first = records.first()?;
            let mut messages = Vec::new();
            for (index, chunk) in records.chunks(batch.max(1)).enumerate() {
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
            Some(messages)
        })
        .collect()
}

fn replay(grpc: u16, traffic: PathBuf) -> Result<()> {
    let text = std::fs::read_to_string(&traffic)?;
    let mut observed = Vec::new();
    for (number, line) in text.lines().enumerate() {
        match from_line(line.as_bytes()) {
            Ok(Some(record)) => observed.push(record),
            Ok(None) => {}
            Err(error) => {
                return Err(format!("{}:{}: {error}", traffic.display(), number + 1).into())
            }
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let mut client =
            AccessLogServiceClient::connect(format!("http://127.0.0.1:{grpc}")).await?;
        for messages in streams(&observed, 50) {
            client
                .stream_access_logs(tokio_stream::iter(messages))
                .await?;
        }
        eprintln!("sent {} records", observed.len());
        Ok(())
    })
}

fn send(grpc: u16, http: u16, records: usize, rounds: usize, batch: usize) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let observed: Vec<Observed> = Generator::new(records, 1)
            .filter_map(|record| from_line(record.line.as_bytes()).ok().flatten())
            .collect();
        // Encoded before the clock starts: the client's work is not measured.
        let streams = streams(&observed, batch);
        let total = (observed.len() * rounds) as u64;
        let before = records_total(http).await?;
        let started = Instant::now();
        let mut tasks = Vec::new();
        for messages in streams {
            let endpoint = format!("http://127.0.0.1:{grpc}");
            tasks.push(tokio::spawn(async move {
                let mut client = AccessLogServiceClient::connect(endpoint).await?;
                // Messages cloned one at a time as the stream pulls them.
                let count = messages.len().max(1);
                let lazy =
                    (0..rounds * count).filter_map(move |i| messages.get(i % count).cloned());
                client.stream_access_logs(tokio_stream::iter(lazy)).await?;
                Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
            }));
        }
        for task in tasks {
            task.await??;
        }
        while records_total(http).await? < before + total {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let elapsed = started.elapsed().as_secs_f64();
        println!(
            "entries {total} wall_seconds {elapsed:.3} entries_per_wall_second {:.0}",
            total as f64 / elapsed
        );
        Ok(())
    })
}
