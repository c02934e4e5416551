//! Reading one request's attributes from the proxy: only what the compiled policies need,
//! from what the proxy verified (never from what the client claims about itself).

use std::net::{IpAddr, SocketAddr};

use cordon_engine::{Claims, Needs};

use crate::config::{FilterConfig, IdentitySource};
use crate::encoding::{decode_u64, proto};
use crate::host::Host;
use crate::xfcc::nearest_hop_uris;

/// The attributes of one request, owned (host calls return owned bytes).
#[derive(Debug, Default, Clone)]
pub struct Attributes {
    /// The peer identity as presented.
    pub peer_identity: Option<String>,
    /// `source.address` without its port.
    pub source_ip: Option<IpAddr>,
    /// The client address from `x-forwarded-for`, when trusted proxy hops are configured.
    pub remote_ip: Option<IpAddr>,
    /// `destination.address` without its port.
    pub destination_ip: Option<IpAddr>,
    /// `destination.port`.
    pub destination_port: Option<u16>,
    /// `connection.requested_server_name`.
    pub sni: Option<String>,
    /// `:method`.
    pub method: Option<String>,
    /// `:path`, raw.
    pub path: Option<String>,
    /// `:authority`.
    pub host: Option<String>,
    /// The headers a rule reads (every value of each), or all headers (see
    /// [`Attributes::all_headers`]), when a rule reads headers or a decision record is
    /// written.
    pub headers: Vec<(String, String)>,
    /// Whether `headers` is the whole header map rather than only the headers the
    /// policies read.
    pub all_headers: bool,
}

/// The request headers a request's attributes are read from when the proxy can read
/// them by name ([`Host::named_headers`]): the policies' headers, `:path`, and `:method`
/// and `:authority` when the policies read them. Computed once per configuration.
pub fn header_reads(needs: &Needs) -> Vec<String> {
    let mut names = needs.headers.clone();
    let pseudo = [
        (":path", true),
        (":method", needs.method),
        (":authority", needs.host),
    ];
    for (name, wanted) in pseudo {
        if wanted && !names.iter().any(|known| known == name) {
            names.push(name.to_string());
        }
    }
    names
}

/// Reads the attributes `needs` asks for. The path is always read: normalization may
/// reject it whatever the policies say.
pub fn read(host: &dyn Host, config: &FilterConfig, needs: &Needs) -> Attributes {
    read_with(host, config, needs, &header_reads(needs))
}

/// [`read`], with [`header_reads`] of `needs` computed beforehand (the filter keeps it).
pub fn read_with(
    host: &dyn Host,
    config: &FilterConfig,
    needs: &Needs,
    header_reads: &[String],
) -> Attributes {
    let mut attributes = Attributes::default();
    let wants_xfcc = config.identity == IdentitySource::ForwardedClientCert && needs.peer_identity;
    let wants_xff = config.trusted_proxy_hops > 0 && needs.remote_ip;
    // Forwarded headers may span several lines, and a single-header read answers only the
    // first: read the whole map for them. Otherwise the policies' headers are enough (all
    // the engine looks at), if the proxy can read them for less than the whole map.
    if !needs.headers.is_empty() || wants_xfcc || wants_xff {
        let named = if wants_xfcc || wants_xff {
            None
        } else {
            host.named_headers(header_reads)
        };
        if let Some(mut headers) = named {
            // The pseudo-headers are taken out (in order: the others keep theirs) unless a
            // rule reads them as headers too.
            let mut take = |name: &str| {
                let at = headers.iter().position(|(key, _)| key == name)?;
                if needs.headers.iter().any(|known| known == name) {
                    headers.get(at).map(|(_, value)| value.clone())
                } else {
                    Some(headers.remove(at).1)
                }
            };
            attributes.path = take(":path");
            attributes.method = take(":method");
            attributes.host = take(":authority");
            attributes.headers = headers;
            return read_rest(host, config, needs, attributes);
        }
        attributes.all_headers = true;
        attributes.headers = host.headers();
        let pseudo = |name: &str| {
            attributes
                .headers
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        };
        attributes.method = pseudo(":method");
        attributes.path = pseudo(":path");
        attributes.host = pseudo(":authority");
    } else {
        attributes.path = host.header(":path");
        if needs.method {
            attributes.method = host.header(":method");
        }
        if needs.host {
            attributes.host = host.header(":authority");
        }
    }
    read_rest(host, config, needs, attributes)
}

/// The attributes that are not headers.
fn read_rest(
    host: &dyn Host,
    config: &FilterConfig,
    needs: &Needs,
    mut attributes: Attributes,
) -> Attributes {
    let wants_xfcc = config.identity == IdentitySource::ForwardedClientCert && needs.peer_identity;
    let wants_xff = config.trusted_proxy_hops > 0 && needs.remote_ip;
    if needs.peer_identity {
        attributes.peer_identity = match config.identity {
            IdentitySource::PeerCertificate => peer_certificate_name(host),
            IdentitySource::ForwardedClientCert => {
                forwarded_identity(host, &attributes.headers, wants_xfcc)
            }
        };
    }
    if needs.source_ip || needs.remote_ip {
        attributes.source_ip = address_property(host, &["source", "address"]);
    }
    if wants_xff {
        attributes.remote_ip = forwarded_client(&attributes.headers, config.trusted_proxy_hops);
    }
    if needs.destination_ip {
        attributes.destination_ip = address_property(host, &["destination", "address"]);
    }
    if needs.destination_port {
        attributes.destination_port = host
            .property(&["destination", "port"])
            .and_then(|bytes| decode_u64(&bytes))
            .and_then(|port| u16::try_from(port).ok());
    }
    if needs.sni {
        attributes.sni = string_property(host, &["connection", "requested_server_name"]);
    }
    attributes
}

/// Reads what a decision record shows but the policies did not need.
pub fn complete_for_log(
    host: &dyn Host,
    attributes: &mut Attributes,
    needs: &Needs,
    config: &FilterConfig,
) {
    if !attributes.all_headers {
        attributes.headers = host.headers();
        attributes.all_headers = true;
        attributes.method = attributes.method.take().or_else(|| host.header(":method"));
        attributes.host = attributes.host.take().or_else(|| host.header(":authority"));
    }
    if !needs.peer_identity {
        attributes.peer_identity = match config.identity {
            IdentitySource::PeerCertificate => peer_certificate_name(host),
            IdentitySource::ForwardedClientCert => {
                forwarded_identity(host, &attributes.headers, true)
            }
        };
    }
    if !(needs.source_ip || needs.remote_ip) {
        attributes.source_ip = address_property(host, &["source", "address"]);
    }
    if !needs.destination_ip {
        attributes.destination_ip = address_property(host, &["destination", "address"]);
    }
    if !needs.destination_port {
        attributes.destination_port = host
            .property(&["destination", "port"])
            .and_then(|bytes| decode_u64(&bytes))
            .and_then(|port| u16::try_from(port).ok());
    }
    if !needs.sni {
        attributes.sni = string_property(host, &["connection", "requested_server_name"]);
    }
}

/// The name Envoy's RBAC `authenticated` matcher compares a principal with: the peer
/// certificate's URI SAN, else its DNS SAN, else its subject (Envoy reads the first SAN of
/// each kind through these properties; mesh certificates carry one URI SAN). The other
/// two are read only when there is no URI SAN.
fn peer_certificate_name(host: &dyn Host) -> Option<String> {
    string_property(host, &["connection", "uri_san_peer_certificate"])
        .or_else(|| string_property(host, &["connection", "dns_san_peer_certificate"]))
        .or_else(|| {
            string_property(host, &["connection", "subject_peer_certificate"])
                .filter(|subject| !subject.is_empty())
        })
}

fn forwarded_identity(
    host: &dyn Host,
    headers: &[(String, String)],
    enabled: bool,
) -> Option<String> {
    if !enabled {
        return None;
    }
    // Several header lines are one list: the last line holds the nearest hop's element.
    let fetched;
    let headers = if headers.is_empty() {
        fetched = host.headers();
        &fetched
    } else {
        headers
    };
    let header = headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("x-forwarded-client-cert"))
        .map(|(_, value)| value.as_str())
        .collect::<Vec<_>>()
        .join(",");
    if header.is_empty() {
        return None;
    }
    nearest_hop_uris(&header)?.into_iter().next()
}

/// The `x-forwarded-for` entry `hops` places from the right: what Envoy takes as the client
/// address with `xff_num_trusted_hops: hops` (the trusted proxies appended the entries to
/// its right).
pub fn forwarded_client(headers: &[(String, String)], hops: usize) -> Option<IpAddr> {
    let entries: Vec<&str> = headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("x-forwarded-for"))
        .flat_map(|(_, value)| value.split(','))
        .map(str::trim)
        .collect();
    let position = entries.len().checked_sub(hops)?;
    entries.get(position)?.parse().ok()
}

fn string_property(host: &dyn Host, path: &[&str]) -> Option<String> {
    host.property(path)
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .filter(|text| !text.is_empty())
}

/// Envoy writes addresses as `ip:port` (`[v6]:port` for IPv6).
fn address_property(host: &dyn Host, path: &[&str]) -> Option<IpAddr> {
    let text = string_property(host, path)?;
    text.parse::<SocketAddr>()
        .map(|socket| socket.ip())
        .or_else(|_| text.parse::<IpAddr>())
        .ok()
}

/// Verified JWT claims: the JWT filter's payload, a `google.protobuf.Struct`, read in place
/// from the one `metadata` property (an `envoy.config.core.v3.Metadata` message in protobuf
/// wire bytes, where every claim keeps its JSON type; Envoy's pairs encoding of deeper
/// paths reads `true`, `7` and `{"a": ""}` as strings or lists, and fails on `null`).
pub struct MetadataClaims {
    metadata: Vec<u8>,
    /// Where the payload Struct lies in `metadata`.
    payload: std::ops::Range<usize>,
}

impl MetadataClaims {
    /// The payload under `filter_metadata[<namespace>]` at `<payload_key>`, if a verified
    /// token came with the request: one host call.
    pub fn fetch(host: &dyn Host, config: &FilterConfig) -> Option<MetadataClaims> {
        let metadata = host.property(&["metadata"])?;
        MetadataClaims::from_metadata(
            metadata,
            &config.jwt.metadata_namespace,
            &config.jwt.payload_key,
        )
    }

    /// Reads the payload out of an encoded `envoy.config.core.v3.Metadata`. `None` when
    /// the namespace or key is absent or the payload is not a Struct.
    pub fn from_metadata(
        metadata: Vec<u8>,
        namespace: &str,
        payload_key: &str,
    ) -> Option<MetadataClaims> {
        let payload = {
            let namespace = proto::filter_metadata(&metadata, namespace)?;
            let proto::Value::Struct(payload) = proto::struct_get(namespace, payload_key)? else {
                return None;
            };
            let start = (payload.as_ptr() as usize).checked_sub(metadata.as_ptr() as usize)?;
            start..start.checked_add(payload.len())?
        };
        Some(MetadataClaims { metadata, payload })
    }

    /// The payload Struct, encoded.
    pub fn payload(&self) -> &[u8] {
        self.metadata.get(self.payload.clone()).unwrap_or_default()
    }
}

impl MetadataClaims {
    /// The claim at `path` (nested Struct keys, outermost first).
    fn claim(&self, path: &[&str]) -> Option<proto::Value<'_>> {
        let (last, parents) = path.split_last()?;
        let mut node = self.payload();
        for key in parents {
            match proto::struct_get(node, key)? {
                proto::Value::Struct(child) => node = child,
                _ => return None,
            }
        }
        proto::struct_get(node, last)
    }
}

impl Claims for MetadataClaims {
    fn any_value(&self, path: &[&str], visit: &mut dyn FnMut(&str) -> bool) -> bool {
        self.claim(path)
            .is_some_and(|value| visit_claim_value(value, visit))
    }

    fn string(&self, path: &[&str]) -> Option<&str> {
        match self.claim(path)? {
            proto::Value::String(bytes) => std::str::from_utf8(bytes).ok(),
            _ => None,
        }
    }
}

/// What Envoy's metadata matchers can match of a claim value: a string, or each string
/// element of a list (`list_match`). Numbers, booleans, null, objects and nested lists
/// carry no string.
pub fn visit_claim_value(value: proto::Value<'_>, visit: &mut dyn FnMut(&str) -> bool) -> bool {
    fn as_text(value: proto::Value<'_>) -> Option<&str> {
        match value {
            proto::Value::String(bytes) => std::str::from_utf8(bytes).ok(),
            _ => None,
        }
    }
    match value {
        proto::Value::List(items) => proto::list_items(items)
            .map_while(|item| item)
            .filter_map(as_text)
            .any(visit),
        value => as_text(value).is_some_and(visit),
    }
}

/// How deep [`claims_to_json`] follows nested objects and lists; deeper values are `null`.
const MAX_JSON_DEPTH: usize = 32;

/// The whole claims Struct as JSON, for decision records: every value with its type
/// (integral numbers within 2^53 as integers).
pub fn claims_to_json(payload: &[u8]) -> serde_json::Value {
    struct_to_json(payload, 0)
}

fn struct_to_json(message: &[u8], depth: usize) -> serde_json::Value {
    let map = proto::struct_entries(message)
        .map_while(|entry| entry)
        .map(|(key, value)| {
            (
                String::from_utf8_lossy(key).into_owned(),
                value_to_json(value, depth + 1),
            )
        })
        .collect();
    serde_json::Value::Object(map)
}

fn value_to_json(value: proto::Value<'_>, depth: usize) -> serde_json::Value {
    use serde_json::Value;
    if depth > MAX_JSON_DEPTH {
        return Value::Null;
    }
    match value {
        proto::Value::Null => Value::Null,
        proto::Value::Bool(flag) => Value::Bool(flag),
        proto::Value::String(bytes) => Value::String(String::from_utf8_lossy(bytes).into_owned()),
        proto::Value::Number(number) => {
            const EXACT: f64 = 9_007_199_254_740_992.0;
            if number.fract() == 0.0 && number.abs() <= EXACT {
                // Exact: an integral double within 2^53 converts without loss.
                Value::from(number as i64)
            } else {
                serde_json::Number::from_f64(number).map_or(Value::Null, Value::Number)
            }
        }
        proto::Value::Struct(message) => struct_to_json(message, depth),
        proto::Value::List(message) => Value::Array(
            proto::list_items(message)
                .map_while(|item| item)
                .map(|item| value_to_json(item, depth + 1))
                .collect(),
        ),
    }
}
