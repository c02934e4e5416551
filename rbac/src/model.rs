//! One rule of a policy turned into an Envoy RBAC `Policy`:
//! `pilot/pkg/security/authz/model/{model,generator,permission,principal,util}.go`, for the
//! HTTP filter of a sidecar (not TCP; principals matched with `authenticated`, not filter
//! state).

use std::net::IpAddr;

use serde_json::{json, Value};

use crate::matcher::{
    header_matcher, host_matcher, metadata_list_value_matcher, metadata_value_matcher, or_matcher,
    path_matcher, path_template_matcher, quote_meta, string_exact, string_matcher,
    string_matcher_with_prefix, string_or_matcher, string_prefix, string_regex, string_suffix,
};
use crate::policy;
use crate::trustdomain::Bundle;

/// The RBAC action of the filter being built (`rbacpb.RBAC_Action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RbacAction {
    Allow,
    Deny,
    /// AUDIT policies.
    Log,
}

impl RbacAction {
    /// The proto3 JSON name of the action, `None` for the default (ALLOW).
    pub(crate) fn json_name(self) -> Option<&'static str> {
        match self {
            RbacAction::Allow => None,
            RbacAction::Deny => Some("DENY"),
            RbacAction::Log => Some("LOG"),
        }
    }
}

const ATTR_REQUEST_HEADER: &str = "request.headers";
const ATTR_SRC_IP: &str = "source.ip";
const ATTR_REMOTE_IP: &str = "remote.ip";
const ATTR_SRC_NAMESPACE: &str = "source.namespace";
const ATTR_SRC_SERVICE_ACCOUNT: &str = "source.serviceAccount";
const ATTR_SRC_TRUST_DOMAIN: &str = "source.trustDomain";
const ATTR_SRC_PRINCIPAL: &str = "source.principal";
const ATTR_REQUEST_PRINCIPAL: &str = "request.auth.principal";
const ATTR_REQUEST_AUDIENCES: &str = "request.auth.audiences";
const ATTR_REQUEST_PRESENTER: &str = "request.auth.presenter";
const ATTR_REQUEST_CLAIMS: &str = "request.auth.claims";
const ATTR_DEST_IP: &str = "destination.ip";
const ATTR_DEST_PORT: &str = "destination.port";
const ATTR_CONN_SNI: &str = "connection.sni";
const ATTR_ENVOY_FILTER: &str = "experimental.envoy.filters.";
const METHOD_HEADER: &str = ":method";
const PATH_MATCHER: &str = "path-matcher";
const HOST_HEADER: &str = ":authority";
const SPIFFE_PREFIX: &str = "spiffe://";
const JWT_FILTER: &str = "envoy.filters.http.jwt_authn";
const JWT_PAYLOAD: &str = "payload";

/// istiod's generators, one per attribute. The extended ones (`extendedGenerator`) turn a
/// whole value list into one matcher; the others one value at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Generator {
    DestIp,
    DestPort,
    ConnSni,
    EnvoyFilter,
    SrcIp,
    RemoteIp,
    SrcNamespace,
    SrcTrustDomain,
    /// The namespace a `<name>`-only service account is read in: the policy's.
    SrcServiceAccount(String),
    SrcPrincipal,
    RequestPrincipal,
    RequestAudiences,
    RequestPresenter,
    RequestHeader,
    RequestClaim,
    Host,
    Path,
    Method,
}

impl Generator {
    fn is_extended(&self) -> bool {
        matches!(
            self,
            Generator::EnvoyFilter
                | Generator::RequestPrincipal
                | Generator::RequestAudiences
                | Generator::RequestPresenter
                | Generator::RequestClaim
        )
    }
}

type GenResult<T> = Result<T, String>;

fn unimplemented<T>() -> GenResult<T> {
    Err("unimplemented".to_string())
}

/// `AddrStrToCidrRange`: `a.b.c.d` / IPv6 as a full-length prefix, `addr/len` as written
/// (the address is not masked); the address printed in canonical form.
pub(crate) fn cidr_range(text: &str) -> GenResult<Value> {
    if text.is_empty() {
        return Err("empty address".to_string());
    }
    let (address, length) = match text.split_once('/') {
        Some((address, bits)) => {
            let address: IpAddr = parse_ip(address)?;
            let max = if address.is_ipv4() { 32 } else { 128 };
            // Go's netip.ParsePrefix: decimal digits, no sign, no leading zero, at most the
            // address length.
            let valid = !bits.is_empty()
                && bits.bytes().all(|b| b.is_ascii_digit())
                && (bits == "0" || !bits.starts_with('0'));
            let length: u32 = if valid {
                bits.parse().unwrap_or(u32::MAX)
            } else {
                u32::MAX
            };
            if length > max {
                return Err(format!("netip.ParsePrefix({text:?}): bad bits after slash"));
            }
            (address, length)
        }
        None => {
            let address = parse_ip(text)?;
            (address, if address.is_ipv4() { 32 } else { 128 })
        }
    };
    Ok(json!({"address_prefix": address.to_string(), "prefix_len": length}))
}

fn parse_ip(text: &str) -> GenResult<IpAddr> {
    text.parse::<IpAddr>()
        .map_err(|_| format!("ParseAddr({text:?}): unable to parse IP"))
}

/// `convertToPort`: decimal (`strconv.ParseUint`, leading zeros allowed), at most 65535.
fn convert_to_port(text: &str) -> GenResult<u32> {
    let invalid = || format!("invalid port {text}");
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let trimmed = text.trim_start_matches('0');
    if trimmed.len() > 5 {
        return Err(invalid());
    }
    let port: u32 = if trimmed.is_empty() {
        0
    } else {
        trimmed.parse().map_err(|_| invalid())?
    };
    if port > 65535 {
        return Err(invalid());
    }
    Ok(port)
}

/// `extractNameInBrackets`: `[name]` to `name`.
fn extract_name_in_brackets(text: &str) -> GenResult<String> {
    text.strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .map(str::to_string)
        .ok_or_else(|| format!("expecting format [<NAME>], but found {text}"))
}

/// `extractNameInNestedBrackets`: `[a][b]` to `a`, `b`; anything not a clean run of
/// brackets falls back to [`extract_name_in_brackets`] on the whole text (so `[a[b]` is the
/// one name `a[b`).
fn extract_name_in_nested_brackets(text: &str) -> GenResult<Vec<String>> {
    let bytes = text.as_bytes();
    let find_end = |begin: usize| -> Option<usize> {
        if bytes.get(begin) != Some(&b'[') {
            return None;
        }
        for (i, &b) in bytes.iter().enumerate().skip(begin + 1) {
            if b == b'[' {
                return None;
            }
            if b == b']' {
                return Some(i);
            }
        }
        None
    };
    let mut claims = Vec::new();
    let mut begin = 0;
    while begin < bytes.len() {
        let Some(end) = find_end(begin) else {
            return extract_name_in_brackets(text).map(|name| vec![name]);
        };
        claims.push(text.get(begin + 1..end).unwrap_or_default().to_string());
        begin = end + 1;
    }
    Ok(claims)
}

fn permission_any() -> Value {
    json!({"any": true})
}

fn principal_any() -> Value {
    json!({"any": true})
}

fn principal_authenticated(name: Value) -> Value {
    json!({"authenticated": {"principal_name": name}})
}

fn principal_metadata(metadata: Value) -> Value {
    json!({"metadata": metadata})
}

fn principal_and(ids: Vec<Value>) -> Value {
    json!({"and_ids": {"ids": ids}})
}

fn principal_or(ids: Vec<Value>) -> Value {
    json!({"or_ids": {"ids": ids}})
}

fn principal_not(id: Value) -> Value {
    json!({"not_id": id})
}

fn permission_and(rules: Vec<Value>) -> Value {
    json!({"and_rules": {"rules": rules}})
}

fn permission_or(rules: Vec<Value>) -> Value {
    json!({"or_rules": {"rules": rules}})
}

fn permission_not(rule: Value) -> Value {
    json!({"not_rule": rule})
}

/// `MetadataStringMatcherForJWTClaim`: `payload.<claim>` a string matching `m`.
fn jwt_claim_string(claim: &str, m: Value) -> Value {
    json!({
        "filter": JWT_FILTER,
        "path": [{"key": JWT_PAYLOAD}, {"key": claim}],
        "value": {"string_match": m}
    })
}

/// `MetadataListValueMatcherForJWTClaims`: `payload.<claims...>` a list with an element
/// matching `value`, or itself matching `value` (the extended JWT form).
fn jwt_claims_list(claims: &[String], value: Value) -> Value {
    let mut keys = Vec::with_capacity(claims.len() + 1);
    keys.push(JWT_PAYLOAD.to_string());
    keys.extend(claims.iter().cloned());
    metadata_list_value_matcher(JWT_FILTER, &keys, value, true)
}

/// `serviceAccountRegex`.
fn service_account_regex(default_namespace: &str, value: &str) -> String {
    let (namespace, account) = value.split_once('/').unwrap_or((default_namespace, value));
    format!(
        "spiffe://.+/ns/{}/(.+/|)sa/{}(/.+)?",
        quote_meta(namespace),
        quote_meta(account)
    )
}

impl Generator {
    /// `generator.permission`.
    fn permission(&self, value: &str) -> GenResult<Value> {
        match self {
            Generator::DestIp => Ok(json!({"destination_ip": cidr_range(value)?})),
            Generator::DestPort => Ok(json!({"destination_port": convert_to_port(value)?})),
            Generator::ConnSni => Ok(json!({"requested_server_name": string_matcher(value)})),
            Generator::Host => Ok(json!({"header": host_matcher(HOST_HEADER, value)})),
            Generator::Method => Ok(json!({"header": header_matcher(METHOD_HEADER, value)})),
            Generator::Path => {
                if value.contains("{*}") || value.contains("{**}") {
                    Ok(json!({"uri_template": {
                        "name": "uri-template",
                        "typed_config": path_template_matcher(value)
                    }}))
                } else {
                    Ok(json!({"url_path": path_matcher(value)}))
                }
            }
            _ => unimplemented(),
        }
    }

    /// `generator.principal` (`useAuthenticated`: a sidecar matches the peer certificate).
    fn principal(&self, key: &str, value: &str) -> GenResult<Value> {
        match self {
            Generator::SrcIp => Ok(json!({"direct_remote_ip": cidr_range(value)?})),
            Generator::RemoteIp => Ok(json!({"remote_ip": cidr_range(value)?})),
            Generator::SrcNamespace => {
                let namespace: Vec<String> = value.split('*').map(quote_meta).collect();
                let regex = format!(".*/ns/{}/.*", namespace.join(".*"));
                Ok(principal_authenticated(string_regex(&regex)))
            }
            Generator::SrcServiceAccount(namespace) => Ok(principal_authenticated(string_regex(
                &service_account_regex(namespace, value),
            ))),
            Generator::SrcTrustDomain => {
                let m = if value == "*" {
                    string_prefix(SPIFFE_PREFIX, false)
                } else if !value.contains('*') {
                    string_prefix(&format!("{SPIFFE_PREFIX}{value}/"), false)
                } else {
                    let (before, after) = value.split_once('*').unwrap_or((value, ""));
                    string_regex(&format!(
                        "{SPIFFE_PREFIX}{}[^/]*{}/.*",
                        quote_meta(before),
                        quote_meta(after)
                    ))
                };
                Ok(principal_authenticated(m))
            }
            Generator::SrcPrincipal => Ok(principal_authenticated(string_matcher_with_prefix(
                value,
                SPIFFE_PREFIX,
            ))),
            Generator::RequestHeader => {
                let name =
                    extract_name_in_brackets(key.strip_prefix(ATTR_REQUEST_HEADER).unwrap_or(key))?;
                Ok(json!({"header": header_matcher(&name, value)}))
            }
            _ => unimplemented(),
        }
    }

    /// `extendedGenerator.extendedPermission`.
    fn extended_permission(&self, key: &str, values: &[String]) -> GenResult<Option<Value>> {
        match self {
            Generator::EnvoyFilter => {
                // `experimental.envoy.filters.a.b[c]` -> `envoy.filters.a.b`, `c`.
                let trimmed = key.strip_prefix("experimental.").unwrap_or(key);
                let trimmed = trimmed.strip_suffix(']').unwrap_or(trimmed);
                let Some((filter, field)) = trimmed.split_once('[') else {
                    return Err(format!("invalid key: {key}"));
                };
                let matchers = values
                    .iter()
                    .map(|value| {
                        if value.starts_with('[') && value.ends_with(']') {
                            let inner = value.trim_matches(|c| c == '[' || c == ']');
                            json!({"list_match": {"one_of": {"string_match": string_matcher(inner)}}})
                        } else {
                            json!({"string_match": string_matcher(value)})
                        }
                    })
                    .collect();
                let m = metadata_value_matcher(filter, field, or_matcher(matchers));
                Ok(Some(json!({"metadata": m})))
            }
            _ => unimplemented(),
        }
    }

    /// `extendedGenerator.extendedPrincipal`.
    fn extended_principal(&self, key: &str, values: &[String]) -> GenResult<Option<Value>> {
        match self {
            Generator::RequestPrincipal => {
                let mut or: Vec<Value> = values.iter().map(|v| request_principal(v)).collect();
                if or.len() == 1 {
                    return Ok(or.pop());
                }
                if or.is_empty() {
                    return Ok(None);
                }
                Ok(Some(principal_or(or)))
            }
            Generator::RequestAudiences => Ok(Some(principal_metadata(jwt_claims_list(
                &["aud".to_string()],
                string_or_matcher(values),
            )))),
            Generator::RequestPresenter => Ok(Some(principal_metadata(jwt_claims_list(
                &["azp".to_string()],
                string_or_matcher(values),
            )))),
            Generator::RequestClaim => {
                let claims = extract_name_in_nested_brackets(
                    key.strip_prefix(ATTR_REQUEST_CLAIMS).unwrap_or(key),
                )?;
                Ok(Some(principal_metadata(jwt_claims_list(
                    &claims,
                    string_or_matcher(values),
                ))))
            }
            _ => unimplemented(),
        }
    }
}

/// One value of `requestPrincipalGenerator`: split at the last `/` into issuer and subject,
/// each matched in `payload.iss` / `payload.sub`.
fn request_principal(value: &str) -> Value {
    let any = || string_regex(".+");
    let (iss, sub, found) = match value.rfind('/') {
        Some(index) => (
            value.get(..index).unwrap_or_default(),
            value.get(index + 1..).unwrap_or_default(),
            true,
        ),
        None => (value, "", false),
    };
    let (match_iss, match_sub) = if value == "*" {
        (any(), any())
    } else if value.starts_with('*') {
        if found {
            let match_iss = if iss == "*" {
                any()
            } else {
                string_suffix(iss.strip_prefix('*').unwrap_or(iss), false)
            };
            (match_iss, string_exact(sub, false))
        } else {
            (
                any(),
                string_suffix(value.strip_prefix('*').unwrap_or(value), false),
            )
        }
    } else if value.ends_with('*') {
        if found {
            let match_sub = if sub == "*" {
                any()
            } else {
                string_prefix(sub.strip_suffix('*').unwrap_or(sub), false)
            };
            (string_exact(iss, false), match_sub)
        } else {
            (
                string_prefix(value.strip_suffix('*').unwrap_or(value), false),
                any(),
            )
        }
    } else {
        (string_exact(iss, false), string_exact(sub, false))
    };
    principal_and(vec![
        principal_metadata(jwt_claim_string("iss", match_iss)),
        principal_metadata(jwt_claim_string("sub", match_sub)),
    ])
}

/// One attribute of a rule with its values and not-values (`rule`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    key: String,
    values: Vec<String>,
    not_values: Vec<String>,
    generator: Generator,
}

/// `checkError`: in an ALLOW policy an invalid value drops the whole rule (a narrower
/// allow); in DENY and AUDIT the value is ignored (a wider deny).
fn check_error<T>(action: RbacAction, result: GenResult<T>) -> GenResult<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(error) if action == RbacAction::Allow => Err(error),
        Err(_) => Ok(None),
    }
}

impl Rule {
    fn new(generator: Generator, key: &str, values: &[String], not_values: &[String]) -> Self {
        Rule {
            key: key.to_string(),
            values: values.to_vec(),
            not_values: not_values.to_vec(),
            generator,
        }
    }

    /// `rule.permission`.
    fn permission(&self, action: RbacAction) -> GenResult<Vec<Value>> {
        let mut out = Vec::new();
        for (values, negate) in [(&self.values, false), (&self.not_values, true)] {
            if values.is_empty() {
                continue;
            }
            let matched = if self.generator.is_extended() {
                check_error(
                    action,
                    self.generator.extended_permission(&self.key, values),
                )?
                .flatten()
            } else {
                let mut or = Vec::new();
                for value in values {
                    if let Some(p) = check_error(action, self.generator.permission(value))? {
                        or.push(p);
                    }
                }
                (!or.is_empty()).then(|| permission_or(or))
            };
            if let Some(p) = matched {
                out.push(if negate { permission_not(p) } else { p });
            }
        }
        Ok(out)
    }

    /// `rule.principal`.
    fn principal(&self, action: RbacAction) -> GenResult<Vec<Value>> {
        let mut out = Vec::new();
        for (values, negate) in [(&self.values, false), (&self.not_values, true)] {
            if values.is_empty() {
                continue;
            }
            let matched = if self.generator.is_extended() {
                check_error(action, self.generator.extended_principal(&self.key, values))?.flatten()
            } else {
                let mut or = Vec::new();
                for value in values {
                    if let Some(p) =
                        check_error(action, self.generator.principal(&self.key, value))?
                    {
                        or.push(p);
                    }
                }
                (!or.is_empty()).then(|| principal_or(or))
            };
            if let Some(p) = matched {
                out.push(if negate { principal_not(p) } else { p });
            }
        }
        Ok(out)
    }

    /// `MigrateTrustDomain` for one rule.
    fn migrate_trust_domain(&mut self, bundle: &Bundle) {
        if self.key == ATTR_SRC_PRINCIPAL {
            if !self.values.is_empty() {
                self.values = bundle.replace_trust_domain_aliases(&self.values);
            }
            if !self.not_values.is_empty() {
                self.not_values = bundle.replace_trust_domain_aliases(&self.not_values);
            }
        } else if self.key == ATTR_SRC_TRUST_DOMAIN {
            if !self.values.is_empty() {
                self.values = bundle.expand_trust_domain_aliases(&self.values);
            }
            if !self.not_values.is_empty() {
                self.not_values = bundle.expand_trust_domain_aliases(&self.not_values);
            }
        }
    }
}

/// Adds a rule unless it has neither values nor not-values (`appendLast` / `insertFront`).
fn push(list: &mut Vec<Rule>, generator: Generator, key: &str, values: &[String], not: &[String]) {
    if values.is_empty() && not.is_empty() {
        return;
    }
    list.push(Rule::new(generator, key, values, not));
}

/// One rule of a policy, its conditions sorted into permissions and principals (`Model`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Model {
    /// One list per `to` (or one with the `when` permissions alone).
    permissions: Vec<Vec<Rule>>,
    /// The `from`-specific part of each principal list (before the shared part).
    principal_fronts: Vec<Vec<Rule>>,
    /// The `when` principals, which every principal list shares. istiod shares them by
    /// pointer, so migrating trust domains rewrites them once per list: kept here that way.
    principal_base: Vec<Rule>,
}

impl Model {
    /// `New`: fails on an unknown `when` key (the rule is then skipped whatever the
    /// action).
    pub(crate) fn new(policy_namespace: &str, rule: &policy::Rule) -> Result<Model, String> {
        let mut base_permission = Vec::new();
        let mut base_principal = Vec::new();
        for when in &rule.when {
            let key = when.key.as_str();
            let (v, n) = (&when.values, &when.not_values);
            let (list, generator) = match key {
                ATTR_DEST_IP => (&mut base_permission, Generator::DestIp),
                ATTR_DEST_PORT => (&mut base_permission, Generator::DestPort),
                ATTR_CONN_SNI => (&mut base_permission, Generator::ConnSni),
                _ if key.starts_with(ATTR_ENVOY_FILTER) => {
                    (&mut base_permission, Generator::EnvoyFilter)
                }
                ATTR_SRC_IP => (&mut base_principal, Generator::SrcIp),
                ATTR_REMOTE_IP => (&mut base_principal, Generator::RemoteIp),
                ATTR_SRC_NAMESPACE => (&mut base_principal, Generator::SrcNamespace),
                ATTR_SRC_TRUST_DOMAIN => (&mut base_principal, Generator::SrcTrustDomain),
                ATTR_SRC_SERVICE_ACCOUNT => (
                    &mut base_principal,
                    Generator::SrcServiceAccount(policy_namespace.to_string()),
                ),
                ATTR_SRC_PRINCIPAL => (&mut base_principal, Generator::SrcPrincipal),
                ATTR_REQUEST_PRINCIPAL => (&mut base_principal, Generator::RequestPrincipal),
                ATTR_REQUEST_AUDIENCES => (&mut base_principal, Generator::RequestAudiences),
                ATTR_REQUEST_PRESENTER => (&mut base_principal, Generator::RequestPresenter),
                _ if key.starts_with(ATTR_REQUEST_HEADER) => {
                    (&mut base_principal, Generator::RequestHeader)
                }
                _ if key.starts_with(ATTR_REQUEST_CLAIMS) => {
                    (&mut base_principal, Generator::RequestClaim)
                }
                _ => return Err(format!("unknown attribute {key}")),
            };
            push(list, generator, key, v, n);
        }

        let mut principal_fronts = Vec::new();
        for from in &rule.from {
            let mut front = Vec::new();
            if let Some(s) = from {
                // `insertFront` in istiod's order leaves the list in the reverse order.
                push(
                    &mut front,
                    Generator::SrcPrincipal,
                    ATTR_SRC_PRINCIPAL,
                    &s.principals,
                    &s.not_principals,
                );
                push(
                    &mut front,
                    Generator::RequestPrincipal,
                    ATTR_REQUEST_PRINCIPAL,
                    &s.request_principals,
                    &s.not_request_principals,
                );
                push(
                    &mut front,
                    Generator::SrcServiceAccount(policy_namespace.to_string()),
                    ATTR_SRC_SERVICE_ACCOUNT,
                    &s.service_accounts,
                    &s.not_service_accounts,
                );
                push(
                    &mut front,
                    Generator::SrcTrustDomain,
                    ATTR_SRC_TRUST_DOMAIN,
                    &s.trust_domains,
                    &s.not_trust_domains,
                );
                push(
                    &mut front,
                    Generator::SrcNamespace,
                    ATTR_SRC_NAMESPACE,
                    &s.namespaces,
                    &s.not_namespaces,
                );
                push(
                    &mut front,
                    Generator::RemoteIp,
                    ATTR_REMOTE_IP,
                    &s.remote_ip_blocks,
                    &s.not_remote_ip_blocks,
                );
                push(
                    &mut front,
                    Generator::SrcIp,
                    ATTR_SRC_IP,
                    &s.ip_blocks,
                    &s.not_ip_blocks,
                );
            }
            principal_fronts.push(front);
        }
        if rule.from.is_empty() {
            principal_fronts.push(Vec::new());
        }

        let mut permissions = Vec::new();
        for to in &rule.to {
            let mut list = Vec::new();
            if let Some(o) = to {
                push(
                    &mut list,
                    Generator::Host,
                    HOST_HEADER,
                    &o.hosts,
                    &o.not_hosts,
                );
                push(
                    &mut list,
                    Generator::Method,
                    METHOD_HEADER,
                    &o.methods,
                    &o.not_methods,
                );
                push(
                    &mut list,
                    Generator::Path,
                    PATH_MATCHER,
                    &o.paths,
                    &o.not_paths,
                );
                push(
                    &mut list,
                    Generator::DestPort,
                    ATTR_DEST_PORT,
                    &o.ports,
                    &o.not_ports,
                );
            }
            list.extend(base_permission.iter().cloned());
            permissions.push(list);
        }
        if rule.to.is_empty() {
            permissions.push(base_permission);
        }

        Ok(Model {
            permissions,
            principal_fronts,
            principal_base: base_principal,
        })
    }

    /// `MigrateTrustDomain`: principals (`ReplaceTrustDomainAliases`) and trust domains
    /// (`ExpandTrustDomainAliases`) of every principal list; the shared `when` part once
    /// per list, as istiod does.
    pub(crate) fn migrate_trust_domain(&mut self, bundle: &Bundle) {
        for front in &mut self.principal_fronts {
            for rule in front.iter_mut() {
                rule.migrate_trust_domain(bundle);
            }
            for rule in &mut self.principal_base {
                rule.migrate_trust_domain(bundle);
            }
        }
    }

    /// `Generate` for the HTTP filter: one RBAC `Policy` (`{"permissions", "principals"}`),
    /// or the error that drops the rule (only ALLOW rules fail).
    pub(crate) fn generate(&self, action: RbacAction) -> Result<Value, String> {
        let mut permissions = Vec::new();
        for list in &self.permissions {
            let mut and = Vec::new();
            for rule in list {
                and.extend(rule.permission(action)?);
            }
            if and.is_empty() {
                and.push(permission_any());
            }
            permissions.push(permission_and(and));
        }
        let mut principals = Vec::new();
        for front in &self.principal_fronts {
            let mut and = Vec::new();
            for rule in front.iter().chain(&self.principal_base) {
                and.extend(rule.principal(action)?);
            }
            if and.is_empty() {
                and.push(principal_any());
            }
            principals.push(principal_and(and));
        }
        Ok(json!({"permissions": permissions, "principals": principals}))
    }
}

#[cfg(test)]
mod tests;
