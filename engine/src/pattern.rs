//! The value patterns of AuthorizationPolicy fields: strings with Istio's wildcards, path
//! templates, IP blocks and ports.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::net::IpAddr;

/// An Istio string match: exact, prefix `abc*`, suffix `*abc`, or presence `*`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StringPattern {
    /// The whole value equals the text.
    Exact(String),
    /// The value starts with the text (`abc*`).
    Prefix(String),
    /// The value ends with the text (`*abc`).
    Suffix(String),
    /// The value is present and not empty (`*`).
    Presence,
}

impl StringPattern {
    /// Reads a value as Istio does: `*` alone is presence, a leading `*` makes a suffix
    /// match, a trailing `*` a prefix match; any other `*` is literal.
    pub fn parse(value: &str) -> StringPattern {
        if value == "*" {
            StringPattern::Presence
        } else if let Some(rest) = value.strip_prefix('*') {
            StringPattern::Suffix(rest.to_string())
        } else if let Some(rest) = value.strip_suffix('*') {
            StringPattern::Prefix(rest.to_string())
        } else {
            StringPattern::Exact(value.to_string())
        }
    }

    /// The value as written in a policy: `abc`, `abc*`, `*abc` or `*`.
    pub fn to_istio(&self) -> String {
        match self {
            StringPattern::Exact(text) => text.clone(),
            StringPattern::Prefix(text) => alloc::format!("{text}*"),
            StringPattern::Suffix(text) => alloc::format!("*{text}"),
            StringPattern::Presence => "*".to_string(),
        }
    }

    /// The literal text of the pattern (empty for presence).
    pub fn text(&self) -> &str {
        match self {
            StringPattern::Exact(text)
            | StringPattern::Prefix(text)
            | StringPattern::Suffix(text) => text,
            StringPattern::Presence => "",
        }
    }

    /// Whether `value` matches; `fold_case` compares ASCII case-insensitively.
    pub fn matches(&self, value: &str, fold_case: bool) -> bool {
        let eq = |a: &[u8], b: &[u8]| {
            if fold_case {
                a.eq_ignore_ascii_case(b)
            } else {
                a == b
            }
        };
        let value = value.as_bytes();
        match self {
            StringPattern::Exact(text) => eq(value, text.as_bytes()),
            StringPattern::Prefix(text) => {
                value.len() >= text.len()
                    && value
                        .get(..text.len())
                        .is_some_and(|head| eq(head, text.as_bytes()))
            }
            StringPattern::Suffix(text) => value
                .len()
                .checked_sub(text.len())
                .and_then(|start| value.get(start..))
                .is_some_and(|tail| eq(tail, text.as_bytes())),
            StringPattern::Presence => !value.is_empty(),
        }
    }
}

/// One segment of a path template.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TemplateSegment {
    /// A literal segment (empty only as the last, for a trailing `/`).
    Literal(String),
    /// `{*}`: exactly one non-empty segment of [`is_template_char`] characters (Envoy's
    /// `uri_template` `*`, `[C]+`).
    One,
    /// `{**}`: one or more segments, each of [`is_template_char`] characters and possibly
    /// empty (Envoy's `**`, `[C/]*` between the `/` around it). No `{*}` or `{**}` may
    /// follow it.
    Rest,
}

/// The characters Envoy's `uri_template` globs match and its literals may hold: RFC 3986
/// `pchar` without `*` and `=` (`kLiteral` in Envoy's `uri_template_internal.cc`).
pub fn is_template_char(byte: u8) -> bool {
    TEMPLATE_CHARS
        .get(usize::from(byte))
        .copied()
        .unwrap_or(false)
}

/// [`is_template_char`] as a table: every request path's segments go through it when
/// policies hold templates.
#[expect(
    clippy::indexing_slicing,
    reason = "a const initializer: `byte` runs over 0..256, the table's length, and an out-of-bounds index would fail the build, not a request"
)]
const TEMPLATE_CHARS: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0usize;
    while byte < 256 {
        table[byte] = matches!(
            byte as u8,
            b'a'..=b'z'
                | b'A'..=b'Z'
                | b'0'..=b'9'
                | b'-'
                | b'.'
                | b'_'
                | b'~'
                | b'%'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'+'
                | b','
                | b';'
                | b':'
                | b'@'
        );
        byte += 1;
    }
    table
};

/// A `paths`/`notPaths` value: a string pattern or an Istio path template.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathPattern {
    /// Exact, prefix, suffix or presence.
    Plain(StringPattern),
    /// Segments after the leading `/`, e.g. `/v1/{*}/items` is `[v1, One, items]`.
    Template(Vec<TemplateSegment>),
}

impl PathPattern {
    /// Parses a path value, validating templates as Istio's webhook and Envoy's
    /// `uri_template` parser do.
    pub fn parse(value: &str) -> Result<PathPattern, String> {
        if !value.contains(['{', '}']) {
            // As istiod: a `*` other than a leading or trailing one is a literal character
            // (the model warns about it).
            return Ok(PathPattern::Plain(StringPattern::parse(value)));
        }
        let Some(rest) = value.strip_prefix('/') else {
            return Err(alloc::format!(
                "invalid path template `{value}`: must start with `/`"
            ));
        };
        let mut segments = Vec::new();
        let parts: Vec<&str> = rest.split('/').collect();
        let last = parts.len().saturating_sub(1);
        let mut seen_rest = false;
        for (position, part) in parts.iter().enumerate() {
            let segment = match *part {
                "{*}" | "{**}" if seen_rest => {
                    return Err(alloc::format!(
                        "invalid path template `{value}`: no `{{*}}` or `{{**}}` may follow `{{**}}`"
                    ))
                }
                "{*}" => TemplateSegment::One,
                "{**}" => {
                    seen_rest = true;
                    TemplateSegment::Rest
                }
                "" if position == last => TemplateSegment::Literal(String::new()),
                literal if literal.is_empty() || !literal.bytes().all(is_template_char) => {
                    return Err(alloc::format!(
                        "invalid path template `{value}`: segment `{literal}` must be `{{*}}`, `{{**}}`, or a non-empty literal of letters, digits and `-._~%!$&'()+,;:@` (what Envoy's uri_template accepts)"
                    ))
                }
                literal => TemplateSegment::Literal(literal.to_string()),
            };
            segments.push(segment);
        }
        Ok(PathPattern::Template(segments))
    }

    /// Whether the normalized path (no query or fragment) matches.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathPattern::Plain(pattern) => pattern.matches(path, false),
            PathPattern::Template(segments) => {
                let Some(rest) = path.strip_prefix('/') else {
                    return false;
                };
                let parts: Vec<&str> = rest.split('/').collect();
                template_matches(segments, &parts)
            }
        }
    }
}

/// Matches template segments against path segments, trying every number of segments
/// `{**}` can take (the reference reading; the compiled index walks a trie instead).
fn template_matches(segments: &[TemplateSegment], parts: &[&str]) -> bool {
    let template_text = |part: &str| part.bytes().all(is_template_char);
    let Some((first, others)) = segments.split_first() else {
        return parts.is_empty();
    };
    match first {
        TemplateSegment::Rest => (1..=parts.len()).any(|taken| {
            parts
                .get(..taken)
                .is_some_and(|head| head.iter().all(|part| template_text(part)))
                && parts
                    .get(taken..)
                    .is_some_and(|tail| template_matches(others, tail))
        }),
        TemplateSegment::One | TemplateSegment::Literal(_) => {
            let Some((head, tail)) = parts.split_first() else {
                return false;
            };
            let head_matches = match first {
                TemplateSegment::Literal(text) => head == text,
                _ => !head.is_empty() && template_text(head),
            };
            head_matches && template_matches(others, tail)
        }
    }
}

/// An IPv4 or IPv6 block, kept as an IPv6 network (IPv4 mapped into `::ffff:0:0/96`)
/// with its family: as in Envoy's `CidrRange`, an address matches only blocks of its own
/// family, so `::/0` and `::ffff:10.0.0.0/104` never hold an IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpBlock {
    /// Whether the block was written as IPv4.
    pub ipv4: bool,
    /// The network address with host bits cleared.
    pub network: u128,
    /// Prefix length in IPv6 terms (an IPv4 `/24` is 120).
    pub prefix_len: u8,
}

impl IpBlock {
    /// Parses `10.0.0.0/8`, `10.1.2.3`, `2001:db8::/32` or `::1`.
    pub fn parse(value: &str) -> Result<IpBlock, String> {
        let (address, length) = match value.split_once('/') {
            Some((address, length)) => (address, Some(length)),
            None => (value, None),
        };
        let ip: IpAddr = address
            .parse()
            .map_err(|_| alloc::format!("invalid IP address or CIDR `{value}`"))?;
        let (max, offset) = match ip {
            IpAddr::V4(_) => (32u8, 96u8),
            IpAddr::V6(_) => (128u8, 0u8),
        };
        let length = match length {
            None => max,
            Some(text) => match text.parse::<u8>() {
                Ok(length) if length <= max && !text.starts_with('+') => length,
                _ => return Err(alloc::format!("invalid CIDR prefix length in `{value}`")),
            },
        };
        let prefix_len = length + offset;
        Ok(IpBlock {
            ipv4: ip.is_ipv4(),
            network: to_u128(ip) & mask(prefix_len),
            prefix_len,
        })
    }

    /// Whether the address lies inside the block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.ipv4 && to_u128(ip) & mask(self.prefix_len) == self.network
    }
}

/// The address as an IPv6 number (IPv4 mapped into `::ffff:0:0/96`).
pub fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The network mask of a prefix length.
pub fn mask(prefix_len: u8) -> u128 {
    match prefix_len {
        0 => 0,
        len if len >= 128 => u128::MAX,
        len => u128::MAX << (128 - u32::from(len)),
    }
}

/// Parses a port as Istio writes it: a decimal string from 1 to 65535.
pub fn parse_port(value: &str) -> Result<u16, String> {
    if value.is_empty() || !value.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(alloc::format!(
            "invalid port `{value}`: must be a number from 1 to 65535"
        ));
    }
    match value.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(alloc::format!(
            "invalid port `{value}`: must be a number from 1 to 65535"
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn the_template_character_table_is_envoys_class() {
        for byte in 0..=255u8 {
            let expected = byte.is_ascii_alphanumeric() || b"-._~%!$&'()+,;:@".contains(&byte);
            assert_eq!(is_template_char(byte), expected, "byte {byte:#04x}");
        }
    }

    #[test]
    fn string_patterns_follow_istio() {
        assert_eq!(StringPattern::parse("*"), StringPattern::Presence);
        assert_eq!(
            StringPattern::parse("*abc"),
            StringPattern::Suffix("abc".into())
        );
        assert_eq!(
            StringPattern::parse("abc*"),
            StringPattern::Prefix("abc".into())
        );
        assert_eq!(
            StringPattern::parse("a*c"),
            StringPattern::Exact("a*c".into())
        );
        assert!(StringPattern::parse("Ex*").matches("example", true));
        assert!(!StringPattern::parse("Ex*").matches("example", false));
        assert!(!StringPattern::Presence.matches("", false));
    }

    #[test]
    fn templates_validate_and_match() {
        let one = PathPattern::parse("/v1/{*}/items").unwrap();
        assert!(one.matches("/v1/42/items"));
        assert!(!one.matches("/v1//items"));
        assert!(!one.matches("/v1/4/2/items"));
        let rest = PathPattern::parse("/v1/{**}").unwrap();
        assert!(rest.matches("/v1/"));
        assert!(rest.matches("/v1/a/b"));
        assert!(!rest.matches("/v1"));
        // Envoy's character class: `*`, `=`, `[`, `]` and others never match a glob.
        assert!(!one.matches("/v1/a*b/items"));
        assert!(!one.matches("/v1/a=b/items"));
        assert!(!rest.matches("/v1/a/[x]"));
        // `{**}` in the middle takes one or more segments, empty ones included.
        let middle = PathPattern::parse("/store/{**}/cart").unwrap();
        assert!(middle.matches("/store/a/b/cart"));
        assert!(middle.matches("/store//cart"));
        assert!(!middle.matches("/store/cart"));
        assert!(PathPattern::parse("/a/{**}/{*}").is_err());
        assert!(PathPattern::parse("/a/{**}/b/{**}").is_err());
        assert!(PathPattern::parse("/a//{*}").is_err());
        assert!(PathPattern::parse("/a=b/{*}").is_err());
        assert!(PathPattern::parse("/a/{*}/").unwrap().matches("/a/b/"));
        assert!(PathPattern::parse("/a{*}").is_err());
        assert!(PathPattern::parse("/a/*/b").unwrap().matches("/a/*/b"));
        assert!(!PathPattern::parse("/a/*/b").unwrap().matches("/a/x/b"));
        assert!(PathPattern::parse("a/{*}").is_err());
    }

    #[test]
    fn ip_blocks() {
        let block = IpBlock::parse("10.0.0.0/8").unwrap();
        assert!(block.contains("10.2.3.4".parse().unwrap()));
        assert!(!block.contains("11.2.3.4".parse().unwrap()));
        // Envoy never matches across address families.
        assert!(!IpBlock::parse("::/0")
            .unwrap()
            .contains("1.2.3.4".parse().unwrap()));
        assert!(!IpBlock::parse("::ffff:10.0.0.0/104")
            .unwrap()
            .contains("10.1.2.3".parse().unwrap()));
        assert!(!IpBlock::parse("0.0.0.0/0")
            .unwrap()
            .contains("::1".parse().unwrap()));
        assert!(IpBlock::parse("::/0")
            .unwrap()
            .contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(IpBlock::parse("10.0.0.0/33").is_err());
        assert!(IpBlock::parse("10.0.0/8").is_err());
        assert!(IpBlock::parse("2001:db8::/32")
            .unwrap()
            .contains("2001:db8::1".parse().unwrap()));
    }

    #[test]
    fn ports() {
        assert_eq!(parse_port("8080"), Ok(8080));
        assert!(parse_port("0").is_err());
        assert!(parse_port("65536").is_err());
        assert!(parse_port("+80").is_err());
        assert!(parse_port("").is_err());
    }
}
