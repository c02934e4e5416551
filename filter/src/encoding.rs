//! Decoding property values as Envoy encodes them for proxy-wasm: strings raw, integers
//! 8-byte little-endian, booleans one byte, maps (and protobuf Structs, and lists) as
//! proxy-wasm pairs, and whole protobuf messages (`metadata`) as protobuf wire bytes, which
//! [`proto`] reads.

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

/// A minimal reader of protobuf wire bytes, for what Envoy 1.40 answers for the property
/// `metadata`: an `envoy.config.core.v3.Metadata` message (measured, see
/// `docs/ENVOY-MEASUREMENTS.md`). Its `filter_metadata` holds `google.protobuf.Struct`s, so
/// every JSON type survives, unlike the pairs encoding of deeper paths. Reads in place,
/// without allocating; malformed bytes read as absent.
pub mod proto {
    /// One field's payload as it travels on the wire.
    #[derive(Debug, Clone, Copy, PartialEq)]
    pub enum Wire<'a> {
        /// Wire type 0.
        Varint(u64),
        /// Wire type 1 (doubles, fixed64).
        Fixed64(u64),
        /// Wire type 2 (strings, bytes, embedded messages, map entries).
        Bytes(&'a [u8]),
        /// Wire type 5.
        Fixed32(u32),
    }

    /// The bytes are not a well-formed protobuf message.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Malformed;

    /// The fields of a message, in wire order. After a malformed field it yields one
    /// `Err` and stops.
    #[derive(Debug, Clone)]
    pub struct Fields<'a> {
        rest: &'a [u8],
    }

    /// The fields of the message `bytes`.
    pub fn fields(bytes: &[u8]) -> Fields<'_> {
        Fields { rest: bytes }
    }

    fn varint(bytes: &mut &[u8]) -> Result<u64, Malformed> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = bytes.split_first().ok_or(Malformed)?;
            *bytes = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Malformed)
    }

    fn fixed<const N: usize>(bytes: &mut &[u8]) -> Result<[u8; N], Malformed> {
        let (head, rest) = bytes.split_at_checked(N).ok_or(Malformed)?;
        *bytes = rest;
        head.try_into().map_err(|_| Malformed)
    }

    impl<'a> Fields<'a> {
        fn read(&mut self) -> Result<(u32, Wire<'a>), Malformed> {
            let mut rest = self.rest;
            let tag = varint(&mut rest)?;
            let number = u32::try_from(tag >> 3).map_err(|_| Malformed)?;
            if number == 0 {
                return Err(Malformed);
            }
            let wire = match tag & 7 {
                0 => Wire::Varint(varint(&mut rest)?),
                1 => Wire::Fixed64(u64::from_le_bytes(fixed::<8>(&mut rest)?)),
                2 => {
                    let len = usize::try_from(varint(&mut rest)?).map_err(|_| Malformed)?;
                    let (payload, after) = rest.split_at_checked(len).ok_or(Malformed)?;
                    rest = after;
                    Wire::Bytes(payload)
                }
                5 => Wire::Fixed32(u32::from_le_bytes(fixed::<4>(&mut rest)?)),
                // Groups (3, 4) are not in any message Envoy serializes here.
                _ => return Err(Malformed),
            };
            self.rest = rest;
            Ok((number, wire))
        }
    }

    impl<'a> Iterator for Fields<'a> {
        type Item = Result<(u32, Wire<'a>), Malformed>;

        fn next(&mut self) -> Option<Self::Item> {
            if self.rest.is_empty() {
                return None;
            }
            let field = self.read();
            if field.is_err() {
                self.rest = &[];
            }
            Some(field)
        }
    }

    /// A map entry (`key` = field 1, `value` = field 2), either defaulting to empty.
    pub fn map_entry(entry: &[u8]) -> Option<(&[u8], &[u8])> {
        let mut key: &[u8] = &[];
        let mut value: &[u8] = &[];
        for field in fields(entry) {
            match field.ok()? {
                (1, Wire::Bytes(bytes)) => key = bytes,
                (2, Wire::Bytes(bytes)) => value = bytes,
                _ => {}
            }
        }
        Some((key, value))
    }

    /// The value of `key` in a protobuf map whose entries are field `number` of `message`
    /// (the last entry with that key wins, as a protobuf parser keeps it).
    pub fn map_get<'a>(message: &'a [u8], number: u32, key: &str) -> Option<&'a [u8]> {
        let mut found = None;
        for field in fields(message) {
            if let (n, Wire::Bytes(entry)) = field.ok()? {
                if n == number {
                    if let Some((candidate, value)) = map_entry(entry) {
                        if candidate == key.as_bytes() {
                            found = Some(value);
                        }
                    }
                }
            }
        }
        found
    }

    /// The Struct `filter_metadata[namespace]` of an `envoy.config.core.v3.Metadata`.
    pub fn filter_metadata<'a>(metadata: &'a [u8], namespace: &str) -> Option<&'a [u8]> {
        map_get(metadata, 1, namespace)
    }

    /// The `google.protobuf.Value` at `key` of a `google.protobuf.Struct` (`fields` = 1).
    pub fn struct_get<'a>(message: &'a [u8], key: &str) -> Option<Value<'a>> {
        map_get(message, 1, key).and_then(Value::decode)
    }

    /// The entries of a `google.protobuf.Struct`, in wire order (keys are unique in what
    /// Envoy writes).
    pub fn struct_entries(message: &[u8]) -> impl Iterator<Item = Option<(&[u8], Value<'_>)>> {
        fields(message).filter_map(|field| match field {
            Ok((1, Wire::Bytes(entry))) => {
                Some(map_entry(entry).and_then(|(key, value)| Some((key, Value::decode(value)?))))
            }
            Ok(_) => None,
            Err(Malformed) => Some(None),
        })
    }

    /// The elements of a `google.protobuf.ListValue` (`values` = 1), in order.
    pub fn list_items(message: &[u8]) -> impl Iterator<Item = Option<Value<'_>>> {
        fields(message).filter_map(|field| match field {
            Ok((1, Wire::Bytes(value))) => Some(Value::decode(value)),
            Ok(_) => None,
            Err(Malformed) => Some(None),
        })
    }

    /// A `google.protobuf.Value`, one JSON value: nested structs and lists stay encoded.
    #[derive(Debug, Clone, Copy, PartialEq)]
    pub enum Value<'a> {
        /// `null_value` (field 1), or no kind set.
        Null,
        /// `number_value` (field 2): every JSON number is a double.
        Number(f64),
        /// `string_value` (field 3), as its bytes (UTF-8 in what Envoy writes).
        String(&'a [u8]),
        /// `bool_value` (field 4).
        Bool(bool),
        /// `struct_value` (field 5), encoded.
        Struct(&'a [u8]),
        /// `list_value` (field 6), encoded.
        List(&'a [u8]),
    }

    impl<'a> Value<'a> {
        /// Decodes a `google.protobuf.Value`; its `kind` is a oneof, so the last kind
        /// field on the wire is the value.
        pub fn decode(bytes: &'a [u8]) -> Option<Value<'a>> {
            let mut value = Value::Null;
            for field in fields(bytes) {
                value = match field.ok()? {
                    (1, Wire::Varint(_)) => Value::Null,
                    (2, Wire::Fixed64(bits)) => Value::Number(f64::from_bits(bits)),
                    (3, Wire::Bytes(text)) => Value::String(text),
                    (4, Wire::Varint(flag)) => Value::Bool(flag != 0),
                    (5, Wire::Bytes(message)) => Value::Struct(message),
                    (6, Wire::Bytes(message)) => Value::List(message),
                    _ => value,
                };
            }
            Some(value)
        }
    }

    // Writers: what Envoy hands over, encoded the way its protobuf library writes it. The
    // host-test runner plays Envoy with them; the native twin turns the JWT payload it
    // reads as JSON back into the `metadata` the shared glue reads.

    fn proto_varint(mut value: u64, out: &mut Vec<u8>) {
        while value >= 0x80 {
            out.push((value & 0x7f) as u8 | 0x80);
            value >>= 7;
        }
        out.push(value as u8);
    }

    /// A length-delimited protobuf field: tag, length, bytes.
    fn proto_bytes(number: u64, bytes: &[u8], out: &mut Vec<u8>) {
        proto_varint(number << 3 | 2, out);
        proto_varint(bytes.len() as u64, out);
        out.extend_from_slice(bytes);
    }

    /// A length-delimited field whose payload `write` appends (the length is patched in
    /// afterwards, so nested messages are written once, in place).
    fn proto_nested(number: u64, out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) {
        let mut payload = Vec::new();
        write(&mut payload);
        proto_bytes(number, &payload, out);
    }

    /// A JSON value as a `google.protobuf.Value` in protobuf wire bytes, as Envoy's protobuf
    /// library writes it: `null_value` (1) as varint 0, `number_value` (2) as a little-endian
    /// double, `string_value` (3), `bool_value` (4) as a varint (`false` written too: the field
    /// is in a oneof), `struct_value` (5), `list_value` (6, its elements as field 1).
    pub fn encode_proto_value(value: &serde_json::Value, out: &mut Vec<u8>) {
        use serde_json::Value;
        match value {
            Value::Null => out.extend_from_slice(&[0x08, 0x00]),
            Value::Number(number) => {
                out.push(0x11);
                out.extend_from_slice(&number.as_f64().unwrap_or(0.0).to_le_bytes());
            }
            Value::String(text) => proto_bytes(3, text.as_bytes(), out),
            Value::Bool(flag) => out.extend_from_slice(&[0x20, u8::from(*flag)]),
            Value::Object(map) => proto_nested(5, out, |payload| encode_proto_struct(map, payload)),
            Value::Array(items) => proto_nested(6, out, |list| {
                for item in items {
                    proto_nested(1, list, |element| encode_proto_value(item, element));
                }
            }),
        }
    }

    /// A JSON object as a `google.protobuf.Struct` in protobuf wire bytes: one `fields` (1)
    /// map entry per key, each with `key` (1) and `value` (2).
    pub fn encode_proto_struct(
        map: &serde_json::Map<String, serde_json::Value>,
        out: &mut Vec<u8>,
    ) {
        for (key, item) in map {
            proto_nested(1, out, |entry| {
                proto_bytes(1, key.as_bytes(), entry);
                proto_nested(2, entry, |value| encode_proto_value(item, value));
            });
        }
    }

    /// The property `metadata`: an `envoy.config.core.v3.Metadata` in protobuf wire bytes, with
    /// one `filter_metadata` (1) entry per namespace, each a `google.protobuf.Struct`.
    ///
    /// What Envoy 1.40 answers after `jwt_authn` (`payload_in_metadata: payload`) verified a
    /// token: `encode_metadata(&[("envoy.filters.http.jwt_authn", &{"payload": claims})])`.
    pub fn encode_metadata(
        namespaces: &[(&str, &serde_json::Map<String, serde_json::Value>)],
    ) -> Vec<u8> {
        let mut out = Vec::new();
        for (namespace, fields) in namespaces {
            proto_nested(1, &mut out, |entry| {
                proto_bytes(1, namespace.as_bytes(), entry);
                proto_nested(2, entry, |value| encode_proto_struct(fields, value));
            });
        }
        out
    }
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
    fn protobuf_fields_values_and_malformed_input() {
        use proto::{fields, list_items, struct_get, Value, Wire};
        // {"k": "v"} as a Struct: entry { key "k", value { string_value "v" } }.
        let entry = [0x0a, 0x01, b'k', 0x12, 0x03, 0x1a, 0x01, b'v'];
        let mut message = vec![0x0a, entry.len() as u8];
        message.extend_from_slice(&entry);
        assert_eq!(struct_get(&message, "k"), Some(Value::String(b"v")));
        assert_eq!(struct_get(&message, "x"), None);
        // A later entry with the same key wins, as a protobuf parser keeps it.
        let mut twice = message.clone();
        twice.extend_from_slice(&[0x0a, 0x07, 0x0a, 0x01, b'k', 0x12, 0x02, 0x20, 0x01]);
        assert_eq!(struct_get(&twice, "k"), Some(Value::Bool(true)));
        // The last kind of a Value wins; no kind is null.
        assert_eq!(
            Value::decode(&[0x1a, 0x01, b'a', 0x20, 0x00]),
            Some(Value::Bool(false))
        );
        assert_eq!(Value::decode(&[]), Some(Value::Null));
        let mut number = vec![0x11];
        number.extend_from_slice(&7.0f64.to_le_bytes());
        assert_eq!(Value::decode(&number), Some(Value::Number(7.0)));
        // A list [null, "a"].
        let list = [0x0a, 0x02, 0x08, 0x00, 0x0a, 0x03, 0x1a, 0x01, b'a'];
        let items: Vec<_> = list_items(&list).collect();
        assert_eq!(items, vec![Some(Value::Null), Some(Value::String(b"a"))]);
        // Unknown fields of every wire type are skipped.
        let mixed = [
            0x28, 0x96, 0x01, 0x35, 1, 2, 3, 4, 0x39, 1, 2, 3, 4, 5, 6, 7, 8,
        ];
        let numbers: Vec<_> = fields(&mixed).map(|field| field.unwrap().0).collect();
        assert_eq!(numbers, vec![5, 6, 7]);
        assert_eq!(
            fields(&[0x28, 0x96, 0x01]).next(),
            Some(Ok((5, Wire::Varint(150))))
        );
        // Malformed: truncated length, group wire type, field 0, an endless varint.
        for bad in [
            &[0x0a, 0x05, b'a'][..],
            &[0x0b, 0x00],
            &[0x00, 0x00],
            &[
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ],
            &[0x11, 0x00],
        ] {
            assert!(fields(bad).any(|field| field.is_err()), "{bad:?}");
            assert_eq!(struct_get(bad, "a"), None, "{bad:?}");
        }
        assert_eq!(fields(&[0x0b]).count(), 1, "one error, then the end");
    }

    #[test]
    fn scalars() {
        assert_eq!(decode_u64(&8080u64.to_le_bytes()), Some(8080));
        assert_eq!(decode_u64(b"8080"), None);
        assert_eq!(decode_bool(&[1]), Some(true));
        assert_eq!(decode_bool(&[2]), None);
    }
}
