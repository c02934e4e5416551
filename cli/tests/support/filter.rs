//! Builds the shipped filter (`cordon_filter.wasm`, release, wasm32-wasip1) once per test
//! binary, into its own target directory so it never waits on the outer build's lock.

#![expect(
    clippy::expect_used,
    reason = "test helpers fail loudly, like the #[test] functions they serve"
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Path of the built module: `CORDON_WASM` when it names a file (scripts/test.sh builds
/// the module once for every suite), else a fresh build.
pub fn wasm_path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(
        || match std::env::var_os("CORDON_WASM").map(PathBuf::from) {
            Some(path) if path.is_file() => path,
            _ => build(),
        },
    )
}

fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("the test binary knows its path");
    exe.ancestors()
        .nth(3)
        .expect("the test binary sits in <target>/<profile>/deps")
        .to_path_buf()
}

fn build() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = target_dir().join("filter-for-tests");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip1",
            "-p",
            "cordon-filter",
            "--manifest-path",
        ])
        .arg(workspace.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .status()
        .expect(
            "cargo runs (is the wasm32-wasip1 target installed? `rustup target add wasm32-wasip1`)",
        );
    assert!(status.success(), "building cordon_filter.wasm failed");
    let wasm = target.join("wasm32-wasip1/release/cordon_filter.wasm");
    assert!(wasm.exists(), "{} was not produced", wasm.display());
    wasm
}
