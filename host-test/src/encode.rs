//! Property values encoded the way Envoy hands them to a proxy-wasm module.
//!
//! Envoy serializes a CEL value for `proxy_get_property` as follows (its `serializeValue` in
//! `source/extensions/common/wasm/context.cc`): strings and bytes raw; `int64`, `uint64`,
//! durations and timestamps as 8 little-endian bytes (nanoseconds for the last two); doubles as
//! 8 little-endian IEEE-754 bytes; booleans as one byte; maps and protobuf `Struct`s as a
//! proxy-wasm pairs map, values serialized recursively; lists as pairs whose values are empty.
//! `shared/ENVOY-FACTS.md` has readings from a real Envoy 1.40.
//!
//! # Example
//!
//! ```
//! use cordon_host::encode::{decode_pairs, encode_double, encode_pairs, encode_string};
//!
//! let payload = encode_pairs(&[("scope", encode_string("ledger:list")), ("iat", encode_double(1.7e9))]);
//! let pairs = decode_pairs(&payload).unwrap();
//! assert_eq!(pairs[0], (b"scope".to_vec(), b"ledger:list".to_vec()));
//! ```

use anyhow::{bail, Context as _, Result};

/// A string property, e.g. `source.address` or `connection.uri_san_peer_certificate`: its raw
/// UTF-8 bytes, no terminator and no length prefix.
pub fn encode_string(value: &str) -> Vec<u8> {
    value.as_bytes().to_vec()
}

/// An `int64` property, e.g. `destination.port`, `request.size`: 8 bytes, little-endian.
pub fn encode_int64(value: i64) -> Vec<u8> {
    value.to_le_bytes().to_vec()
}

/// A `uint64` property: 8 bytes, little-endian.
pub fn encode_uint64(value: u64) -> Vec<u8> {
    value.to_le_bytes().to_vec()
}

/// A boolean property, e.g. `connection.mtls`: one byte, `0x01` or `0x00`.
pub fn encode_bool(value: bool) -> Vec<u8> {
    vec![u8::from(value)]
}

/// A double property, e.g. a JSON number inside JWT claims metadata: 8 bytes, little-endian
/// IEEE-754.
pub fn encode_double(value: f64) -> Vec<u8> {
    value.to_le_bytes().to_vec()
}

/// A duration or timestamp property: `int64` nanoseconds, 8 bytes little-endian.
pub fn encode_nanos(nanos: i64) -> Vec<u8> {
    encode_int64(nanos)
}

/// A map or protobuf `Struct` property, e.g. the whole JWT payload under
/// `metadata.filter_metadata.envoy.filters.http.jwt_authn.payload`: the proxy-wasm pairs format.
///
/// Layout, little-endian: `u32 count`, then `count × (u32 key_len, u32 value_len)`, then for
/// each pair `key \0 value \0`. Values must already be encoded (use the other `encode_*`
/// functions, or `encode_pairs` again for nested maps).
pub fn encode_pairs<K: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(K, V)]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_pairs_into(
        pairs.iter().map(|(k, v)| (k.as_ref(), v.as_ref())),
        &mut out,
    );
    out
}

/// A list property: pairs whose keys are the encoded elements and whose values are empty, as
/// Envoy serializes CEL lists.
pub fn encode_list<V: AsRef<[u8]>>(items: &[V]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_pairs_into(items.iter().map(|v| (v.as_ref(), &b""[..])), &mut out);
    out
}

// The protobuf writers (`google.protobuf.Value`/`Struct`, `envoy.config.core.v3.Metadata`)
// live beside the filter's protobuf reader, where the native twin uses them too.
pub use cordon_filter::encoding::proto::{
    encode_metadata, encode_proto_struct, encode_proto_value,
};

/// Appends the pairs encoding of `pairs` to `out` (which is not cleared).
pub(crate) fn encode_pairs_into<'a, I>(pairs: I, out: &mut Vec<u8>)
where
    I: Iterator<Item = (&'a [u8], &'a [u8])> + Clone,
{
    let count = pairs.clone().count();
    out.extend_from_slice(&len_u32(count).to_le_bytes());
    for (key, value) in pairs.clone() {
        out.extend_from_slice(&len_u32(key.len()).to_le_bytes());
        out.extend_from_slice(&len_u32(value.len()).to_le_bytes());
    }
    for (key, value) in pairs {
        out.extend_from_slice(key);
        out.push(0);
        out.extend_from_slice(value);
        out.push(0);
    }
}

/// Lengths in the pairs format are `u32`; nothing a wasm32 guest can address is longer, so a
/// longer host value is clamped rather than wrapped.
fn len_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// Decodes the proxy-wasm pairs format (the inverse of [`encode_pairs`]).
///
/// An empty input decodes to no pairs, as the SDK does.
///
/// # Errors
///
/// When the input is truncated, a length points past the end, or a key or value is not
/// followed by its `\0`.
pub fn decode_pairs(bytes: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    for_each_pair(bytes, |k, v| out.push((k.to_vec(), v.to_vec())))?;
    Ok(out)
}

/// Walks the pairs in `bytes` without allocating.
pub(crate) fn for_each_pair<'a>(
    bytes: &'a [u8],
    mut each: impl FnMut(&'a [u8], &'a [u8]),
) -> Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    let count = read_u32(bytes, 0).context("pairs: missing the u32 count")? as usize;
    let table_end = count
        .checked_mul(8)
        .and_then(|t| t.checked_add(4))
        .filter(|&end| end <= bytes.len())
        .with_context(|| format!("pairs: {count} entries do not fit in {} bytes", bytes.len()))?;
    let mut data = table_end;
    for i in 0..count {
        let entry = 4 + i * 8;
        let key_len = read_u32(bytes, entry).context("pairs: truncated size table")? as usize;
        let value_len = read_u32(bytes, entry + 4).context("pairs: truncated size table")? as usize;
        let (key, after_key) = take_terminated(bytes, data, key_len)?;
        let (value, after_value) = take_terminated(bytes, after_key, value_len)?;
        each(key, value);
        data = after_value;
    }
    Ok(())
}

fn take_terminated(bytes: &[u8], start: usize, len: usize) -> Result<(&[u8], usize)> {
    let end = start.checked_add(len).context("pairs: length overflows")?;
    let value = bytes.get(start..end).with_context(|| {
        format!("pairs: a {len}-byte field at offset {start} runs past the end")
    })?;
    if bytes.get(end) != Some(&0) {
        bail!("pairs: the field at offset {start} is not followed by `\\0`");
    }
    Ok((value, end + 1))
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let raw: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_layout_matches_the_sdk() {
        // The SDK's own serialize_map test vector, for (":method","GET") and ("a","bc").
        let bytes = encode_pairs(&[(":method", "GET"), ("a", "bc")]);
        let mut want = vec![2, 0, 0, 0, 7, 0, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0];
        want.extend_from_slice(b":method\0GET\0a\0bc\0");
        assert_eq!(bytes, want);
        let back = decode_pairs(&bytes).unwrap();
        assert_eq!(back[1], (b"a".to_vec(), b"bc".to_vec()));
    }

    #[test]
    fn scalars() {
        assert_eq!(encode_int64(8443), 8443i64.to_le_bytes());
        assert_eq!(encode_bool(true), [1]);
        assert_eq!(encode_double(1.5), 1.5f64.to_le_bytes());
        assert_eq!(encode_string("a"), b"a");
    }

    #[test]
    fn list_has_empty_values() {
        let back = decode_pairs(&encode_list(&["x", "y"])).unwrap();
        assert_eq!(back, vec![(b"x".to_vec(), vec![]), (b"y".to_vec(), vec![])]);
    }

    #[test]
    fn metadata_matches_what_envoy_1_40_sent() {
        // Measured: `get_property("metadata")` after jwt_authn verified
        // {"sub":"alice","groups":[7,"admin"],"exp":1900000000,"iss":"https://idp.shop.example"}.
        let claims = serde_json::json!({
            "sub": "alice", "groups": [7, "admin"], "exp": 1_900_000_000,
            "iss": "https://idp.shop.example"
        });
        let mut namespace = serde_json::Map::new();
        namespace.insert("payload".into(), claims);
        let bytes = encode_metadata(&[("envoy.filters.http.jwt_authn", &namespace)]);
        let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
        // Envoy wrote the claims' map entries in its hash order (sub, groups, exp, iss);
        // ours come in the map's order (key order, or insertion order when serde_json's
        // `preserve_order` is on in a workspace build). Each entry, and everything around
        // them, is the same.
        let header = "0a96010a1c656e766f792e66696c746572732e687474702e6a77745f617574686e12760a740a077061796c6f616412692a67";
        let envoy_entries = [
            "0a0e0a0373756212071a05616c696365",
            "0a200a0667726f757073121632140a09110000000000001c400a071a0561646d696e",
            "0a100a03657870120911000000c0ec4fdc41",
            "0a210a03697373121a1a1868747470733a2f2f6964702e73686f702e6578616d706c65",
        ];
        assert!(hex.starts_with(header), "{hex}");
        let entries = hex.get(header.len()..).unwrap_or_default();
        assert_eq!(entries.len(), envoy_entries.concat().len(), "{hex}");
        for entry in envoy_entries {
            assert!(entries.contains(entry), "{entry} missing from {hex}");
        }
    }

    #[test]
    fn malformed_pairs_are_errors() {
        assert!(decode_pairs(&[]).unwrap().is_empty());
        assert!(decode_pairs(&[1, 0, 0]).is_err());
        assert!(decode_pairs(&[1, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, b'a']).is_err());
        let mut good = encode_pairs(&[("k", "v")]);
        good.pop();
        assert!(decode_pairs(&good).is_err());
    }
}
