//! Embeds the filter module in the `cordon` binary, so that a binary copied anywhere (or
//! installed with `cargo install --path cli`) carries the `.wasm` it was built with.
//!
//! The module is `cordon-filter` built for wasm32-wasip1 with the workspace's release
//! profile, by a nested `cargo build` into its own target directory (never the outer
//! build's: two cargos on one target directory wait on each other's lock). Set
//! `CORDON_EMBED_WASM=<path>` to embed a module built elsewhere instead (a release
//! pipeline that has already built it). The module's SHA-256 becomes
//! `CORDON_WASM_SHA256` for `cordon --version`.
//!
//! The nested build gets none of the outer build's compiler flags or wrappers: the
//! outer `RUSTFLAGS`/`CARGO_ENCODED_RUSTFLAGS` are for the host (a `-C target-cpu=native`
//! or coverage instrumentation does not belong in the module), and `cargo clippy` sets
//! `RUSTC_WORKSPACE_WRAPPER`, which would lint the filter again inside this build.
//! `CORDON_WASM_RUSTFLAGS` passes flags to the module's build on purpose.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use sha2::{Digest, Sha256};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: cannot embed cordon_filter.wasm in the cordon binary: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").ok_or("OUT_DIR is not set")?);
    let manifest_dir = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").ok_or("CARGO_MANIFEST_DIR is not set")?,
    );
    let workspace = manifest_dir
        .parent()
        .ok_or("the cli crate has no parent directory")?
        .to_path_buf();
    println!("cargo:rerun-if-env-changed=CORDON_EMBED_WASM");
    println!("cargo:rerun-if-env-changed=CORDON_WASM_RUSTFLAGS");
    let module = match std::env::var_os("CORDON_EMBED_WASM") {
        Some(path) => {
            let path = PathBuf::from(path);
            println!("cargo:rerun-if-changed={}", path.display());
            path
        }
        None => build_filter(&workspace, &out)?,
    };
    let bytes = std::fs::read(&module)
        .map_err(|error| format!("cannot read {}: {error}", module.display()))?;
    if bytes.get(..4) != Some(b"\0asm".as_slice()) {
        return Err(format!("{} is not a wasm module", module.display()));
    }
    let embedded = out.join("cordon_filter.wasm");
    std::fs::write(&embedded, &bytes)
        .map_err(|error| format!("cannot write {}: {error}", embedded.display()))?;
    let hex: String = Sha256::digest(&bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    println!("cargo:rustc-env=CORDON_WASM_SHA256={hex}");
    Ok(())
}

/// Builds `cordon_filter.wasm` (release, wasm32-wasip1) and returns its path.
fn build_filter(workspace: &Path, out: &Path) -> Result<PathBuf, String> {
    // What the module is made of; Cargo.toml carries the release profile it is built with.
    for input in ["filter", "engine", "Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", workspace.join(input).display());
    }
    let target_dir = nested_target_dir(out);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .arg("build")
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .args([
            "-p",
            "cordon-filter",
            "--release",
            "--target",
            "wasm32-wasip1",
        ])
        .env("CARGO_TARGET_DIR", &target_dir)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_BUILD_TARGET")
        // Whatever it prints is for people; a build script's stdout is read by Cargo.
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(flags) = std::env::var_os("CORDON_WASM_RUSTFLAGS") {
        command.env("RUSTFLAGS", flags);
    }
    let output = command
        .output()
        .map_err(|error| format!("cannot run cargo: {error}"))?;
    if !output.status.success() {
        return Err(format!(
            "`cargo build -p cordon-filter --release --target wasm32-wasip1` (target dir {}) failed; \
             the target is installed with `rustup target add wasm32-wasip1`, or set \
             CORDON_EMBED_WASM to a module built elsewhere:\n{}",
            target_dir.display(),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(target_dir.join("wasm32-wasip1/release/cordon_filter.wasm"))
}

/// A target directory of its own, kept across builds: beside the outer build's profile
/// directories when the outer target directory can be found (the directory above `OUT_DIR`
/// that holds Cargo's `CACHEDIR.TAG`), so that `cargo build`, `cargo test` and `cargo
/// clippy` share one nested build; else under `OUT_DIR`.
fn nested_target_dir(out: &Path) -> PathBuf {
    out.ancestors()
        .skip(1)
        .find(|dir| dir.join("CACHEDIR.TAG").is_file())
        .map(|target| target.join("cordon-embedded-filter"))
        .unwrap_or_else(|| out.join("filter-target"))
}
