//! `cordon_filter.wasm` as an OCI image layout in Istio's Wasm image format, the *oci*
//! variant of the Wasm Image Specification (solo-io/wasm `spec/spec.md`), which Istio's
//! image fetcher (`pkg/wasm/imagefetcher.go`, `extractOCIArtifactImage`) accepts:
//!
//! - the manifest's config is the runtime configuration,
//!   `application/vnd.module.wasm.config.v1+json`: `{"type": "envoy_proxy",
//!   "abi_version": ..., "config": {"root_ids": ["cordon"]}}`;
//! - exactly two layers: that runtime configuration again (title `runtime-config.json`;
//!   Istio requires two layers) and the module itself, uncompressed,
//!   `application/vnd.module.wasm.content.layer.v1+wasm` (title `plugin.wasm`).
//!
//! The layout (`oci-layout`, `index.json`, `blobs/sha256/<hex>`) is what `oras cp
//! --from-oci-layout DIR:TAG REGISTRY/REPO:TAG` or `skopeo copy oci:DIR:TAG
//! docker://REGISTRY/REPO:TAG` pushes to any OCI registry. The output is deterministic:
//! the same module gives the same manifest digest.
//!
//! `cordon pack` writes it; `cordon config --istio --sha256` pins the manifest digest, which
//! is what Istio checks an `oci://` image against (`pkg/wasm/cache.go`: the checksum of an
//! OCI image is its manifest's digest).

use std::fmt;
use std::path::Path;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// What went wrong, said for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(String);

impl Error {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Error {
        Error(message.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(error: std::io::Error) -> Error {
        Error(error.to_string())
    }
}

impl From<serde_json::Error> for Error {
    fn from(error: serde_json::Error) -> Error {
        Error(error.to_string())
    }
}

/// The packer's result.
pub type Result<T> = std::result::Result<T, Error>;

trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: fmt::Display> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|error| Error(format!("{}: {error}", what())))
    }
}

/// Media type of the Wasm module layer.
pub const WASM_LAYER: &str = "application/vnd.module.wasm.content.layer.v1+wasm";
/// Media type of the runtime configuration.
pub const WASM_CONFIG: &str = "application/vnd.module.wasm.config.v1+json";
/// OCI image manifest.
pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// The proxy-wasm ABI the filter is built for.
pub const ABI_VERSION: &str = "v0.2.1";
/// The filter's root id.
pub const ROOT_ID: &str = "cordon";

/// `sha256:<hex>` of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(bytes))
}

/// The lowercase hex SHA-256 of `bytes` (what a WasmPlugin's `sha256` field holds).
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Whether `tag` is a valid OCI tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}` (OCI
/// distribution spec).
pub fn valid_tag(tag: &str) -> bool {
    let mut bytes = tag.bytes();
    bytes
        .next()
        .is_some_and(|first| first.is_ascii_alphanumeric() || first == b'_')
        && tag.len() <= 128
        && bytes.all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'-'))
}

fn descriptor(media_type: &str, bytes: &[u8], title: Option<&str>) -> Value {
    let mut value = json!({
        "mediaType": media_type,
        "digest": digest(bytes),
        "size": bytes.len(),
    });
    if let (Some(title), Some(fields)) = (title, value.as_object_mut()) {
        fields.insert(
            "annotations".to_string(),
            json!({"org.opencontainers.image.title": title}),
        );
    }
    value
}

fn write_blob(layout: &Path, bytes: &[u8]) -> Result<()> {
    let name = digest(bytes);
    let hex = name.trim_start_matches("sha256:");
    let path = layout.join("blobs/sha256").join(hex);
    std::fs::write(&path, bytes).context(|| format!("writing {}", path.display()))
}

/// What [`pack`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packed {
    /// The manifest's digest (what a WasmPlugin can pin with `sha256:`).
    pub manifest_digest: String,
    /// The tag in `index.json` (`org.opencontainers.image.ref.name`).
    pub tag: String,
}

/// Writes an OCI image layout for `wasm` into `layout`, tagged `tag`. The directory is
/// created, or replaced when it is empty or already an image layout (it holds
/// `oci-layout`); any other existing directory is refused rather than deleted.
pub fn pack(wasm: &[u8], layout: &Path, tag: &str) -> Result<Packed> {
    if wasm.get(..4) != Some(b"\0asm".as_slice()) {
        return Err(Error::new(
            "the module does not start with the wasm magic `\\0asm`",
        ));
    }
    if !valid_tag(tag) {
        return Err(Error::new(format!(
            "tag `{tag}`: an OCI tag is 1 to 128 of A-Z a-z 0-9 _ . - and does not start with . or -"
        )));
    }
    if layout.exists() {
        let empty = std::fs::read_dir(layout)
            .context(|| format!("reading {}", layout.display()))?
            .next()
            .is_none();
        if !empty && !layout.join("oci-layout").is_file() {
            return Err(Error::new(format!(
                "{} exists and is not an OCI image layout (no oci-layout file): refusing to replace it",
                layout.display()
            )));
        }
        std::fs::remove_dir_all(layout).context(|| format!("clearing {}", layout.display()))?;
    }
    std::fs::create_dir_all(layout.join("blobs/sha256"))
        .context(|| format!("creating {}", layout.display()))?;
    let config = serde_json::to_vec(&json!({
        "type": "envoy_proxy",
        "abi_version": ABI_VERSION,
        "config": {"root_ids": [ROOT_ID]},
    }))?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": descriptor(WASM_CONFIG, &config, None),
        "layers": [
            descriptor(WASM_CONFIG, &config, Some("runtime-config.json")),
            descriptor(WASM_LAYER, wasm, Some("plugin.wasm")),
        ],
        "annotations": {
            "org.opencontainers.image.title": "cordon",
            "org.opencontainers.image.description": "cordon: Istio AuthorizationPolicy enforced inline in Envoy (proxy-wasm)",
            "org.opencontainers.image.version": tag,
        },
    }))?;
    let mut manifest_descriptor = descriptor(MANIFEST, &manifest, None);
    if let Some(fields) = manifest_descriptor.as_object_mut() {
        fields.insert(
            "annotations".to_string(),
            json!({"org.opencontainers.image.ref.name": tag}),
        );
    }
    let index = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": INDEX,
        "manifests": [manifest_descriptor],
    }))?;
    write_blob(layout, &config)?;
    write_blob(layout, wasm)?;
    write_blob(layout, &manifest)?;
    std::fs::write(layout.join("index.json"), index)?;
    std::fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    Ok(Packed {
        manifest_digest: digest(&manifest),
        tag: tag.to_string(),
    })
}

/// An image layout as read back by [`inspect`].
#[derive(Debug, Clone)]
pub struct Image {
    /// `index.json`.
    pub index: Value,
    /// The manifest `tag` names.
    pub manifest: Value,
    /// The runtime configuration (the manifest's config blob).
    pub config: Value,
    /// The module (the `application/vnd.module.wasm.content.layer.v1+wasm` layer).
    pub wasm: Vec<u8>,
}

/// Reads the blob a descriptor names, checking its size and digest.
pub fn read_blob(layout: &Path, descriptor: &Value) -> Result<Vec<u8>> {
    let name = descriptor
        .get("digest")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::new(format!("descriptor without a digest: {descriptor}")))?;
    let hex = name
        .strip_prefix("sha256:")
        .filter(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| Error::new(format!("not a sha256 digest: {name}")))?;
    let path = layout.join("blobs/sha256").join(hex);
    let bytes = std::fs::read(&path).context(|| format!("reading {}", path.display()))?;
    if digest(&bytes) != name {
        return Err(Error::new(format!(
            "{} does not hash to its name ({})",
            path.display(),
            digest(&bytes)
        )));
    }
    let size = descriptor.get("size").and_then(Value::as_u64);
    if size != u64::try_from(bytes.len()).ok() {
        return Err(Error::new(format!(
            "{name}: descriptor size {size:?}, blob has {} bytes",
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// Reads and checks an image layout: `oci-layout`, the index, the tagged manifest, every
/// blob's digest and size, and the Wasm image format (media types, two layers, one of them
/// the module).
pub fn inspect(layout: &Path, tag: &str) -> Result<Image> {
    let oci_layout: Value = serde_json::from_slice(&std::fs::read(layout.join("oci-layout"))?)?;
    if oci_layout.get("imageLayoutVersion").and_then(Value::as_str) != Some("1.0.0") {
        return Err(Error::new(format!("oci-layout: {oci_layout}")));
    }
    let index: Value = serde_json::from_slice(&std::fs::read(layout.join("index.json"))?)?;
    if index.get("schemaVersion").and_then(Value::as_u64) != Some(2) {
        return Err(Error::new("index.json: schemaVersion is not 2"));
    }
    let entry = index
        .get("manifests")
        .and_then(Value::as_array)
        .and_then(|manifests| {
            manifests.iter().find(|entry| {
                entry.pointer("/annotations/org.opencontainers.image.ref.name")
                    == Some(&Value::String(tag.to_string()))
            })
        })
        .ok_or_else(|| Error::new(format!("index.json has no manifest tagged {tag}")))?;
    expect_media_type(entry, MANIFEST)?;
    let manifest: Value = serde_json::from_slice(&read_blob(layout, entry)?)?;
    if manifest.get("schemaVersion").and_then(Value::as_u64) != Some(2) {
        return Err(Error::new("manifest: schemaVersion is not 2"));
    }
    expect_media_type(&manifest, MANIFEST)?;
    let config_descriptor = manifest
        .get("config")
        .ok_or_else(|| Error::new("manifest without config"))?;
    expect_media_type(config_descriptor, WASM_CONFIG)?;
    let config: Value = serde_json::from_slice(&read_blob(layout, config_descriptor)?)?;
    let layers = manifest
        .get("layers")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::new("manifest without layers"))?;
    if layers.len() != 2 {
        return Err(Error::new(format!(
            "Istio's oci variant needs exactly 2 layers, found {}",
            layers.len()
        )));
    }
    let mut wasm = None;
    for layer in layers {
        let bytes = read_blob(layout, layer)?;
        if layer.get("mediaType").and_then(Value::as_str) == Some(WASM_LAYER) {
            wasm = Some(bytes);
        }
    }
    let wasm = wasm.ok_or_else(|| Error::new(format!("no {WASM_LAYER} layer")))?;
    Ok(Image {
        index,
        manifest,
        config,
        wasm,
    })
}

fn expect_media_type(value: &Value, expected: &str) -> Result<()> {
    match value.get("mediaType").and_then(Value::as_str) {
        Some(found) if found == expected => Ok(()),
        found => Err(Error::new(format!(
            "media type {found:?}, expected {expected}"
        ))),
    }
}
