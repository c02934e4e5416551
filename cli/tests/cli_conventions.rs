//! The conventions every `cordon` command keeps, run as a user runs the binary: `--format`
//! takes only what the command writes, a closed pipe ends a command quietly, progress
//! goes to a terminal and never into a pipe, and `--help` describes the product.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "support/filter.rs"]
mod filter;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const SHOP_POLICIES: &str = "policies/examples/shop/policies.yaml";
const SHOP_TRAFFIC: &str = "policies/examples/shop/traffic.jsonl";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cordon"));
    command
        .args(args)
        .env("CORDON_WASM", filter::wasm_path())
        .current_dir(repo());
    command
}

fn cordon(args: &[&str]) -> Output {
    command(args).output().expect("the cordon binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn tempdir() -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "cordon-conventions-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The shop traffic many times over: more output than a pipe holds.
fn long_traffic() -> PathBuf {
    let dir = tempdir();
    let once = std::fs::read_to_string(repo().join(SHOP_TRAFFIC)).unwrap();
    let path = dir.join("traffic.jsonl");
    std::fs::write(&path, once.repeat(50)).unwrap();
    path
}

#[test]
fn format_takes_only_the_formats_the_command_writes() {
    for (args, accepted) in [
        (
            vec![
                "simulate",
                "--policy",
                SHOP_POLICIES,
                "--traffic",
                SHOP_TRAFFIC,
                "--format",
                "json",
            ],
            "table, jsonl",
        ),
        (
            vec!["check", SHOP_POLICIES, "--format", "jsonl"],
            "text, json",
        ),
        (
            vec!["check", SHOP_POLICIES, "--format", "table"],
            "text, json",
        ),
        (
            vec!["test", "policies/corpus/hosts.json", "--format", "table"],
            "text, json",
        ),
        (
            vec![
                "explain",
                "--policy",
                SHOP_POLICIES,
                "--request",
                "{}",
                "--format",
                "table",
            ],
            "text, json",
        ),
        (
            vec![
                "audit",
                "--policy",
                SHOP_POLICIES,
                "--traffic",
                SHOP_TRAFFIC,
                "--format",
                "jsonl",
            ],
            "text, json",
        ),
        (
            vec![
                "bench",
                "--policy",
                SHOP_POLICIES,
                "--traffic",
                SHOP_TRAFFIC,
                "--format",
                "table",
            ],
            "text, json",
        ),
    ] {
        let output = cordon(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let said = text(&output.stderr);
        assert!(
            said.contains("invalid value")
                && said.contains(&format!("[possible values: {accepted}]")),
            "{args:?}: {said}"
        );
        assert!(output.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn a_closed_pipe_ends_the_command_quietly() {
    let traffic = long_traffic();
    let traffic = traffic.to_str().unwrap();
    for args in [
        vec![
            "simulate",
            "--policy",
            SHOP_POLICIES,
            "--traffic",
            traffic,
            "--format",
            "jsonl",
        ],
        vec![
            "simulate",
            "--policy",
            SHOP_POLICIES,
            "--traffic",
            traffic,
            "--format",
            "jsonl",
            "--explain",
        ],
    ] {
        // `cordon … | head -1`: read one line, then close the pipe.
        let mut child = command(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert!(!first.is_empty(), "{args:?}");
        let output = child.wait_with_output().unwrap();
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&output.stderr)
        );
        assert!(
            output.stderr.is_empty(),
            "{args:?}: {}",
            text(&output.stderr)
        );
    }
}

#[test]
fn progress_never_goes_into_a_pipe() {
    let traffic = long_traffic();
    let output = cordon(&[
        "simulate",
        "--policy",
        SHOP_POLICIES,
        "--traffic",
        traffic.to_str().unwrap(),
        "--format",
        "jsonl",
    ]);
    assert!(output.status.success());
    assert!(output.stderr.is_empty(), "{}", text(&output.stderr));
    let output = cordon(&["test", "policies/corpus/hosts.json"]);
    assert!(output.status.success());
    assert!(output.stderr.is_empty(), "{}", text(&output.stderr));
    let output = cordon(&["discover", "--traffic", SHOP_TRAFFIC, "--quiet"]);
    assert!(output.status.success());
    assert!(output.stderr.is_empty(), "{}", text(&output.stderr));
    let output = cordon(&[
        "audit",
        "--policy",
        SHOP_POLICIES,
        "--traffic",
        SHOP_TRAFFIC,
        "--fail-on",
        "never",
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        !text(&output.stderr).contains("auditing"),
        "{}",
        text(&output.stderr)
    );
}

/// Runs `cordon args…` with standard error on a terminal (`script` gives it a pseudo
/// terminal), standard output to a file; what the terminal showed. `None` without `script`.
fn on_a_terminal(args: &[&str], ci: bool) -> Option<String> {
    if Command::new("script").arg("--version").output().is_err() {
        return None;
    }
    let out = tempdir().join("stdout");
    let line = format!(
        "'{}' {} > '{}'",
        env!("CARGO_BIN_EXE_cordon"),
        args.iter()
            .map(|arg| format!("'{arg}'"))
            .collect::<Vec<_>>()
            .join(" "),
        out.display()
    );
    let mut script = Command::new("script");
    script
        .args(["-qec", &line, "/dev/null"])
        .env("CORDON_WASM", filter::wasm_path())
        .env("TERM", "xterm")
        .current_dir(repo())
        .stdin(Stdio::null());
    if ci {
        script.env("CI", "true");
    } else {
        script.env_remove("CI");
    }
    let output = script.output().unwrap();
    assert!(output.status.success(), "{}", text(&output.stdout));
    Some(text(&output.stdout))
}

#[test]
fn progress_shows_on_a_terminal_but_not_in_ci() {
    let args = [
        "simulate",
        "--policy",
        SHOP_POLICIES,
        "--traffic",
        SHOP_TRAFFIC,
        "--format",
        "jsonl",
    ];
    let Some(shown) = on_a_terminal(&args, false) else {
        eprintln!("skipped: no `script` to give the command a terminal");
        return;
    };
    assert!(shown.contains("\r  records "), "{shown:?}");
    let shown = on_a_terminal(&args, true).unwrap();
    assert!(!shown.contains("records"), "{shown:?}");
    let shown = on_a_terminal(&["test", "policies/corpus/hosts.json"], false).unwrap();
    assert!(shown.contains("\r  cases 1/26"), "{shown:?}");
    let audit = [
        "audit",
        "--policy",
        SHOP_POLICIES,
        "--traffic",
        SHOP_TRAFFIC,
        "--fail-on",
        "never",
    ];
    let shown = on_a_terminal(&audit, false).unwrap();
    assert!(shown.contains("  auditing: 1 records"), "{shown:?}");
    let discover = ["discover", "--traffic", SHOP_TRAFFIC, "--quiet"];
    let shown = on_a_terminal(&discover, false).unwrap();
    assert!(shown.contains("\r  discovering… 0 s"), "{shown:?}");
    assert!(!on_a_terminal(&discover, true)
        .unwrap()
        .contains("discovering"));
}

#[test]
fn help_describes_the_product() {
    let output = cordon(&["--help"]);
    assert!(output.status.success());
    let help = text(&output.stdout);
    assert!(help.contains("microsegmentation"), "{help}");
    for command in [
        "check",
        "test",
        "simulate",
        "explain",
        "config",
        "discover",
        "audit",
        "blast-radius",
    ] {
        assert!(
            help.contains(&format!("\n  {command} ")),
            "{command}: {help}"
        );
    }
    assert!(!help.to_lowercase().contains("harness"), "{help}");
}
