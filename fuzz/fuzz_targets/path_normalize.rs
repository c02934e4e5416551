//! Request path normalization on arbitrary input, in every mode: never panics; the
//! result has no query or fragment; in every normalizing mode it is idempotent, starts
//! with `/` (or is `*`), holds no `.`/`..` segment (however spelled), no backslash and no
//! NUL; merging modes leave no `//`; STRICT leaves no escaped slash; a dirty reused buffer
//! changes nothing.
#![no_main]

use cordon_engine::path::normalize;
use cordon_engine::PathNormalization;
use cordon_fuzz::MODES;
use libfuzzer_sys::fuzz_target;

/// One level of Envoy's decoding: `%XX` of an unreserved character.
fn decode_unreserved(segment: &str) -> Vec<u8> {
    let bytes = segment.as_bytes();
    let hex = |byte: u8| char::from(byte).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                let value = (hi * 16 + lo) as u8;
                if value.is_ascii_alphanumeric() || b"-._~".contains(&value) {
                    out.push(value);
                    i += 3;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    for mode in MODES {
        let mut buf = String::new();
        let result = normalize(raw, mode, &mut buf).map(str::to_string);
        let mut dirty = String::from("/left/over/from/../another/request%2e%2e");
        let again = normalize(raw, mode, &mut dirty).map(str::to_string);
        assert_eq!(
            result,
            again,
            "buffer reuse changed `{raw:?}` in {}",
            mode.name()
        );
        let Ok(path) = result else { continue };
        assert!(
            !path.contains(['?', '#']),
            "`{raw:?}` -> `{path:?}` in {}",
            mode.name()
        );
        if mode == PathNormalization::None {
            continue;
        }
        assert!(
            path.starts_with('/') || path == "*",
            "`{raw:?}` -> `{path:?}` in {}",
            mode.name()
        );
        let mut buf = String::new();
        assert_eq!(
            normalize(&path, mode, &mut buf),
            Ok(path.as_str()),
            "not idempotent: `{raw:?}` -> `{path:?}` in {}",
            mode.name()
        );
        assert!(
            !path.contains(['\\', '\0']),
            "`{raw:?}` -> `{path:?}` in {}",
            mode.name()
        );
        for segment in path.split('/') {
            let decoded = decode_unreserved(segment);
            assert!(
                decoded != b"." && decoded != b"..",
                "dot segment left: `{raw:?}` -> `{path:?}` in {}",
                mode.name()
            );
            let bare = decoded
                .split(|byte| *byte == b';')
                .next()
                .unwrap_or_default();
            assert!(
                !(decoded.contains(&b';') && (bare == b"." || bare == b"..")),
                "dot segment with parameters left: `{raw:?}` -> `{path:?}` in {}",
                mode.name()
            );
        }
        if matches!(
            mode,
            PathNormalization::MergeSlashes
                | PathNormalization::DecodeAndMergeSlashes
                | PathNormalization::Strict
        ) {
            assert!(
                !path.contains("//"),
                "`{raw:?}` -> `{path:?}` in {}",
                mode.name()
            );
        }
        if mode == PathNormalization::Strict {
            let lower = path.to_ascii_lowercase();
            assert!(
                !lower.contains("%2f") && !lower.contains("%5c") && !lower.contains("%00"),
                "`{raw:?}` -> `{path:?}` in STRICT"
            );
        }
    }
});
