//! AuthorizationPolicy objects, read from JSON and validated as Istio's admission webhook
//! does. Every problem is reported with the policy, the field path and what is wrong.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use serde_json::{Map, Value};

use crate::error::{PolicyError, PolicyWarning};
use crate::pattern::{parse_port, IpBlock, PathPattern, StringPattern};

pub mod stream;

/// What a policy does when one of its rules matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// Allow the request (the default).
    Allow,
    /// Deny the request; checked before any ALLOW policy.
    Deny,
    /// Mark the decision audited; never changes it.
    Audit,
}

impl Action {
    /// The name used in policies and decision logs.
    pub fn name(self) -> &'static str {
        match self {
            Action::Allow => "ALLOW",
            Action::Deny => "DENY",
            Action::Audit => "AUDIT",
        }
    }
}

/// A request attribute that policies can test.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Attribute {
    /// Peer principal without scheme (`principals`, `source.principal`).
    Principal,
    /// Peer namespace from the principal (`namespaces`, `source.namespace`).
    Namespace,
    /// `<namespace>/<service account>` from the principal (`serviceAccounts`,
    /// `source.serviceAccount`).
    ServiceAccount,
    /// Peer trust domain (`trustDomains`, `source.trustDomain`).
    TrustDomain,
    /// `<iss>/<sub>` of the verified JWT (`requestPrincipals`, `request.auth.principal`).
    RequestPrincipal,
    /// JWT `aud` (`request.auth.audiences`).
    Audience,
    /// JWT `azp` (`request.auth.presenter`).
    Presenter,
    /// A JWT claim by nested path (`request.auth.claims[a][b]`).
    Claim(Vec<String>),
    /// Downstream connection address (`ipBlocks`, `source.ip`).
    SourceIp,
    /// Original client address (`remoteIpBlocks`, `remote.ip`).
    RemoteIp,
    /// Local address (`destination.ip`).
    DestinationIp,
    /// Local port (`ports`, `destination.port`).
    DestinationPort,
    /// `:authority`, case-insensitive (`hosts`).
    Host,
    /// `:method` (`methods`).
    Method,
    /// Normalized path without query (`paths`).
    Path,
    /// A request header by lowercase name (`request.headers[name]`).
    Header(String),
    /// TLS SNI (`connection.sni`).
    Sni,
}

impl Attribute {
    /// Whether string comparisons ignore ASCII case.
    pub fn folds_case(&self) -> bool {
        matches!(self, Attribute::Host)
    }

    /// Whether the attribute can carry several values at once.
    pub fn is_multi_valued(&self) -> bool {
        matches!(
            self,
            Attribute::Audience | Attribute::Claim(_) | Attribute::Header(_)
        )
    }
}

/// One value of a field.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Matcher {
    /// A string pattern.
    Str(StringPattern),
    /// A path pattern or template.
    Path(PathPattern),
    /// An IP block.
    Ip(IpBlock),
    /// A port.
    Port(u16),
}

impl Matcher {
    /// The value as a policy writes it (`abc*`, `/v1/{*}/items`, `10.0.0.0/8`, `8080`).
    pub fn to_istio(&self) -> String {
        match self {
            Matcher::Str(pattern) | Matcher::Path(PathPattern::Plain(pattern)) => {
                pattern.to_istio()
            }
            Matcher::Path(PathPattern::Template(segments)) => {
                let mut text = String::new();
                for segment in segments {
                    text.push('/');
                    match segment {
                        crate::pattern::TemplateSegment::Literal(literal) => text.push_str(literal),
                        crate::pattern::TemplateSegment::One => text.push_str("{*}"),
                        crate::pattern::TemplateSegment::Rest => text.push_str("{**}"),
                    }
                }
                text
            }
            Matcher::Ip(block) => {
                if block.ipv4 {
                    let address = core::net::Ipv4Addr::from((block.network & 0xffff_ffff) as u32);
                    format!("{address}/{}", block.prefix_len.saturating_sub(96))
                } else {
                    let address = core::net::Ipv6Addr::from(block.network);
                    format!("{address}/{}", block.prefix_len)
                }
            }
            Matcher::Port(port) => port.to_string(),
        }
    }
}

/// One field: it matches when any of its values matches (`negated`: when none does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// What the field tests.
    pub attribute: Attribute,
    /// `notX` / `notValues`.
    pub negated: bool,
    /// The values, at least one.
    pub values: Vec<Matcher>,
    /// JSON path of the field in the policy, for reports.
    pub location: String,
}

/// A source, an operation, or one `when` condition: all of its fields must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    /// The fields, at least one.
    pub fields: Vec<Field>,
}

/// One rule: any `from` clause AND any `to` clause AND every `when` condition.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rule {
    /// Sources; empty means any source.
    pub from: Vec<Clause>,
    /// Operations; empty means any operation.
    pub to: Vec<Clause>,
    /// Conditions, each a clause of one field.
    pub when: Vec<Clause>,
}

/// A validated AuthorizationPolicy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Position in the input list.
    pub index: usize,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace` (`default` when absent).
    pub namespace: String,
    /// `spec.action`.
    pub action: Action,
    /// `istio.io/dry-run: "true"`.
    pub dry_run: bool,
    /// `spec.selector.matchLabels`; `None` selects every workload of the namespace.
    pub selector: Option<BTreeMap<String, String>>,
    /// The policy binds to gateways or waypoints (`targetRef`/`targetRefs`), which a
    /// sidecar ignores.
    pub targets_gateway: bool,
    /// `spec.rules`; empty matches nothing.
    pub rules: Vec<Rule>,
}

impl Policy {
    /// `namespace/name`.
    pub fn qualified_name(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Istio's name for one rule, as its RBAC filter reports it:
    /// `ns[<ns>]-policy[<name>]-rule[<index>]`.
    pub fn rule_id(&self, rule: usize) -> String {
        format!(
            "ns[{}]-policy[{}]-rule[{}]",
            self.namespace, self.name, rule
        )
    }

    /// Whether the policy applies to a workload (namespace and labels); `None` for the
    /// namespace means a proxy outside any mesh, where every policy applies.
    pub fn applies_to(
        &self,
        workload_namespace: Option<&str>,
        workload_labels: &BTreeMap<String, String>,
        root_namespace: &str,
    ) -> bool {
        let Some(namespace) = workload_namespace else {
            return true;
        };
        if self.namespace != namespace && self.namespace != root_namespace {
            return false;
        }
        match &self.selector {
            None => true,
            Some(selector) => selector
                .iter()
                .all(|(key, value)| workload_labels.get(key) == Some(value)),
        }
    }
}

/// Reads and validates policies given as JSON values. Returns every policy that is valid,
/// the warnings, and every error found (none are dropped).
pub fn parse_policies(values: &[Value]) -> (Vec<Policy>, Vec<PolicyWarning>, Vec<PolicyError>) {
    let mut policies = Vec::with_capacity(values.len());
    let mut warnings = Vec::new();
    let mut errors = Vec::new();
    for (index, value) in values.iter().enumerate() {
        let (policy, mut policy_warnings, mut policy_errors) = read_policy(index, value, None);
        policies.extend(policy);
        warnings.append(&mut policy_warnings);
        errors.append(&mut policy_errors);
    }
    (policies, warnings, errors)
}

/// Rules of one policy already read, one at a time, while its JSON streamed in (see
/// [`stream`]): what [`Reader::policy`] would have made of `spec.rules`, its problems
/// included, without the list ever existing as one JSON tree.
#[derive(Debug, Default)]
pub(crate) struct ReadRules {
    /// Items of `spec.rules`.
    pub(crate) count: usize,
    pub(crate) rules: Vec<Rule>,
    pub(crate) errors: Vec<PolicyError>,
    pub(crate) warnings: Vec<PolicyWarning>,
}

/// Validates one policy: the policy if it has no error, its warnings and its errors. With
/// `rules`, `spec.rules` was read already (the value holds an empty list in its place).
pub(crate) fn read_policy(
    index: usize,
    value: &Value,
    rules: Option<ReadRules>,
) -> (Option<Policy>, Vec<PolicyWarning>, Vec<PolicyError>) {
    let mut reader = Reader::new(index);
    let policy = reader
        .policy(value, rules)
        .filter(|_| reader.errors.is_empty());
    (policy, reader.warnings, reader.errors)
}

/// Reads one rule as [`Reader::policy`] does for `spec.rules[position]` of a policy whose
/// `metadata` is `metadata`: the rule if it reads, and its problems added to `into`.
pub(crate) fn read_rule(
    index: usize,
    metadata: Option<&Value>,
    position: usize,
    value: &Value,
    into: &mut ReadRules,
) {
    let mut reader = Reader::new(index);
    reader.name_from(metadata);
    if let Some(rule) = reader.rule(value, &format!("spec.rules[{position}]")) {
        into.rules.push(rule);
    }
    into.count += 1;
    into.errors.append(&mut reader.errors);
    into.warnings.append(&mut reader.warnings);
}

struct Reader {
    index: usize,
    policy: String,
    /// The policy's namespace: a `serviceAccounts` value without one means this one.
    namespace: String,
    errors: Vec<PolicyError>,
    warnings: Vec<PolicyWarning>,
}

const SOURCE_FIELDS: &[(&str, Attribute, bool)] = &[
    ("principals", Attribute::Principal, false),
    ("notPrincipals", Attribute::Principal, true),
    ("requestPrincipals", Attribute::RequestPrincipal, false),
    ("notRequestPrincipals", Attribute::RequestPrincipal, true),
    ("namespaces", Attribute::Namespace, false),
    ("notNamespaces", Attribute::Namespace, true),
    ("serviceAccounts", Attribute::ServiceAccount, false),
    ("notServiceAccounts", Attribute::ServiceAccount, true),
    ("trustDomains", Attribute::TrustDomain, false),
    ("notTrustDomains", Attribute::TrustDomain, true),
    ("ipBlocks", Attribute::SourceIp, false),
    ("notIpBlocks", Attribute::SourceIp, true),
    ("remoteIpBlocks", Attribute::RemoteIp, false),
    ("notRemoteIpBlocks", Attribute::RemoteIp, true),
];

const OPERATION_FIELDS: &[(&str, Attribute, bool)] = &[
    ("hosts", Attribute::Host, false),
    ("notHosts", Attribute::Host, true),
    ("ports", Attribute::DestinationPort, false),
    ("notPorts", Attribute::DestinationPort, true),
    ("methods", Attribute::Method, false),
    ("notMethods", Attribute::Method, true),
    ("paths", Attribute::Path, false),
    ("notPaths", Attribute::Path, true),
];

impl Reader {
    fn new(index: usize) -> Self {
        Reader {
            index,
            policy: format!("#{index}"),
            namespace: String::new(),
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// The policy's name in reports (`<namespace>/<name>`, or `#<index>` without a name)
    /// and its namespace, from `metadata`.
    fn name_from(&mut self, metadata: Option<&Value>) {
        let name = metadata.and_then(|m| m.get("name")).and_then(Value::as_str);
        let namespace = metadata
            .and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
            .unwrap_or("default");
        if let Some(name) = name {
            self.policy = format!("{namespace}/{name}");
        }
        self.namespace = namespace.to_string();
    }

    fn error(&mut self, field: &str, message: String) {
        self.errors.push(PolicyError {
            index: self.index,
            policy: self.policy.clone(),
            field: field.to_string(),
            message,
        });
    }

    fn warn(&mut self, field: &str, message: String) {
        self.warnings.push(PolicyWarning {
            index: self.index,
            policy: self.policy.clone(),
            field: field.to_string(),
            message,
        });
    }

    fn object<'v>(&mut self, value: &'v Value, field: &str) -> Option<&'v Map<String, Value>> {
        match value {
            Value::Object(map) => Some(map),
            other => {
                self.error(field, format!("expected an object, found {}", kind(other)));
                None
            }
        }
    }

    fn array<'v>(&mut self, value: &'v Value, field: &str) -> Option<&'v [Value]> {
        match value {
            Value::Array(items) => Some(items),
            other => {
                self.error(field, format!("expected a list, found {}", kind(other)));
                None
            }
        }
    }

    fn string<'v>(&mut self, value: &'v Value, field: &str) -> Option<&'v str> {
        match value {
            Value::String(text) => Some(text),
            other => {
                self.error(field, format!("expected a string, found {}", kind(other)));
                None
            }
        }
    }

    fn unknown_keys(&mut self, map: &Map<String, Value>, known: &[&str], field: &str) {
        for key in map.keys() {
            if !known.contains(&key.as_str()) {
                let location = join(field, key);
                let hint = closest(key, known)
                    .map(|candidate| format!(" (did you mean `{candidate}`?)"))
                    .unwrap_or_default();
                self.error(&location, format!("unknown field `{key}`{hint}"));
            }
        }
    }

    fn policy(&mut self, value: &Value, read_rules: Option<ReadRules>) -> Option<Policy> {
        let root = self.object(value, "")?;
        let metadata = root.get("metadata");
        let name = metadata.and_then(|m| m.get("name")).and_then(Value::as_str);
        let namespace = metadata
            .and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
            .unwrap_or("default");
        self.name_from(metadata);
        self.unknown_keys(
            root,
            &["apiVersion", "kind", "metadata", "spec", "status"],
            "",
        );
        if let Some(api_version) = root.get("apiVersion") {
            if let Some(text) = self.string(api_version, "apiVersion") {
                if !matches!(text, "security.istio.io/v1" | "security.istio.io/v1beta1") {
                    self.error(
                        "apiVersion",
                        format!("unsupported apiVersion `{text}`: expected `security.istio.io/v1` or `security.istio.io/v1beta1`"),
                    );
                }
            }
        }
        if let Some(kind_value) = root.get("kind") {
            if let Some(text) = self.string(kind_value, "kind") {
                if text != "AuthorizationPolicy" {
                    self.error(
                        "kind",
                        format!("unsupported kind `{text}`: expected `AuthorizationPolicy`"),
                    );
                }
            }
        }
        let dry_run = self.metadata(metadata)?;
        let name = name?;
        for (field, text) in [("metadata.name", name), ("metadata.namespace", namespace)] {
            if text.is_empty() {
                self.error(field, "must not be empty".to_string());
            }
        }
        let spec_value = root.get("spec");
        let empty = Map::new();
        let spec = match spec_value {
            Some(value) => self.object(value, "spec")?,
            None => &empty,
        };
        self.unknown_keys(
            spec,
            &[
                "selector",
                "targetRef",
                "targetRefs",
                "action",
                "provider",
                "rules",
            ],
            "spec",
        );
        let action = match spec.get("action") {
            None => Action::Allow,
            Some(value) => match self.string(value, "spec.action")? {
                "ALLOW" => Action::Allow,
                "DENY" => Action::Deny,
                "AUDIT" => Action::Audit,
                "CUSTOM" => {
                    self.error(
                        "spec.action",
                        format!("policy `{}` uses action `CUSTOM`, which needs an external authorizer; cordon decides inline, so it cannot enforce it", self.policy),
                    );
                    return None;
                }
                other => {
                    self.error(
                        "spec.action",
                        format!("unknown action `{other}`: expected `ALLOW`, `DENY` or `AUDIT`"),
                    );
                    return None;
                }
            },
        };
        if spec.contains_key("provider") {
            self.error(
                "spec.provider",
                "`provider` is only valid with action `CUSTOM`".to_string(),
            );
        }
        let selector = match spec.get("selector") {
            None => None,
            Some(value) => Some(self.selector(value)?),
        };
        // An empty `targetRefs` list is unset for istiod: the selector applies.
        let targets_gateway = spec.contains_key("targetRef")
            || spec
                .get("targetRefs")
                .is_some_and(|refs| refs.as_array().is_none_or(|refs| !refs.is_empty()));
        if targets_gateway {
            if selector.is_some() {
                self.error(
                    "spec.selector",
                    "`selector` and `targetRef`/`targetRefs` are mutually exclusive".to_string(),
                );
            }
            self.warn(
                "spec.targetRef",
                "policy binds to a gateway or waypoint through `targetRef`/`targetRefs`; a sidecar ignores it, so cordon skips it".to_string(),
            );
        }
        let mut rules = Vec::new();
        let mut rule_count = 0;
        if let Some(value) = spec.get("rules") {
            let items = self.array(value, "spec.rules")?;
            match read_rules {
                Some(mut read) => {
                    rule_count = read.count;
                    rules = read.rules;
                    self.errors.append(&mut read.errors);
                    self.warnings.append(&mut read.warnings);
                }
                None => {
                    rule_count = items.len();
                    for (position, item) in items.iter().enumerate() {
                        if let Some(rule) = self.rule(item, &format!("spec.rules[{position}]")) {
                            rules.push(rule);
                        }
                    }
                }
            }
        }
        if action == Action::Deny && rule_count == 0 {
            self.error(
                "spec.rules",
                "a DENY policy needs at least one rule".to_string(),
            );
        }
        Some(Policy {
            index: self.index,
            name: name.to_string(),
            namespace: namespace.to_string(),
            action,
            dry_run,
            selector,
            targets_gateway,
            rules,
        })
    }

    fn metadata(&mut self, metadata: Option<&Value>) -> Option<bool> {
        let Some(value) = metadata else {
            self.error(
                "metadata",
                "missing: a policy needs `metadata.name`".to_string(),
            );
            return None;
        };
        let map = self.object(value, "metadata")?;
        match map.get("name") {
            None => self.error("metadata.name", "missing".to_string()),
            Some(name) => {
                self.string(name, "metadata.name");
            }
        }
        if let Some(namespace) = map.get("namespace") {
            self.string(namespace, "metadata.namespace");
        }
        let mut dry_run = false;
        if let Some(annotations) = map.get("annotations") {
            let annotations = self.object(annotations, "metadata.annotations")?;
            if let Some(flag) = annotations.get("istio.io/dry-run") {
                let field = "metadata.annotations[istio.io/dry-run]";
                // istiod reads the annotation with Go's `strconv.ParseBool`; a value it
                // cannot parse leaves the policy enforced there, and is refused here.
                match self.string(flag, field) {
                    Some("1" | "t" | "T" | "true" | "TRUE" | "True") => dry_run = true,
                    Some("0" | "f" | "F" | "false" | "FALSE" | "False") => {}
                    Some(text) => self.error(
                        field,
                        format!("invalid value `{text}`: expected `\"true\"` or `\"false\"` (Go's ParseBool spellings)"),
                    ),
                    None => {}
                }
            }
        }
        Some(dry_run)
    }

    fn selector(&mut self, value: &Value) -> Option<BTreeMap<String, String>> {
        let map = self.object(value, "spec.selector")?;
        self.unknown_keys(map, &["matchLabels"], "spec.selector");
        let mut labels = BTreeMap::new();
        if let Some(value) = map.get("matchLabels") {
            let match_labels = self.object(value, "spec.selector.matchLabels")?;
            for (key, label) in match_labels {
                let field = format!("spec.selector.matchLabels[{key}]");
                if key.is_empty() {
                    self.error(&field, "label key must not be empty".to_string());
                }
                if let Some(text) = self.string(label, &field) {
                    labels.insert(key.clone(), text.to_string());
                }
            }
        }
        Some(labels)
    }

    fn rule(&mut self, value: &Value, field: &str) -> Option<Rule> {
        let map = self.object(value, field)?;
        self.unknown_keys(map, &["from", "to", "when"], field);
        let mut rule = Rule::default();
        if let Some(value) = map.get("from") {
            let location = join(field, "from");
            rule.from = self.clauses(value, &location, "source", SOURCE_FIELDS)?;
        }
        if let Some(value) = map.get("to") {
            let location = join(field, "to");
            rule.to = self.clauses(value, &location, "operation", OPERATION_FIELDS)?;
        }
        if let Some(value) = map.get("when") {
            let location = join(field, "when");
            let items = self.array(value, &location)?;
            if items.is_empty() {
                self.error(
                    &location,
                    "empty list: remove `when` or add a condition".to_string(),
                );
            }
            for (position, item) in items.iter().enumerate() {
                for field in self
                    .condition(item, &format!("{location}[{position}]"))
                    .unwrap_or_default()
                {
                    rule.when.push(Clause {
                        fields: alloc::vec![field],
                    });
                }
            }
        }
        Some(rule)
    }

    fn clauses(
        &mut self,
        value: &Value,
        field: &str,
        wrapper: &str,
        fields: &[(&str, Attribute, bool)],
    ) -> Option<Vec<Clause>> {
        let items = self.array(value, field)?;
        if items.is_empty() {
            self.error(field, format!("empty list: remove it or add a `{wrapper}`"));
        }
        let mut clauses = Vec::with_capacity(items.len());
        for (position, item) in items.iter().enumerate() {
            let location = format!("{field}[{position}]");
            let Some(map) = self.object(item, &location) else {
                continue;
            };
            self.unknown_keys(map, &[wrapper], &location);
            let Some(inner) = map.get(wrapper) else {
                self.error(&location, format!("missing `{wrapper}`"));
                continue;
            };
            let inner_location = join(&location, wrapper);
            let Some(inner_map) = self.object(inner, &inner_location) else {
                continue;
            };
            let errors_before = self.errors.len();
            let known: Vec<&str> = fields.iter().map(|(name, _, _)| *name).collect();
            self.unknown_keys(inner_map, &known, &inner_location);
            let mut clause = Clause { fields: Vec::new() };
            for (name, attribute, negated) in fields {
                if let Some(values) = inner_map.get(*name) {
                    let location = join(&inner_location, name);
                    if let Some(field) = self.field(values, &location, attribute.clone(), *negated)
                    {
                        clause.fields.push(field);
                    }
                }
            }
            if clause.fields.is_empty() {
                if self.errors.len() == errors_before {
                    self.error(
                        &inner_location,
                        format!("empty {wrapper}: set at least one field"),
                    );
                }
                continue;
            }
            clauses.push(clause);
        }
        Some(clauses)
    }

    fn field(
        &mut self,
        value: &Value,
        location: &str,
        attribute: Attribute,
        negated: bool,
    ) -> Option<Field> {
        let items = self.array(value, location)?;
        // An empty list is proto3's "not set": it constrains nothing.
        if items.is_empty() {
            return None;
        }
        let mut values = Vec::with_capacity(items.len());
        for (position, item) in items.iter().enumerate() {
            let item_location = format!("{location}[{position}]");
            let Some(text) = self.string(item, &item_location) else {
                continue;
            };
            if let Some(matcher) = self.matcher(&attribute, text, &item_location) {
                values.push(matcher);
            }
        }
        Some(Field {
            attribute,
            negated,
            values,
            location: location.to_string(),
        })
    }

    fn matcher(&mut self, attribute: &Attribute, text: &str, location: &str) -> Option<Matcher> {
        if text.is_empty() {
            self.error(location, "empty value".to_string());
            return None;
        }
        let result = match attribute {
            Attribute::SourceIp | Attribute::RemoteIp | Attribute::DestinationIp => {
                IpBlock::parse(text).map(Matcher::Ip)
            }
            Attribute::DestinationPort => parse_port(text).map(Matcher::Port),
            Attribute::Path => PathPattern::parse(text).map(Matcher::Path),
            Attribute::ServiceAccount => self.service_account(text).map(Matcher::Str),
            Attribute::Namespace => one_wildcard(text, "namespace", false)
                .map(|()| Matcher::Str(StringPattern::parse(text))),
            Attribute::TrustDomain => one_wildcard(text, "trust domain", true)
                .map(|()| Matcher::Str(StringPattern::parse(text))),
            _ => Ok(Matcher::Str(StringPattern::parse(text))),
        };
        if *attribute == Attribute::Principal && text.starts_with("spiffe://") {
            self.warn(
                location,
                format!("`{text}` starts with `spiffe://`, which Istio adds itself: it matches only a peer whose URI is `spiffe://{text}`, that is, none; write `{}`", text.trim_start_matches("spiffe://")),
            );
        }
        if let Some(message) = never_matches(attribute, text) {
            self.warn(location, message);
        }
        match result {
            Ok(matcher) => {
                if let Matcher::Str(pattern) | Matcher::Path(PathPattern::Plain(pattern)) = &matcher
                {
                    if pattern.text().contains('*') {
                        self.warn(
                            location,
                            format!("`*` inside `{text}` is matched literally (only a leading or trailing `*` is a wildcard)"),
                        );
                    }
                }
                Some(matcher)
            }
            Err(message) => {
                self.error(location, message);
                None
            }
        }
    }

    /// A `serviceAccounts` value as istiod reads it (`CheckServiceAccount`): `<name>` (in
    /// the policy's namespace) or `<namespace>/<name>`, no wildcard.
    fn service_account(&self, text: &str) -> Result<StringPattern, String> {
        let shape = || {
            format!("invalid service account `{text}`: expected `<name>` or `<namespace>/<name>`")
        };
        if text.contains('*') {
            return Err(format!(
                "invalid service account `{text}`: wildcards are not allowed"
            ));
        }
        if text.len() > 320 {
            return Err(format!(
                "invalid service account `{text}`: longer than 320 characters"
            ));
        }
        let (namespace, account) = match text.split_once('/') {
            Some((namespace, account)) => (namespace, account),
            None => (self.namespace.as_str(), text),
        };
        if namespace.is_empty() || account.is_empty() || account.contains('/') {
            return Err(shape());
        }
        Ok(StringPattern::Exact(format!("{namespace}/{account}")))
    }

    fn condition(&mut self, value: &Value, location: &str) -> Option<Vec<Field>> {
        let map = self.object(value, location)?;
        self.unknown_keys(map, &["key", "values", "notValues"], location);
        let key_location = join(location, "key");
        let Some(key_value) = map.get("key") else {
            self.error(&key_location, "missing".to_string());
            return None;
        };
        let key = self.string(key_value, &key_location)?;
        let attribute = match parse_condition_key(key) {
            Ok(attribute) => attribute,
            Err(message) => {
                self.error(&key_location, message);
                return None;
            }
        };
        if attribute == Attribute::Header(":path".to_string()) {
            self.warn(
                &key_location,
                "`request.headers[:path]` is the path as received, before normalization and with its query: `/a/../admin` is not `/admin` here; match paths with `paths`".to_string(),
            );
        }
        let positive = map
            .get("values")
            .map(|v| (v, false, join(location, "values")));
        let negative = map
            .get("notValues")
            .map(|v| (v, true, join(location, "notValues")));
        let mut fields = Vec::new();
        for (values, negated, field_location) in positive.into_iter().chain(negative) {
            if let Some(field) = self.field(values, &field_location, attribute.clone(), negated) {
                fields.push(field);
            }
        }
        if fields.is_empty() {
            self.error(
                location,
                "a condition needs `values` or `notValues`".to_string(),
            );
            return None;
        }
        // With both lists the condition is their conjunction: each becomes its own clause.
        Some(fields)
    }
}

/// Deepest claim path a `when` key may name (`request.auth.claims[a][b]…`): the evaluator
/// reads claim paths into a fixed array of this many keys, so no request allocates.
pub const MAX_CLAIM_DEPTH: usize = 8;

/// Reads a `when` key into the attribute it tests.
pub fn parse_condition_key(key: &str) -> Result<Attribute, String> {
    let simple = match key {
        "source.ip" => Some(Attribute::SourceIp),
        "remote.ip" => Some(Attribute::RemoteIp),
        "source.namespace" => Some(Attribute::Namespace),
        "source.serviceAccount" => Some(Attribute::ServiceAccount),
        "source.trustDomain" => Some(Attribute::TrustDomain),
        "source.principal" => Some(Attribute::Principal),
        "request.auth.principal" => Some(Attribute::RequestPrincipal),
        "request.auth.audiences" => Some(Attribute::Audience),
        "request.auth.presenter" => Some(Attribute::Presenter),
        "destination.ip" => Some(Attribute::DestinationIp),
        "destination.port" => Some(Attribute::DestinationPort),
        "connection.sni" => Some(Attribute::Sni),
        _ => None,
    };
    if let Some(attribute) = simple {
        return Ok(attribute);
    }
    if let Some(rest) = key.strip_prefix("request.headers") {
        let names = bracketed(rest)
            .ok_or_else(|| format!("invalid key `{key}`: expected `request.headers[<name>]`"))?;
        return match names.as_slice() {
            // Envoy's header map keeps an HTTP/1 `Host` line as `:authority`, and a
            // matcher on `host` reads it there (measured: envoy/DIFFERENTIAL.md).
            [name] if name.eq_ignore_ascii_case("host") => {
                Ok(Attribute::Header(":authority".to_string()))
            }
            [name] => Ok(Attribute::Header(name.to_ascii_lowercase())),
            _ => Err(format!(
                "invalid key `{key}`: expected `request.headers[<name>]`"
            )),
        };
    }
    if let Some(rest) = key.strip_prefix("request.auth.claims") {
        let path = bracketed(rest)
            .ok_or_else(|| format!("invalid key `{key}`: expected `request.auth.claims[<name>]` or `request.auth.claims[<a>][<b>]`"))?;
        // The evaluator reads claim paths of at most this many keys; a deeper one would be
        // matched against a different claim.
        if path.len() > MAX_CLAIM_DEPTH {
            return Err(format!(
                "invalid key `{key}`: a claim path has at most {} keys, this one has {}",
                MAX_CLAIM_DEPTH,
                path.len()
            ));
        }
        return Ok(Attribute::Claim(path));
    }
    Err(format!(
        "unknown key `{key}`: expected one of `request.headers[<name>]`, `source.ip`, `remote.ip`, `source.namespace`, `source.serviceAccount`, `source.trustDomain`, `source.principal`, `request.auth.principal`, `request.auth.audiences`, `request.auth.presenter`, `request.auth.claims[<name>]`, `destination.ip`, `destination.port`, `connection.sni`"
    ))
}

/// The methods Envoy's HTTP/1 codec accepts (without `allow_custom_methods`).
const HTTP_METHODS: &str = "ACL BIND CHECKOUT CONNECT COPY DELETE GET HEAD LINK LOCK M-SEARCH \
    MERGE MKACTIVITY MKCALENDAR MKCOL MOVE NOTIFY OPTIONS PATCH POST PROPFIND PROPPATCH PURGE PUT \
    REBIND REPORT SEARCH SOURCE SUBSCRIBE TRACE UNBIND UNLINK UNLOCK UNSUBSCRIBE";

/// Why a valid value can never match a request, if it cannot: a method is matched
/// case-sensitively and requests carry it in capitals; a request path always starts with
/// `/`. (Hosts fold case, so `Example.COM` is fine.)
fn never_matches(attribute: &Attribute, text: &str) -> Option<String> {
    match (attribute, StringPattern::parse(text)) {
        (_, StringPattern::Presence) => None,
        (Attribute::Method, _) if text.bytes().any(|byte| byte.is_ascii_lowercase()) => Some(format!(
            "`{text}` can never match: methods are matched case-sensitively and requests carry them in capitals; write `{}`",
            text.to_ascii_uppercase()
        )),
        (Attribute::Method, StringPattern::Exact(method)) if !HTTP_METHODS.split_whitespace().any(|known| known == method) => {
            Some(format!(
                "`{text}` is not an HTTP method Envoy accepts: its HTTP/1 codec refuses requests that carry it (unless `allow_custom_methods` is set)"
            ))
        }
        (Attribute::Path, StringPattern::Exact(path) | StringPattern::Prefix(path))
            if !path.starts_with('/') =>
        {
            Some(format!(
                "`{text}` can never match: request paths start with `/`; write `/{text}`"
            ))
        }
        _ => None,
    }
}

/// cordon matches namespaces and trust domains with at most one `*`, alone, leading or
/// trailing (istiod's webhook enforces the same for trust domains; for namespaces istiod
/// would turn every `*` into `.*`, which cordon refuses rather than approximates).
fn one_wildcard(text: &str, what: &str, no_slash: bool) -> Result<(), String> {
    let stars = text.matches('*').count();
    let placed = stars == 0 || (stars == 1 && (text.starts_with('*') || text.ends_with('*')));
    if !placed {
        return Err(format!(
            "invalid {what} `{text}`: `*` is allowed only once, alone, at the start or at the end"
        ));
    }
    if no_slash && text.contains('/') {
        return Err(format!("invalid {what} `{text}`: must not contain `/`"));
    }
    Ok(())
}

/// Splits `[a][b]` into `a`, `b`; `None` unless the whole text is non-empty brackets.
fn bracketed(mut text: &str) -> Option<Vec<String>> {
    let mut parts = Vec::new();
    while !text.is_empty() {
        let inner = text.strip_prefix('[')?;
        let (part, rest) = inner.split_once(']')?;
        if part.is_empty() || part.contains('[') {
            return None;
        }
        parts.push(part.to_string());
        text = rest;
    }
    if parts.is_empty() {
        None
    } else {
        Some(parts)
    }
}

fn join(base: &str, key: &str) -> String {
    if base.is_empty() {
        key.to_string()
    } else {
        format!("{base}.{key}")
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The known name closest to a misspelt one, if any is close enough to be a typo.
fn closest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|candidate| (edit_distance(key, candidate), *candidate))
        .filter(|(distance, _)| *distance <= 2)
        .min()
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance between two names, for "did you mean" hints.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = Vec::with_capacity(b.len() + 1);
        current.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous.get(j).copied().unwrap_or(0) + usize::from(ca != *cb);
            let deletion = previous.get(j + 1).copied().unwrap_or(0) + 1;
            let insertion = current.get(j).copied().unwrap_or(0) + 1;
            current.push(substitution.min(deletion).min(insertion));
        }
        previous = current;
    }
    previous.last().copied().unwrap_or(0)
}
