//! `x-forwarded-client-cert`, as Envoy writes it: comma-separated elements, one per
//! proxy hop, each `Key=value` pairs separated by `;`, values optionally double-quoted
//! (quoted values may contain `,`, `;` and `\"`).

/// The `URI=` values of the last element: the one the nearest hop appended. `None` when
/// the header is malformed (an unterminated quote), so a forged header can never be
/// half-read.
pub fn nearest_hop_uris(header: &str) -> Option<Vec<String>> {
    let elements = split_outside_quotes(header, ',')?;
    let last = elements.last()?;
    let mut uris = Vec::new();
    for pair in split_outside_quotes(last, ';')? {
        let Some((key, value)) = pair.split_once('=') else {
            continue;
        };
        if key.trim().eq_ignore_ascii_case("uri") {
            uris.push(unquote(value.trim())?);
        }
    }
    Some(uris)
}

fn split_outside_quotes(text: &str, separator: char) -> Option<Vec<&str>> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let mut escaped = false;
    for (at, ch) in text.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match ch {
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == separator && !quoted => {
                parts.push(text.get(start..at)?);
                start = at + c.len_utf8();
            }
            _ => {}
        }
    }
    if quoted {
        return None;
    }
    parts.push(text.get(start..)?);
    Some(parts)
}

fn unquote(value: &str) -> Option<String> {
    let Some(inner) = value.strip_prefix('"') else {
        return Some(value.to_string());
    };
    let inner = inner.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(ch) = chars.next() {
        if ch == '\\' {
            out.push(chars.next()?);
        } else {
            out.push(ch);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn takes_the_nearest_hop() {
        let header = "By=spiffe://cluster.local/ns/a/sa/gw;URI=spiffe://cluster.local/ns/a/sa/client,By=spiffe://cluster.local/ns/b/sa/svc;Hash=abc;Subject=\"CN=x,OU=y\";URI=spiffe://cluster.local/ns/shop/sa/frontend";
        assert_eq!(
            nearest_hop_uris(header).unwrap(),
            vec!["spiffe://cluster.local/ns/shop/sa/frontend"]
        );
    }

    #[test]
    fn quoted_separators_and_malformed_input() {
        assert_eq!(
            nearest_hop_uris("Subject=\"a,b;c\";URI=\"spiffe://td/x\"").unwrap(),
            vec!["spiffe://td/x"]
        );
        assert!(nearest_hop_uris("URI=\"spiffe://td/x").is_none());
        assert_eq!(nearest_hop_uris("Hash=abc").unwrap(), Vec::<String>::new());
    }
}
