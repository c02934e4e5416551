//! What the host knows about one request before the module sees it.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// Property values keyed by path, as `proxy_get_property` looks them up.
///
/// A path is a list of segments (`["source", "address"]`); the module sends it as the segments
/// joined by `\0`, and the lookup is exact: storing `["a", "b"]` answers neither `["a"]` nor
/// `["a", "b", "c"]`. Store both a whole map (encoded with [`crate::encode::encode_pairs`]) and its
/// leaves when a module may ask for either. Values are stored already encoded, see
/// [`crate::encode`].
///
/// # Example
///
/// ```
/// use cordon_host::encode::{encode_bool, encode_string};
/// use cordon_host::Properties;
///
/// let props = Properties::new()
///     .with(["source", "address"], encode_string("10.0.0.7:51234"))
///     .with(["connection", "mtls"], encode_bool(true));
/// assert_eq!(props.get(["connection", "mtls"]), Some(&[1u8][..]));
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Properties {
    // Keyed by the NUL-joined path so that the bytes a module sends are the lookup key as is.
    map: HashMap<Box<[u8]>, Box<[u8]>>,
}

impl Properties {
    /// An empty property map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores `value` at `path`, replacing any previous value.
    ///
    /// Segments must not contain `\0`, which separates them on the wire.
    pub fn insert<I, S>(&mut self, path: I, value: impl Into<Vec<u8>>) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.map.insert(
            join_path(path).into_boxed_slice(),
            value.into().into_boxed_slice(),
        );
        self
    }

    /// [`Properties::insert`] in builder form.
    pub fn with<I, S>(mut self, path: I, value: impl Into<Vec<u8>>) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.insert(path, value);
        self
    }

    /// Removes the value at `path`, returning it.
    pub fn remove<I, S>(&mut self, path: I) -> Option<Vec<u8>>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.map.remove(join_path(path).as_slice()).map(Vec::from)
    }

    /// The value at `path`.
    pub fn get<I, S>(&self, path: I) -> Option<&[u8]>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.get_raw(&join_path(path))
    }

    /// Number of stored paths.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Every stored path (split into segments) and value, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (Vec<String>, &[u8])> + '_ {
        self.map.iter().map(|(k, v)| (split_path(k), &v[..]))
    }

    /// Lookup by the wire form of the path (segments joined by `\0`), without allocating.
    pub(crate) fn get_raw(&self, joined: &[u8]) -> Option<&[u8]> {
        self.map.get(joined).map(|v| &v[..])
    }
}

impl fmt::Debug for Properties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut entries: Vec<_> = self
            .iter()
            .map(|(p, v)| (p.join("."), v.to_vec()))
            .collect();
        entries.sort();
        f.debug_map().entries(entries).finish()
    }
}

/// Joins path segments with `\0`, the wire form of a property path.
pub(crate) fn join_path<I, S>(path: I) -> Vec<u8>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut out = Vec::new();
    for (i, segment) in path.into_iter().enumerate() {
        if i > 0 {
            out.push(0);
        }
        out.extend_from_slice(segment.as_ref().as_bytes());
    }
    out
}

/// Splits a wire-form path into its segments (invalid UTF-8 replaced).
pub(crate) fn split_path(joined: &[u8]) -> Vec<String> {
    joined
        .split(|&b| b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// One HTTP request as Envoy presents it to the filter chain.
///
/// `headers` are the request headers in order, pseudo-headers included (`:method`, `:path`,
/// `:authority`, `:scheme`); a header that arrived several times is several pairs. Names are
/// lowercased by the host, as Envoy does. `properties` are the request's attributes
/// (`source.address`, `connection.uri_san_peer_certificate`, metadata, ...), already encoded.
/// They sit behind an [`Arc`] so that many exchanges can share one map and handing it to the
/// host costs no copy.
///
/// # Example
///
/// ```
/// use cordon_host::encode::encode_string;
/// use cordon_host::HttpExchange;
///
/// let exchange = HttpExchange::get("/reports", "ledger.shop")
///     .header("x-request-id", "7")
///     .property(["source", "address"], encode_string("10.0.0.7:51234"));
/// assert_eq!(exchange.headers[1], (":path".to_string(), "/reports".to_string()));
/// assert_eq!(exchange.headers[2], (":method".to_string(), "GET".to_string()));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpExchange {
    /// Request headers, in order, pseudo-headers first.
    pub headers: Vec<(String, String)>,
    /// Request-level properties, shared.
    pub properties: Arc<Properties>,
}

impl HttpExchange {
    /// An exchange with no headers and no properties.
    pub fn new() -> Self {
        Self::default()
    }

    /// A `GET` of `path` on `authority` over `http`, with the four pseudo-headers Envoy
    /// always presents.
    pub fn get(path: &str, authority: &str) -> Self {
        Self::request("GET", path, authority)
    }

    /// A request with the pseudo-headers in the order Envoy 1.40 presents an HTTP/1.1
    /// request: `:authority`, `:path`, `:method`, `:scheme: http`.
    ///
    /// Envoy also adds `x-forwarded-proto` and `x-request-id` before the filter chain runs;
    /// add them with [`HttpExchange::header`] when a module looks at them.
    pub fn request(method: &str, path: &str, authority: &str) -> Self {
        Self::new()
            .header(":authority", authority)
            .header(":path", path)
            .header(":method", method)
            .header(":scheme", "http")
    }

    /// Appends a header (a repeated name adds another occurrence).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Sets a request property (copying the property map first if it is shared).
    pub fn property<I, S>(mut self, path: I, value: impl Into<Vec<u8>>) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Arc::make_mut(&mut self.properties).insert(path, value);
        self
    }

    /// Replaces the property map with a shared one.
    pub fn with_properties(mut self, properties: Arc<Properties>) -> Self {
        self.properties = properties;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_join_with_nul_and_match_exactly() {
        let props = Properties::new().with(["a", "b"], b"v".to_vec());
        assert_eq!(props.get_raw(b"a\0b"), Some(&b"v"[..]));
        assert_eq!(props.get(["a"]), None);
        assert_eq!(props.get(["a", "b", "c"]), None);
        assert_eq!(
            props.iter().next().map(|(p, _)| p),
            Some(vec!["a".into(), "b".into()])
        );
    }
}
