//! The differential harness's PKI: the suite's CA (`envoy/gen-certs.sh`) and JWT key
//! (`envoy/jwt.py`), plus a server certificate for every name the clients send as SNI and
//! a pool of client certificates with the SPIFFE IDs of [`vocab::CLIENTS`] (EC P-256
//! keys: quick to make and to handshake). Made once per test process.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use super::vocab;
use crate::tools::{self, Pki};
use crate::{Context, Error, Result};

/// Everything the listeners and the clients need.
#[derive(Debug, Clone)]
pub struct Material {
    /// The directory holding it all (`ca.crt`, `jwks.json`, ...).
    pub dir: PathBuf,
    /// The suite's PKI in the same directory.
    pub pki: Pki,
}

impl Material {
    /// Makes the certificates in a fresh directory.
    pub fn generate() -> Result<Material> {
        let dir = tools::scratch_dir("differential-pki")?;
        let pki = Pki::generate(&dir)?;
        let mut sans = String::from("subjectAltName=IP:127.0.0.1,IP:::1");
        for name in vocab::SNIS.iter().flatten() {
            sans.push_str(&format!(",DNS:{name}"));
        }
        issue(
            &dir,
            "diff-server",
            &format!("{sans}\nextendedKeyUsage=serverAuth"),
        )?;
        for (name, uri) in vocab::CLIENTS {
            let san = match uri {
                Some(uri) => format!("URI:{uri}"),
                None => format!("DNS:{name}.client.test"),
            };
            issue(
                &dir,
                &client_stem(name),
                &format!("subjectAltName={san}\nextendedKeyUsage=clientAuth"),
            )?;
        }
        Ok(Material { dir, pki })
    }

    /// The CA certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// The server certificate and key.
    pub fn server(&self) -> (PathBuf, PathBuf) {
        (
            self.dir.join("diff-server.crt"),
            self.dir.join("diff-server.key"),
        )
    }

    /// A client's certificate and key, by its name in [`vocab::CLIENTS`].
    pub fn client(&self, name: &str) -> (PathBuf, PathBuf) {
        let stem = client_stem(name);
        (
            self.dir.join(format!("{stem}.crt")),
            self.dir.join(format!("{stem}.key")),
        )
    }

    /// The JWKS `jwt_authn` verifies tokens with.
    pub fn jwks(&self) -> PathBuf {
        self.dir.join("jwks.json")
    }

    /// RS256 tokens for each claim set, in order, signed by `envoy/jwt.py`'s `sign` (one
    /// Python process for all of them).
    pub fn sign_all(&self, claims: &[Value]) -> Result<Vec<String>> {
        let script = "import importlib.util, json, sys\n\
            from pathlib import Path\n\
            spec = importlib.util.spec_from_file_location('cordon_jwt', sys.argv[1])\n\
            jwt = importlib.util.module_from_spec(spec); spec.loader.exec_module(jwt)\n\
            for claims in json.load(sys.stdin):\n    print(jwt.sign(Path(sys.argv[2]), claims))\n";
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(tools::repo_root().join("envoy/jwt.py"))
            .arg(&self.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context(|| "running python3 envoy/jwt.py".to_string())?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(Value::Array(claims.to_vec()).to_string().as_bytes())?;
        }
        let output = child.wait_with_output()?;
        if !output.status.success() {
            return Err(Error::new(format!(
                "signing tokens failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        let tokens: Vec<String> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        if tokens.len() != claims.len() {
            return Err(Error::new(format!(
                "asked for {} tokens, jwt.py printed {}",
                claims.len(),
                tokens.len()
            )));
        }
        Ok(tokens)
    }
}

fn client_stem(name: &str) -> String {
    format!("diff-client-{name}")
}

/// Issues `name.crt`/`name.key` (EC P-256) signed by the CA in `dir`, with `extensions`.
fn issue(dir: &Path, name: &str, extensions: &str) -> Result<()> {
    let ext = dir.join(format!("{name}.ext"));
    std::fs::write(&ext, format!("{extensions}\n"))?;
    let key = dir.join(format!("{name}.key"));
    let csr = dir.join(format!("{name}.csr"));
    tools::run(
        Command::new("openssl")
            .args([
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&csr)
            .args(["-subj", &format!("/CN={name}")]),
    )?;
    // rustls reads PKCS#8 or SEC1 keys; openssl req writes PKCS#8.
    tools::run(
        Command::new("openssl")
            .args(["x509", "-req", "-days", "2", "-sha256"])
            .arg("-in")
            .arg(&csr)
            .arg("-CA")
            .arg(dir.join("ca.crt"))
            .arg("-CAkey")
            .arg(dir.join("ca.key"))
            .args(["-set_serial", &format!("{}", serial(name))])
            .arg("-out")
            .arg(dir.join(format!("{name}.crt")))
            .arg("-extfile")
            .arg(&ext),
    )?;
    let _ = std::fs::remove_file(&csr);
    let _ = std::fs::remove_file(&ext);
    Ok(())
}

/// A distinct serial number per certificate name.
fn serial(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    }) >> 2
}
