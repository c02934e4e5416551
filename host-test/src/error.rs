//! Why a request could not be served.

use crate::outcome::LogRecord;

/// Why [`crate::Plugin::handle`] (or another call into a started plugin) produced no outcome.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandleError {
    /// The module trapped: a Rust panic (`unreachable` after the SDK's panic hook logged it), an
    /// out-of-bounds access, `proc_exit`, or a trap inside a host call. Envoy 1.40 answers
    /// such a request 503 and marks the VM failed, answering 503 to every later request; the
    /// plugin is failed likewise, and later calls answer [`HandleError::Failed`].
    #[error("the module trapped in `{callback}`: {message}")]
    Trap {
        /// The module export that was running.
        callback: &'static str,
        /// wasmtime's description of the trap, with the wasm backtrace.
        message: String,
        /// Log lines emitted before the trap; with the SDK, a panic's message is the last one,
        /// at [`crate::LogLevel::Critical`].
        logs: Vec<LogRecord>,
    },
    /// The module trapped earlier; nothing more runs in it.
    #[error(
        "the plugin failed earlier (a trap in `{callback}`); a crashed VM serves no more requests"
    )]
    Failed {
        /// Where the first trap happened.
        callback: &'static str,
    },
    /// The last `proxy_on_configure` returned false, so Envoy would not run this filter.
    #[error("the plugin configuration was rejected (proxy_on_configure returned false)")]
    NotConfigured,
}

impl HandleError {
    /// The log lines the module emitted before the trap (empty for the other kinds).
    pub fn logs(&self) -> &[LogRecord] {
        match self {
            HandleError::Trap { logs, .. } => logs,
            HandleError::Failed { .. } | HandleError::NotConfigured => &[],
        }
    }
}
