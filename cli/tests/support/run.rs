//! Running the `cordon` binary as a user runs it, for every CLI test file.
#![allow(dead_code, reason = "each test file uses the helpers it needs")]
#![expect(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test helpers fail loudly, like the #[test] functions they serve"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[path = "filter.rs"]
pub mod filter;

/// The repository root: commands run there, so relative paths in tests are the repo's.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `cordon` command with the shipped module, from the repository root, outside CI (the
/// corpus harness refuses name filters under `CI`).
pub fn command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cordon"));
    command
        .args(args)
        .env("CORDON_WASM", filter::wasm_path())
        .env_remove("CI")
        .current_dir(repo());
    command
}

/// Runs `cordon` to completion.
pub fn cordon(args: &[&str]) -> Output {
    command(args).output().expect("the cordon binary runs")
}

/// Standard output as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A fresh directory under the system's temporary directory.
pub fn tempdir() -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "cordon-cli-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
