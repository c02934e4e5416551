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

/// A response. `status` 0 means no HTTP response at all (refused, reset, timed out):
/// `error` then says what curl saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status, or 0.
    pub status: u16,
    /// The body.
    pub body: String,
    /// curl's complaint when there was no response.
    pub error: String,
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

    /// Sends it to `envoy`.
    pub fn send(&self, envoy: &Envoy) -> Result<Response> {
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
        let stdout = String::from_utf8_lossy(&output.stdout);
        let (body, code) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
        Ok(Response {
            status: code.trim().parse().unwrap_or(0),
            body: body.to_string(),
            error: String::from_utf8_lossy(&output.stderr).trim().to_string(),
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
