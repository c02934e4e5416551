//! One Envoy process: rendered from `envoy/envoy.yaml.tmpl` (bootstrap, file-based LDS) and
//! `envoy/listeners.yaml.tmpl` (mTLS and plaintext listeners, `jwt_authn`, cordon), on
//! free loopback ports, in its own work directory. Stopped by process id when dropped.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::tools::{self, Pki};
use crate::{Context, Error, Result};

/// How long Envoy may take to become ready (V8 compiles the 1 MB module first; on a
/// loaded 2-core machine with tests in parallel that takes a few seconds).
pub const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// At most this many Envoys run at once in one test process (the machine has 2 cores).
const MAX_CONCURRENT: usize = 2;

/// The loopback ports of one Envoy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    /// Admin interface (`/ready`, `/stats`), HTTP on 127.0.0.1.
    pub admin: u16,
    /// The mTLS listener (client certificate required).
    pub mtls: u16,
    /// The plaintext listener (same HTTP filter chain, no peer identity).
    pub plain: u16,
}

impl Ports {
    /// Three ports the kernel had free a moment ago.
    pub fn free() -> Result<Ports> {
        let bind = || TcpListener::bind((Ipv4Addr::LOCALHOST, 0));
        let (a, b, c) = (bind()?, bind()?, bind()?);
        Ok(Ports {
            admin: a.local_addr()?.port(),
            mtls: b.local_addr()?.port(),
            plain: c.local_addr()?.port(),
        })
    }
}

/// Which of cordon's two builds runs in Envoy: the same filter glue and engine, loaded
/// two ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Twin {
    /// `cordon_filter.wasm`, a proxy-wasm filter in V8 (`envoy/filter-wasm.yaml.tmpl`).
    Wasm,
    /// `libcordon_native.so`, an Envoy dynamic module (`envoy/filter-native.yaml.tmpl`).
    Native,
}

impl Twin {
    /// Both, the order tests run them in.
    pub const ALL: [Twin; 2] = [Twin::Wasm, Twin::Native];

    /// `wasm` or `native`: the name of its listener snippet, `envoy/filter-<name>.yaml.tmpl`.
    pub fn name(self) -> &'static str {
        match self {
            Twin::Wasm => "wasm",
            Twin::Native => "native",
        }
    }

    /// The filter state key of cordon's decision.
    pub fn decision_state(self) -> &'static str {
        match self {
            Twin::Wasm => "wasm.cordon.decision",
            Twin::Native => "cordon.decision",
        }
    }

    /// Where Envoy shows cordon's counters: `<prefix>requests.allowed`.
    pub fn counter_prefix(self) -> &'static str {
        match self {
            Twin::Wasm => "wasmcustom.cordon.",
            Twin::Native => "dynamicmodulescustom.cordon.",
        }
    }

    /// The module file: [`tools::filter_wasm`] or [`tools::native_module`].
    pub fn module(self) -> Result<PathBuf> {
        match self {
            Twin::Wasm => tools::filter_wasm(),
            Twin::Native => tools::native_module(),
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The plugin configuration (cordon's JSON object).
    pub plugin: Value,
    /// Which twin runs cordon.
    pub twin: Twin,
    /// The filter module; by default the twin's ([`Twin::module`]).
    pub wasm: Option<PathBuf>,
    /// Extra Envoy command-line arguments.
    pub args: Vec<String>,
}

impl Options {
    /// Runs cordon with this plugin configuration.
    pub fn new(plugin: Value) -> Options {
        Options {
            plugin,
            twin: Twin::Wasm,
            wasm: None,
            args: Vec::new(),
        }
    }

    /// Runs this twin.
    #[must_use]
    pub fn twin(mut self, twin: Twin) -> Options {
        self.twin = twin;
        self
    }
}

struct Slots {
    used: Mutex<usize>,
    freed: Condvar,
}

static SLOTS: Slots = Slots {
    used: Mutex::new(0),
    freed: Condvar::new(),
};

/// A permit to run one Envoy.
struct Slot;

impl Slot {
    fn take() -> Slot {
        let mut used = lock(&SLOTS.used);
        while *used >= MAX_CONCURRENT {
            used = SLOTS
                .freed
                .wait(used)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        *used += 1;
        Slot
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut used = lock(&SLOTS.used);
        *used = used.saturating_sub(1);
        SLOTS.freed.notify_one();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A running Envoy.
pub struct Envoy {
    child: Child,
    exited: Option<ExitStatus>,
    work: PathBuf,
    ports: Ports,
    pki: Pki,
    wasm: PathBuf,
    twin: Twin,
    _slot: Slot,
}

impl std::fmt::Debug for Envoy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Envoy")
            .field("pid", &self.child.id())
            .field("work", &self.work)
            .field("ports", &self.ports)
            .finish_non_exhaustive()
    }
}

impl Envoy {
    /// Starts Envoy with cordon configured by `plugin` and waits until both listeners
    /// serve.
    pub fn start(plugin: Value) -> Result<Envoy> {
        Envoy::start_with(Options::new(plugin))
    }

    /// Starts Envoy with this twin of cordon configured by `plugin`.
    pub fn start_twin(twin: Twin, plugin: Value) -> Result<Envoy> {
        Envoy::start_with(Options::new(plugin).twin(twin))
    }

    /// Starts Envoy and waits until both listeners serve. Retries on a port another
    /// process took between choosing and binding it.
    pub fn start_with(options: Options) -> Result<Envoy> {
        let mut last = None;
        for _ in 0..3 {
            let mut envoy = Envoy::launch(&options)?;
            match envoy.wait_started() {
                Ok(()) => return Ok(envoy),
                Err(error) if envoy.log_tail(100).contains("Address already in use") => {
                    last = Some(error);
                }
                Err(error) => return Err(error),
            }
        }
        Err(last.unwrap_or_else(|| Error::new("Envoy did not start")))
    }

    /// Starts Envoy and waits only for its admin interface to say `LIVE`: for
    /// configurations whose listeners are expected to be refused.
    pub fn start_admin_only(options: Options) -> Result<Envoy> {
        let mut envoy = Envoy::launch(&options)?;
        envoy.wait_live(READY_TIMEOUT)?;
        Ok(envoy)
    }

    /// Renders the configuration and spawns Envoy, without waiting.
    pub fn launch(options: &Options) -> Result<Envoy> {
        let envoy_bin = tools::envoy_bin()?;
        let wasm = match &options.wasm {
            Some(wasm) => wasm.clone(),
            None => options.twin.module()?,
        };
        let pki = Pki::shared()?.clone();
        let slot = Slot::take();
        let work = tools::scratch_dir("envoy")?;
        let ports = Ports::free()?;
        render(
            &work,
            ports,
            pki.dir(),
            options.twin,
            &wasm,
            &options.plugin,
        )?;
        let log = std::fs::File::create(work.join("envoy.out"))?;
        let mut command = Command::new(envoy_bin);
        if let Some(dir) = wasm.parent() {
            // Where Envoy finds lib<name>.so for a dynamic module (the native twin).
            command.env("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", dir);
        }
        let child = command
            .arg("-c")
            .arg(work.join("envoy.yaml"))
            .args(["--concurrency", "1", "--disable-hot-restart"])
            .args(["--log-level", "info", "--file-flush-interval-msec", "50"])
            .arg("--log-path")
            .arg(work.join("envoy.log"))
            .args(&options.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context(|| "starting Envoy".to_string())?;
        Ok(Envoy {
            child,
            exited: None,
            work,
            ports,
            pki,
            wasm,
            twin: options.twin,
            _slot: slot,
        })
    }

    /// Spawns Envoy on a bootstrap the caller wrote into `work` (`config`), with its admin
    /// interface on 127.0.0.1:`admin`, logging to `work/envoy.log`; `args` are the other
    /// command-line arguments (e.g. `--concurrency`). Does not wait: see
    /// [`Envoy::wait_for`]. Used by the differential harness, which renders its own
    /// listeners.
    pub fn launch_bootstrap(
        work: PathBuf,
        admin: u16,
        config: &Path,
        pki: Pki,
        wasm: PathBuf,
        args: &[String],
    ) -> Result<Envoy> {
        let envoy_bin = tools::envoy_bin()?;
        let slot = Slot::take();
        let log = std::fs::File::create(work.join("envoy.out"))?;
        let child = Command::new(envoy_bin)
            .arg("-c")
            .arg(config)
            .args(["--disable-hot-restart", "--file-flush-interval-msec", "50"])
            .arg("--log-path")
            .arg(work.join("envoy.log"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context(|| "starting Envoy".to_string())?;
        Ok(Envoy {
            child,
            exited: None,
            work,
            ports: Ports {
                admin,
                mtls: 0,
                plain: 0,
            },
            pki,
            wasm,
            twin: Twin::Wasm,
            _slot: slot,
        })
    }

    /// The twin running cordon.
    pub fn twin(&self) -> Twin {
        self.twin
    }

    /// The ports.
    pub fn ports(&self) -> Ports {
        self.ports
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The work directory (configuration, logs).
    pub fn work(&self) -> &Path {
        &self.work
    }

    /// The PKI the listeners trust.
    pub fn pki(&self) -> &Pki {
        &self.pki
    }

    /// Whether the process has exited, and how.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.exit_status() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    fn wait_live(&mut self, timeout: Duration) -> Result<()> {
        self.wait_for(timeout, "the admin interface to say LIVE", |envoy| {
            Ok(envoy.admin("/ready")?.trim() == "LIVE")
        })
    }

    /// Waits until both listeners serve; fails at once when Envoy rejects them.
    fn wait_started(&mut self) -> Result<()> {
        self.wait_for(READY_TIMEOUT, "both listeners", |envoy| {
            Ok(envoy.admin("/ready")?.trim() == "LIVE"
                && (envoy.stat("listener_manager.total_listeners_active")? == 2
                    || envoy.stat("listener_manager.lds.update_rejected")? > 0))
        })?;
        if self.stat("listener_manager.lds.update_rejected")? > 0 {
            return Err(Error::new(format!(
                "Envoy rejected the listeners; log tail:\n{}",
                self.log_tail(30)
            )));
        }
        Ok(())
    }

    /// Waits until `/ready` says LIVE and `count` listeners are active.
    pub fn wait_listeners(&mut self, count: u64, timeout: Duration) -> Result<()> {
        self.wait_for(
            timeout,
            &format!("{count} active listeners"),
            move |envoy| {
                Ok(envoy.admin("/ready")?.trim() == "LIVE"
                    && envoy.stat("listener_manager.total_listeners_active")? == count)
            },
        )
    }

    /// Polls `ready` every 50 ms until it says yes, the process exits, or `timeout` passes.
    pub fn wait_for(
        &mut self,
        timeout: Duration,
        what: &str,
        mut ready: impl FnMut(&Envoy) -> Result<bool>,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit_status() {
                return Err(Error::new(format!(
                    "Envoy exited ({status}) while waiting for {what}; log tail:\n{}",
                    self.log_tail(30)
                )));
            }
            if matches!(ready(self), Ok(true)) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::new(format!(
                    "timed out after {timeout:?} waiting for {what}; log tail:\n{}",
                    self.log_tail(30)
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// GET on the admin interface; the body.
    pub fn admin(&self, path: &str) -> Result<String> {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, self.ports.admin))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response)?;
        let response = String::from_utf8_lossy(&response);
        let (head, body) = response
            .split_once("\r\n\r\n")
            .ok_or_else(|| Error::new("admin answered without headers"))?;
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            return Ok(dechunk(body));
        }
        Ok(body.to_string())
    }

    /// Every stat, from `/stats`.
    pub fn stats(&self) -> Result<BTreeMap<String, String>> {
        Ok(self
            .admin("/stats")?
            .lines()
            .filter_map(|line| line.split_once(": "))
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect())
    }

    /// One counter or gauge from `/stats`; 0 when Envoy does not show it (yet).
    pub fn stat(&self, name: &str) -> Result<u64> {
        let body = self.admin(&format!("/stats?filter=^{}$", name.replace('.', "\\.")))?;
        Ok(body
            .lines()
            .filter_map(|line| line.split_once(": "))
            .find(|(key, _)| *key == name)
            .and_then(|(_, value)| value.trim().parse().ok())
            .unwrap_or(0))
    }

    /// A cordon counter (`requests.allowed` reads `wasmcustom.cordon.requests.allowed` from
    /// the wasm twin, `dynamicmodulescustom.cordon.requests.allowed` from the native one).
    pub fn cordon_counter(&self, name: &str) -> Result<u64> {
        self.stat(&format!("{}{name}", self.twin.counter_prefix()))
    }

    /// Envoy's own log (`--log-path`).
    pub fn log(&self) -> String {
        std::fs::read(self.work.join("envoy.log"))
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// The last `lines` lines of the log, plus anything Envoy wrote to stdout/stderr.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        let tail = all
            .get(all.len().saturating_sub(lines)..)
            .unwrap_or_default()
            .join("\n");
        let out = std::fs::read_to_string(self.work.join("envoy.out")).unwrap_or_default();
        format!("{tail}\n{out}")
    }

    /// Cordon's decision records (`cordon.decision {json}` log lines), oldest first.
    pub fn decision_records(&self) -> Vec<Value> {
        self.log()
            .lines()
            .filter_map(|line| line.split_once("cordon.decision "))
            .filter_map(|(_, json)| serde_json::from_str(json).ok())
            .collect()
    }

    /// Waits until Envoy's log holds at least `count` decision records (it is written in
    /// batches), and returns them all.
    pub fn decision_records_at_least(&mut self, count: usize) -> Result<Vec<Value>> {
        self.wait_for(
            Duration::from_secs(10),
            &format!("{count} decision records in Envoy's log"),
            |envoy| Ok(envoy.decision_records().len() >= count),
        )?;
        Ok(self.decision_records())
    }

    /// Waits until Envoy's log contains `text`.
    pub fn wait_log(&mut self, text: &str) -> Result<String> {
        self.wait_for(
            Duration::from_secs(10),
            &format!("{text:?} in Envoy's log"),
            |envoy| Ok(envoy.log().contains(text)),
        )?;
        Ok(self.log())
    }

    /// The JSON access log, one object per request, oldest first.
    pub fn access_log(&self) -> Vec<Value> {
        std::fs::read_to_string(self.work.join("access.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// Waits until the access log has at least `count` entries (Envoy flushes it every
    /// 50 ms here), and returns them.
    pub fn access_log_entries(&mut self, count: usize) -> Result<Vec<Value>> {
        self.wait_for(
            Duration::from_secs(10),
            &format!("{count} access log entries"),
            |envoy| Ok(envoy.access_log().len() >= count),
        )?;
        Ok(self.access_log())
    }

    /// Replaces the listeners with ones whose cordon plugin has this configuration: one
    /// atomic rename into the directory Envoy watches (file-based LDS). Returns at once;
    /// Envoy applies (or rejects) the change asynchronously.
    pub fn set_plugin_config(&self, plugin: &Value) -> Result<()> {
        render_listeners(
            &self.work,
            self.ports,
            self.pki.dir(),
            self.twin,
            &self.wasm,
            plugin,
        )
    }

    /// `listener_manager.lds.update_success + update_rejected`: how many LDS updates
    /// Envoy has finished with.
    pub fn lds_updates(&self) -> Result<u64> {
        Ok(self.stat("listener_manager.lds.update_success")?
            + self.stat("listener_manager.lds.update_rejected")?)
    }

    /// Stops Envoy: SIGKILL to its process id, then reaps it.
    pub fn stop(&mut self) {
        if self.exit_status().is_none() {
            let _ = self.child.kill();
            self.exited = self.child.wait().ok();
        }
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() || std::env::var_os("CORDON_E2E_KEEP").is_some() {
            eprintln!(
                "Envoy work directory kept: {} (envoy.log, access.log, envoy.yaml, lds/)",
                self.work.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.work);
        }
    }
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 {
            break;
        }
        let Some(chunk) = after.get(..size) else {
            out.push_str(after);
            break;
        };
        out.push_str(chunk);
        rest = after
            .get(size..)
            .unwrap_or_default()
            .trim_start_matches("\r\n");
    }
    out
}

/// Fills a template's placeholders.
fn fill(
    template: &str,
    work: &Path,
    ports: Ports,
    certs: &Path,
    twin: Twin,
    wasm: &Path,
    plugin: &Value,
) -> Result<String> {
    // The plugin configuration travels as a YAML double-quoted string: JSON's string
    // escapes are valid there.
    let plugin = Value::String(plugin.to_string()).to_string();
    let lds = work.join("lds");
    let snippet = self::template(&format!("filter-{}.yaml.tmpl", twin.name()))?;
    Ok([
        // First: the filter snippet has placeholders of its own.
        ("__CORDON_FILTER__", snippet.trim_end().to_string()),
        ("__DECISION_STATE__", twin.decision_state().to_string()),
        ("__ADMIN_PORT__", ports.admin.to_string()),
        ("__MTLS_PORT__", ports.mtls.to_string()),
        ("__PLAIN_PORT__", ports.plain.to_string()),
        ("__CERTS__", certs.display().to_string()),
        ("__WASM__", wasm.display().to_string()),
        (
            "__ACCESS_LOG__",
            work.join("access.log").display().to_string(),
        ),
        ("__LDS_DIR__", lds.display().to_string()),
        ("__PLUGIN_CONFIG__", plugin),
    ]
    .iter()
    .fold(template.to_string(), |text, (key, value)| {
        text.replace(key, value)
    }))
}

fn template(name: &str) -> Result<String> {
    let path = tools::repo_root().join("envoy").join(name);
    std::fs::read_to_string(&path).context(|| format!("reading {}", path.display()))
}

/// Writes `work/envoy.yaml` and `work/lds/listeners.yaml`.
pub fn render(
    work: &Path,
    ports: Ports,
    certs: &Path,
    twin: Twin,
    wasm: &Path,
    plugin: &Value,
) -> Result<()> {
    std::fs::create_dir_all(work.join("lds"))?;
    let bootstrap = fill(
        &template("envoy.yaml.tmpl")?,
        work,
        ports,
        certs,
        twin,
        wasm,
        plugin,
    )?;
    std::fs::write(work.join("envoy.yaml"), bootstrap)?;
    render_listeners(work, ports, certs, twin, wasm, plugin)
}

/// Writes `work/lds/listeners.yaml` atomically: written beside the watched directory,
/// then renamed into it.
pub fn render_listeners(
    work: &Path,
    ports: Ports,
    certs: &Path,
    twin: Twin,
    wasm: &Path,
    plugin: &Value,
) -> Result<()> {
    let listeners = fill(
        &template("listeners.yaml.tmpl")?,
        work,
        ports,
        certs,
        twin,
        wasm,
        plugin,
    )?;
    let lds = work.join("lds");
    std::fs::create_dir_all(&lds)?;
    // Staged outside the watched directory: Envoy reacts to the rename only.
    let staged = work.join("listeners.yaml.new");
    std::fs::write(&staged, listeners)?;
    std::fs::rename(&staged, lds.join("listeners.yaml"))?;
    Ok(())
}
