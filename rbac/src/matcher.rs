//! Envoy matchers as istiod builds them: `pilot/pkg/security/authz/matcher/{string,header,
//! metadata,template}.go`. Each function returns the matcher's proto3 JSON form (snake_case
//! field names, default values left out, as `protojson` would print them).

use serde_json::{json, Map, Value};

/// The `@type` of the URI template path matcher's configuration.
pub(crate) const URI_TEMPLATE_TYPE: &str =
    "type.googleapis.com/envoy.extensions.path.match.uri_template.v3.UriTemplateMatchConfig";

/// Go's `regexp.QuoteMeta`: a backslash before each of `\.+*?()|[]{}^$`.
pub(crate) fn quote_meta(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn with_ignore_case(kind: &str, value: &str, ignore_case: bool) -> Value {
    let mut map = Map::new();
    map.insert(kind.to_string(), Value::String(value.to_string()));
    if ignore_case {
        map.insert("ignore_case".to_string(), Value::Bool(true));
    }
    Value::Object(map)
}

/// `StringMatcherExact`.
pub(crate) fn string_exact(exact: &str, ignore_case: bool) -> Value {
    with_ignore_case("exact", exact, ignore_case)
}

/// `StringMatcherPrefix`.
pub(crate) fn string_prefix(prefix: &str, ignore_case: bool) -> Value {
    with_ignore_case("prefix", prefix, ignore_case)
}

/// `StringMatcherSuffix`.
pub(crate) fn string_suffix(suffix: &str, ignore_case: bool) -> Value {
    with_ignore_case("suffix", suffix, ignore_case)
}

/// `StringMatcherRegex`: an RE2 `safe_regex` (Envoy matches it against the whole value).
pub(crate) fn string_regex(regex: &str) -> Value {
    json!({"safe_regex": {"regex": regex}})
}

/// `StringMatcher`: `StringMatcherWithPrefix` with no prefix.
pub(crate) fn string_matcher(value: &str) -> Value {
    string_matcher_with_prefix(value, "")
}

/// `StringMatcherWithPrefix`: `*` alone is the regex `.+` (the prefix is then dropped), a
/// leading `*` a suffix match (a regex when there is a prefix), a trailing `*` a prefix
/// match, anything else an exact match; the prefix goes in front of the literal part.
pub(crate) fn string_matcher_with_prefix(value: &str, prefix: &str) -> Value {
    if value == "*" {
        return string_regex(".+");
    }
    if let Some(rest) = value.strip_prefix('*') {
        if prefix.is_empty() {
            return string_suffix(rest, false);
        }
        return string_regex(&format!("{prefix}.*{}", quote_meta(rest)));
    }
    if let Some(rest) = value.strip_suffix('*') {
        return string_prefix(&format!("{prefix}{rest}"), false);
    }
    string_exact(&format!("{prefix}{value}"), false)
}

/// `OrMatcher`: one matcher stays itself, several become an `or_match`.
pub(crate) fn or_matcher(mut matchers: Vec<Value>) -> Value {
    if matchers.len() == 1 {
        if let Some(only) = matchers.pop() {
            return only;
        }
    }
    json!({"or_match": {"value_matchers": matchers}})
}

/// `StringOrMatcher`: a value matcher for any of the values, each through
/// [`string_matcher`].
pub(crate) fn string_or_matcher(values: &[String]) -> Value {
    or_matcher(
        values
            .iter()
            .map(|value| json!({"string_match": string_matcher(value)}))
            .collect(),
    )
}

fn header(name: &str, value: &str, ignore_case: bool) -> Value {
    // `*` first: an empty prefix or suffix is invalid in a HeaderMatcher.
    if value == "*" {
        return json!({"name": name, "present_match": true});
    }
    let string_match = if let Some(rest) = value.strip_prefix('*') {
        string_suffix(rest, ignore_case)
    } else if let Some(rest) = value.strip_suffix('*') {
        string_prefix(rest, ignore_case)
    } else {
        string_exact(value, ignore_case)
    };
    json!({"name": name, "string_match": string_match})
}

/// `HeaderMatcher`: `*` is a presence match, otherwise a case-sensitive string match.
pub(crate) fn header_matcher(name: &str, value: &str) -> Value {
    header(name, value, false)
}

/// `HostMatcher`: as [`header_matcher`], ignoring case.
pub(crate) fn host_matcher(name: &str, value: &str) -> Value {
    header(name, value, true)
}

/// `PathMatcher`: a `url_path` matcher's body.
pub(crate) fn path_matcher(path: &str) -> Value {
    json!({"path": string_matcher(path)})
}

/// `PathTemplateMatcher`: the `UriTemplateMatchConfig` (with its `@type`, as the `Any`
/// istiod wraps it in) for a path with `{*}` / `{**}`, which become `*` / `**`.
pub(crate) fn path_template_matcher(path: &str) -> Value {
    let template = path.replace("{**}", "**").replace("{*}", "*");
    json!({"@type": URI_TEMPLATE_TYPE, "path_template": template})
}

fn key_path(keys: &[String]) -> Value {
    Value::Array(keys.iter().map(|key| json!({"key": key})).collect())
}

/// `MetadataValueMatcher`: one key under a filter's metadata.
pub(crate) fn metadata_value_matcher(filter: &str, key: &str, value: Value) -> Value {
    json!({"filter": filter, "path": [{"key": key}], "value": value})
}

/// `MetadataListValueMatcher`: a path of keys, the value a list with an element matching
/// `value`; with `use_extended_jwt`, a value that is not a list but matches `value` itself
/// also counts (an `or_match` of both).
pub(crate) fn metadata_list_value_matcher(
    filter: &str,
    keys: &[String],
    value: Value,
    use_extended_jwt: bool,
) -> Value {
    let list = json!({"list_match": {"one_of": value.clone()}});
    let matched = if use_extended_jwt {
        json!({"or_match": {"value_matchers": [list, value]}})
    } else {
        list
    };
    json!({"filter": filter, "path": key_path(keys), "value": matched})
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn quote_meta_escapes_go_metacharacters() {
        assert_eq!(
            quote_meta("a.b[0]*{x}|^$\\?+()"),
            r"a\.b\[0\]\*\{x\}\|\^\$\\\?\+\(\)"
        );
        assert_eq!(quote_meta("plain-text/ok"), "plain-text/ok");
    }

    #[test]
    fn string_matcher_forms() {
        assert_eq!(string_matcher("*"), json!({"safe_regex": {"regex": ".+"}}));
        assert_eq!(string_matcher("*.com"), json!({"suffix": ".com"}));
        assert_eq!(string_matcher("/api/*"), json!({"prefix": "/api/"}));
        assert_eq!(string_matcher("a*b"), json!({"exact": "a*b"}));
        // Only one `*` is trimmed.
        assert_eq!(string_matcher("**"), json!({"suffix": "*"}));
    }

    #[test]
    fn string_matcher_with_prefix_forms() {
        let p = "spiffe://";
        assert_eq!(
            string_matcher_with_prefix("*", p),
            json!({"safe_regex": {"regex": ".+"}})
        );
        assert_eq!(
            string_matcher_with_prefix("*/ns/a.b", p),
            json!({"safe_regex": {"regex": r"spiffe://.*/ns/a\.b"}})
        );
        assert_eq!(
            string_matcher_with_prefix("td/ns/*", p),
            json!({"prefix": "spiffe://td/ns/"})
        );
        assert_eq!(
            string_matcher_with_prefix("spiffe://td/ns/a/sa/b", p),
            json!({"exact": "spiffe://spiffe://td/ns/a/sa/b"})
        );
    }

    #[test]
    fn header_and_host_matchers() {
        assert_eq!(
            header_matcher(":method", "*"),
            json!({"name": ":method", "present_match": true})
        );
        assert_eq!(
            header_matcher("x", "*-b"),
            json!({"name": "x", "string_match": {"suffix": "-b"}})
        );
        assert_eq!(
            header_matcher("x", "a-*"),
            json!({"name": "x", "string_match": {"prefix": "a-"}})
        );
        assert_eq!(
            header_matcher("x", "a"),
            json!({"name": "x", "string_match": {"exact": "a"}})
        );
        assert_eq!(
            host_matcher(":authority", "A.com"),
            json!({"name": ":authority", "string_match": {"exact": "A.com", "ignore_case": true}})
        );
        assert_eq!(
            host_matcher(":authority", "*.a.com"),
            json!({"name": ":authority", "string_match": {"suffix": ".a.com", "ignore_case": true}})
        );
        assert_eq!(
            host_matcher(":authority", "*"),
            json!({"name": ":authority", "present_match": true})
        );
    }

    #[test]
    fn path_matchers() {
        assert_eq!(path_matcher("/a"), json!({"path": {"exact": "/a"}}));
        assert_eq!(
            path_template_matcher("/{**}/a/{*}"),
            json!({"@type": URI_TEMPLATE_TYPE, "path_template": "/**/a/*"})
        );
    }

    #[test]
    fn or_and_list_matchers() {
        assert_eq!(
            string_or_matcher(&["a".into()]),
            json!({"string_match": {"exact": "a"}})
        );
        assert_eq!(
            string_or_matcher(&["a".into(), "b*".into()]),
            json!({"or_match": {"value_matchers": [
                {"string_match": {"exact": "a"}}, {"string_match": {"prefix": "b"}}]}})
        );
        let v = json!({"string_match": {"exact": "a"}});
        assert_eq!(
            metadata_list_value_matcher("f", &["p".into(), "c".into()], v.clone(), true),
            json!({"filter": "f", "path": [{"key": "p"}, {"key": "c"}], "value": {"or_match": {
                "value_matchers": [{"list_match": {"one_of": v}}, v]}}})
        );
        assert_eq!(
            metadata_list_value_matcher("f", &["p".into()], v.clone(), false),
            json!({"filter": "f", "path": [{"key": "p"}], "value": {"list_match": {"one_of": v}}})
        );
        assert_eq!(
            metadata_value_matcher("f", "k", v.clone()),
            json!({"filter": "f", "path": [{"key": "k"}], "value": v})
        );
    }
}
