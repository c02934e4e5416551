//! Reading one request's attributes from the proxy: only what the compiled policies need,
//! from what the proxy verified (never from what the client claims about itself).

use std::net::{IpAddr, SocketAddr};

use cordon_engine::{Claims, Needs};

use crate::config::{FilterConfig, IdentitySource};
use crate::encoding::{decode_pairs, decode_u64};
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
    /// All headers, when a rule reads headers (or a decision record is written).
    pub headers: Vec<(String, String)>,
}

/// Reads the attributes `needs` asks for. The path is always read: normalization may
/// reject it whatever the policies say.
pub fn read(host: &dyn Host, config: &FilterConfig, needs: &Needs) -> Attributes {
    let mut attributes = Attributes::default();
    let wants_xfcc = config.identity == IdentitySource::ForwardedClientCert && needs.peer_identity;
    let wants_xff = config.trusted_proxy_hops > 0 && needs.remote_ip;
    // Forwarded headers may span several lines, and a single-header read answers only the
    // first: read the whole map.
    if !needs.headers.is_empty() || wants_xfcc || wants_xff {
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
    if needs.peer_identity {
        attributes.peer_identity = match config.identity {
            IdentitySource::PeerCertificate => {
                string_property(host, &["connection", "uri_san_peer_certificate"])
            }
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
    if needs.headers.is_empty() {
        attributes.headers = host.headers();
        attributes.method = attributes.method.take().or_else(|| host.header(":method"));
        attributes.host = attributes.host.take().or_else(|| host.header(":authority"));
    }
    if !needs.peer_identity {
        attributes.peer_identity = match config.identity {
            IdentitySource::PeerCertificate => {
                string_property(host, &["connection", "uri_san_peer_certificate"])
            }
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

/// Verified JWT claims: the JWT filter's payload, fetched with one host call and read in
/// place.
pub struct MetadataClaims {
    payload: Vec<u8>,
}

impl MetadataClaims {
    /// The payload under `metadata.filter_metadata[<namespace>][<payload_key>]`, if a
    /// verified token came with the request.
    pub fn fetch(host: &dyn Host, config: &FilterConfig) -> Option<MetadataClaims> {
        let payload = host.property(&[
            "metadata",
            "filter_metadata",
            &config.jwt.metadata_namespace,
            &config.jwt.payload_key,
        ])?;
        Some(MetadataClaims { payload })
    }

    /// The payload as Envoy encoded it.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }
}

impl Claims for MetadataClaims {
    fn any_value(&self, path: &[&str], visit: &mut dyn FnMut(&str) -> bool) -> bool {
        let mut node: &[u8] = &self.payload;
        for key in path {
            let Some(pairs) = decode_pairs(node) else {
                return false;
            };
            match pairs
                .iter()
                .find(|(candidate, _)| *candidate == key.as_bytes())
            {
                Some((_, value)) => node = value,
                None => return false,
            }
        }
        visit_claim_value(node, visit)
    }
}

/// A claim value as Envoy encodes it: a string raw, a list as pairs whose keys are the
/// elements and whose values are empty. Maps and numbers carry no string to match.
pub fn visit_claim_value(bytes: &[u8], visit: &mut dyn FnMut(&str) -> bool) -> bool {
    if let Some(pairs) = decode_pairs(bytes) {
        if pairs.iter().all(|(_, value)| value.is_empty()) {
            return pairs
                .iter()
                .filter_map(|(element, _)| std::str::from_utf8(element).ok())
                .any(visit);
        }
        return false;
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => visit(text),
        Err(_) => false,
    }
}

/// The whole claims object, for decision records: strings stay strings, lists become
/// lists, nested maps objects, 8-byte non-text values doubles, a lone 0 or 1 byte a
/// boolean (as Envoy 1.40 encodes them; checked against a running Envoy).
pub fn claims_to_json(bytes: &[u8]) -> serde_json::Value {
    use serde_json::Value;
    if let Some(pairs) = decode_pairs(bytes) {
        if !pairs.is_empty() && pairs.iter().all(|(_, value)| value.is_empty()) {
            return Value::Array(
                pairs
                    .iter()
                    .map(|(element, _)| {
                        Value::String(String::from_utf8_lossy(element).into_owned())
                    })
                    .collect(),
            );
        }
        let map = pairs
            .iter()
            .map(|(key, value)| {
                (
                    String::from_utf8_lossy(key).into_owned(),
                    claims_to_json(value),
                )
            })
            .collect();
        return Value::Object(map);
    }
    if let [flag @ (0 | 1)] = bytes {
        return Value::Bool(*flag == 1);
    }
    match std::str::from_utf8(bytes) {
        Ok(text) if !(bytes.len() == 8 && text.chars().any(char::is_control)) => {
            Value::String(text.to_string())
        }
        _ => match <[u8; 8]>::try_from(bytes) {
            Ok(raw) => serde_json::Number::from_f64(f64::from_le_bytes(raw))
                .map_or(Value::Null, Value::Number),
            Err(_) => Value::Null,
        },
    }
}
