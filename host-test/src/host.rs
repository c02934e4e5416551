//! Loading a module once and starting plugins from it.

use anyhow::{bail, Context as _, Result};
use wasmtime::{Config, Engine, ExternType, InstancePre, Linker, Module, Store};

use crate::exchange::Properties;
use crate::outcome::LogLevel;
use crate::plugin::{Exports, Plugin};
use crate::state::{Clock, RepeatedHeaders, State};

/// The context id of the plugin's root context (Envoy numbers contexts from 1 too).
pub(crate) const ROOT_CONTEXT_ID: u32 = 1;

/// How to start a plugin: configuration, plugin-wide properties and host settings.
///
/// # Example
///
/// ```
/// use cordon_host::encode::encode_string;
/// use cordon_host::{LogLevel, StartOptions};
///
/// let mut options = StartOptions::new(b"".to_vec(), br#"{"policies":[]}"#.to_vec());
/// options.log_level = LogLevel::Debug;
/// options.properties.insert(["plugin_name"], encode_string("cordon"));
/// ```
#[derive(Clone, Debug)]
pub struct StartOptions {
    /// The VM configuration (`vm_config.configuration`), handed to `proxy_on_vm_start`.
    pub vm_config: Vec<u8>,
    /// The plugin configuration (`configuration`), handed to `proxy_on_configure`.
    pub plugin_config: Vec<u8>,
    /// Plugin-wide properties, visible in every context: `plugin_name`, `plugin_root_id`,
    /// `plugin_vm_id`, `node.*`, `listener_direction`, ... Request properties of the same path
    /// take precedence during a request.
    pub properties: Properties,
    /// Envoy's `wasm` logger level: lines below it are dropped, and `proxy_get_log_level`
    /// answers it. Envoy's default is `Info`.
    pub log_level: LogLevel,
    /// The time the module reads.
    pub clock: Clock,
    /// What `proxy_get_header_map_value` answers for a repeated header.
    pub repeated_headers: RepeatedHeaders,
    /// Seed of WASI `random_get` (deterministic here, so runs are reproducible).
    pub random_seed: u64,
}

impl Default for StartOptions {
    fn default() -> Self {
        Self {
            vm_config: Vec::new(),
            plugin_config: Vec::new(),
            properties: Properties::new(),
            log_level: LogLevel::Info,
            clock: Clock::System,
            repeated_headers: RepeatedHeaders::First,
            random_seed: 0x5eed,
        }
    }
}

impl StartOptions {
    /// Options with these configurations and every other setting at its default.
    pub fn new(vm_config: impl Into<Vec<u8>>, plugin_config: impl Into<Vec<u8>>) -> Self {
        Self {
            vm_config: vm_config.into(),
            plugin_config: plugin_config.into(),
            ..Self::default()
        }
    }
}

/// A compiled proxy-wasm module, linked against this host, ready to start plugins.
///
/// Loading compiles the module once; [`Host::start`] only instantiates it, so starting
/// several plugins (say, one per policy configuration) from one `Host` is cheap.
pub struct Host {
    engine: Engine,
    pre: InstancePre<State>,
    alloc_export: &'static str,
    entry_export: Option<&'static str>,
}

impl Host {
    /// Compiles `wasm` (binary, or text with the `wat` syntax) and links every import.
    ///
    /// # Errors
    ///
    /// When the module does not compile, does not declare proxy-wasm ABI 0.2.1, imports
    /// something this host does not serve, or lacks `memory` or an allocator export.
    pub fn load(wasm: &[u8]) -> Result<Host> {
        let engine = Engine::new(&Config::new()).map_err(anyhow::Error::from)?;
        let module = Module::new(&engine, wasm)
            .map_err(anyhow::Error::from)
            .context("compiling the wasm module")?;
        let has_func = |name: &str| {
            module
                .exports()
                .any(|e| e.name() == name && matches!(e.ty(), ExternType::Func(_)))
        };
        if !has_func("proxy_abi_version_0_2_1") {
            bail!(
                "the module does not export `proxy_abi_version_0_2_1`; this host serves proxy-wasm ABI 0.2.1 only"
            );
        }
        // cpp-host prefers `malloc` (wasm32-unknown-unknown SDK builds export it under that
        // name); wasip1 SDK builds export `proxy_on_memory_allocate`.
        let alloc_export = if has_func("malloc") {
            "malloc"
        } else if has_func("proxy_on_memory_allocate") {
            "proxy_on_memory_allocate"
        } else {
            bail!("the module exports neither `malloc` nor `proxy_on_memory_allocate`");
        };
        let entry_export = ["_initialize", "_start"].into_iter().find(|n| has_func(n));

        let mut linker = Linker::new(&engine);
        crate::imports::define(&mut linker, &module).context("defining the host functions")?;
        let pre = linker
            .instantiate_pre(&module)
            .map_err(anyhow::Error::from)
            .context("linking the module's imports")?;
        Ok(Host {
            engine,
            pre,
            alloc_export,
            entry_export,
        })
    }

    /// Starts a plugin with these configurations and default [`StartOptions`].
    ///
    /// # Errors
    ///
    /// See [`Host::start_with`].
    pub fn start(&self, vm_config: &[u8], plugin_config: &[u8]) -> Result<Plugin> {
        self.start_with(StartOptions::new(vm_config, plugin_config))
    }

    /// Instantiates the module and brings it up as Envoy does: `_initialize` (or `_start`),
    /// `proxy_on_context_create(root, 0)`, `proxy_on_vm_start(root, vm_config_len)`, and, if
    /// the VM started, `proxy_on_configure(root, plugin_config_len)`.
    ///
    /// A rejected configuration is not an error: see [`Plugin::start_report`].
    ///
    /// # Errors
    ///
    /// When instantiation fails, an export the host calls is missing or has the wrong type, or
    /// the module traps while starting (the error then holds a [`crate::HandleError::Trap`],
    /// with the logs emitted so far).
    pub fn start_with(&self, options: StartOptions) -> Result<Plugin> {
        let mut store = Store::new(&self.engine, State::new(ROOT_CONTEXT_ID, &options));
        let instance = self
            .pre
            .instantiate(&mut store)
            .map_err(anyhow::Error::from)
            .context("instantiating the module")?;
        let memory = instance
            .get_memory(&mut store, "memory")
            .context("the module exports no memory named `memory`")?;
        let alloc = instance
            .get_typed_func::<u32, u32>(&mut store, self.alloc_export)
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!("the allocator `{}` is not (i32) -> i32", self.alloc_export)
            })?;
        store.data_mut().memory = Some(memory);
        store.data_mut().alloc = Some(alloc);
        let exports = Exports::resolve(&instance, &mut store, self.entry_export)?;
        Plugin::start(store, exports, &options)
    }
}
