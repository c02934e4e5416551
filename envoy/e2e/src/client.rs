//! Clients: `curl` for single requests (client certificates, raw request targets, header
//! bytes that are not UTF-8), and a keep-alive HTTP/1.1 client for load.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::os::unix::ffi::OsStringExt;
use std::process::Command;
use std::time::Duration;

use crate::envoy::Envoy;
use crate::{Context, Error, Result};

/// Which listener, as whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via<'a> {
    /// The plaintext listener: no peer identity.
    Plain,
    /// The mTLS listener with this client certificate (a name from the test PKI).
    Mtls(&'a str),
}

/// One request.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    via: Via<'a>,
    method: String,
    target: String,
    headers: Vec<(String, Vec<u8>)>,
}

/// An HTTP response. There is always one: a request that got none (refused, reset, timed
/// out) is an error of [`Request::send`], never a status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status (100 to 599).
    pub status: u16,
    /// The body.
    pub body: String,
}

/// What curl did with one request, before it is read as a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurlRun {
    /// curl's exit code (`None`: killed by a signal).
    pub exit: Option<i32>,
    /// Its standard output: the body, then a newline and `%{http_code}`.
    pub stdout: Vec<u8>,
    /// Its standard error (`--show-error`: what went wrong).
    pub stderr: String,
}

/// curl's exit code for "failed to connect to host" (nothing listens).
pub const CURL_COULDNT_CONNECT: i32 = 7;

impl CurlRun {
    /// The response, or why there is none: a non-zero exit, output without a final
    /// `\n<status>` line, or a status outside 100..=599 (curl's `000`) are all errors.
    pub fn response(&self) -> Result<Response> {
        if self.exit != Some(0) {
            return Err(Error::new(format!(
                "curl failed ({}): {}",
                self.describe_exit(),
                self.stderr
            )));
        }
        let stdout = std::str::from_utf8(&self.stdout)
            .map_err(|_| Error::new("curl's output is not UTF-8".to_string()))?;
        let (body, code) = stdout.rsplit_once('\n').ok_or_else(|| {
            Error::new(format!(
                "curl's output has no status line (--write-out): {stdout:?}"
            ))
        })?;
        let status: u16 = code
            .parse()
            .map_err(|_| Error::new(format!("curl's status {code:?} is not a number")))?;
        if !(100..=599).contains(&status) {
            return Err(Error::new(format!(
                "curl exited 0 but saw no HTTP status ({code:?}); output {stdout:?}"
            )));
        }
        Ok(Response {
            status,
            body: body.to_string(),
        })
    }

    /// curl's complaint when it could not connect (exit 7); an error when it got a
    /// response, or failed in any other way.
    pub fn connection_refused(&self) -> Result<String> {
        if self.exit == Some(CURL_COULDNT_CONNECT) {
            return Ok(self.stderr.clone());
        }
        Err(Error::new(format!(
            "expected curl to fail to connect (exit {CURL_COULDNT_CONNECT}), got {}: stdout {:?}, stderr {:?}",
            self.describe_exit(),
            String::from_utf8_lossy(&self.stdout),
            self.stderr
        )))
    }

    fn describe_exit(&self) -> String {
        match self.exit {
            Some(code) => format!("exit {code}"),
            None => "killed by a signal".to_string(),
        }
    }
}

impl<'a> Request<'a> {
    /// `method target` through `via`. `target` is sent exactly as written (curl's
    /// `--request-target`): no normalization, no fragment stripping.
    pub fn new(via: Via<'a>, method: &str, target: &str) -> Request<'a> {
        Request {
            via,
            method: method.to_string(),
            target: target.to_string(),
            headers: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn header(self, name: &str, value: &str) -> Request<'a> {
        self.header_bytes(name, value.as_bytes())
    }

    /// Adds a header whose value is raw bytes (not necessarily UTF-8).
    pub fn header_bytes(mut self, name: &str, value: &[u8]) -> Request<'a> {
        self.headers.push((name.to_string(), value.to_vec()));
        self
    }

    /// Adds `authorization: Bearer <token>`.
    pub fn bearer(self, token: &str) -> Request<'a> {
        self.header("authorization", &format!("Bearer {token}"))
    }

    /// Sends it to `envoy`. Any client failure (curl's non-zero exit, output it cannot
    /// read as a status) is an error, never a status.
    pub fn send(&self, envoy: &Envoy) -> Result<Response> {
        self.run(envoy)?
            .response()
            .context(|| format!("{} {} via {:?}", self.method, self.target, self.via))
    }

    /// Sends it to `envoy`, where nothing should listen: curl's complaint when it could
    /// not connect, an error when anything answered.
    pub fn send_expecting_no_listener(&self, envoy: &Envoy) -> Result<String> {
        self.run(envoy)?.connection_refused()
    }

    /// Runs curl for this request.
    pub fn run(&self, envoy: &Envoy) -> Result<CurlRun> {
        let ports = envoy.ports();
        let mut command = Command::new("curl");
        command.args(["--silent", "--show-error", "--max-time", "15"]);
        command.args(["--output", "-", "--write-out", "\n%{http_code}"]);
        command.args(["--request", &self.method, "--request-target", &self.target]);
        for (name, value) in &self.headers {
            let mut line = format!("{name}: ").into_bytes();
            line.extend_from_slice(value);
            command.arg("--header").arg(OsString::from_vec(line));
        }
        match self.via {
            Via::Plain => {
                command.arg(format!("http://127.0.0.1:{}/", ports.plain));
            }
            Via::Mtls(client) => {
                let (cert, key) = envoy.pki().client(client);
                command.arg("--cacert").arg(envoy.pki().ca());
                command.arg("--cert").arg(cert).arg("--key").arg(key);
                command.arg(format!("https://localhost:{}/", ports.mtls));
            }
        }
        let output = command
            .output()
            .context(|| "running curl (install it: apt-get install -y curl)".to_string())?;
        Ok(CurlRun {
            exit: output.status.code(),
            stdout: output.stdout,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        })
    }
}

/// A keep-alive HTTP/1.1 client on one connection to a plaintext listener; reconnects
/// when the server says `connection: close` (as a draining listener does), never after
/// an error: every error is the caller's to count.
#[derive(Debug)]
pub struct KeepAlive {
    port: u16,
    stream: Option<BufReader<TcpStream>>,
    /// Connections opened so far.
    pub connections: u32,
}

impl KeepAlive {
    /// A client for `127.0.0.1:port`; connects on the first request.
    pub fn new(port: u16) -> KeepAlive {
        KeepAlive {
            port,
            stream: None,
            connections: 0,
        }
    }

    /// `GET path`; the status and body.
    pub fn get(&mut self, path: &str) -> Result<(u16, String)> {
        if self.stream.is_none() {
            let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port))?;
            stream.set_read_timeout(Some(Duration::from_secs(10)))?;
            stream.set_nodelay(true)?;
            self.stream = Some(BufReader::new(stream));
            self.connections += 1;
        }
        let reader = self
            .stream
            .as_mut()
            .ok_or_else(|| Error::new("no connection"))?;
        let result = exchange(reader, path);
        match &result {
            Ok((_, _, close)) if !close => {}
            _ => self.stream = None,
        }
        result.map(|(status, body, _)| (status, body))
    }
}

/// One request and its response: status, body, whether the server closes the connection.
fn exchange(reader: &mut BufReader<TcpStream>, path: &str) -> Result<(u16, String, bool)> {
    write!(
        reader.get_mut(),
        "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n"
    )?;
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(Error::new("connection closed before a response"));
    }
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| Error::new(format!("bad status line {line:?}")))?;
    let mut length = 0usize;
    let mut close = false;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(Error::new("connection closed inside the response headers"));
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value
                    .parse()
                    .map_err(|_| Error::new(format!("bad content-length {value:?}")))?;
            } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close")
            {
                close = true;
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok((status, String::from_utf8_lossy(&body).into_owned(), close))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(exit: Option<i32>, stdout: &str, stderr: &str) -> CurlRun {
        CurlRun {
            exit,
            stdout: stdout.as_bytes().to_vec(),
            stderr: stderr.to_string(),
        }
    }

    #[test]
    fn a_response_is_its_status_and_body() {
        assert_eq!(
            run(Some(0), "ok\n200", "").response(),
            Ok(Response {
                status: 200,
                body: "ok".to_string()
            })
        );
        assert_eq!(
            run(Some(0), "a\nb\n403", "").response(),
            Ok(Response {
                status: 403,
                body: "a\nb".to_string()
            })
        );
        assert_eq!(
            run(Some(0), "\n204", "").response(),
            Ok(Response {
                status: 204,
                body: String::new()
            })
        );
    }

    #[test]
    fn a_client_failure_is_never_a_status() {
        for bad in [
            run(Some(7), "\n000", "curl: (7) Failed to connect"),
            run(Some(28), "\n000", "curl: (28) timed out"),
            run(Some(52), "\n000", "curl: (52) Empty reply"),
            run(None, "", ""),
            run(Some(0), "\n000", ""),
            run(Some(0), "200", ""),
            run(Some(0), "ok\n", ""),
            run(Some(0), "ok\n20x", ""),
            run(Some(0), "ok\n 200", ""),
            run(Some(0), "ok\n99", ""),
            run(Some(0), "ok\n600", ""),
        ] {
            assert!(bad.response().is_err(), "{bad:?}");
        }
        let invalid = CurlRun {
            exit: Some(0),
            stdout: b"\xff\n200".to_vec(),
            stderr: String::new(),
        };
        assert!(invalid.response().is_err());
    }

    #[test]
    fn connection_refused_is_exit_7_only() {
        assert_eq!(
            run(Some(7), "\n000", "curl: (7) Failed").connection_refused(),
            Ok("curl: (7) Failed".to_string())
        );
        assert!(run(Some(0), "ok\n200", "").connection_refused().is_err());
        assert!(run(Some(28), "\n000", "timeout")
            .connection_refused()
            .is_err());
        assert!(run(Some(35), "\n000", "tls").connection_refused().is_err());
    }
}
