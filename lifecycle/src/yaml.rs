//! Writing YAML by hand: every string is a double-quoted scalar with JSON-style escapes,
//! which YAML reads back exactly.

/// `text` as a double-quoted YAML scalar. Printable characters are kept; quotes,
/// backslashes, control characters, and the characters YAML treats as line breaks or
/// byte-order marks are escaped.
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for ch in text.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20
                || (0x7f..=0x9f).contains(&(c as u32))
                || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}') =>
            {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A comment's text on one line (line breaks and control characters become spaces).
pub fn comment_text(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn quoted_strings_read_back() {
        for text in [
            "plain",
            "/v1/{*}",
            "a \"quoted\" \\ value",
            "line\nbreak\ttab",
            "\u{1}\u{7f}\u{85}\u{2028}",
            "ünïcödé ✓ 😀",
            "# not a comment",
            "key: value",
            "",
        ] {
            let yaml = format!("value: {}\n", quote(text));
            let documents = crate::sources::parse_documents(&yaml).unwrap();
            assert_eq!(documents[0].value["value"], text, "{yaml}");
        }
    }
}
