//! What a module did with a request.

use std::fmt;

use crate::exchange::split_path;
use crate::headers::HeaderMap;

/// A proxy-wasm log level (`proxy_log`'s first argument).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// 0
    Trace,
    /// 1
    Debug,
    /// 2; also WASI stdout.
    Info,
    /// 3
    Warn,
    /// 4; also WASI stderr.
    Error,
    /// 5; the SDK's panic hook logs the panic message at this level.
    Critical,
}

impl LogLevel {
    /// The level for an ABI number, `None` past `Critical`.
    pub fn from_abi(level: u32) -> Option<Self> {
        Some(match level {
            0 => Self::Trace,
            1 => Self::Debug,
            2 => Self::Info,
            3 => Self::Warn,
            4 => Self::Error,
            5 => Self::Critical,
            _ => return None,
        })
    }

    /// The ABI number.
    pub fn to_abi(self) -> u32 {
        self as u32
    }
}

/// One log line a module emitted, through `proxy_log` or WASI stdout/stderr.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    /// Its level.
    pub level: LogLevel,
    /// Its text (invalid UTF-8 replaced; a WASI write loses one trailing newline, as in Envoy).
    pub message: String,
}

impl fmt::Display for LogRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:?}] {}", self.level, self.message)
    }
}

/// What `proxy_on_request_headers` returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// 0: let the request go on to the next filter.
    Continue,
    /// 1: stop iteration (the module answers, or resumes later).
    Pause,
}

/// A response the module sent with `proxy_send_local_response`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalResponse {
    /// HTTP status code.
    pub status: u32,
    /// The response-code details (empty when the module sent none; SDK 0.2.x never sends any).
    pub details: String,
    /// Response body.
    pub body: Vec<u8>,
    /// Additional response headers, in order.
    pub headers: Vec<(String, String)>,
    /// gRPC status, `None` for the ABI's "no gRPC status" (-1).
    pub grpc_status: Option<i32>,
}

/// The record of one request through the module: see [`crate::Plugin::handle`].
///
/// The plugin reuses one `Outcome` from request to request (that is what keeps a request free
/// of host allocations), so it is borrowed from the plugin; clone it to keep it.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub(crate) context_id: u32,
    pub(crate) action: Option<Action>,
    pub(crate) local_response: Option<LocalResponse>,
    pub(crate) logs: Vec<LogRecord>,
    pub(crate) properties_set: Vec<(Vec<u8>, Vec<u8>)>,
    pub(crate) request_headers: HeaderMap,
    /// The local reply's headers, once Envoy would have built them.
    pub(crate) response_headers: HeaderMap,
    pub(crate) response_available: bool,
    pub(crate) callbacks: Vec<&'static str>,
    pub(crate) continued: bool,
    pub(crate) closed: bool,
}

impl Outcome {
    /// The context id the host gave this request.
    pub fn context_id(&self) -> u32 {
        self.context_id
    }

    /// What `proxy_on_request_headers` returned.
    pub fn action(&self) -> Action {
        self.action.unwrap_or(Action::Continue)
    }

    /// The local response the module sent, if any (the first one when it sent several).
    pub fn local_response(&self) -> Option<&LocalResponse> {
        self.local_response.as_ref()
    }

    /// Log lines at or above the plugin's log level, from context creation to deletion.
    pub fn logs(&self) -> &[LogRecord] {
        &self.logs
    }

    /// Whether some log line contains `needle`.
    pub fn logged(&self, needle: &str) -> bool {
        self.logs.iter().any(|l| l.message.contains(needle))
    }

    /// The value the module set at `path` with `proxy_set_property` (Envoy's filter state
    /// `wasm.<path>`); the last write wins.
    pub fn property_set<I, S>(&self, path: I) -> Option<&[u8]>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let key = crate::exchange::join_path(path);
        self.property_set_raw(&key)
    }

    /// Every property the module set, path split into segments, in first-write order.
    pub fn properties_set(&self) -> Vec<(Vec<String>, Vec<u8>)> {
        self.properties_set
            .iter()
            .map(|(k, v)| (split_path(k), v.clone()))
            .collect()
    }

    /// The request headers after the module's additions, replacements and removals.
    pub fn request_headers(&self) -> &HeaderMap {
        &self.request_headers
    }

    /// The headers of the local response as the module left them in
    /// `proxy_on_response_headers` (`:status`, the module's headers, `content-length`,
    /// `content-type`); empty when there was no local response.
    pub fn response_headers(&self) -> &HeaderMap {
        &self.response_headers
    }

    /// The module callbacks the host made for this request, in order.
    pub fn callbacks(&self) -> &[&'static str] {
        &self.callbacks
    }

    /// Whether the module called `proxy_continue_stream` during the request.
    pub fn continued_stream(&self) -> bool {
        self.continued
    }

    /// Whether the module called `proxy_close_stream` during the request.
    pub fn closed_stream(&self) -> bool {
        self.closed
    }

    pub(crate) fn property_set_raw(&self, key: &[u8]) -> Option<&[u8]> {
        self.properties_set
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| &v[..])
    }

    /// Builds the response headers Envoy's `sendLocalReply` sends for the local response, if
    /// any, and answers their count and whether the headers end the stream (no body).
    pub(crate) fn begin_local_reply(&mut self) -> Option<(u32, bool)> {
        let reply = self.local_response.as_ref()?;
        let headers = &mut self.response_headers;
        headers.clear();
        headers.append(b":status", reply.status.to_string().as_bytes());
        for (name, value) in &reply.headers {
            headers.append(name.as_bytes(), value.as_bytes());
        }
        if !reply.body.is_empty() {
            headers.append(b"content-length", reply.body.len().to_string().as_bytes());
            headers.append(b"content-type", b"text/plain");
        }
        self.response_available = true;
        let count = u32::try_from(headers.len()).unwrap_or(u32::MAX);
        Some((count, reply.body.is_empty()))
    }

    pub(crate) fn reset(&mut self, context_id: u32) {
        self.context_id = context_id;
        self.action = None;
        self.local_response = None;
        self.logs.clear();
        self.properties_set.clear();
        self.request_headers.clear();
        self.response_headers.clear();
        self.response_available = false;
        self.callbacks.clear();
        self.continued = false;
        self.closed = false;
    }
}
