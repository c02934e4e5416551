//! SPIFFE ID parsing on arbitrary input: never panics, and whatever it accepts is exactly
//! `spiffe://<trust domain><path>` by the specification's rules, so no two components can
//! read an accepted identity differently.
#![no_main]

use cordon_engine::SpiffeId;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(uri) = std::str::from_utf8(data) else {
        return;
    };
    let id = match SpiffeId::parse(uri) {
        Ok(id) => id,
        Err(error) => {
            let _ = error.to_string();
            return;
        }
    };
    assert!(uri.len() <= 2048);
    assert_eq!(format!("spiffe://{}{}", id.trust_domain(), id.path()), uri);
    assert_eq!(Some(id.principal()), uri.strip_prefix("spiffe://"));
    let domain = id.trust_domain();
    assert!(!domain.is_empty() && domain.len() <= 255);
    assert!(domain
        .bytes()
        .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || b".-_".contains(&byte)));
    if !id.path().is_empty() {
        let rest = id.path().strip_prefix('/').expect("a path starts with /");
        for segment in rest.split('/') {
            assert!(!segment.is_empty() && segment != "." && segment != "..");
            assert!(segment
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || b".-_".contains(&byte)));
        }
    }
    if let Some(account) = id.service_account() {
        let namespace = id
            .namespace()
            .expect("a service account implies a namespace");
        assert_eq!(id.path(), format!("/ns/{namespace}/sa/{account}"));
    }
    if let Some(namespace) = id.namespace() {
        assert!(id.path().contains(&format!("/ns/{namespace}/")));
    }
    // Parsing is a pure function of the text.
    assert_eq!(SpiffeId::parse(uri), Ok(id));
});
