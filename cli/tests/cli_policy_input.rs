//! How the `cordon` binary reads policy files: loudly, never "0 policies, all fine".
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn cordon(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cordon"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the cordon binary runs");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cordon-policy-input-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

const POLICY: &str = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: a\n  namespace: x\nspec:\n  rules:\n  - to:\n    - operation:\n        methods: [GET]\n";
const DEPLOYMENT: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\n";

#[test]
fn a_misspelt_kind_is_an_error_at_its_line() {
    let path = file(
        "typo.yaml",
        &POLICY.replace("AuthorizationPolicy", "AuthorisationPolicy"),
    );
    let output = cordon(&["check", path.to_str().unwrap()], None);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("typo.yaml:2:1: kind `AuthorisationPolicy` is not one cordon reads"),
        "{stderr}"
    );
    // And `config --istio` cannot turn it into an allow-everything plugin.
    let output = cordon(
        &[
            "config",
            "--istio",
            "--image",
            "oci://registry.example.com/cordon:0.1.0",
            "--policy",
            path.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(output.status.code(), Some(2), "{output:?}");
}

#[test]
fn a_path_without_policies_is_an_error_and_other_kinds_are_named() {
    let only = file("deployment.yaml", DEPLOYMENT);
    let output = cordon(&["check", only.to_str().unwrap()], None);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("no AuthorizationPolicy found here"));
    let mixed = file("mixed.yaml", &format!("{DEPLOYMENT}---\n{POLICY}"));
    let output = cordon(&["check", mixed.to_str().unwrap()], None);
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr)
        .contains("skipped 1 document of other kinds: Deployment"));
}

#[test]
fn standard_input_and_kubectl_lists_are_read() {
    let output = cordon(&["check", "-"], Some(POLICY));
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("1 policies checked"));
    let list = format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicyList\nitems:\n- {}",
        POLICY.replace('\n', "\n  ").trim_end()
    );
    let output = cordon(&["check", "-"], Some(&list));
    assert!(output.status.success(), "{output:?} {list}");
}
