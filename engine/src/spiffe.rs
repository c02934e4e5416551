//! SPIFFE IDs, parsed and validated by the SPIFFE ID specification
//! (`standards/SPIFFE-ID.md` in github.com/spiffe/spiffe).
//!
//! Validation is strict: an ID that breaks any rule of the specification is
//! rejected rather than repaired, because a peer identity that two components
//! could read differently must never reach policy matching.

use core::fmt;

const SCHEME: &str = "spiffe://";

/// The specification caps the whole ID, scheme included, at 2048 bytes.
const MAX_ID_LEN: usize = 2048;

/// RFC 3986 caps a host at 255 characters, and the specification inherits that
/// for the trust domain.
const MAX_TRUST_DOMAIN_LEN: usize = 255;

/// A validated SPIFFE ID, borrowed from the string it was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpiffeId<'a> {
    trust_domain: &'a str,
    path: &'a str,
    principal: &'a str,
}

impl<'a> SpiffeId<'a> {
    /// Parses `spiffe://trust-domain/path`.
    ///
    /// The scheme must be exactly `spiffe` (lowercase); the trust domain must be
    /// non-empty, at most 255 bytes, and made of `[a-z0-9._-]`, with no userinfo
    /// or port; the optional path must consist of non-empty segments of
    /// `[a-zA-Z0-9._-]` that are not `.` or `..`, without a trailing slash; no
    /// percent-encoding, query or fragment anywhere; at most 2048 bytes in all.
    pub fn parse(uri: &'a str) -> Result<SpiffeId<'a>, SpiffeError> {
        if uri.is_empty() {
            return Err(SpiffeError::Empty);
        }
        if uri.len() > MAX_ID_LEN {
            return Err(SpiffeError::TooLong { len: uri.len() });
        }
        let Some(principal) = uri.strip_prefix(SCHEME) else {
            return Err(SpiffeError::WrongScheme);
        };
        // Every request's peer goes through here: one pass over the bytes accepts a valid
        // ID; only an invalid one takes the checks below, which name its first problem.
        if let Some(at) = scan_valid(principal.as_bytes()) {
            if let (Some(trust_domain), Some(path)) = (principal.get(..at), principal.get(at..)) {
                return Ok(SpiffeId {
                    trust_domain,
                    path,
                    principal,
                });
            }
        }
        checked(principal)
    }

    /// The trust domain, e.g. `cluster.local`.
    pub fn trust_domain(&self) -> &'a str {
        self.trust_domain
    }

    /// The path, starting with `/`, or "" when the ID has no path.
    pub fn path(&self) -> &'a str {
        self.path
    }

    /// The ID without its scheme, as Istio writes principals: `cluster.local/ns/shop/sa/frontend`.
    pub fn principal(&self) -> &'a str {
        self.principal
    }

    /// Istio's namespace of the workload: the path segment that follows the
    /// first `ns` segment, provided another segment follows it in turn.
    ///
    /// Istio matches `namespaces` with the regex `.*/ns/<ns>/.*` over the
    /// principal, so a namespace is only recognised when followed by `/`:
    /// `/ns/shop/sa/frontend` is in `shop`, `/ns/shop` is in no namespace.
    pub fn namespace(&self) -> Option<&'a str> {
        // Istio's own shape, `/ns/<ns>/...`, without walking every segment.
        if let Some((namespace, _)) = self
            .path
            .strip_prefix("/ns/")
            .and_then(|rest| rest.split_once('/'))
        {
            return Some(namespace);
        }
        // The path starts with `/`, so the first item of the split is empty.
        let mut segments = self.path.split('/').skip(1);
        let mut before = segments.next()?;
        let mut candidate = segments.next()?;
        for following in segments {
            if before == "ns" {
                return Some(candidate);
            }
            before = candidate;
            candidate = following;
        }
        None
    }

    /// The service account when the path is exactly `/ns/<ns>/sa/<sa>` (Istio's identity shape).
    pub fn service_account(&self) -> Option<&'a str> {
        let mut segments = self.path.strip_prefix('/')?.split('/');
        match (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) {
            (Some("ns"), Some(_), Some("sa"), Some(account), None) => Some(account),
            _ => None,
        }
    }
}

/// The checks of [`SpiffeId::parse`] after the scheme, one rule at a time, so that an
/// invalid ID is refused with its first problem.
fn checked(principal: &str) -> Result<SpiffeId<'_>, SpiffeError> {
    // These are delimiters or escapes anywhere in a URI, so they are reported
    // as what they mean rather than as a bad character of whichever part
    // they happen to sit in.
    if principal.contains(['?', '#']) {
        return Err(SpiffeError::QueryOrFragment);
    }
    if principal.contains('%') {
        return Err(SpiffeError::PercentEncoded);
    }

    // An impossible split failure falls back to "all trust domain", which
    // then fails on the `/` it contains instead of being accepted.
    let (trust_domain, path) = match principal.find('/') {
        Some(at) => principal.split_at_checked(at).unwrap_or((principal, "")),
        None => (principal, ""),
    };
    validate_trust_domain(trust_domain)?;
    validate_path(path)?;
    Ok(SpiffeId {
        trust_domain,
        path,
        principal,
    })
}

/// Byte classes of [`scan_valid`]: a trust domain byte (`[a-z0-9._-]`) and a path byte
/// (`[a-zA-Z0-9._-]`).
const TRUST_DOMAIN_BYTE: u8 = 1;
const PATH_BYTE: u8 = 2;

#[expect(
    clippy::indexing_slicing,
    reason = "a const initializer: `byte` runs over 0..256, the table's length, and an out-of-bounds index would fail the build, not a request"
)]
const BYTE_CLASSES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut byte = 0usize;
    while byte < 256 {
        table[byte] = match byte as u8 {
            b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' => TRUST_DOMAIN_BYTE | PATH_BYTE,
            b'A'..=b'Z' => PATH_BYTE,
            _ => 0,
        };
        byte += 1;
    }
    table
};

fn class(byte: u8) -> u8 {
    BYTE_CLASSES.get(usize::from(byte)).copied().unwrap_or(0)
}

/// Whether the text after `spiffe://` is a valid ID, in one pass over its bytes: returns
/// where the path starts (the trust domain's length), or `None` when anything is wrong
/// (then [`SpiffeId::parse`]'s checks say what). It accepts exactly what those checks
/// accept: only bytes of the two classes and `/` occur, so there is no `?`, `#`, `%`, `@`
/// or `:`.
fn scan_valid(principal: &[u8]) -> Option<usize> {
    // The trust domain: up to the first byte outside its class, which must be a `/` or
    // the end.
    let at = principal
        .iter()
        .position(|byte| class(*byte) & TRUST_DOMAIN_BYTE == 0)
        .unwrap_or(principal.len());
    if at == 0 || at > MAX_TRUST_DOMAIN_LEN {
        return None;
    }
    match principal.get(at) {
        None => return Some(at),
        Some(b'/') => {}
        Some(_) => return None,
    }
    // The path: segments after each `/`, non-empty, not `.` or `..`. A path byte is the
    // common case and costs one table lookup; only a `/` ends a segment.
    let path = principal.get(at..).unwrap_or(&[]);
    let bad_segment = |segment: &[u8]| matches!(segment, b"" | b"." | b"..");
    let mut start = 1usize;
    let mut position = 1usize;
    while let Some(&byte) = path.get(position) {
        if class(byte) & PATH_BYTE == 0 {
            if byte != b'/' || bad_segment(path.get(start..position).unwrap_or(&[])) {
                return None;
            }
            start = position + 1;
        }
        position += 1;
    }
    if bad_segment(path.get(start..).unwrap_or(&[])) {
        return None;
    }
    Some(at)
}

/// Removes a leading `spiffe://` if present, so policy values written with or
/// without the scheme compare equal to [`SpiffeId::principal`].
pub fn strip_scheme(s: &str) -> &str {
    s.strip_prefix(SCHEME).unwrap_or(s)
}

fn validate_trust_domain(trust_domain: &str) -> Result<(), SpiffeError> {
    // Checked before the character scan so that `user:pass@host` is reported
    // as userinfo, not as a port.
    if trust_domain.contains('@') {
        return Err(SpiffeError::Userinfo);
    }
    if trust_domain.is_empty() {
        return Err(SpiffeError::EmptyTrustDomain);
    }
    if trust_domain.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(SpiffeError::TrustDomainTooLong {
            len: trust_domain.len(),
        });
    }
    for c in trust_domain.chars() {
        match c {
            'a'..='z' | '0'..='9' | '.' | '-' | '_' => {}
            ':' => return Err(SpiffeError::Port),
            _ => return Err(SpiffeError::BadTrustDomainChar(c)),
        }
    }
    Ok(())
}

fn validate_path(path: &str) -> Result<(), SpiffeError> {
    let Some(rest) = path.strip_prefix('/') else {
        // Only the empty path reaches here: a non-empty path starts at a `/`.
        return Ok(());
    };
    let mut segments = rest.split('/').peekable();
    while let Some(segment) = segments.next() {
        if segment.is_empty() {
            return Err(if segments.peek().is_none() {
                SpiffeError::TrailingSlash
            } else {
                SpiffeError::EmptySegment
            });
        }
        if let Some(c) = segment
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
        {
            return Err(SpiffeError::BadPathChar(c));
        }
        if segment == "." || segment == ".." {
            return Err(SpiffeError::DotSegment);
        }
    }
    Ok(())
}

/// Why a string is not a SPIFFE ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpiffeError {
    /// The string is empty.
    Empty,
    /// The ID is longer than 2048 bytes.
    TooLong {
        /// The length of the rejected ID, in bytes.
        len: usize,
    },
    /// The ID does not start with `spiffe://` (the scheme is case-sensitive here).
    WrongScheme,
    /// Nothing between `spiffe://` and the path.
    EmptyTrustDomain,
    /// The trust domain is longer than 255 bytes.
    TrustDomainTooLong {
        /// The length of the rejected trust domain, in bytes.
        len: usize,
    },
    /// The trust domain has a character outside `[a-z0-9._-]` (uppercase included).
    BadTrustDomainChar(char),
    /// The authority has a port (`:`).
    Port,
    /// The authority has userinfo (`@`).
    Userinfo,
    /// The ID contains `%`; SPIFFE IDs are never percent-encoded.
    PercentEncoded,
    /// The ID contains `?` or `#`.
    QueryOrFragment,
    /// The path has an empty segment (`//`).
    EmptySegment,
    /// The path has a `.` or `..` segment.
    DotSegment,
    /// A path segment has a character outside `[a-zA-Z0-9._-]`.
    BadPathChar(char),
    /// The path ends with `/`.
    TrailingSlash,
}

impl fmt::Display for SpiffeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Empty => f.write_str("spiffe id is empty"),
            Self::TooLong { len } => write!(
                f,
                "spiffe id is {len} bytes long, more than the {MAX_ID_LEN}-byte limit"
            ),
            Self::WrongScheme => f.write_str("spiffe id does not start with `spiffe://`"),
            Self::EmptyTrustDomain => f.write_str("spiffe id has an empty trust domain"),
            Self::TrustDomainTooLong { len } => write!(
                f,
                "trust domain is {len} bytes long, more than the {MAX_TRUST_DOMAIN_LEN}-byte limit"
            ),
            Self::BadTrustDomainChar(c) => {
                write!(f, "trust domain has invalid character `{}`", Shown(c))
            }
            Self::Port => f.write_str("spiffe id must not have a port"),
            Self::Userinfo => f.write_str("spiffe id must not have userinfo"),
            Self::PercentEncoded => f.write_str("spiffe id must not contain percent-encoding"),
            Self::QueryOrFragment => f.write_str("spiffe id must not have a query or fragment"),
            Self::EmptySegment => f.write_str("spiffe id path has an empty segment"),
            Self::DotSegment => f.write_str("spiffe id path has a `.` or `..` segment"),
            Self::BadPathChar(c) => {
                write!(f, "spiffe id path has invalid character `{}`", Shown(c))
            }
            Self::TrailingSlash => f.write_str("spiffe id path ends with `/`"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for SpiffeError {}

/// Writes a rejected character so that control and invisible characters stay
/// visible in logs instead of corrupting them.
struct Shown(char);

impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_ascii_graphic() || self.0 == ' ' {
            write!(f, "{}", self.0)
        } else {
            write!(f, "{}", self.0.escape_debug())
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

    use super::*;
    use alloc::format;
    use alloc::string::{String, ToString};

    fn err(uri: &str) -> SpiffeError {
        SpiffeId::parse(uri).unwrap_err()
    }

    /// The one-pass scan accepts exactly what the rule-by-rule checks accept: every
    /// string of up to five bytes over an alphabet of every byte class that matters, and
    /// longer ones built from its pieces.
    #[test]
    fn one_pass_scan_agrees_with_the_checks() {
        let alphabet: &[&str] = &[
            "a", "Z", "0", ".", "-", "_", "/", ":", "@", "%", "?", "#", " ", "é", "..",
        ];
        let mut compared = 0;
        let mut text = String::new();
        for len in 0..=5u32 {
            for number in 0..alphabet.len().pow(len) {
                text.clear();
                let mut rest = number;
                for _ in 0..len {
                    text.push_str(alphabet[rest % alphabet.len()]);
                    rest /= alphabet.len();
                }
                for candidate in [text.clone(), format!("td/{text}"), format!("{text}/ns/a")] {
                    let fast = scan_valid(candidate.as_bytes());
                    let slow = checked(&candidate);
                    assert_eq!(fast.is_some(), slow.is_ok(), "{candidate:?}: {slow:?}");
                    if let (Some(at), Ok(id)) = (fast, slow) {
                        assert_eq!(at, id.trust_domain().len(), "{candidate:?}");
                    }
                    compared += 1;
                }
            }
        }
        assert!(compared > 1_000_000);
        let long = "a".repeat(255);
        assert!(scan_valid(long.as_bytes()).is_some());
        assert!(scan_valid(format!("{long}a/x").as_bytes()).is_none());
        assert_eq!(
            SpiffeId::parse(&format!("spiffe://{long}a/x")),
            Err(SpiffeError::TrustDomainTooLong { len: 256 })
        );
    }

    #[test]
    fn parses_istio_identity() {
        let id = SpiffeId::parse("spiffe://cluster.local/ns/shop/sa/frontend").unwrap();
        assert_eq!(id.trust_domain(), "cluster.local");
        assert_eq!(id.path(), "/ns/shop/sa/frontend");
        assert_eq!(id.principal(), "cluster.local/ns/shop/sa/frontend");
        assert_eq!(id.namespace(), Some("shop"));
        assert_eq!(id.service_account(), Some("frontend"));
    }

    #[test]
    fn parses_without_path() {
        let id = SpiffeId::parse("spiffe://example.org").unwrap();
        assert_eq!(id.trust_domain(), "example.org");
        assert_eq!(id.path(), "");
        assert_eq!(id.principal(), "example.org");
        assert_eq!(id.namespace(), None);
        assert_eq!(id.service_account(), None);
    }

    #[test]
    fn accepts_every_allowed_character() {
        let id = SpiffeId::parse("spiffe://a-b_c.0-9/AZaz09.-_/x..y/.hidden/...").unwrap();
        assert_eq!(id.trust_domain(), "a-b_c.0-9");
        assert_eq!(id.path(), "/AZaz09.-_/x..y/.hidden/...");
        // An IPv4 address is a valid trust domain name.
        assert!(SpiffeId::parse("spiffe://10.0.0.1/x").is_ok());
    }

    #[test]
    fn borrows_from_input() {
        let owned = String::from("spiffe://td/a/b");
        let id = SpiffeId::parse(&owned).unwrap();
        assert!(core::ptr::eq(id.path().as_ptr(), owned[11..].as_ptr()));
    }

    #[test]
    fn rejects_empty_and_scheme_problems() {
        assert_eq!(err(""), SpiffeError::Empty);
        assert_eq!(err("SPIFFE://td/x"), SpiffeError::WrongScheme);
        assert_eq!(err("Spiffe://td/x"), SpiffeError::WrongScheme);
        assert_eq!(err("https://td/x"), SpiffeError::WrongScheme);
        assert_eq!(err("spiffe:/td/x"), SpiffeError::WrongScheme);
        assert_eq!(err("spiffe:td"), SpiffeError::WrongScheme);
        assert_eq!(err("td/ns/a/sa/b"), SpiffeError::WrongScheme);
        assert_eq!(err(" spiffe://td"), SpiffeError::WrongScheme);
    }

    #[test]
    fn rejects_trust_domain_problems() {
        assert_eq!(err("spiffe://"), SpiffeError::EmptyTrustDomain);
        assert_eq!(err("spiffe:///path"), SpiffeError::EmptyTrustDomain);
        assert_eq!(
            err("spiffe://Cluster.local/x"),
            SpiffeError::BadTrustDomainChar('C')
        );
        assert_eq!(
            err("spiffe://cluster.LOCAL"),
            SpiffeError::BadTrustDomainChar('L')
        );
        assert_eq!(err("spiffe://td:8080/x"), SpiffeError::Port);
        assert_eq!(err("spiffe://td:/x"), SpiffeError::Port);
        assert_eq!(err("spiffe://user@td/x"), SpiffeError::Userinfo);
        assert_eq!(err("spiffe://user:pass@td/x"), SpiffeError::Userinfo);
        assert_eq!(
            err("spiffe://[::1]/x"),
            SpiffeError::BadTrustDomainChar('[')
        );
        assert_eq!(err("spiffe://t d"), SpiffeError::BadTrustDomainChar(' '));
        assert_eq!(err("spiffe://tä/x"), SpiffeError::BadTrustDomainChar('ä'));
        assert_eq!(err("spiffe://t\\d"), SpiffeError::BadTrustDomainChar('\\'));
    }

    #[test]
    fn trust_domain_length_limit() {
        let ok = "a".repeat(255);
        assert!(SpiffeId::parse(&format!("spiffe://{ok}/x")).is_ok());
        let long = "a".repeat(256);
        assert_eq!(
            err(&format!("spiffe://{long}/x")),
            SpiffeError::TrustDomainTooLong { len: 256 }
        );
    }

    #[test]
    fn rejects_query_fragment_and_percent() {
        assert_eq!(err("spiffe://td/x?y=1"), SpiffeError::QueryOrFragment);
        assert_eq!(err("spiffe://td/x#frag"), SpiffeError::QueryOrFragment);
        assert_eq!(err("spiffe://td?x"), SpiffeError::QueryOrFragment);
        assert_eq!(err("spiffe://td#x"), SpiffeError::QueryOrFragment);
        assert_eq!(err("spiffe://td/a%2Fb"), SpiffeError::PercentEncoded);
        assert_eq!(err("spiffe://td/%2e%2e"), SpiffeError::PercentEncoded);
        assert_eq!(err("spiffe://t%64/x"), SpiffeError::PercentEncoded);
    }

    #[test]
    fn rejects_path_problems() {
        assert_eq!(err("spiffe://td/"), SpiffeError::TrailingSlash);
        assert_eq!(err("spiffe://td/a/"), SpiffeError::TrailingSlash);
        assert_eq!(err("spiffe://td//a"), SpiffeError::EmptySegment);
        assert_eq!(err("spiffe://td/a//b"), SpiffeError::EmptySegment);
        assert_eq!(err("spiffe://td//"), SpiffeError::EmptySegment);
        assert_eq!(err("spiffe://td/."), SpiffeError::DotSegment);
        assert_eq!(err("spiffe://td/a/./b"), SpiffeError::DotSegment);
        assert_eq!(err("spiffe://td/.."), SpiffeError::DotSegment);
        assert_eq!(err("spiffe://td/a/../b"), SpiffeError::DotSegment);
        assert_eq!(err("spiffe://td/a b"), SpiffeError::BadPathChar(' '));
        assert_eq!(err("spiffe://td/a:b"), SpiffeError::BadPathChar(':'));
        assert_eq!(err("spiffe://td/a;b"), SpiffeError::BadPathChar(';'));
        assert_eq!(err("spiffe://td/a@b"), SpiffeError::BadPathChar('@'));
        assert_eq!(err("spiffe://td/a\\b"), SpiffeError::BadPathChar('\\'));
        assert_eq!(err("spiffe://td/a~b"), SpiffeError::BadPathChar('~'));
        assert_eq!(err("spiffe://td/é"), SpiffeError::BadPathChar('é'));
        assert_eq!(err("spiffe://td/a\u{0}"), SpiffeError::BadPathChar('\u{0}'));
    }

    #[test]
    fn whole_id_length_limit() {
        let prefix = "spiffe://td/";
        let exact = format!("{prefix}{}", "a".repeat(2048 - prefix.len()));
        assert_eq!(exact.len(), 2048);
        assert!(SpiffeId::parse(&exact).is_ok());
        let over = format!("{prefix}{}", "a".repeat(2049 - prefix.len()));
        assert_eq!(err(&over), SpiffeError::TooLong { len: 2049 });
    }

    #[test]
    fn namespace_follows_istio_regex() {
        fn ns(uri: &str) -> Option<&str> {
            SpiffeId::parse(uri).unwrap().namespace()
        }
        assert_eq!(ns("spiffe://td/ns/shop/sa/frontend"), Some("shop"));
        assert_eq!(ns("spiffe://td/ns/shop/anything"), Some("shop"));
        assert_eq!(ns("spiffe://td/prefix/ns/shop/x"), Some("shop"));
        // `.*/ns/shop/.*` needs a `/` after the namespace.
        assert_eq!(ns("spiffe://td/ns/shop"), None);
        assert_eq!(ns("spiffe://td/ns"), None);
        assert_eq!(ns("spiffe://td/x/ns"), None);
        assert_eq!(ns("spiffe://td/nsx/shop/y"), None);
        // The first qualifying occurrence wins.
        assert_eq!(ns("spiffe://td/ns/a/ns/b/c"), Some("a"));
        assert_eq!(ns("spiffe://td/ns/ns/sa/x"), Some("ns"));
        assert_eq!(ns("spiffe://td/x/ns/a"), None);
        assert_eq!(ns("spiffe://td"), None);
    }

    #[test]
    fn service_account_needs_exact_shape() {
        fn sa(uri: &str) -> Option<&str> {
            SpiffeId::parse(uri).unwrap().service_account()
        }
        assert_eq!(sa("spiffe://td/ns/shop/sa/frontend"), Some("frontend"));
        assert_eq!(sa("spiffe://td/ns/shop/sa/frontend/extra"), None);
        assert_eq!(sa("spiffe://td/x/ns/shop/sa/frontend"), None);
        assert_eq!(sa("spiffe://td/ns/shop/sx/frontend"), None);
        assert_eq!(sa("spiffe://td/ns/shop/sa"), None);
        assert_eq!(sa("spiffe://td/ns/shop"), None);
        assert_eq!(sa("spiffe://td"), None);
    }

    #[test]
    fn strip_scheme_handles_both_spellings() {
        assert_eq!(strip_scheme("spiffe://td/ns/a"), "td/ns/a");
        assert_eq!(strip_scheme("td/ns/a"), "td/ns/a");
        assert_eq!(strip_scheme("SPIFFE://td"), "SPIFFE://td");
        assert_eq!(strip_scheme(""), "");
        assert_eq!(strip_scheme("spiffe://"), "");
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            SpiffeError::BadTrustDomainChar('A').to_string(),
            "trust domain has invalid character `A`"
        );
        assert_eq!(
            SpiffeError::BadPathChar('\n').to_string(),
            "spiffe id path has invalid character `\\n`"
        );
        assert_eq!(
            SpiffeError::BadPathChar('\u{202e}').to_string(),
            "spiffe id path has invalid character `\\u{202e}`"
        );
        assert_eq!(
            SpiffeError::TooLong { len: 2049 }.to_string(),
            "spiffe id is 2049 bytes long, more than the 2048-byte limit"
        );
        let all = [
            SpiffeError::Empty,
            SpiffeError::TooLong { len: 3000 },
            SpiffeError::WrongScheme,
            SpiffeError::EmptyTrustDomain,
            SpiffeError::TrustDomainTooLong { len: 300 },
            SpiffeError::BadTrustDomainChar('A'),
            SpiffeError::Port,
            SpiffeError::Userinfo,
            SpiffeError::PercentEncoded,
            SpiffeError::QueryOrFragment,
            SpiffeError::EmptySegment,
            SpiffeError::DotSegment,
            SpiffeError::BadPathChar('!'),
            SpiffeError::TrailingSlash,
        ];
        for e in all {
            let text = e.to_string();
            assert!(!text.ends_with('.'), "{text}");
            assert!(text.starts_with(|c: char| c.is_ascii_lowercase()), "{text}");
        }
    }

    #[test]
    fn never_panics_on_odd_input() {
        let inputs = [
            "spiffe://",
            "spiffe://\u{1F600}",
            "spiffe://td/\u{1F600}",
            "spiffe://td/\u{0}",
            "spiffe://td/a/\u{7FF}/b",
            "spiffe:/",
            "spiffe",
            "\u{FFFF}spiffe://td",
            "spiffe://td/😀/",
            "spiffe://é",
            "spiffe://td:é",
        ];
        for input in inputs {
            let _ = SpiffeId::parse(input);
        }
        // Every short string over a mixed alphabet, multibyte included.
        let alphabet = ['s', '/', ':', '.', 'A', 'a', '@', '%', 'é', '😀'];
        for a in alphabet {
            for b in alphabet {
                for c in alphabet {
                    let s: String = ['s', 'p', 'i', 'f', 'f', 'e', ':', '/', '/', a, b, c]
                        .iter()
                        .collect();
                    if let Ok(id) = SpiffeId::parse(&s) {
                        assert_eq!(SpiffeId::parse(id.principal()).ok(), None);
                        let _ = (id.namespace(), id.service_account());
                    }
                }
            }
        }
    }
}
