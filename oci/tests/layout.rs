//! The Istio Wasm image: [`cordon_oci::pack`] writes an OCI image layout that holds what an
//! OCI registry and Istio's image fetcher expect. (`cli/tests/packaging.rs` runs `cordon
//! pack` on the module the binary carries.)

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;

use cordon_oci::{self as oci, ABI_VERSION, INDEX, MANIFEST, ROOT_ID, WASM_CONFIG, WASM_LAYER};
use serde_json::{json, Value};

/// A fresh directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cordon-oci-{}-{name}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A small valid module: the header, a type section and one exported function.
const MODULE: &[u8] =
    b"\0asm\x01\0\0\0\x01\x04\x01\x60\0\0\x03\x02\x01\0\x07\x05\x01\x01f\0\0\x0a\x04\x01\x02\0\x0b";

#[test]
fn pack_writes_an_istio_wasm_image_layout() {
    let wasm = MODULE.to_vec();
    let out = scratch("layout").join("image");
    let packed = oci::pack(&wasm, &out, "v-test").unwrap();

    // The layout, file by file.
    let layout: Value =
        serde_json::from_slice(&std::fs::read(out.join("oci-layout")).unwrap()).unwrap();
    assert_eq!(layout, json!({"imageLayoutVersion": "1.0.0"}));
    let index: Value =
        serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["mediaType"], INDEX);
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1);
    let entry = &manifests[0];
    assert_eq!(entry["mediaType"], MANIFEST);
    assert_eq!(
        entry["annotations"]["org.opencontainers.image.ref.name"],
        "v-test"
    );
    let manifest_bytes = oci::read_blob(&out, entry).unwrap();
    let manifest: Value = serde_json::from_slice(&manifest_bytes).unwrap();
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(manifest["mediaType"], MANIFEST);

    // Config: the Envoy runtime configuration of the Wasm image spec.
    assert_eq!(manifest["config"]["mediaType"], WASM_CONFIG);
    let config: Value =
        serde_json::from_slice(&oci::read_blob(&out, &manifest["config"]).unwrap()).unwrap();
    assert_eq!(
        config,
        json!({"type": "envoy_proxy", "abi_version": ABI_VERSION, "config": {"root_ids": [ROOT_ID]}})
    );

    // Layers: exactly two (what Istio's fetcher requires of the oci variant); the module
    // layer is the module, byte for byte.
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    assert_eq!(layers[0]["mediaType"], WASM_CONFIG);
    assert_eq!(layers[0]["digest"], manifest["config"]["digest"]);
    assert_eq!(layers[1]["mediaType"], WASM_LAYER);
    assert_eq!(
        layers[1]["annotations"]["org.opencontainers.image.title"],
        "plugin.wasm"
    );
    assert_eq!(layers[1]["size"], wasm.len());
    assert_eq!(layers[1]["digest"], oci::digest(&wasm));
    let layer = oci::read_blob(&out, &layers[1]).unwrap();
    assert!(layer == wasm, "the layer is byte-identical to the module");

    // Every blob is named by its digest, and nothing else is in blobs/.
    let mut names: Vec<String> = std::fs::read_dir(out.join("blobs/sha256"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    for name in &names {
        let bytes = std::fs::read(out.join("blobs/sha256").join(name)).unwrap();
        assert_eq!(oci::digest(&bytes), format!("sha256:{name}"));
    }
    let mut expected: Vec<String> = [
        oci::digest(&manifest_bytes),
        oci::digest(&wasm),
        manifest["config"]["digest"].as_str().unwrap().to_string(),
    ]
    .iter()
    .map(|digest| digest.trim_start_matches("sha256:").to_string())
    .collect();
    expected.sort();
    assert_eq!(names, expected);

    // The manifest digest is returned, and the checker agrees with all of it.
    assert_eq!(packed.manifest_digest, oci::digest(&manifest_bytes));
    assert_eq!(packed.tag, "v-test");
    let image = oci::inspect(&out, "v-test").unwrap();
    assert!(image.wasm == wasm);

    // Packing is deterministic: the same module, the same manifest digest.
    let again = oci::pack(&wasm, &out.with_file_name("again"), "v-test").unwrap();
    assert_eq!(again.manifest_digest, oci::digest(&manifest_bytes));
}

#[test]
fn inspect_refuses_a_tampered_layout() {
    let wasm = b"\0asm\x01\0\0\0".to_vec();
    let out = scratch("tampered").join("image");
    oci::pack(&wasm, &out, "t").unwrap();
    oci::inspect(&out, "t").unwrap();
    let blob = out
        .join("blobs/sha256")
        .join(oci::digest(&wasm).trim_start_matches("sha256:"));
    std::fs::write(&blob, b"\0asm\x01\0\0\x01").unwrap();
    let error = oci::inspect(&out, "t").unwrap_err().to_string();
    assert!(error.contains("does not hash to its name"), "{error}");
    assert!(oci::inspect(&out, "other-tag").is_err());
    assert!(oci::pack(b"not wasm", &out, "t").is_err());
}

#[test]
fn pack_refuses_bad_tags_and_will_not_delete_other_directories() {
    let dir = scratch("refuse");
    for tag in ["", ".hidden", "-x", "a/b", "a:b", &"x".repeat(129)] {
        let error = oci::pack(MODULE, &dir.join("image"), tag).unwrap_err();
        assert!(error.to_string().contains("OCI tag"), "{tag}: {error}");
    }
    for tag in ["0.1.0", "v1", "_x", "latest", &"x".repeat(128)] {
        oci::pack(MODULE, &dir.join("image"), tag).unwrap();
    }
    // A directory with other files in it is not cleared.
    let precious = dir.join("precious");
    std::fs::create_dir_all(&precious).unwrap();
    std::fs::write(precious.join("notes.txt"), "keep me").unwrap();
    let error = oci::pack(MODULE, &precious, "t").unwrap_err().to_string();
    assert!(error.contains("is not an OCI image layout"), "{error}");
    assert_eq!(
        std::fs::read_to_string(precious.join("notes.txt")).unwrap(),
        "keep me"
    );
    // An existing layout is replaced (a new tag, the old one gone).
    let image = dir.join("image");
    oci::pack(MODULE, &image, "first").unwrap();
    oci::pack(MODULE, &image, "second").unwrap();
    assert!(oci::inspect(&image, "second").is_ok());
    assert!(oci::inspect(&image, "first").is_err());
}
