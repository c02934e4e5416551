//! The functions a proxy-wasm module imports: `env.proxy_*` and WASI preview1.

mod guest;
mod proxy;
mod wasi;

use anyhow::Result;
use wasmtime::{Linker, Module};

use crate::state::State;

/// Defines every import a Rust SDK 0.2.x module (or a cpp-host era module) can declare.
pub(crate) fn define(linker: &mut Linker<State>, module: &Module) -> Result<()> {
    proxy::define(linker)?;
    wasi::define(linker, module)?;
    Ok(())
}
