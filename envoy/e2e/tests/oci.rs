//! The Istio Wasm image: `cordon-oci` packs the filter module into an OCI image layout,
//! and the layout holds what an OCI registry and Istio's image fetcher expect.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::process::Command;

use cordon_e2e::oci::{self, ABI_VERSION, INDEX, MANIFEST, ROOT_ID, WASM_CONFIG, WASM_LAYER};
use cordon_e2e::tools;
use serde_json::{json, Value};

#[test]
fn cordon_oci_writes_an_istio_wasm_image_layout() {
    let wasm_path = tools::filter_wasm().unwrap_or_else(|error| panic!("{error}"));
    let wasm = std::fs::read(&wasm_path).unwrap();
    let out = tools::scratch_dir("oci").unwrap().join("image");

    let output = Command::new(env!("CARGO_BIN_EXE_cordon-oci"))
        .arg("--wasm")
        .arg(&wasm_path)
        .arg("--out")
        .arg(&out)
        .args(["--tag", "v-test"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "cordon-oci failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );

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

    // The command prints the manifest digest, and the checker agrees with all of it.
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(printed.contains(&oci::digest(&manifest_bytes)), "{printed}");
    let image = oci::inspect(&out, "v-test").unwrap();
    assert!(image.wasm == wasm);

    // Packing is deterministic: the same module, the same manifest digest.
    let again = oci::pack(&wasm, &out.with_file_name("again"), "v-test").unwrap();
    assert_eq!(again.manifest_digest, oci::digest(&manifest_bytes));
}

#[test]
fn inspect_refuses_a_tampered_layout() {
    let wasm = b"\0asm\x01\0\0\0".to_vec();
    let out = tools::scratch_dir("oci-tampered").unwrap().join("image");
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
