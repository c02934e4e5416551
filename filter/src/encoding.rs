//! Decoding property values as Envoy encodes them for proxy-wasm: strings raw, integers
//! 8-byte little-endian, booleans one byte, maps (and protobuf Structs, and lists) as
//! proxy-wasm pairs.

/// Decodes a proxy-wasm pairs map: little-endian `u32` count, `count` × (`u32` key
/// length, `u32` value length), then each `key\0value\0`. Returns `None` unless the bytes
/// are exactly one well-formed map, so a plain string is never mistaken for one.
pub fn decode_pairs(bytes: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    let count = read_u32(bytes, 0)? as usize;
    let header_end = count.checked_mul(8)?.checked_add(4)?;
    if header_end > bytes.len() {
        return None;
    }
    let mut pairs = Vec::with_capacity(count);
    let mut offset = header_end;
    for position in 0..count {
        let key_len = read_u32(bytes, 4 + position * 8)? as usize;
        let value_len = read_u32(bytes, 8 + position * 8)? as usize;
        let key = bytes.get(offset..offset.checked_add(key_len)?)?;
        offset += key_len;
        if bytes.get(offset) != Some(&0) {
            return None;
        }
        offset += 1;
        let value = bytes.get(offset..offset.checked_add(value_len)?)?;
        offset += value_len;
        if bytes.get(offset) != Some(&0) {
            return None;
        }
        offset += 1;
        pairs.push((key, value));
    }
    (offset == bytes.len()).then_some(pairs)
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let chunk: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(chunk))
}

/// Decodes an 8-byte little-endian integer property (`destination.port`).
pub fn decode_u64(bytes: &[u8]) -> Option<u64> {
    let chunk: [u8; 8] = bytes.try_into().ok()?;
    Some(u64::from_le_bytes(chunk))
}

/// Decodes a one-byte boolean property (`connection.mtls`).
pub fn decode_bool(bytes: &[u8]) -> Option<bool> {
    match bytes {
        [0] => Some(false),
        [1] => Some(true),
        _ => None,
    }
}

/// Encodes pairs the way Envoy does (used by tests and by the host-test runner's peers).
pub fn encode_pairs(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (key, value) in pairs {
        out.extend_from_slice(&(key.len() as u32).to_le_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    }
    for (key, value) in pairs {
        out.extend_from_slice(key);
        out.push(0);
        out.extend_from_slice(value);
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn pairs_round_trip_and_reject_garbage() {
        let encoded = encode_pairs(&[(b"app", b"billing"), (b"version", b"")]);
        let decoded = decode_pairs(&encoded).unwrap();
        assert_eq!(
            decoded,
            vec![(&b"app"[..], &b"billing"[..]), (&b"version"[..], &b""[..])]
        );
        assert!(decode_pairs(b"ledger:list reports:read").is_none());
        assert!(decode_pairs(&encoded[..encoded.len() - 1]).is_none());
        let mut extra = encoded.clone();
        extra.push(0);
        assert!(decode_pairs(&extra).is_none());
        assert!(decode_pairs(&[255, 255, 255, 255]).is_none());
        assert_eq!(decode_pairs(&encode_pairs(&[])).unwrap(), vec![]);
    }

    #[test]
    fn scalars() {
        assert_eq!(decode_u64(&8080u64.to_le_bytes()), Some(8080));
        assert_eq!(decode_u64(b"8080"), None);
        assert_eq!(decode_bool(&[1]), Some(true));
        assert_eq!(decode_bool(&[2]), None);
    }
}
