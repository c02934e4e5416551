//! `x-forwarded-client-cert` parsing: on arbitrary text it never panics; on a header
//! built from arbitrary elements with Envoy's quoting, it recovers exactly the `URI=`
//! values of the last element (the nearest hop), whatever the other elements hold.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use cordon_filter::xfcc::nearest_hop_uris;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Pair {
    key: Key,
    value: String,
    quote: bool,
}

#[derive(Debug, Arbitrary)]
enum Key {
    Uri,
    By,
    Hash,
    Subject,
    Dns,
    Other(String),
}

impl Key {
    fn name(&self) -> String {
        match self {
            Key::Uri => "URI".into(),
            Key::By => "By".into(),
            Key::Hash => "Hash".into(),
            Key::Subject => "Subject".into(),
            Key::Dns => "DNS".into(),
            Key::Other(name) => name
                .chars()
                .filter(|c| c.is_ascii_alphabetic())
                .collect::<String>()
                .to_ascii_lowercase()
                .replace("uri", "x"),
        }
    }
}

fn encode(value: &str, quote: bool) -> String {
    let needs_quotes = value.contains([',', ';', '"', '=', '\\'])
        || value.starts_with(char::is_whitespace)
        || value.ends_with(char::is_whitespace);
    if !(quote || needs_quotes) {
        return value.to_string();
    }
    let mut out = String::from("\"");
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(raw) = u.arbitrary::<bool>() else {
        return;
    };
    if raw {
        if let Ok(text) = std::str::from_utf8(u.take_rest()) {
            let _ = nearest_hop_uris(text);
        }
        return;
    }
    let Ok(elements) = u.arbitrary::<Vec<Vec<Pair>>>() else {
        return;
    };
    if elements.is_empty() {
        return;
    }
    let header = elements
        .iter()
        .map(|pairs| {
            pairs
                .iter()
                .map(|pair| format!("{}={}", pair.key.name(), encode(&pair.value, pair.quote)))
                .collect::<Vec<_>>()
                .join(";")
        })
        .collect::<Vec<_>>()
        .join(",");
    let expected: Vec<String> = elements
        .last()
        .into_iter()
        .flatten()
        .filter(|pair| matches!(pair.key, Key::Uri))
        .map(|pair| pair.value.clone())
        .collect();
    let found = nearest_hop_uris(&header);
    // An unquoted value that the parser trims differs only by surrounding whitespace,
    // which `encode` always quotes; so the values must come back exactly.
    assert_eq!(found, Some(expected), "header {header:?}");
});
