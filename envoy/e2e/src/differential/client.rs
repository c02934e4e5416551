//! The differential harness's HTTP client: HTTP/1.1 written by hand over rustls, one
//! kept-alive connection per (listener side, connection profile). The request goes out
//! byte for byte as built (repeated header lines, raw request targets, mixed-case hosts),
//! and the response must parse: anything else (refused, reset, timed out, garbage) is an
//! error, never a status.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use crate::{Context, Error, Result};

/// How long one response may take.
const READ_TIMEOUT: Duration = Duration::from_secs(20);

/// A TLS client configuration: trusts the test CA, presents one client certificate (or
/// none), offers one ALPN protocol (how the listener picks the RBAC or the cordon chain).
pub fn tls_config(
    ca: &Path,
    cert_key: Option<(&Path, &Path)>,
    alpn: &str,
) -> Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).context(|| format!("reading {}", ca.display()))? {
        let cert = cert.context(|| format!("parsing {}", ca.display()))?;
        roots
            .add(cert)
            .context(|| format!("trusting {}", ca.display()))?;
    }
    // ring lacks post-quantum key exchange (hence the deprecation); irrelevant for a test
    // client on loopback, and ring builds in seconds where aws-lc-rs needs cmake.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context(|| "TLS versions".to_string())?
        .with_root_certificates(roots);
    let mut config = match cert_key {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .context(|| format!("reading {}", cert.display()))?
                .collect::<std::result::Result<Vec<_>, _>>()
                .context(|| format!("parsing {}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .context(|| format!("reading {}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .context(|| format!("client certificate {}", cert.display()))?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![alpn.as_bytes().to_vec()];
    Ok(Arc::new(config))
}

/// A parsed response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The body (lossy UTF-8).
    pub body: String,
}

/// One kept-alive TLS connection; reconnects (same address, name and configuration) when
/// the server closed it after a response (`connection: close`).
pub struct Connection {
    address: SocketAddr,
    server_name: ServerName<'static>,
    config: Arc<ClientConfig>,
    stream: Option<BufReader<StreamOwned<ClientConnection, TcpStream>>>,
    /// TLS connections opened so far.
    pub opened: u32,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("address", &self.address)
            .field("server_name", &self.server_name)
            .field("opened", &self.opened)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// A connection to `address`, sending `server_name` as SNI (an IP address: no SNI);
    /// connects on the first request.
    pub fn new(
        address: SocketAddr,
        server_name: ServerName<'static>,
        config: Arc<ClientConfig>,
    ) -> Connection {
        Connection {
            address,
            server_name,
            config,
            stream: None,
            opened: 0,
        }
    }

    fn connect(&mut self) -> Result<()> {
        let tcp = TcpStream::connect_timeout(&self.address, Duration::from_secs(10))
            .context(|| format!("connecting to {}", self.address))?;
        tcp.set_read_timeout(Some(READ_TIMEOUT))?;
        tcp.set_write_timeout(Some(READ_TIMEOUT))?;
        tcp.set_nodelay(true)?;
        let tls = ClientConnection::new(self.config.clone(), self.server_name.clone())
            .context(|| "starting TLS".to_string())?;
        let mut stream = StreamOwned::new(tls, tcp);
        // Finish the handshake now, so that a refused client certificate shows as such.
        while stream.conn.is_handshaking() {
            stream
                .conn
                .complete_io(&mut stream.sock)
                .context(|| format!("TLS handshake with {}", self.address))?;
        }
        self.stream = Some(BufReader::new(stream));
        self.opened += 1;
        Ok(())
    }

    /// Sends one raw request (`request` is the whole head, ending in an empty line) and
    /// reads its response. A connection the server closed while idle is reopened once.
    pub fn exchange(&mut self, request: &[u8]) -> Result<Response> {
        let fresh = self.stream.is_none();
        if fresh {
            self.connect()?;
        }
        match self.try_exchange(request) {
            Ok((response, close)) => {
                if close {
                    self.stream = None;
                }
                Ok(response)
            }
            Err(Failure::ClosedBeforeResponse) if !fresh => {
                // The server closed the kept-alive connection between requests: retry
                // once on a new one.
                self.stream = None;
                self.connect()?;
                let result = self.try_exchange(request);
                self.stream = None;
                match result {
                    Ok((response, close)) => {
                        if !close {
                            // Keep it after all: it answered normally.
                            self.connect()?;
                        }
                        Ok(response)
                    }
                    Err(failure) => Err(failure.into_error(self.address)),
                }
            }
            Err(failure) => {
                self.stream = None;
                Err(failure.into_error(self.address))
            }
        }
    }

    fn try_exchange(&mut self, request: &[u8]) -> std::result::Result<(Response, bool), Failure> {
        let reader = self
            .stream
            .as_mut()
            .ok_or_else(|| Failure::Other("no connection".into()))?;
        reader
            .get_mut()
            .write_all(request)
            .and_then(|()| reader.get_mut().flush())
            .map_err(|error| Failure::Other(format!("writing the request: {error}")))?;
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) => return Err(Failure::ClosedBeforeResponse),
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(Failure::ClosedBeforeResponse)
            }
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {
                return Err(Failure::ClosedBeforeResponse)
            }
            Err(error) => return Err(Failure::Other(format!("reading the status line: {error}"))),
        }
        let status = parse_status(&line)
            .ok_or_else(|| Failure::Other(format!("bad status line {line:?}")))?;
        let mut length = None;
        let mut close = false;
        let mut chunked = false;
        loop {
            line.clear();
            let read = reader.read_line(&mut line).map_err(|error| {
                Failure::Other(format!("reading the response headers: {error}"))
            })?;
            if read == 0 {
                return Err(Failure::Other(
                    "connection closed inside the response headers".into(),
                ));
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header
                .split_once(':')
                .ok_or_else(|| Failure::Other(format!("bad response header {header:?}")))?;
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(
                    value
                        .parse::<usize>()
                        .map_err(|_| Failure::Other(format!("bad content-length {value:?}")))?,
                );
            } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close")
            {
                close = true;
            } else if name.eq_ignore_ascii_case("transfer-encoding")
                && value.eq_ignore_ascii_case("chunked")
            {
                chunked = true;
            }
        }
        // A response to HEAD has no body, whatever its length says.
        let head = request.starts_with(b"HEAD ");
        let body = if head {
            Vec::new()
        } else if chunked {
            read_chunked(reader).map_err(Failure::Other)?
        } else {
            let mut body = vec![0; length.unwrap_or(0)];
            reader
                .read_exact(&mut body)
                .map_err(|error| Failure::Other(format!("reading the body: {error}")))?;
            body
        };
        Ok((
            Response {
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
            },
            close,
        ))
    }
}

enum Failure {
    ClosedBeforeResponse,
    Other(String),
}

impl Failure {
    fn into_error(self, address: SocketAddr) -> Error {
        match self {
            Failure::ClosedBeforeResponse => {
                Error::new(format!("{address}: connection closed before a response"))
            }
            Failure::Other(message) => Error::new(format!("{address}: {message}")),
        }
    }
}

fn parse_status(line: &str) -> Option<u16> {
    let mut parts = line.split_whitespace();
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.parse().ok()
}

fn read_chunked(reader: &mut impl BufRead) -> std::result::Result<Vec<u8>, String> {
    let mut body = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        reader
            .read_line(&mut line)
            .map_err(|error| format!("reading a chunk size: {error}"))?;
        let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("bad chunk size {line:?}"))?;
        if size == 0 {
            // Trailers, then the empty line.
            loop {
                line.clear();
                let read = reader
                    .read_line(&mut line)
                    .map_err(|error| format!("reading trailers: {error}"))?;
                if read == 0 || line.trim_end().is_empty() {
                    return Ok(body);
                }
            }
        }
        let mut chunk = vec![0; size + 2];
        reader
            .read_exact(&mut chunk)
            .map_err(|error| format!("reading a chunk: {error}"))?;
        chunk.truncate(size);
        body.extend_from_slice(&chunk);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(parse_status("HTTP/1.1 403 Forbidden\r\n"), Some(403));
        assert_eq!(parse_status("HTTP/1.0 200 OK"), Some(200));
        assert_eq!(parse_status("SSH-2.0"), None);
        assert_eq!(parse_status("HTTP/1.1 abc"), None);
    }

    #[test]
    fn chunked_bodies() {
        let mut input: &[u8] = b"2\r\nok\r\n3;x=y\r\n!!!\r\n0\r\n\r\n";
        assert_eq!(read_chunked(&mut input).unwrap(), b"ok!!!");
    }
}
