//! `cordon pack`: the filter module as an OCI image layout in Istio's Wasm image format
//! (crate `cordon-oci`), and how to push it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, Result};

use super::common::wasm_bytes;
use super::term::print;

/// The arguments of `cordon pack`.
#[derive(Debug, clap::Args)]
pub struct PackArgs {
    /// The directory to write the image layout to (created; an existing image layout or
    /// empty directory is replaced, anything else refused).
    #[arg(long)]
    pub out: PathBuf,
    /// The image's tag.
    #[arg(long, default_value = env!("CARGO_PKG_VERSION"))]
    pub tag: String,
    /// The filter module to pack; default: the one built into this binary (`cordon
    /// --version` prints its sha256). `CORDON_WASM` also sets it.
    #[arg(long)]
    pub wasm: Option<PathBuf>,
}

/// Writes the layout, checks it as a reader would, and prints what was written and the
/// commands that push it.
pub fn run(args: PackArgs) -> Result<ExitCode> {
    let (wasm, source) = wasm_bytes(args.wasm)?;
    let packed = cordon_oci::pack(&wasm, &args.out, &args.tag)
        .map_err(|error| anyhow!("cordon pack: {}: {error}", args.out.display()))?;
    cordon_oci::inspect(&args.out, &args.tag).map_err(|error| {
        anyhow!(
            "cordon pack: the layout just written to {} does not check: {error}",
            args.out.display()
        )
    })?;
    print(&report(&args.out, &packed, &source, &wasm))?;
    Ok(ExitCode::SUCCESS)
}

fn report(out: &Path, packed: &cordon_oci::Packed, source: &str, wasm: &[u8]) -> String {
    let dir = out.display();
    let tag = &packed.tag;
    let manifest_hex = packed
        .manifest_digest
        .trim_start_matches("sha256:")
        .to_string();
    format!(
        "wrote {dir}: an OCI image layout, tag {tag}, in Istio's Wasm image format\n\
         \x20 module:   {source}, {size} bytes, sha256 {module}\n\
         \x20 manifest: {digest} (what Istio checks an oci:// image against)\n\
         \n\
         push it with any one of (REGISTRY/REPO is yours, e.g. ghcr.io/you/cordon):\n\
         \x20 oras cp --from-oci-layout {dir}:{tag} REGISTRY/REPO:{tag}\n\
         \x20 skopeo copy oci:{dir}:{tag} docker://REGISTRY/REPO:{tag}\n\
         \x20 crane push {dir} REGISTRY/REPO:{tag}\n\
         \n\
         then point the WasmPlugin at it, pinned to this manifest:\n\
         \x20 cordon config --istio --image oci://REGISTRY/REPO:{tag} --sha256 {manifest_hex} --policy …\n",
        size = wasm.len(),
        module = cordon_oci::sha256_hex(wasm),
        digest = packed.manifest_digest,
    )
}
