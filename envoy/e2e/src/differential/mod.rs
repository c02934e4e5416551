//! The differential harness: for seeded random policy sets and requests, real Envoy 1.40
//! decides every request twice, once with the native RBAC filters istiod would configure
//! (the oracle, [`rbac::translate`]) and once with `cordon_filter.wasm` configured with the
//! same policies and mesh settings; every disagreement is reported with its seed, the
//! policies, the request and both answers.
//!
//! One Envoy process hosts a batch of policy sets, one listener each (see [`config`]);
//! the client ([`client`]) keeps one TLS connection per (chain, connection profile). The
//! test is `tests/differential.rs`; long runs: `scripts/differential.sh`.

pub mod client;
pub mod config;
pub mod gen;
pub mod minimize;
pub mod pki;
pub mod rbac;
pub mod rng;
pub mod vocab;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use serde_json::{json, Value};

use crate::envoy::{Envoy, READY_TIMEOUT};
use crate::{tools, Context, Error, Result};
use client::Connection;
use gen::{PolicySet, Ports, Profile, Request};
use pki::Material;

/// How many tokens the pool holds.
const TOKENS: usize = 32;

/// What to run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Requests to compare (each sent to both chains), at least.
    pub cases: usize,
    /// The run's seed: set `k` has seed `rng::derive(seed, k)`.
    pub seed: u64,
    /// Requests per policy set.
    pub requests_per_set: usize,
    /// Policy sets (listeners) per Envoy process.
    pub sets_per_envoy: usize,
    /// Client threads.
    pub threads: usize,
    /// Envoy worker threads.
    pub envoy_concurrency: usize,
    /// Only this set (its seed), e.g. to reproduce one disagreement.
    pub only_set: Option<u64>,
    /// Keep a record of every case, agreeing or not ([`Report::answers`]).
    pub record_all: bool,
    /// Fail on the README's deliberate differences too (`DIFF_STRICT=1`).
    pub strict: bool,
}

impl Settings {
    /// The defaults, overridden by `DIFF_CASES`, `DIFF_SEED`, `DIFF_SET_SEED`,
    /// `DIFF_REQUESTS_PER_SET`, `DIFF_SETS_PER_ENVOY`, `DIFF_THREADS`,
    /// `DIFF_ENVOY_CONCURRENCY`.
    pub fn from_env() -> Result<Settings> {
        let number = |name: &str, default: u64| -> Result<u64> {
            match std::env::var(name) {
                Ok(text) => parse_number(&text)
                    .ok_or_else(|| Error::new(format!("{name}={text:?} is not a number"))),
                Err(_) => Ok(default),
            }
        };
        let only_set = match std::env::var("DIFF_SET_SEED") {
            Ok(text) => Some(
                parse_number(&text)
                    .ok_or_else(|| Error::new(format!("DIFF_SET_SEED={text:?} is not a number")))?,
            ),
            Err(_) => None,
        };
        let as_usize = |value: u64| usize::try_from(value).unwrap_or(usize::MAX).max(1);
        Ok(Settings {
            cases: as_usize(number("DIFF_CASES", 20_000)?),
            seed: number("DIFF_SEED", 0x00C0_4D0D)?,
            requests_per_set: as_usize(number("DIFF_REQUESTS_PER_SET", 40)?),
            sets_per_envoy: as_usize(number("DIFF_SETS_PER_ENVOY", 150)?),
            threads: as_usize(number("DIFF_THREADS", 2)?),
            envoy_concurrency: as_usize(number("DIFF_ENVOY_CONCURRENCY", 2)?),
            only_set,
            record_all: false,
            strict: std::env::var("DIFF_STRICT").is_ok_and(|v| v != "0"),
        })
    }
}

/// The value at a JSON pointer, or null.
pub fn at<'a>(value: &'a Value, pointer: &str) -> &'a Value {
    static NULL: Value = Value::Null;
    value.pointer(pointer).unwrap_or(&NULL)
}

fn parse_number(text: &str) -> Option<u64> {
    let text = text.trim().replace('_', "");
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// What a run found.
#[derive(Debug, Default)]
pub struct Report {
    /// The run's seed.
    pub seed: u64,
    /// Policy sets generated.
    pub sets: usize,
    /// Requests compared.
    pub cases: usize,
    /// Statuses of the RBAC chain, counted.
    pub rbac_statuses: BTreeMap<u16, usize>,
    /// Statuses of the cordon chain, counted.
    pub cordon_statuses: BTreeMap<u16, usize>,
    /// Requests the two chains answered differently: one JSON record each.
    pub disagreements: Vec<Value>,
    /// Disagreements that are one of the README's deliberate differences from Istio,
    /// recognized by cordon's own reason (see [`deliberate`]): reported, not failed on
    /// unless [`Settings::strict`].
    pub deliberate: Vec<Value>,
    /// Every case's record, when [`Settings::record_all`] is set.
    pub answers: Vec<Value>,
    /// Policy sets one side refused to load and the other accepted.
    pub config_disagreements: Vec<Value>,
    /// Policy sets the translation refused (cordon's answer to them is not compared).
    pub untranslated: Vec<Value>,
    /// Envoy processes started.
    pub envoys: usize,
    /// Time sending requests.
    pub sending: Duration,
    /// Time in all.
    pub elapsed: Duration,
    /// Where the records were written.
    pub out_dir: PathBuf,
}

impl Report {
    /// Disagreements of either kind.
    pub fn failures(&self) -> usize {
        self.disagreements.len() + self.config_disagreements.len()
    }

    /// Failures plus the deliberate differences when `strict`.
    pub fn failures_with(&self, strict: bool) -> usize {
        self.failures() + if strict { self.deliberate.len() } else { 0 }
    }

    /// A human summary: figures, then every disagreement (the first `show` in full).
    pub fn summary(&self, show: usize) -> String {
        let rate = |counts: &BTreeMap<u16, usize>| {
            counts
                .iter()
                .map(|(status, n)| format!("{status}: {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let allowed = self.rbac_statuses.get(&200).copied().unwrap_or(0);
        let denied = self.rbac_statuses.get(&403).copied().unwrap_or(0);
        let per_second = self.cases as f64 / self.sending.as_secs_f64().max(0.001);
        let mut text = format!(
            "differential: seed {seed:#x}, {sets} policy sets, {cases} cases in {envoys} Envoy process(es), \
             {elapsed:.1}s in all, {sending:.1}s sending ({per_second:.0} cases/s)\n\
             RBAC answers: {rbac} (allow/deny {allowed}/{denied})\n\
             cordon answers: {cordon}\n\
             {untranslated} set(s) the translation refused; {config} configuration disagreement(s); \
             {disagreements} decision disagreement(s); {deliberate} deliberate difference(s) \
             (README, not failed on unless DIFF_STRICT=1)\n\
             records: {out}\n",
            seed = self.seed,
            sets = self.sets,
            cases = self.cases,
            envoys = self.envoys,
            elapsed = self.elapsed.as_secs_f64(),
            sending = self.sending.as_secs_f64(),
            rbac = rate(&self.rbac_statuses),
            cordon = rate(&self.cordon_statuses),
            untranslated = self.untranslated.len(),
            config = self.config_disagreements.len(),
            disagreements = self.disagreements.len(),
            deliberate = self.deliberate.len(),
            out = self.out_dir.display(),
        );
        let mut classes: BTreeMap<String, usize> = BTreeMap::new();
        for record in &self.disagreements {
            let hints: Vec<&str> = at(record, "/hints")
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            *classes
                .entry(format!(
                    "RBAC {} / cordon {} ({})",
                    at(record, "/rbac"),
                    at(record, "/cordon"),
                    if hints.is_empty() {
                        "no known class: minimize it".to_string()
                    } else {
                        hints.join(", ")
                    }
                ))
                .or_default() += 1;
        }
        for record in &self.deliberate {
            *classes
                .entry(format!(
                    "deliberate: {}",
                    at(record, "/deliberate").as_str().unwrap_or("?")
                ))
                .or_default() += 1;
        }
        for (class, count) in classes {
            text.push_str(&format!("  {count} × {class}\n"));
        }
        for record in self
            .config_disagreements
            .iter()
            .chain(&self.disagreements)
            .take(show)
        {
            text.push_str(&format!("{record}\n"));
        }
        text
    }

    fn write(&self) -> Result<()> {
        std::fs::create_dir_all(&self.out_dir)?;
        let lines = |records: &[Value]| {
            records
                .iter()
                .map(|record| format!("{record}\n"))
                .collect::<String>()
        };
        std::fs::write(
            self.out_dir.join("disagreements.jsonl"),
            lines(&self.disagreements),
        )?;
        std::fs::write(
            self.out_dir.join("config-disagreements.jsonl"),
            lines(&self.config_disagreements),
        )?;
        std::fs::write(
            self.out_dir.join("untranslated.jsonl"),
            lines(&self.untranslated),
        )?;
        if !self.answers.is_empty() {
            std::fs::write(self.out_dir.join("answers.jsonl"), lines(&self.answers))?;
        }
        std::fs::write(
            self.out_dir.join("deliberate.jsonl"),
            lines(&self.deliberate),
        )?;
        std::fs::write(self.out_dir.join("summary.txt"), self.summary(0))?;
        Ok(())
    }
}

/// What every batch shares: certificates, client configurations, tokens, the module.
#[derive(Clone)]
struct Context_ {
    material: Material,
    wasm: PathBuf,
    /// Per client (index into `vocab::CLIENTS`): the RBAC-side and the cordon-side config.
    clients: Vec<(Arc<ClientConfig>, Arc<ClientConfig>)>,
    claims: Vec<Value>,
    tokens: Vec<String>,
}

impl Context_ {
    fn new(claims: Vec<Value>) -> Result<Context_> {
        let wasm = tools::filter_wasm()?;
        tools::envoy_bin()?;
        let material = Material::generate()?;
        let tokens = material.sign_all(&claims)?;
        let mut clients = Vec::new();
        for (name, _) in vocab::CLIENTS {
            let (cert, key) = material.client(name);
            let pair = Some((cert.as_path(), key.as_path()));
            clients.push((
                client::tls_config(&material.ca(), pair, config::ALPN_RBAC)?,
                client::tls_config(&material.ca(), pair, config::ALPN_WASM)?,
            ));
        }
        Ok(Context_ {
            material,
            wasm,
            clients,
            claims,
            tokens,
        })
    }
}

/// Runs the differential test as `settings` say, writes the records under
/// `target/differential/seed-<seed>/`, and returns the report (the caller decides what
/// fails).
pub fn run(settings: &Settings) -> Result<Report> {
    let started = Instant::now();
    let context = Context_::new(gen::token_claims(TOKENS))?;
    let mut report = Report {
        seed: settings.seed,
        out_dir: tools::target_dir()
            .join("differential")
            .join(format!("seed-{:#x}", settings.seed)),
        ..Report::default()
    };
    match settings.only_set {
        Some(seed) => {
            run_batch(&[seed], settings, &context, &mut report, |seed, ports| {
                gen::policy_set(seed, settings.requests_per_set, ports, context.tokens.len())
            })?;
        }
        None => {
            // Sets cordon refuses do not run: batches go on until enough cases ran.
            let mut next = 0u64;
            while report.cases < settings.cases {
                let missing = settings.cases - report.cases;
                let sets = (missing.div_ceil(settings.requests_per_set) * 21 / 20 + 1)
                    .min(settings.sets_per_envoy);
                let seeds: Vec<u64> = (next..next + sets as u64)
                    .map(|k| rng::derive(settings.seed, k))
                    .collect();
                next += sets as u64;
                let before = report.cases;
                run_batch(&seeds, settings, &context, &mut report, |seed, ports| {
                    gen::policy_set(seed, settings.requests_per_set, ports, context.tokens.len())
                })?;
                if report.cases == before {
                    return Err(Error::new(format!(
                        "a batch of {sets} policy sets ran no case: every set was refused"
                    )));
                }
            }
        }
    }
    report.elapsed = started.elapsed();
    report.write()?;
    Ok(report)
}

/// Replays disagreement records (`disagreements.jsonl` lines, possibly edited by hand to
/// minimize them): each record's policies, mesh settings and request, in a fresh Envoy.
/// The ports in the policies are the original run's: a record whose rules name
/// `ports`/`destination.port` needs them edited to `__PORT4__`/`__PORT6__`.
pub fn replay(records: &[Value], settings: &Settings) -> Result<Report> {
    let started = Instant::now();
    let context = Context_::new(Vec::new())?;
    let settings = Settings {
        record_all: true,
        ..settings.clone()
    };
    // Each set is named by its record's position, so that answers map back to records.
    let numbered: Vec<Value> = records
        .iter()
        .enumerate()
        .map(|(index, record)| {
            let mut record = record.clone();
            if let Some(object) = record.as_object_mut() {
                object.insert("set_seed".into(), json!(index));
            }
            record
        })
        .collect();
    let mut report = run_records(&numbered, &settings, &context)?;
    for answer in report
        .answers
        .iter_mut()
        .chain(report.disagreements.iter_mut())
    {
        let input = at(answer, "/set_seed")
            .as_u64()
            .and_then(|index| usize::try_from(index).ok())
            .and_then(|index| records.get(index));
        if let (Some(object), Some(input)) = (answer.as_object_mut(), input) {
            for key in ["class", "set_seed"] {
                if let Some(value) = input.get(key) {
                    object.insert(format!("input_{key}"), value.clone());
                }
            }
        }
    }
    report.out_dir = tools::target_dir().join("differential").join("replay");
    report.elapsed = started.elapsed();
    report.write()?;
    Ok(report)
}

/// Runs one-request policy sets made from records (each record's `set_seed` names its
/// set in the report), with `context`'s certificates and fresh tokens for the records'
/// claims.
fn run_records(records: &[Value], settings: &Settings, context: &Context_) -> Result<Report> {
    let claims: Vec<Value> = records
        .iter()
        .map(|record| at(record, "/request/jwt_claims").clone())
        .map(|claims| if claims.is_null() { json!({}) } else { claims })
        .collect();
    let mut context = context.clone();
    context.tokens = context.material.sign_all(&claims)?;
    context.claims = claims;
    let context = &context;
    let mut report = Report {
        seed: settings.seed,
        ..Report::default()
    };
    let indices: Vec<u64> = (0..records.len() as u64).collect();
    for batch in indices.chunks(settings.sets_per_envoy) {
        run_batch(batch, settings, context, &mut report, |index, ports| {
            let record = usize::try_from(index)
                .ok()
                .and_then(|index| records.get(index))
                .cloned()
                .unwrap_or(Value::Null);
            set_from_record(&record, index, ports)
        })?;
    }
    Ok(report)
}

/// A one-request policy set from a disagreement record (token `index` of the pool).
fn set_from_record(record: &Value, index: u64, ports: Ports) -> PolicySet {
    let mut text = at(record, "/policies").to_string();
    // The ports the policies name are the original listener's: give them this one's.
    for (key, port) in [("v4", ports.v4), ("v6", ports.v6)] {
        if let Some(old) = at(record, &format!("/listener_ports/{key}")).as_u64() {
            text = text.replace(&format!("\"{old}\""), &format!("\"{port}\""));
        }
    }
    let text = text
        .replace("__PORT4__", &ports.v4.to_string())
        .replace("__PORT6__", &ports.v6.to_string());
    let policies: Vec<Value> = serde_json::from_str(&text).unwrap_or_default();
    let strings = |value: &Value| -> Vec<String> {
        value
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect()
    };
    let mesh = rbac::MeshSettings {
        trust_domain: at(record, "/mesh/trust_domain")
            .as_str()
            .unwrap_or(vocab::TRUST_DOMAIN)
            .to_string(),
        trust_domain_aliases: strings(at(record, "/mesh/trust_domain_aliases")),
        root_namespace: at(record, "/mesh/root_namespace")
            .as_str()
            .unwrap_or("istio-system")
            .to_string(),
        path_normalization: at(record, "/mesh/path_normalization")
            .as_str()
            .unwrap_or("NONE")
            .to_string(),
    };
    let workload = rbac::Workload {
        namespace: at(record, "/workload/namespace")
            .as_str()
            .map(str::to_string),
        labels: at(record, "/workload/labels")
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect(),
    };
    let connection = at(record, "/request/connection");
    let client = vocab::CLIENTS
        .iter()
        .position(|(name, _)| Some(*name) == at(connection, "/client").as_str())
        .unwrap_or(0);
    let sni = vocab::SNIS
        .iter()
        .position(|name| *name == at(connection, "/sni").as_str())
        .unwrap_or(0);
    let profile = Profile {
        client,
        ipv6: at(connection, "/address").as_str() == Some("[::1]"),
        sni,
    };
    let request = at(record, "/request");
    let headers = strings(at(request, "/headers"))
        .iter()
        .filter_map(|line| line.split_once(": "))
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    PolicySet {
        seed: at(record, "/set_seed").as_u64().unwrap_or(0),
        policies,
        workload,
        mesh,
        profiles: vec![profile],
        requests: vec![Request {
            profile: 0,
            method: at(request, "/method").as_str().unwrap_or("GET").to_string(),
            target: at(request, "/target").as_str().unwrap_or("/").to_string(),
            host: at(request, "/host")
                .as_str()
                .unwrap_or("billing")
                .to_string(),
            headers,
            token: if at(request, "/jwt_claims").is_object() {
                usize::try_from(index).ok()
            } else {
                None
            },
        }],
    }
}

/// Listener ports come from below Linux's ephemeral range (32768–60999), so that no
/// client connection of this or another process is ever bound to one, and each is leased
/// in this process until its batch ends, so that concurrent tests never pick the same.
const PORT_RANGE: std::ops::Range<u16> = 20_000..32_000;

static LEASED: std::sync::Mutex<std::collections::BTreeSet<u16>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// Ports leased to one batch; returned when dropped.
struct PortLease(Vec<u16>);

impl Drop for PortLease {
    fn drop(&mut self) {
        let mut leased = LEASED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for port in &self.0 {
            leased.remove(port);
        }
    }
}

/// Ports held (bound) until Envoy starts, and leased until the batch ends.
fn hold_ports(count: usize) -> Result<(Vec<Ports>, Vec<TcpListener>, PortLease)> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut rng = rng::Rng::new(rng::derive(u64::from(std::process::id()), nanos));
    let mut leased = LEASED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut lease = PortLease(Vec::with_capacity(count * 2));
    let mut held = Vec::with_capacity(count * 2);
    let mut take = |v6: bool,
                    leased: &mut std::collections::BTreeSet<u16>,
                    lease: &mut PortLease|
     -> Result<u16> {
        let span = usize::from(PORT_RANGE.end - PORT_RANGE.start);
        for _ in 0..span {
            let port = PORT_RANGE.start + u16::try_from(rng.below(span)).unwrap_or(0);
            if leased.contains(&port) {
                continue;
            }
            let bound = if v6 {
                TcpListener::bind((Ipv6Addr::LOCALHOST, port))
            } else {
                TcpListener::bind((Ipv4Addr::LOCALHOST, port))
            };
            if let Ok(listener) = bound {
                leased.insert(port);
                lease.0.push(port);
                held.push(listener);
                return Ok(port);
            }
        }
        Err(Error::new(format!(
            "no free {} port in {PORT_RANGE:?}",
            if v6 { "[::1]" } else { "127.0.0.1" }
        )))
    };
    let mut ports = Vec::with_capacity(count);
    for _ in 0..count {
        let v4 = take(false, &mut leased, &mut lease)?;
        let v6 = take(true, &mut leased, &mut lease)
            .context(|| "binding [::1] (is IPv6 loopback up?)".into())?;
        ports.push(Ports { v4, v6 });
    }
    Ok((ports, held, lease))
}

/// One set ready to run.
struct Prepared {
    set: PolicySet,
    ports: Ports,
    listener: usize,
}

/// One answer pair.
struct Outcome {
    set: usize,
    request: usize,
    rbac: u16,
    cordon: u16,
}

fn run_batch(
    seeds: &[u64],
    settings: &Settings,
    context: &Context_,
    report: &mut Report,
    make: impl Fn(u64, Ports) -> PolicySet,
) -> Result<()> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match try_batch(seeds, settings, context, report, &make) {
            Err(Retry::PortTaken(message)) if attempt < 3 => {
                eprintln!("differential: {message}; retrying the batch on other ports");
            }
            Err(Retry::PortTaken(message)) => return Err(Error::new(message)),
            Err(Retry::Fatal(error)) => return Err(error),
            Ok(()) => return Ok(()),
        }
    }
}

enum Retry {
    PortTaken(String),
    Fatal(Error),
}

impl From<Error> for Retry {
    fn from(error: Error) -> Retry {
        Retry::Fatal(error)
    }
}

impl From<std::io::Error> for Retry {
    fn from(error: std::io::Error) -> Retry {
        Retry::Fatal(error.into())
    }
}

fn try_batch(
    seeds: &[u64],
    settings: &Settings,
    context: &Context_,
    report: &mut Report,
    make: &impl Fn(u64, Ports) -> PolicySet,
) -> std::result::Result<(), Retry> {
    let (ports, held, _lease) = hold_ports(seeds.len())?;
    let work = tools::scratch_dir("differential-envoy")?;
    let access_log = work.join("cordon-access.log");
    let mut prepared = Vec::new();
    let mut listeners = Vec::new();
    let mut untranslated = Vec::new();
    let mut config_disagreements = Vec::new();
    let mut deliberate_configs = Vec::new();
    for (index, (&seed, &ports)) in seeds.iter().zip(&ports).enumerate() {
        let set = make(seed, ports);
        match rbac::translate(&set.policies, &set.workload, &set.mesh) {
            rbac::Oracle::Translated(translation) => {
                listeners.push(config::listener(
                    index,
                    ports,
                    &set,
                    &translation,
                    &context.material,
                    &context.wasm,
                    &access_log,
                ));
                prepared.push(Prepared {
                    set,
                    ports,
                    listener: index,
                });
            }
            rbac::Oracle::CordonRefuses(_, errors) => {
                let mut record = json!({
                    "kind": "cordon refuses policies istiod translates",
                    "set_seed": seed,
                    "cordon_errors": errors,
                    "mesh": mesh_json(&set),
                    "workload": workload_json(&set),
                    "policies": set.policies,
                });
                match deliberate_refusal(&errors) {
                    Some(difference) => {
                        if let Some(object) = record.as_object_mut() {
                            object.insert("deliberate".into(), json!(difference));
                        }
                        deliberate_configs.push(record);
                    }
                    None => config_disagreements.push(record),
                }
            }
            rbac::Oracle::Malformed(error) => untranslated.push(json!({
                "set_seed": seed,
                "error": error,
                "mesh": mesh_json(&set),
                "policies": set.policies,
            })),
        }
    }
    let lds_dir = work.join("lds");
    std::fs::create_dir_all(&lds_dir)?;
    let admin = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let admin_port = admin.local_addr()?.port();
    let bootstrap = work.join("envoy.json");
    std::fs::write(
        &bootstrap,
        config::bootstrap(admin_port, &lds_dir).to_string(),
    )?;
    std::fs::write(
        lds_dir.join("listeners.json"),
        config::lds(listeners).to_string(),
    )?;
    drop(admin);
    drop(held);
    let mut envoy = Envoy::launch_bootstrap(
        work,
        admin_port,
        &bootstrap,
        context.material.pki.clone(),
        context.wasm.clone(),
        &[
            "--concurrency".to_string(),
            settings.envoy_concurrency.to_string(),
            "--log-level".to_string(),
            "warning".to_string(),
        ],
    )?;
    report.envoys += 1;
    envoy.wait_for(READY_TIMEOUT, "the listeners", |envoy| {
        Ok(envoy.admin("/ready")?.trim() == "LIVE"
            && envoy.stat("listener_manager.total_listeners_warming")? == 0
            && envoy.stat("listener_manager.lds.update_success")?
                + envoy.stat("listener_manager.lds.update_rejected")?
                >= 1)
    })?;
    let active: Vec<String> = envoy
        .admin("/listeners")?
        .lines()
        .filter_map(|line| line.split_once("::").map(|(name, _)| name.to_string()))
        .collect();
    let log = envoy.log();
    let mut running = Vec::new();
    for item in prepared {
        if active.contains(&config::listener_name(item.listener)) {
            running.push(item);
            continue;
        }
        if log.contains("already in use") {
            return Err(Retry::PortTaken(format!(
                "listener {} could not bind its port",
                config::listener_name(item.listener)
            )));
        }
        let plugin = format!("cordon-{} ", item.listener);
        let name = config::listener_name(item.listener);
        let why: Vec<&str> = log
            .lines()
            .filter(|line| {
                line.contains(&format!("'{name}'"))
                    || line.contains(&plugin)
                    || line.contains("configuration rejected")
            })
            .take(8)
            .collect();
        config_disagreements.push(json!({
            "kind": "listener rejected (the translation was accepted, so cordon's configuration or the translated RBAC was refused)",
            "set_seed": item.set.seed,
            "mesh": mesh_json(&item.set),
            "workload": workload_json(&item.set),
            "policies": item.set.policies,
            "envoy_log": why,
        }));
    }
    report.untranslated.extend(untranslated);
    report.config_disagreements.extend(config_disagreements);
    report.deliberate.extend(deliberate_configs);
    report.sets += seeds.len();

    let sending = Instant::now();
    let outcomes = send_all(&running, settings.threads, context)?;
    report.sending += sending.elapsed();
    check_filters_ran(&envoy, &outcomes)?;
    let decisions = cordon_decisions(&mut envoy, &access_log, outcomes.len());
    for outcome in outcomes {
        report.cases += 1;
        *report.rbac_statuses.entry(outcome.rbac).or_default() += 1;
        *report.cordon_statuses.entry(outcome.cordon).or_default() += 1;
        if outcome.rbac == outcome.cordon && !settings.record_all {
            continue;
        }
        let Some(item) = running.get(outcome.set) else {
            continue;
        };
        let Some(request) = item.set.requests.get(outcome.request) else {
            continue;
        };
        let profile = item.set.profiles.get(request.profile);
        let claims = request.token.and_then(|t| context.claims.get(t));
        let record = json!({
            "seed": format!("{:#x}", settings.seed),
            "set_seed": item.set.seed,
            "request_index": outcome.request,
            "listener_ports": {"v4": item.ports.v4, "v6": item.ports.v6},
            "rbac": outcome.rbac,
            "cordon": outcome.cordon,
            "mesh": mesh_json(&item.set),
            "workload": workload_json(&item.set),
            "policies": item.set.policies,
            "request": request.describe(profile, claims),
            "hints": hints(&item.set.policies, request, profile),
            "cordon_decision": decisions
                .get(&format!("{}-{}", outcome.set, outcome.request))
                .cloned()
                .unwrap_or(Value::Null),
        });
        if settings.record_all {
            report.answers.push(record.clone());
        }
        if outcome.rbac != outcome.cordon {
            match deliberate(&record) {
                Some(difference) => {
                    let mut record = record;
                    if let Some(object) = record.as_object_mut() {
                        object.insert("deliberate".into(), json!(difference));
                    }
                    report.deliberate.push(record);
                }
                None => report.disagreements.push(record),
            }
        }
    }
    if envoy.exit_status().is_some() {
        return Err(Retry::Fatal(Error::new(format!(
            "Envoy exited during the batch; log tail:\n{}",
            envoy.log_tail(30)
        ))));
    }
    Ok(())
}

/// Which of the README's "Deliberate differences from Istio" a disagreement is, if any:
/// only when cordon denied more than Istio and cordon's own decision gives that
/// difference's reason (read from the access log), never by guessing.
pub fn deliberate(record: &Value) -> Option<&'static str> {
    let reason = at(record, "/cordon_decision/reason").as_str()?;
    let denied_more =
        at(record, "/cordon").as_u64() == Some(403) && at(record, "/rbac").as_u64() == Some(200);
    let forwarded = at(record, "/request/headers")
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .any(|line| line.to_ascii_lowercase().starts_with("x-forwarded-for:"));
    if denied_more && forwarded && reason == "peer_address_unknown" {
        return Some(
            "source.ip/ipBlocks on a request carrying x-forwarded-for (use_remote_address: false) is refused",
        );
    }
    None
}

/// Which README deliberate difference a refused configuration is, if any: only when every
/// error cordon gives is that difference's.
pub fn deliberate_refusal(errors: &[String]) -> Option<&'static str> {
    let namespace = |error: &String| {
        error.contains("invalid namespace") && error.contains("`*` is allowed only once")
    };
    if !errors.is_empty() && errors.iter().all(namespace) {
        return Some("a `*` inside a namespace is refused");
    }
    None
}

/// cordon's decision per case (`<set>-<request>`), from the cordon chain's access log;
/// waits (bounded) until it holds `expected` lines. What it cannot read stays unknown.
fn cordon_decisions(envoy: &mut Envoy, log: &Path, expected: usize) -> HashMap<String, Value> {
    let read = || std::fs::read_to_string(log).unwrap_or_default();
    let _ = envoy.wait_for(Duration::from_secs(15), "the access log", |_| {
        Ok(read().lines().count() >= expected)
    });
    read()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|entry| {
            let case = at(&entry, "/case").as_str()?.to_string();
            let decision = serde_json::from_str(at(&entry, "/cordon").as_str()?).ok()?;
            Some((case, decision))
        })
        .collect()
}

/// Features of a case that known disagreement classes (`envoy/DIFFERENTIAL.md`) depend
/// on: a first guess at the class, for the summary. Minimize to be sure.
fn hints(policies: &[Value], request: &Request, profile: Option<&Profile>) -> Vec<&'static str> {
    let text = Value::Array(policies.to_vec()).to_string();
    let mut hints = Vec::new();
    let forwarded = request
        .headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("x-forwarded-for"));
    if forwarded
        && (text.contains("\"ipBlocks\"")
            || text.contains("\"notIpBlocks\"")
            || text.contains("\"source.ip\""))
    {
        hints.push("x-forwarded-for with source.ip rules");
    }
    if profile.is_some_and(|p| p.uri_san().is_none()) {
        hints.push("peer certificate without a URI SAN");
    }
    if text.to_ascii_lowercase().contains("request.headers[host]") {
        hints.push("request.headers[host]");
    }
    hints
}

/// Every 403 must have come from the filter its chain is meant to run: Envoy's RBAC
/// filters counted exactly the RBAC chain's 403s, cordon exactly the cordon chain's. (Were
/// the chains mixed up, both sides would agree on everything and prove nothing.)
fn check_filters_ran(envoy: &Envoy, outcomes: &[Outcome]) -> Result<()> {
    let stats = envoy.stats()?;
    let sum = |keep: &dyn Fn(&str) -> bool| -> u64 {
        stats
            .iter()
            .filter(|(name, _)| keep(name))
            .filter_map(|(_, value)| value.trim().parse::<u64>().ok())
            .sum()
    };
    let rbac_denied =
        sum(&|name| name.starts_with("http.set") && name.ends_with("_rbac.rbac.denied"));
    let cordon_denied = sum(&|name| name == "wasmcustom.cordon.requests.denied");
    let count =
        |side: fn(&Outcome) -> u16| outcomes.iter().filter(|o| side(o) == 403).count() as u64;
    let (rbac_403, cordon_403) = (count(|o| o.rbac), count(|o| o.cordon));
    if rbac_denied != rbac_403 || cordon_denied != cordon_403 {
        return Err(Error::new(format!(
            "the chains did not run the filters they should: RBAC filters denied {rbac_denied} \
             requests, the RBAC chain answered 403 to {rbac_403}; cordon denied {cordon_denied}, \
             the cordon chain answered 403 to {cordon_403}"
        )));
    }
    Ok(())
}

fn mesh_json(set: &PolicySet) -> Value {
    json!({
        "trust_domain": set.mesh.trust_domain,
        "trust_domain_aliases": set.mesh.trust_domain_aliases,
        "root_namespace": set.mesh.root_namespace,
        "path_normalization": set.mesh.path_normalization,
    })
}

fn workload_json(set: &PolicySet) -> Value {
    json!({"namespace": set.workload.namespace, "labels": set.workload.labels})
}

/// Sends every request of every running set to both chains, `threads` sets at a time.
fn send_all(running: &[Prepared], threads: usize, context: &Context_) -> Result<Vec<Outcome>> {
    let threads = threads.max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|thread| {
                scope.spawn(move || {
                    let mut outcomes = Vec::new();
                    for (index, item) in running.iter().enumerate() {
                        if index % threads == thread {
                            send_set(index, item, context, &mut outcomes)?;
                        }
                    }
                    Ok::<_, Error>(outcomes)
                })
            })
            .collect();
        let mut all = Vec::new();
        for handle in handles {
            let outcomes = handle
                .join()
                .map_err(|_| Error::new("a client thread panicked"))??;
            all.extend(outcomes);
        }
        Ok(all)
    })
}

fn send_set(
    index: usize,
    item: &Prepared,
    context: &Context_,
    outcomes: &mut Vec<Outcome>,
) -> Result<()> {
    let mut connections: HashMap<(bool, usize), Connection> = HashMap::new();
    for (number, request) in item.set.requests.iter().enumerate() {
        let profile = item
            .set
            .profiles
            .get(request.profile)
            .ok_or_else(|| Error::new("request without a profile"))?;
        let token = request
            .token
            .and_then(|t| context.tokens.get(t))
            .map(String::as_str);
        let wire = request.wire(token, &format!("{index}-{number}"));
        let mut answers = [0u16; 2];
        for (side, answer) in answers.iter_mut().enumerate() {
            let wasm = side == 1;
            let connection = match connections.entry((wasm, request.profile)) {
                std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
                std::collections::hash_map::Entry::Vacant(entry) => {
                    entry.insert(connect(item.ports, profile, wasm, context)?)
                }
            };
            *answer = connection
                .exchange(&wire)
                .map_err(|error| {
                    Error::new(format!(
                        "set {:#x} request {number} to the {} chain failed: {error}\nrequest: {}",
                        item.set.seed,
                        if wasm { "cordon" } else { "RBAC" },
                        String::from_utf8_lossy(&wire)
                    ))
                })?
                .status;
        }
        outcomes.push(Outcome {
            set: index,
            request: number,
            rbac: answers[0],
            cordon: answers[1],
        });
    }
    Ok(())
}

fn connect(ports: Ports, profile: &Profile, wasm: bool, context: &Context_) -> Result<Connection> {
    let ip = if profile.ipv6 {
        IpAddr::V6(Ipv6Addr::LOCALHOST)
    } else {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    };
    let port = if profile.ipv6 { ports.v6 } else { ports.v4 };
    let server_name = match profile.sni_name() {
        Some(name) => ServerName::try_from(name.to_string())
            .map_err(|error| Error::new(format!("server name {name}: {error}")))?,
        None => ServerName::IpAddress(ip.into()),
    };
    let (rbac, cordon) = context
        .clients
        .get(profile.client)
        .ok_or_else(|| Error::new("unknown client"))?;
    let config = if wasm { cordon.clone() } else { rbac.clone() };
    Ok(Connection::new(
        SocketAddr::new(ip, port),
        server_name,
        config,
    ))
}

/// Reads disagreement records from a `.jsonl` file (or one JSON object/array).
pub fn read_records(path: &Path) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(path).context(|| format!("reading {}", path.display()))?;
    if let Ok(value) = serde_json::from_str::<Value>(&text) {
        return Ok(match value {
            Value::Array(items) => items,
            other => vec![other],
        });
    }
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).map_err(Error::from))
        .collect()
}
