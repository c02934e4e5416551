//! One test (at least) per istiod generator, plus the rule and model plumbing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use serde_json::{json, Value};

use super::*;
use crate::policy::{Condition, Operation, Rule as PolicyRule, Source};

fn s(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| v.to_string()).collect()
}

fn authenticated(m: Value) -> Value {
    json!({"authenticated": {"principal_name": m}})
}

fn jwt(claim: &str, m: Value) -> Value {
    json!({"metadata": {"filter": "envoy.filters.http.jwt_authn",
        "path": [{"key": "payload"}, {"key": claim}], "value": {"string_match": m}}})
}

#[test]
fn dest_ip() {
    assert_eq!(
        Generator::DestIp.permission("10.0.0.1").unwrap(),
        json!({"destination_ip": {"address_prefix": "10.0.0.1", "prefix_len": 32}})
    );
    assert_eq!(
        Generator::DestIp.permission("10.1.2.3/8").unwrap(),
        json!({"destination_ip": {"address_prefix": "10.1.2.3", "prefix_len": 8}})
    );
    assert_eq!(
        Generator::DestIp.permission("2001:DB8:0::1").unwrap(),
        json!({"destination_ip": {"address_prefix": "2001:db8::1", "prefix_len": 128}})
    );
    for bad in [
        "",
        "10.0.0",
        "10.0.0.1/33",
        "10.0.0.1/",
        "10.0.0.1/08",
        "10.0.0.1/+8",
        "x",
    ] {
        assert!(Generator::DestIp.permission(bad).is_err(), "{bad}");
    }
    assert!(Generator::DestIp.principal("", "10.0.0.1").is_err());
}

#[test]
fn dest_port() {
    assert_eq!(
        Generator::DestPort.permission("8080").unwrap(),
        json!({"destination_port": 8080})
    );
    assert_eq!(
        Generator::DestPort.permission("0080").unwrap(),
        json!({"destination_port": 80})
    );
    assert_eq!(
        Generator::DestPort.permission("0").unwrap(),
        json!({"destination_port": 0})
    );
    for bad in ["65536", "+80", "-1", "", "80a", "99999999999"] {
        assert!(Generator::DestPort.permission(bad).is_err(), "{bad}");
    }
}

#[test]
fn conn_sni() {
    assert_eq!(
        Generator::ConnSni.permission("*.example.com").unwrap(),
        json!({"requested_server_name": {"suffix": ".example.com"}})
    );
    assert_eq!(
        Generator::ConnSni.permission("*").unwrap(),
        json!({"requested_server_name": {"safe_regex": {"regex": ".+"}}})
    );
}

#[test]
fn envoy_filter() {
    let key = "experimental.envoy.filters.a.b[c]";
    assert_eq!(
        Generator::EnvoyFilter
            .extended_permission(key, &s(&["x", "[y]"]))
            .unwrap()
            .unwrap(),
        json!({"metadata": {"filter": "envoy.filters.a.b", "path": [{"key": "c"}], "value": {
        "or_match": {"value_matchers": [
            {"string_match": {"exact": "x"}},
            {"list_match": {"one_of": {"string_match": {"exact": "y"}}}}
        ]}}}})
    );
    assert_eq!(
        Generator::EnvoyFilter
            .extended_permission(key, &s(&["x*"]))
            .unwrap()
            .unwrap(),
        json!({"metadata": {"filter": "envoy.filters.a.b", "path": [{"key": "c"}],
            "value": {"string_match": {"prefix": "x"}}}})
    );
    assert!(Generator::EnvoyFilter
        .extended_permission("experimental.envoy.filters.a", &s(&["x"]))
        .is_err());
}

#[test]
fn src_ip_and_remote_ip() {
    assert_eq!(
        Generator::SrcIp.principal("", "1.2.3.0/24").unwrap(),
        json!({"direct_remote_ip": {"address_prefix": "1.2.3.0", "prefix_len": 24}})
    );
    assert_eq!(
        Generator::RemoteIp.principal("", "::1").unwrap(),
        json!({"remote_ip": {"address_prefix": "::1", "prefix_len": 128}})
    );
    assert!(Generator::SrcIp.principal("", "1.2.3.4/40").is_err());
    assert!(Generator::SrcIp.permission("1.2.3.4").is_err());
}

#[test]
fn src_namespace() {
    assert_eq!(
        Generator::SrcNamespace.principal("", "ns.a").unwrap(),
        authenticated(json!({"safe_regex": {"regex": r".*/ns/ns\.a/.*"}}))
    );
    assert_eq!(
        Generator::SrcNamespace.principal("", "*").unwrap(),
        authenticated(json!({"safe_regex": {"regex": ".*/ns/.*/.*"}}))
    );
    assert_eq!(
        Generator::SrcNamespace.principal("", "a*b*").unwrap(),
        authenticated(json!({"safe_regex": {"regex": ".*/ns/a.*b.*/.*"}}))
    );
}

#[test]
fn src_service_account() {
    let g = Generator::SrcServiceAccount("foo".into());
    assert_eq!(
        g.principal("", "sa-only").unwrap(),
        authenticated(
            json!({"safe_regex": {"regex": "spiffe://.+/ns/foo/(.+/|)sa/sa-only(/.+)?"}})
        )
    );
    assert_eq!(
        g.principal("", "my.ns/my-sa").unwrap(),
        authenticated(
            json!({"safe_regex": {"regex": r"spiffe://.+/ns/my\.ns/(.+/|)sa/my-sa(/.+)?"}})
        )
    );
}

#[test]
fn src_trust_domain() {
    let g = Generator::SrcTrustDomain;
    assert_eq!(
        g.principal("", "*").unwrap(),
        authenticated(json!({"prefix": "spiffe://"}))
    );
    assert_eq!(
        g.principal("", "td.a").unwrap(),
        authenticated(json!({"prefix": "spiffe://td.a/"}))
    );
    assert_eq!(
        g.principal("", "*.corp").unwrap(),
        authenticated(json!({"safe_regex": {"regex": r"spiffe://[^/]*\.corp/.*"}}))
    );
    assert_eq!(
        g.principal("", "bad*").unwrap(),
        authenticated(json!({"safe_regex": {"regex": "spiffe://bad[^/]*/.*"}}))
    );
}

#[test]
fn src_principal() {
    let g = Generator::SrcPrincipal;
    assert_eq!(
        g.principal("", "td/ns/a/sa/b").unwrap(),
        authenticated(json!({"exact": "spiffe://td/ns/a/sa/b"}))
    );
    assert_eq!(
        g.principal("", "*").unwrap(),
        authenticated(json!({"safe_regex": {"regex": ".+"}}))
    );
    assert_eq!(
        g.principal("", "td/ns/a/*").unwrap(),
        authenticated(json!({"prefix": "spiffe://td/ns/a/"}))
    );
    assert_eq!(
        g.principal("", "*/sa/b").unwrap(),
        authenticated(json!({"safe_regex": {"regex": "spiffe://.*/sa/b"}}))
    );
    // A value written with the scheme gets a second one: it can never match.
    assert_eq!(
        g.principal("", "spiffe://td/ns/a/sa/b").unwrap(),
        authenticated(json!({"exact": "spiffe://spiffe://td/ns/a/sa/b"}))
    );
}

#[test]
fn request_principal_forms() {
    let any = || json!({"safe_regex": {"regex": ".+"}});
    let case = |value: &str, iss: Value, sub: Value| {
        assert_eq!(
            Generator::RequestPrincipal
                .extended_principal("", &s(&[value]))
                .unwrap()
                .unwrap(),
            json!({"and_ids": {"ids": [jwt("iss", iss), jwt("sub", sub)]}}),
            "{value}"
        );
    };
    case(
        "https://idp/a/alice",
        json!({"exact": "https://idp/a"}),
        json!({"exact": "alice"}),
    );
    case("*", any(), any());
    case("*/alice", any(), json!({"exact": "alice"}));
    case(
        "*idp/alice",
        json!({"suffix": "idp"}),
        json!({"exact": "alice"}),
    );
    case("*-suffix", any(), json!({"suffix": "-suffix"}));
    case("https://idp/*", json!({"exact": "https://idp"}), any());
    case(
        "https://idp/al*",
        json!({"exact": "https://idp"}),
        json!({"prefix": "al"}),
    );
    case("prefix-*", json!({"prefix": "prefix-"}), any());
    // No `/`: the whole value is the issuer and the subject must be empty.
    case("issuer", json!({"exact": "issuer"}), json!({"exact": ""}));
    // An empty subject.
    case("iss/", json!({"exact": "iss"}), json!({"exact": ""}));
    // Several values are an OR.
    let two = Generator::RequestPrincipal
        .extended_principal("", &s(&["a/b", "c/d"]))
        .unwrap()
        .unwrap();
    assert_eq!(two["or_ids"]["ids"].as_array().unwrap().len(), 2);
    assert_eq!(
        Generator::RequestPrincipal
            .extended_principal("", &[])
            .unwrap(),
        None
    );
}

#[test]
fn request_audiences_and_presenter() {
    let expected = |claim: &str| {
        let v = json!({"or_match": {"value_matchers": [
            {"string_match": {"exact": "a"}}, {"string_match": {"prefix": "b"}}]}});
        json!({"metadata": {"filter": "envoy.filters.http.jwt_authn",
            "path": [{"key": "payload"}, {"key": claim}],
            "value": {"or_match": {"value_matchers": [{"list_match": {"one_of": v}}, v]}}}})
    };
    assert_eq!(
        Generator::RequestAudiences
            .extended_principal("", &s(&["a", "b*"]))
            .unwrap()
            .unwrap(),
        expected("aud")
    );
    assert_eq!(
        Generator::RequestPresenter
            .extended_principal("", &s(&["a", "b*"]))
            .unwrap()
            .unwrap(),
        expected("azp")
    );
}

#[test]
fn request_claims() {
    let v = json!({"string_match": {"exact": "x"}});
    assert_eq!(
        Generator::RequestClaim
            .extended_principal("request.auth.claims[a][b]", &s(&["x"]))
            .unwrap()
            .unwrap(),
        json!({"metadata": {"filter": "envoy.filters.http.jwt_authn",
            "path": [{"key": "payload"}, {"key": "a"}, {"key": "b"}],
            "value": {"or_match": {"value_matchers": [{"list_match": {"one_of": v}}, v]}}}})
    );
    assert!(Generator::RequestClaim
        .extended_principal("request.auth.claimsx", &s(&["x"]))
        .is_err());
    assert_eq!(
        extract_name_in_nested_brackets("[a][b]").unwrap(),
        s(&["a", "b"])
    );
    assert_eq!(extract_name_in_nested_brackets("[a]").unwrap(), s(&["a"]));
    assert_eq!(
        extract_name_in_nested_brackets("[a[b]").unwrap(),
        s(&["a[b"])
    );
    assert_eq!(
        extract_name_in_nested_brackets("[a]x]").unwrap(),
        s(&["a]x"])
    );
    assert!(extract_name_in_nested_brackets("a").is_err());
}

#[test]
fn request_header() {
    assert_eq!(
        Generator::RequestHeader
            .principal("request.headers[X-Env]", "prod")
            .unwrap(),
        json!({"header": {"name": "X-Env", "string_match": {"exact": "prod"}}})
    );
    assert_eq!(
        Generator::RequestHeader
            .principal("request.headers[x]", "*")
            .unwrap(),
        json!({"header": {"name": "x", "present_match": true}})
    );
    // Commas are not special.
    assert_eq!(
        Generator::RequestHeader
            .principal("request.headers[x]", "a,b")
            .unwrap(),
        json!({"header": {"name": "x", "string_match": {"exact": "a,b"}}})
    );
    assert!(Generator::RequestHeader
        .principal("request.headers", "a")
        .is_err());
}

#[test]
fn host_method_path() {
    assert_eq!(
        Generator::Host.permission("*.Example.com").unwrap(),
        json!({"header": {"name": ":authority", "string_match": {"suffix": ".Example.com", "ignore_case": true}}})
    );
    assert_eq!(
        Generator::Method.permission("GET").unwrap(),
        json!({"header": {"name": ":method", "string_match": {"exact": "GET"}}})
    );
    assert_eq!(
        Generator::Path.permission("/api/*").unwrap(),
        json!({"url_path": {"path": {"prefix": "/api/"}}})
    );
    assert_eq!(
        Generator::Path.permission("/a/{*}/b/{**}").unwrap(),
        json!({"uri_template": {"name": "uri-template", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.path.match.uri_template.v3.UriTemplateMatchConfig",
            "path_template": "/a/*/b/**"}}})
    );
    assert!(Generator::Path.principal("", "/a").is_err());
}

fn rule_with(when: Vec<Condition>) -> PolicyRule {
    PolicyRule {
        from: vec![],
        to: vec![],
        when,
    }
}

#[test]
fn allow_rule_with_an_invalid_value_is_dropped_deny_is_widened() {
    let rule = PolicyRule {
        from: vec![],
        to: vec![Some(Operation {
            ports: s(&["80", "bad"]),
            ..Default::default()
        })],
        when: vec![],
    };
    let model = Model::new("ns", &rule).unwrap();
    assert!(model.generate(RbacAction::Allow).is_err());
    assert_eq!(
        model.generate(RbacAction::Deny).unwrap()["permissions"],
        json!([{"and_rules": {"rules": [{"or_rules": {"rules": [{"destination_port": 80}]}}]}}])
    );
    // Nothing valid left: the constraint disappears and the rule matches any request.
    let rule = PolicyRule {
        from: vec![],
        to: vec![Some(Operation {
            not_ports: s(&["bad"]),
            ..Default::default()
        })],
        when: vec![],
    };
    assert_eq!(
        Model::new("ns", &rule)
            .unwrap()
            .generate(RbacAction::Log)
            .unwrap()["permissions"],
        json!([{"and_rules": {"rules": [{"any": true}]}}])
    );
}

#[test]
fn unknown_when_key_fails_the_model() {
    let rule = rule_with(vec![Condition {
        key: "nope".into(),
        values: s(&["x"]),
        not_values: vec![],
    }]);
    assert!(Model::new("ns", &rule).is_err());
}

#[test]
fn empty_rule_is_any_any() {
    let model = Model::new("ns", &PolicyRule::default()).unwrap();
    assert_eq!(
        model.generate(RbacAction::Allow).unwrap(),
        json!({"permissions": [{"and_rules": {"rules": [{"any": true}]}}],
               "principals": [{"and_ids": {"ids": [{"any": true}]}}]})
    );
}

#[test]
fn order_of_fields_and_conditions() {
    let rule = PolicyRule {
        from: vec![Some(Source {
            ip_blocks: s(&["1.1.1.1"]),
            principals: s(&["td/ns/a/sa/b"]),
            namespaces: s(&["a"]),
            ..Default::default()
        })],
        to: vec![Some(Operation {
            ports: s(&["80"]),
            hosts: s(&["h"]),
            paths: s(&["/p"]),
            methods: s(&["GET"]),
            ..Default::default()
        })],
        when: vec![
            Condition {
                key: "destination.port".into(),
                values: s(&["81"]),
                not_values: vec![],
            },
            Condition {
                key: "request.headers[x]".into(),
                values: vec![],
                not_values: s(&["v"]),
            },
        ],
    };
    let out = Model::new("ns", &rule)
        .unwrap()
        .generate(RbacAction::Allow)
        .unwrap();
    let permission_kinds: Vec<String> = out["permissions"][0]["and_rules"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let inner = &r["or_rules"]["rules"][0];
            inner.as_object().unwrap().keys().next().unwrap().clone()
                + inner["header"]["name"].as_str().unwrap_or("")
        })
        .collect();
    assert_eq!(
        permission_kinds,
        s(&[
            "header:authority",
            "header:method",
            "url_path",
            "destination_port",
            "destination_port"
        ])
    );
    let principal_ids = out["principals"][0]["and_ids"]["ids"].as_array().unwrap();
    assert_eq!(principal_ids.len(), 4);
    assert_eq!(
        principal_ids[0]["or_ids"]["ids"][0]["authenticated"]["principal_name"],
        json!({"exact": "spiffe://td/ns/a/sa/b"})
    );
    assert!(principal_ids[1]["or_ids"]["ids"][0]["authenticated"].is_object());
    assert!(principal_ids[2]["or_ids"]["ids"][0]["direct_remote_ip"].is_object());
    assert_eq!(
        principal_ids[3],
        json!({"not_id": {"or_ids": {"ids": [{"header": {"name": "x", "string_match": {"exact": "v"}}}]}}})
    );
}

#[test]
fn from_without_source_and_to_without_operation() {
    let rule = PolicyRule {
        from: vec![None],
        to: vec![None],
        when: vec![],
    };
    let out = Model::new("ns", &rule)
        .unwrap()
        .generate(RbacAction::Allow)
        .unwrap();
    assert_eq!(
        out["permissions"],
        json!([{"and_rules": {"rules": [{"any": true}]}}])
    );
    assert_eq!(
        out["principals"],
        json!([{"and_ids": {"ids": [{"any": true}]}}])
    );
}

#[test]
fn shared_when_principals_are_migrated_once_per_source() {
    // istiod shares the `when` rules between the `from` copies by pointer, so trust domain
    // aliases are applied to them once per `from` entry (duplicates, same meaning).
    let rule = PolicyRule {
        from: vec![
            Some(Source {
                namespaces: s(&["a"]),
                ..Default::default()
            }),
            Some(Source {
                namespaces: s(&["b"]),
                ..Default::default()
            }),
        ],
        to: vec![],
        when: vec![Condition {
            key: "source.principal".into(),
            values: s(&["td1/ns/x/sa/y"]),
            not_values: vec![],
        }],
    };
    let mut model = Model::new("ns", &rule).unwrap();
    model.migrate_trust_domain(&Bundle::new("td1", &s(&["td2"])));
    let out = model.generate(RbacAction::Allow).unwrap();
    let ids = &out["principals"][0]["and_ids"]["ids"][1]["or_ids"]["ids"];
    assert_eq!(ids.as_array().unwrap().len(), 4);
    assert_eq!(
        ids,
        &out["principals"][1]["and_ids"]["ids"][1]["or_ids"]["ids"]
    );
}
