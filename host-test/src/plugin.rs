//! A started plugin: one module instance with its root context, serving requests.

use anyhow::{Context as _, Result};
use wasmtime::{Instance, Store, TypedFunc};

use crate::error::HandleError;
use crate::exchange::HttpExchange;
use crate::host::{StartOptions, ROOT_CONTEXT_ID};
use crate::metrics::{Metric, MetricType};
use crate::outcome::{Action, LogRecord, Outcome};
use crate::state::{Clock, Phase, State};

/// The module exports the host calls, resolved once.
pub(crate) struct Exports {
    entry: Option<(&'static str, TypedFunc<(), ()>)>,
    on_context_create: TypedFunc<(u32, u32), ()>,
    on_vm_start: TypedFunc<(u32, u32), u32>,
    on_configure: TypedFunc<(u32, u32), u32>,
    on_request_headers: TypedFunc<(u32, u32, u32), u32>,
    on_response_headers: Option<TypedFunc<(u32, u32, u32), u32>>,
    on_done: TypedFunc<u32, u32>,
    on_log: TypedFunc<u32, ()>,
    on_delete: TypedFunc<u32, ()>,
    on_tick: Option<TypedFunc<u32, ()>>,
}

impl Exports {
    pub(crate) fn resolve(
        instance: &Instance,
        store: &mut Store<State>,
        entry: Option<&'static str>,
    ) -> Result<Self> {
        fn get<P: wasmtime::WasmParams, R: wasmtime::WasmResults>(
            instance: &Instance,
            store: &mut Store<State>,
            name: &str,
        ) -> Result<TypedFunc<P, R>> {
            instance
                .get_typed_func::<P, R>(&mut *store, name)
                .map_err(anyhow::Error::from)
                .with_context(|| format!("the module's export `{name}` is missing or mistyped"))
        }
        let entry = match entry {
            Some(name) => Some((name, get(instance, store, name)?)),
            None => None,
        };
        // cpp-host skips a callback the module does not export.
        fn optional<P: wasmtime::WasmParams, R: wasmtime::WasmResults>(
            instance: &Instance,
            store: &mut Store<State>,
            name: &str,
        ) -> Result<Option<TypedFunc<P, R>>> {
            match instance.get_func(&mut *store, name) {
                Some(_) => get(instance, store, name).map(Some),
                None => Ok(None),
            }
        }
        let on_tick = optional(instance, store, "proxy_on_tick")?;
        Ok(Self {
            entry,
            on_context_create: get(instance, store, "proxy_on_context_create")?,
            on_vm_start: get(instance, store, "proxy_on_vm_start")?,
            on_configure: get(instance, store, "proxy_on_configure")?,
            on_request_headers: get(instance, store, "proxy_on_request_headers")?,
            on_response_headers: optional(instance, store, "proxy_on_response_headers")?,
            on_done: get(instance, store, "proxy_on_done")?,
            on_log: get(instance, store, "proxy_on_log")?,
            on_delete: get(instance, store, "proxy_on_delete")?,
            on_tick,
        })
    }
}

/// What starting or reconfiguring a plugin produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigureReport {
    /// What `proxy_on_vm_start` returned (Envoy drops a VM that answers false, and then never
    /// calls `proxy_on_configure`).
    pub vm_started: bool,
    /// What `proxy_on_configure` returned: false means the configuration was rejected.
    pub accepted: bool,
    /// Log lines emitted from `_initialize` through `proxy_on_configure`.
    pub logs: Vec<LogRecord>,
}

/// One instance of the module with a configured root context, as an Envoy worker holds it.
///
/// Requests reuse the instance: [`Plugin::handle`] creates no instance and, in steady state,
/// no host allocation (the [`Outcome`] and the guest-bound buffer are reused), so a million
/// requests on one plugin cost a million sets of module callbacks and nothing more.
pub struct Plugin {
    store: Store<State>,
    exports: Exports,
    next_context_id: u32,
    failed: Option<&'static str>,
    start_report: ConfigureReport,
    configured: bool,
}

impl Plugin {
    pub(crate) fn start(
        store: Store<State>,
        exports: Exports,
        options: &StartOptions,
    ) -> Result<Self> {
        let mut plugin = Plugin {
            store,
            exports,
            next_context_id: ROOT_CONTEXT_ID + 1,
            failed: None,
            start_report: ConfigureReport {
                vm_started: false,
                accepted: false,
                logs: Vec::new(),
            },
            configured: false,
        };
        let report = plugin.bring_up(options).map_err(anyhow::Error::from)?;
        plugin.configured = report.accepted;
        plugin.start_report = report;
        Ok(plugin)
    }

    fn bring_up(&mut self, options: &StartOptions) -> Result<ConfigureReport, HandleError> {
        self.store.data_mut().outcome.reset(ROOT_CONTEXT_ID);
        if let Some((name, entry)) = self.exports.entry.clone() {
            self.call(name, |s, _| entry.call(s, ()))?;
        }
        self.call("proxy_on_context_create", |s, e| {
            e.on_context_create.call(s, (ROOT_CONTEXT_ID, 0))
        })?;
        let vm_len = len_u32(options.vm_config.len());
        let vm_started = self.call("proxy_on_vm_start", |s, e| {
            e.on_vm_start.call(s, (ROOT_CONTEXT_ID, vm_len))
        })? != 0;
        let accepted = vm_started && self.configure()?;
        let logs = std::mem::take(&mut self.store.data_mut().outcome.logs);
        Ok(ConfigureReport {
            vm_started,
            accepted,
            logs,
        })
    }

    /// `proxy_on_configure` on the root context, with the plugin configuration readable.
    fn configure(&mut self) -> Result<bool, HandleError> {
        let len = len_u32(self.store.data().plugin_config.len());
        self.store.data_mut().phase = Phase::Configure;
        let result = self.call("proxy_on_configure", |s, e| {
            e.on_configure.call(s, (ROOT_CONTEXT_ID, len))
        });
        self.store.data_mut().phase = Phase::Idle;
        Ok(result? != 0)
    }

    /// What starting the plugin produced: whether the VM started and the configuration was
    /// accepted, and the logs.
    pub fn start_report(&self) -> &ConfigureReport {
        &self.start_report
    }

    /// Whether the last configuration was accepted (requests are served only then).
    pub fn is_configured(&self) -> bool {
        self.configured
    }

    /// Whether the module has trapped (after which it serves nothing).
    pub fn is_failed(&self) -> bool {
        self.failed.is_some()
    }

    /// Hands a new plugin configuration to the same root context (`proxy_on_configure` again).
    /// A rejection is reported, not an error; after it, requests are refused until a later
    /// configuration is accepted.
    ///
    /// # Errors
    ///
    /// When the module traps, or trapped before.
    pub fn reconfigure(&mut self, plugin_config: &[u8]) -> Result<ConfigureReport, HandleError> {
        self.check_alive()?;
        let state = self.store.data_mut();
        state.plugin_config.clear();
        state.plugin_config.extend_from_slice(plugin_config);
        state.outcome.reset(ROOT_CONTEXT_ID);
        let accepted = self.configure()?;
        self.configured = accepted;
        let logs = std::mem::take(&mut self.store.data_mut().outcome.logs);
        Ok(ConfigureReport {
            vm_started: true,
            accepted,
            logs,
        })
    }

    /// Runs one request through the module, in the order Envoy 1.40 was seen to use:
    /// `proxy_on_context_create(id, root)`, `proxy_on_request_headers(id, header_count,
    /// end_of_stream = true)`, then, if the module sent a local response,
    /// `proxy_on_response_headers` for that response (Envoy runs a local reply back through
    /// the filter that sent it), then `proxy_on_log`, `proxy_on_done`, `proxy_on_delete`
    /// (the access-log pass runs before the filter is destroyed).
    ///
    /// The outcome is borrowed from the plugin and overwritten by the next request.
    ///
    /// # Errors
    ///
    /// When the module traps (the plugin is failed from then on), trapped before, or its
    /// configuration was rejected.
    pub fn handle(&mut self, exchange: &HttpExchange) -> Result<&Outcome, HandleError> {
        self.check_alive()?;
        if !self.configured {
            return Err(HandleError::NotConfigured);
        }
        let id = self.next_context_id();
        self.store.data_mut().begin_request(id, exchange);
        let result = self.run_request(id);
        self.store.data_mut().end_request();
        result?;
        Ok(&self.store.data().outcome)
    }

    fn run_request(&mut self, id: u32) -> Result<(), HandleError> {
        let headers = len_u32(self.store.data().outcome.request_headers.len());
        self.call("proxy_on_context_create", |s, e| {
            e.on_context_create.call(s, (id, ROOT_CONTEXT_ID))
        })?;
        let action = self.call("proxy_on_request_headers", |s, e| {
            e.on_request_headers.call(s, (id, headers, 1))
        })?;
        // Envoy reads any non-zero FilterHeadersStatus as a kind of stop.
        self.store.data_mut().outcome.action = Some(if action == 0 {
            Action::Continue
        } else {
            Action::Pause
        });
        let reply = self.store.data_mut().outcome.begin_local_reply();
        if let (Some((count, end_of_stream)), Some(on_response_headers)) =
            (reply, self.exports.on_response_headers.clone())
        {
            self.call("proxy_on_response_headers", |s, _| {
                on_response_headers.call(s, (id, count, u32::from(end_of_stream)))
            })?;
        }
        self.call("proxy_on_log", |s, e| e.on_log.call(s, id))?;
        self.call("proxy_on_done", |s, e| e.on_done.call(s, id))?;
        self.call("proxy_on_delete", |s, e| e.on_delete.call(s, id))?;
        Ok(())
    }

    /// Delivers one timer tick to the root context (`proxy_on_tick`), as Envoy does every
    /// period the module set with `proxy_set_tick_period_milliseconds`. Answers the logs.
    ///
    /// # Errors
    ///
    /// When the module traps, or trapped before.
    pub fn tick(&mut self) -> Result<Vec<LogRecord>, HandleError> {
        self.check_alive()?;
        self.store.data_mut().outcome.reset(ROOT_CONTEXT_ID);
        if let Some(on_tick) = self.exports.on_tick.clone() {
            self.call("proxy_on_tick", |s, _| on_tick.call(s, ROOT_CONTEXT_ID))?;
        }
        Ok(std::mem::take(&mut self.store.data_mut().outcome.logs))
    }

    /// The tick period the module asked for, in milliseconds (0: none).
    pub fn tick_period_ms(&self) -> u32 {
        self.store.data().tick_period_ms
    }

    /// Every metric the module defined, with its current value (see [`Metric::value`]).
    pub fn metrics(&self) -> Vec<(String, MetricType, u64)> {
        self.store
            .data()
            .metrics
            .all()
            .iter()
            .map(|m| (m.name.clone(), m.kind, m.value))
            .collect()
    }

    /// Every metric the module defined, in full.
    pub fn metric_details(&self) -> &[Metric] {
        self.store.data().metrics.all()
    }

    /// The value of the metric named `name` (the first one, if several types share it).
    pub fn metric(&self, name: &str) -> Option<u64> {
        self.store
            .data()
            .metrics
            .all()
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.value)
    }

    /// The size of the instance's linear memory, in bytes (what the module has grown it to;
    /// the pages it touched are resident).
    pub fn memory_bytes(&self) -> usize {
        self.store
            .data()
            .memory
            .map_or(0, |memory| memory.data_size(&self.store))
    }

    /// Sets the time the module reads from now on.
    pub fn set_clock(&mut self, clock: Clock) {
        self.store.data_mut().clock = clock;
    }

    fn check_alive(&self) -> Result<(), HandleError> {
        match self.failed {
            Some(callback) => Err(HandleError::Failed { callback }),
            None => Ok(()),
        }
    }

    fn next_context_id(&mut self) -> u32 {
        let id = self.next_context_id;
        // Skip 0 (no context) and the root's id when the counter wraps.
        self.next_context_id = match id.wrapping_add(1) {
            0 | ROOT_CONTEXT_ID => ROOT_CONTEXT_ID + 1,
            next => next,
        };
        id
    }

    /// Calls one module export; a trap fails the plugin and becomes [`HandleError::Trap`].
    fn call<R>(
        &mut self,
        callback: &'static str,
        f: impl FnOnce(&mut Store<State>, &Exports) -> wasmtime::Result<R>,
    ) -> Result<R, HandleError> {
        self.store.data_mut().outcome.callbacks.push(callback);
        match f(&mut self.store, &self.exports) {
            Ok(value) => Ok(value),
            Err(error) => {
                self.failed = Some(callback);
                let logs = std::mem::take(&mut self.store.data_mut().outcome.logs);
                Err(HandleError::Trap {
                    callback,
                    message: format!("{error:?}"),
                    logs,
                })
            }
        }
    }
}

/// Lengths handed to the module are wasm32 `usize`s.
fn len_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}
