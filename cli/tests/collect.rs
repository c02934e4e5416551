//! `cordon collect` end to end: a real Envoy 1.40 running cordon's filter with the shop
//! policies (as billing-service in `finance`), its access log streamed to `cordon collect`
//! over gRPC, one test per input (the HTTP gRPC access logger, and the OpenTelemetry
//! access logger); mTLS requests from several identities, one of them trying to reach
//! billing-service, which it has no grant for. Then: `/policies` round-trips (`cordon
//! simulate` allows every observed allowed request under it), the lateral-movement
//! attempt raised exactly one alert holding its record, `/metrics` counts it, and a
//! collector killed with SIGKILL mid-stream and started again has lost nothing.

#![allow(clippy::indexing_slicing)]

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cordon_e2e::tools::{self, Pki};
use serde_json::{json, Value};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const FRONTEND: &str = "spiffe://cluster.local/ns/shop/sa/frontend";

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

fn scratch(name: &str) -> Result<PathBuf> {
    let dir = tools::scratch_dir(name)?;
    Ok(dir)
}

/// A `cordon collect` process.
struct Collector {
    child: Child,
    http: u16,
}

impl Collector {
    fn start(state: &Path, alerts: &Path, grpc: u16, http: u16, log: &Path) -> Result<Collector> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let child = Command::new(env!("CARGO_BIN_EXE_cordon"))
            .args(["collect", "--listen"])
            .arg(format!("127.0.0.1:{grpc}"))
            .arg("--http")
            .arg(format!("127.0.0.1:{http}"))
            .arg("--state")
            .arg(state)
            .arg("--alerts")
            .arg(alerts)
            .args(["--sync-interval", "100ms", "--snapshot-interval", "1h"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let collector = Collector { child, http };
        let deadline = Instant::now() + Duration::from_secs(30);
        while collector.get("/healthz").is_err() {
            if Instant::now() > deadline {
                return Err("cordon collect did not start".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(collector)
    }

    fn get(&self, path: &str) -> Result<String> {
        let output = Command::new("curl")
            .args(["-sf", "--max-time", "20"])
            .arg(format!("http://127.0.0.1:{}{path}", self.http))
            .output()?;
        if !output.status.success() {
            return Err(format!("GET {path}: curl {}", output.status).into());
        }
        Ok(String::from_utf8(output.stdout)?)
    }

    fn metric(&self, name: &str) -> Result<f64> {
        let text = self.get("/metrics")?;
        metric(&text, name).ok_or_else(|| format!("no {name} in {text}").into())
    }

    /// Waits until `records_total` reaches `count`.
    fn wait_records(&self, count: f64) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let now = self.metric("cordon_collect_records_total")?;
            if now >= count {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("records_total stayed at {now}, expected {count}").into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn kill(mut self) -> Result<()> {
        // SIGKILL: no final snapshot, no flush.
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    fn terminate(mut self) -> Result<()> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        assert!(status.success());
        let status = self.child.wait()?;
        assert!(
            status.success(),
            "cordon collect exits 0 on SIGTERM: {status}"
        );
        Ok(())
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|line| line.starts_with(name) && line.get(name.len()..name.len() + 1) == Some(" "))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

/// Which access logger Envoy streams with.
#[derive(Debug, Clone, Copy)]
enum Logger {
    Als,
    OpenTelemetry,
}

fn access_log(logger: Logger) -> Value {
    let common = json!({
        "log_name": "cordon",
        "transport_api_version": "V3",
        "grpc_service": {"envoy_grpc": {"cluster_name": "collector"}},
        "buffer_flush_interval": "0.1s",
        "buffer_size_bytes": 0,
        "filter_state_objects_to_log": ["wasm.cordon.decision"],
    });
    match logger {
        Logger::Als => json!({
            "name": "envoy.access_loggers.http_grpc",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig",
                "common_config": common,
            },
        }),
        Logger::OpenTelemetry => {
            // The attribute set cordon reads (collect/src/otlp.rs), as documented in
            // envoy/istio/collect.yaml; the workload from the node metadata, by CEL.
            let attributes: Vec<Value> = [
                ("source.principal", "%DOWNSTREAM_PEER_URI_SAN%"),
                (
                    "source.address",
                    "%DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT%",
                ),
                (
                    "destination.address",
                    "%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%",
                ),
                ("destination.port", "%DOWNSTREAM_LOCAL_PORT%"),
                (
                    "destination.namespace",
                    "%CEL(xds.node.metadata.NAMESPACE)%",
                ),
                (
                    "destination.label.app",
                    "%CEL(xds.node.metadata.LABELS.app)%",
                ),
                ("connection.sni", "%REQUESTED_SERVER_NAME%"),
                ("request.method", "%REQ(:METHOD)%"),
                ("request.path", "%REQ(:PATH)%"),
                ("request.host", "%REQ(:AUTHORITY)%"),
                ("response.code", "%RESPONSE_CODE%"),
                ("response.code_details", "%RESPONSE_CODE_DETAILS%"),
                (
                    "cordon.decision",
                    "%FILTER_STATE(wasm.cordon.decision:PLAIN)%",
                ),
            ]
            .iter()
            .map(|(key, value)| json!({"key": key, "value": {"string_value": value}}))
            .collect();
            json!({
                "name": "envoy.access_loggers.open_telemetry",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.access_loggers.open_telemetry.v3.OpenTelemetryAccessLogConfig",
                    "common_config": {
                        "log_name": "cordon",
                        "transport_api_version": "V3",
                        "grpc_service": {"envoy_grpc": {"cluster_name": "collector"}},
                        "buffer_flush_interval": "0.1s",
                        "buffer_size_bytes": 0,
                    },
                    "body": {"string_value": "%REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE%"},
                    "attributes": {"values": attributes},
                    "formatters": [{
                        "name": "envoy.formatter.cel",
                        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.formatter.cel.v3.Cel"},
                    }],
                },
            })
        }
    }
}

/// An Envoy with the shop's billing-service sidecar: mTLS listener, cordon, direct 200.
struct Envoy {
    child: Child,
    port: u16,
}

impl Envoy {
    fn start(logger: Logger, grpc: u16, work: &Path) -> Result<Envoy> {
        let pki = Pki::shared()?;
        let certs = pki.dir();
        let (admin, port) = (free_port()?, free_port()?);
        let plugin = tools::shop_config()?;
        let config = json!({
            "node": {
                "id": "billing-service-1",
                "cluster": "billing-service.finance",
                "metadata": {"NAMESPACE": "finance", "LABELS": {"app": "billing-service", "version": "v1"}},
            },
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
            "static_resources": {
                "listeners": [{
                    "name": "mtls",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                    "filter_chains": [{
                        "transport_socket": {
                            "name": "envoy.transport_sockets.tls",
                            "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                                "require_client_certificate": true,
                                "common_tls_context": {
                                    "tls_certificates": [{
                                        "certificate_chain": {"filename": certs.join("server.crt")},
                                        "private_key": {"filename": certs.join("server.key")},
                                    }],
                                    "validation_context": {"trusted_ca": {"filename": certs.join("ca.crt")}},
                                },
                            },
                        },
                        "filters": [{
                            "name": "envoy.filters.network.http_connection_manager",
                            "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                                "stat_prefix": "ingress",
                                "forward_client_cert_details": "SANITIZE",
                                "access_log": [access_log(logger)],
                                "route_config": {"virtual_hosts": [{
                                    "name": "backend",
                                    "domains": ["*"],
                                    "routes": [{"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "ok"}}}],
                                }]},
                                "http_filters": [
                                    {
                                        "name": "envoy.filters.http.wasm",
                                        "typed_config": {
                                            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                                            "config": {
                                                "name": "cordon",
                                                "root_id": "cordon",
                                                "configuration": {
                                                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                                                    "value": plugin.to_string(),
                                                },
                                                "vm_config": {
                                                    "runtime": "envoy.wasm.runtime.v8",
                                                    "vm_id": "cordon",
                                                    "code": {"local": {"filename": tools::filter_wasm()?}},
                                                },
                                                "failure_policy": "FAIL_RELOAD",
                                            },
                                        },
                                    },
                                    {
                                        "name": "envoy.filters.http.router",
                                        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
                                    },
                                ],
                            },
                        }],
                    }],
                }],
                "clusters": [{
                    "name": "collector",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "typed_extension_protocol_options": {
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                            "explicit_http_config": {"http2_protocol_options": {}},
                        },
                    },
                    "load_assignment": {
                        "cluster_name": "collector",
                        "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": grpc}}}}]}],
                    },
                }],
            },
        });
        let path = work.join("envoy.json");
        std::fs::write(&path, serde_json::to_string_pretty(&config)?)?;
        let log = std::fs::File::create(work.join("envoy.out"))?;
        let child = Command::new(tools::envoy_bin()?)
            .arg("-c")
            .arg(&path)
            .args([
                "--concurrency",
                "1",
                "--disable-hot-restart",
                "--log-level",
                "warn",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let envoy = Envoy { child, port };
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let ready = Command::new("curl")
                .args(["-sf", "--max-time", "2"])
                .arg(format!("http://127.0.0.1:{admin}/ready"))
                .output()?;
            if ready.status.success() {
                return Ok(envoy);
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(work.join("envoy.out")).unwrap_or_default();
                return Err(format!("Envoy did not become ready:\n{log}").into());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// One mTLS request as `identity` (a client certificate of envoy/gen-certs.sh).
    fn request(&self, identity: &str, method: &str, path: &str) -> Result<u16> {
        let pki = Pki::shared()?;
        let (cert, key) = pki.client(identity);
        let output = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "20",
            ])
            .arg("--cacert")
            .arg(pki.ca())
            .arg("--cert")
            .arg(cert)
            .arg("--key")
            .arg(key)
            .args(["-X", method])
            .arg(format!("https://localhost:{}{path}", self.port))
            .output()?;
        Ok(String::from_utf8(output.stdout)?.trim().parse()?)
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The requests of the scenario: (identity, method, path, expected status).
const ALLOWED: &[(&str, &str, &str)] = &[
    ("order-engine", "GET", "/v1/credits/inv-20481"),
    ("order-engine", "GET", "/v1/credits/inv-20482"),
    ("order-engine", "GET", "/v1/credits/inv-20483"),
    ("ops", "GET", "/admin/ledger"),
    ("ops", "POST", "/admin/reconcile"),
];

fn scenario(logger: Logger) -> Result<()> {
    let work = scratch(&format!("collect-{logger:?}"))?;
    let (state, alerts, log) = (
        work.join("state"),
        work.join("alerts.jsonl"),
        work.join("collect.log"),
    );
    let (grpc, http) = (free_port()?, free_port()?);
    let collector = Collector::start(&state, &alerts, grpc, http, &log)?;
    let envoy = Envoy::start(logger, grpc, &work)?;

    for (identity, method, path) in ALLOWED {
        assert_eq!(
            envoy.request(identity, method, path)?,
            200,
            "{identity} {method} {path}"
        );
    }
    // Lateral movement: frontend reaches for billing-service, three times.
    for _ in 0..3 {
        assert_eq!(
            envoy.request("frontend", "GET", "/v1/credits/inv-20481")?,
            403
        );
    }
    let first = (ALLOWED.len() + 3) as f64;
    collector.wait_records(first)?;
    assert_eq!(collector.metric("cordon_collect_records_total")?, first);

    // Exactly one alert, holding the record with the caller's SPIFFE ID.
    let raised: Vec<Value> = std::fs::read_to_string(&alerts)?
        .lines()
        .map(serde_json::from_str)
        .collect::<std::result::Result<_, _>>()?;
    assert_eq!(raised.len(), 1, "{raised:?}");
    let alert = raised.first().ok_or("no alert")?;
    assert_eq!(alert["source"], FRONTEND);
    assert_eq!(alert["destination"], "finance/billing-service");
    assert_eq!(alert["path"], "/v1/credits/inv-20481");
    assert_eq!(alert["record"]["source"]["principal"], FRONTEND);
    assert_eq!(alert["record"]["decision"]["allowed"], false);
    assert_eq!(alert["record"]["request"]["method"], "GET");
    let metrics = collector.get("/metrics")?;
    assert_eq!(metric(&metrics, "cordon_collect_alerts_total"), Some(1.0));
    assert!(
        metrics.contains(&format!(
            "cordon_collect_denied_total{{source=\"{FRONTEND}\",destination=\"finance/billing-service\"}} 3"
        )),
        "{metrics}"
    );

    // /policies round-trips: simulate allows every observed allowed request under it.
    let policies = collector.get("/policies")?;
    assert!(
        policies.contains("cluster.local/ns/shop/sa/order-engine"),
        "{policies}"
    );
    assert!(
        !policies.contains("sa/frontend\""),
        "a denied caller is never granted:\n{policies}"
    );
    let policy_file = work.join("policies.yaml");
    std::fs::write(&policy_file, &policies)?;

    // Killed mid-stream (Envoy's stream is open), started again: nothing lost.
    collector.kill()?;
    let snapshot_written = state.join("snapshot.jsonl").exists();
    assert!(
        !snapshot_written,
        "no snapshot yet: the state is the write-ahead log alone"
    );
    let collector = Collector::start(&state, &alerts, grpc, http, &log)?;
    assert_eq!(collector.metric("cordon_collect_records_total")?, first);
    assert_eq!(collector.metric("cordon_collect_alerts_total")?, 1.0);
    assert_eq!(collector.get("/policies")?, policies);

    // Envoy reconnects: more requests are counted; the same attempt raises no new alert.
    assert_eq!(
        envoy.request("order-engine", "GET", "/v1/credits/inv-20484")?,
        200
    );
    assert_eq!(
        envoy.request("frontend", "GET", "/v1/credits/inv-20481")?,
        403
    );
    collector.wait_records(first + 2.0)?;
    assert_eq!(collector.metric("cordon_collect_alerts_total")?, 1.0);

    // The records as the collector wrote them ahead (traffic lines, no snapshot yet), the
    // allowed ones replayed under /policies.
    let mut written = String::new();
    let mut segments: Vec<PathBuf> = std::fs::read_dir(&state)?
        .map(|entry| entry.map(|entry| entry.path()))
        .collect::<std::result::Result<_, _>>()?;
    segments.sort();
    for segment in segments
        .iter()
        .filter(|path| path.to_string_lossy().contains("wal-"))
    {
        written.push_str(&std::fs::read_to_string(segment)?);
    }
    let mut allowed = String::new();
    for line in written.lines() {
        let entry: Value = serde_json::from_str(line)?;
        if entry["decision"]["allowed"] == true {
            allowed.push_str(line);
            allowed.push('\n');
        }
    }
    let allowed_count = allowed.lines().count();
    assert_eq!(allowed_count, ALLOWED.len() + 1, "{written}");
    let live = collector.get("/policies")?;

    // SIGTERM: a snapshot of the aggregates; `cordon discover --merge` on the state
    // directory writes what /policies served.
    collector.terminate()?;
    let snapshot = std::fs::read_to_string(state.join("snapshot.jsonl"))?;
    assert!(snapshot.starts_with("{\"snapshot\":2"), "{snapshot}");
    let merged = Command::new(env!("CARGO_BIN_EXE_cordon"))
        .args(["discover", "--quiet", "--merge"])
        .arg(&state)
        .output()?;
    assert!(
        merged.status.success(),
        "{}",
        String::from_utf8_lossy(&merged.stderr)
    );
    assert_eq!(String::from_utf8(merged.stdout)?, live);
    let traffic = work.join("allowed.jsonl");
    std::fs::write(&traffic, &allowed)?;
    let policies = std::fs::read_to_string(&policy_file)?;
    let simulate = Command::new(env!("CARGO_BIN_EXE_cordon"))
        .args(["simulate", "--format", "jsonl", "--policy"])
        .arg(&policy_file)
        .arg("--traffic")
        .arg(&traffic)
        .arg("--wasm")
        .arg(tools::filter_wasm()?)
        .output()?;
    let stdout = String::from_utf8(simulate.stdout)?;
    let decisions: Vec<Value> = stdout
        .lines()
        .map(serde_json::from_str)
        .collect::<std::result::Result<_, _>>()?;
    assert_eq!(decisions.len(), allowed_count, "{stdout}");
    for decision in &decisions {
        assert_eq!(
            decision["decision"], "allow",
            "observed allowed, refused under /policies:\n{policies}\n{decision}"
        );
    }
    drop(envoy);
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

#[test]
fn envoy_grpc_access_log_service_to_cordon_collect() -> Result<()> {
    scenario(Logger::Als)
}

#[test]
fn envoy_opentelemetry_access_log_to_cordon_collect() -> Result<()> {
    scenario(Logger::OpenTelemetry)
}
