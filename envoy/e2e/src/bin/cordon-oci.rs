//! Packs `cordon_filter.wasm` into an OCI image layout in Istio's Wasm image format.
//!
//! ```text
//! cordon-oci [--wasm PATH] [--out DIR] [--tag TAG]
//! ```
//!
//! Defaults: `target/wasm32-wasip1/release/cordon_filter.wasm`, `target/istio-image`, the
//! crate version. Push the result with `oras cp --from-oci-layout DIR:TAG
//! REGISTRY/REPO:TAG` (or `skopeo copy oci:DIR:TAG docker://REGISTRY/REPO:TAG`), then
//! point a WasmPlugin's `url` at `oci://REGISTRY/REPO:TAG` (see `envoy/istio/`).

use std::path::PathBuf;
use std::process::ExitCode;

use cordon_e2e::{oci, tools};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("cordon-oci: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let root = tools::repo_root();
    let mut wasm = root.join("target/wasm32-wasip1/release/cordon_filter.wasm");
    let mut out = root.join("target/istio-image");
    let mut tag = env!("CARGO_PKG_VERSION").to_string();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--wasm" => wasm = PathBuf::from(value()?),
            "--out" => out = PathBuf::from(value()?),
            "--tag" => tag = value()?,
            "-h" | "--help" => {
                println!("usage: cordon-oci [--wasm PATH] [--out DIR] [--tag TAG]");
                return Ok(());
            }
            other => return Err(format!("unknown argument `{other}` (try --help)")),
        }
    }
    let bytes = std::fs::read(&wasm).map_err(|error| {
        format!(
            "cannot read {}: {error}\n  build it: cargo build -p cordon-filter --release --target wasm32-wasip1",
            wasm.display()
        )
    })?;
    let packed = oci::pack(&bytes, &out, &tag).map_err(|error| error.to_string())?;
    oci::inspect(&out, &tag)
        .map_err(|error| format!("the layout just written does not check: {error}"))?;
    println!(
        "wrote {}: tag {tag}, manifest {}",
        out.display(),
        packed.manifest_digest
    );
    println!(
        "push: oras cp --from-oci-layout {}:{tag} REGISTRY/cordon:{tag}",
        out.display()
    );
    Ok(())
}
