//! The attributes of one request, as the proxy verified them.
//!
//! Every value is borrowed: the engine never copies a request. Multi-valued
//! attributes (headers, JWT claims) are read through small visitor traits so
//! a proxy can serve them straight from its own buffers.

use core::net::IpAddr;

/// Request headers, read by name.
///
/// Names are given in lowercase (HTTP/2 and Envoy's header maps are
/// lowercase); implementations compare names ASCII case-insensitively.
pub trait Headers {
    /// Calls `visit` with each value of header `name`, in arrival order,
    /// until `visit` returns `true`. Returns `true` if a visit did.
    fn any_value(&self, name: &str, visit: &mut dyn FnMut(&str) -> bool) -> bool;
}

/// Verified JWT claims (from Envoy's `jwt_authn` filter), read by path.
pub trait Claims {
    /// Calls `visit` with each string value of the claim at `path` (nested
    /// object keys, outermost first) until `visit` returns `true`: once for a
    /// string claim, once per string element for a list claim, never for
    /// other types or a missing claim. Returns `true` if a visit did.
    fn any_value(&self, path: &[&str], visit: &mut dyn FnMut(&str) -> bool) -> bool;

    /// The claim at `path` when it is a string, and only then (not a list, whatever its
    /// elements): what a plain string matcher on the JWT metadata sees, as istiod
    /// generates for the `iss` and `sub` of `requestPrincipals`.
    fn string(&self, path: &[&str]) -> Option<&str>;
}

/// No headers at all.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHeaders;

impl Headers for NoHeaders {
    fn any_value(&self, _name: &str, _visit: &mut dyn FnMut(&str) -> bool) -> bool {
        false
    }
}

fn pairs_any_value<N: AsRef<str>, V: AsRef<str>>(
    pairs: &[(N, V)],
    name: &str,
    visit: &mut dyn FnMut(&str) -> bool,
) -> bool {
    pairs
        .iter()
        .filter(|(candidate, _)| {
            let candidate = candidate.as_ref();
            // Names usually arrive lowercase, as given: one comparison of equal lengths.
            candidate.len() == name.len()
                && (candidate == name || candidate.eq_ignore_ascii_case(name))
        })
        .any(|(_, value)| visit(value.as_ref()))
}

/// Headers as `(name, value)` pairs; a repeated header appears once per value.
impl<N: AsRef<str>, V: AsRef<str>> Headers for alloc::vec::Vec<(N, V)> {
    fn any_value(&self, name: &str, visit: &mut dyn FnMut(&str) -> bool) -> bool {
        pairs_any_value(self, name, visit)
    }
}

/// Headers as `(name, value)` pairs; a repeated header appears once per value.
impl<N: AsRef<str>, V: AsRef<str>, const COUNT: usize> Headers for [(N, V); COUNT] {
    fn any_value(&self, name: &str, visit: &mut dyn FnMut(&str) -> bool) -> bool {
        pairs_any_value(self, name, visit)
    }
}

impl Claims for serde_json::Value {
    fn any_value(&self, path: &[&str], visit: &mut dyn FnMut(&str) -> bool) -> bool {
        let mut node = self;
        for key in path {
            match node.get(key) {
                Some(child) => node = child,
                None => return false,
            }
        }
        match node {
            serde_json::Value::String(value) => visit(value),
            serde_json::Value::Array(items) => items
                .iter()
                .filter_map(serde_json::Value::as_str)
                .any(visit),
            _ => false,
        }
    }

    fn string(&self, path: &[&str]) -> Option<&str> {
        let mut node = self;
        for key in path {
            node = node.get(key)?;
        }
        node.as_str()
    }
}

/// One request's attributes. `None` means the proxy did not provide the
/// attribute; a positive match on a missing attribute is false, as in Envoy.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    /// The peer's identity: the URI SAN of the verified client certificate,
    /// as presented (`spiffe://cluster.local/ns/shop/sa/frontend`). `None`
    /// for plaintext. An invalid SPIFFE ID counts as no identity.
    pub peer_identity: Option<&'a str>,
    /// The downstream connection's address (`source.ip`, `ipBlocks`).
    pub source_ip: Option<IpAddr>,
    /// The original client address (`remote.ip`, `remoteIpBlocks`); when
    /// `None`, `source_ip` is used, as Envoy does without trusted proxies.
    pub remote_ip: Option<IpAddr>,
    /// The local address the request arrived on (`destination.ip`).
    pub destination_ip: Option<IpAddr>,
    /// The local port the request arrived on (`ports`, `destination.port`).
    pub destination_port: Option<u16>,
    /// TLS server name indication (`connection.sni`).
    pub sni: Option<&'a str>,
    /// `:method`.
    pub method: Option<&'a str>,
    /// `:path` exactly as received, with query and fragment; the engine
    /// normalizes it.
    pub path: Option<&'a str>,
    /// `:authority`.
    pub host: Option<&'a str>,
    /// Request headers.
    pub headers: &'a dyn Headers,
    /// Verified JWT claims; `None` when no verified token came with the
    /// request.
    pub claims: Option<&'a dyn Claims>,
}

impl Default for Request<'_> {
    fn default() -> Self {
        Request {
            peer_identity: None,
            source_ip: None,
            remote_ip: None,
            destination_ip: None,
            destination_port: None,
            sni: None,
            method: None,
            path: None,
            host: None,
            headers: &NoHeaders,
            claims: None,
        }
    }
}

impl core::fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Request")
            .field("peer_identity", &self.peer_identity)
            .field("source_ip", &self.source_ip)
            .field("remote_ip", &self.remote_ip)
            .field("destination_ip", &self.destination_ip)
            .field("destination_port", &self.destination_port)
            .field("sni", &self.sni)
            .field("method", &self.method)
            .field("path", &self.path)
            .field("host", &self.host)
            .field("has_claims", &self.claims.is_some())
            .finish_non_exhaustive()
    }
}
