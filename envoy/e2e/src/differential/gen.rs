//! Seeded generators: policy sets (AuthorizationPolicy objects, the workload, the mesh
//! settings), the connection profiles clients use, requests, and the claim sets of the
//! token pool. Values come from [`vocab`], in every form Istio has (exact, prefix `x*`,
//! suffix `*x`, presence `*`), so that rules and requests collide.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::rbac::{MeshSettings, Workload};
use super::rng::Rng;
use super::vocab;

/// How a client connects: which certificate, over which address family, with which SNI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Profile {
    /// Index into [`vocab::CLIENTS`].
    pub client: usize,
    /// Connect to `[::1]` rather than `127.0.0.1`.
    pub ipv6: bool,
    /// Index into [`vocab::SNIS`].
    pub sni: usize,
}

impl Profile {
    /// The client's name (its certificate).
    pub fn client_name(&self) -> &'static str {
        vocab::CLIENTS
            .get(self.client)
            .map_or("?", |(name, _)| name)
    }

    /// The URI SAN its certificate carries.
    pub fn uri_san(&self) -> Option<&'static str> {
        vocab::CLIENTS.get(self.client).and_then(|(_, uri)| *uri)
    }

    /// The SNI it sends.
    pub fn sni_name(&self) -> Option<&'static str> {
        vocab::SNIS.get(self.sni).copied().flatten()
    }

    /// As JSON, for reports.
    pub fn describe(&self) -> Value {
        json!({
            "client_certificate_uri_san": self.uri_san(),
            "client": self.client_name(),
            "address": if self.ipv6 { "[::1]" } else { "127.0.0.1" },
            "sni": self.sni_name(),
        })
    }
}

/// One request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Index into its set's [`PolicySet::profiles`].
    pub profile: usize,
    /// The method.
    pub method: String,
    /// The request target, sent as is.
    pub target: String,
    /// The `Host` header.
    pub host: String,
    /// Other header lines, in order (names may repeat).
    pub headers: Vec<(String, String)>,
    /// Index into the token pool; `None`: no token.
    pub token: Option<usize>,
}

impl Request {
    /// The request head as sent (`token` is the bearer token of [`Request::token`]);
    /// `case` goes in an `x-diff-case` header (no rule reads it), which the cordon chain's
    /// access log records next to cordon's decision.
    pub fn wire(&self, token: Option<&str>, case: &str) -> Vec<u8> {
        let mut head = format!(
            "{} {} HTTP/1.1\r\nhost: {}\r\n",
            self.method, self.target, self.host
        );
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if let Some(token) = token {
            head.push_str(&format!("authorization: Bearer {token}\r\n"));
        }
        head.push_str(&format!("x-diff-case: {case}\r\n\r\n"));
        head.into_bytes()
    }

    /// As JSON, for reports (`claims`: the token's claims).
    pub fn describe(&self, profile: Option<&Profile>, claims: Option<&Value>) -> Value {
        json!({
            "connection": profile.map(Profile::describe),
            "method": self.method,
            "target": self.target,
            "host": self.host,
            "headers": self.headers.iter().map(|(n, v)| format!("{n}: {v}")).collect::<Vec<_>>(),
            "jwt_claims": claims,
        })
    }
}

/// One policy set: what one listener pair enforces, and the requests sent to it.
#[derive(Debug, Clone)]
pub struct PolicySet {
    /// Its seed: the same seed (and ports) give the same set.
    pub seed: u64,
    /// The AuthorizationPolicy objects (JSON form).
    pub policies: Vec<Value>,
    /// The workload the listener pair plays.
    pub workload: Workload,
    /// Mesh settings.
    pub mesh: MeshSettings,
    /// The connection profiles its requests use.
    pub profiles: Vec<Profile>,
    /// The requests.
    pub requests: Vec<Request>,
}

impl PolicySet {
    /// cordon's plugin configuration for this set.
    pub fn plugin_config(&self) -> Value {
        json!({
            "policies": self.policies,
            "workload": {
                "namespace": self.workload.namespace,
                "labels": self.workload.labels,
            },
            "root_namespace": self.mesh.root_namespace,
            "trust_domain": self.mesh.trust_domain,
            "trust_domain_aliases": self.mesh.trust_domain_aliases,
            "path_normalization": self.mesh.path_normalization,
            "decision_log": {"enabled": false},
        })
    }
}

/// The ports of the listener a set runs on (what `ports` and `destination.port` may name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    /// On 127.0.0.1.
    pub v4: u16,
    /// On [::1].
    pub v6: u16,
}

/// Generates the set for `seed`, with `requests` requests, for a listener on `ports`.
pub fn policy_set(seed: u64, requests: usize, ports: Ports, tokens: usize) -> PolicySet {
    let mut rng = Rng::new(seed);
    let aliases = match rng.weighted(&[50, 30, 20]) {
        0 => vec![],
        1 => vec!["td2.example".to_string()],
        _ => vocab::ALIASES.iter().map(|s| (*s).to_string()).collect(),
    };
    let root = if rng.chance(80) {
        "istio-system"
    } else {
        "mesh-root"
    };
    let mesh = MeshSettings {
        trust_domain: vocab::TRUST_DOMAIN.to_string(),
        trust_domain_aliases: aliases,
        root_namespace: root.to_string(),
        path_normalization: rng.word(vocab::PATH_NORMALIZATIONS),
    };
    let workload = Workload {
        namespace: Some(vocab::WORKLOAD_NAMESPACE.to_string()),
        labels: vocab::WORKLOAD_LABELS
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect::<BTreeMap<_, _>>(),
    };
    let mut g = Gen {
        rng,
        ports,
        root: root.to_string(),
    };
    let count = g.rng.weighted(&[0, 30, 35, 20, 15]);
    let policies = (0..count).map(|index| g.policy(index)).collect();
    let profile_count = g.rng.range(3, 5);
    let profiles: Vec<Profile> = (0..profile_count)
        .map(|_| Profile {
            client: g.rng.below(vocab::CLIENTS.len()),
            ipv6: g.rng.chance(35),
            sni: g.rng.below(vocab::SNIS.len()),
        })
        .collect();
    let requests = (0..requests)
        .map(|_| g.request(profiles.len(), tokens))
        .collect();
    PolicySet {
        seed,
        policies,
        workload,
        mesh,
        profiles,
        requests,
    }
}

/// The claim sets of the token pool: every JSON type a claim can have, `scope` and
/// `permission` as space-delimited strings, `scp` as a string or a list.
pub fn token_claims(count: usize) -> Vec<Value> {
    let mut rng = Rng::new(0x00C0_2D07_C1A1_2350);
    (0..count)
        .map(|_| {
            let mut claims = Map::new();
            claims.insert("iss".into(), json!(rng.word(vocab::ISSUERS)));
            claims.insert("sub".into(), json!(rng.word(vocab::SUBJECTS)));
            claims.insert("exp".into(), json!(1_900_000_000_u64));
            match rng.below(3) {
                0 => {
                    claims.insert("aud".into(), json!(rng.word(vocab::AUDIENCES)));
                }
                1 => {
                    claims.insert(
                        "aud".into(),
                        json!([rng.word(vocab::AUDIENCES), rng.word(vocab::AUDIENCES)]),
                    );
                }
                _ => {}
            }
            if rng.chance(60) {
                claims.insert("azp".into(), json!(rng.word(vocab::PRESENTERS)));
            }
            let words = ["read", "write", "admin", "dev"];
            let phrase = |rng: &mut Rng| {
                let n = rng.range(1, 3);
                (0..n).map(|_| rng.word(&words)).collect::<Vec<_>>()
            };
            if rng.chance(70) {
                claims.insert("scope".into(), json!(phrase(&mut rng).join(" ")));
            }
            match rng.below(3) {
                0 => {
                    claims.insert("scp".into(), json!(phrase(&mut rng).join(" ")));
                }
                1 => {
                    claims.insert("scp".into(), json!(phrase(&mut rng)));
                }
                _ => {}
            }
            if rng.chance(40) {
                claims.insert("permission".into(), json!(phrase(&mut rng).join(" ")));
            }
            match rng.below(3) {
                0 => {
                    claims.insert("groups".into(), json!(["dev", rng.word(&["ops", "admin"])]));
                }
                1 => {
                    claims.insert("groups".into(), json!(rng.word(&["dev", "ops"])));
                }
                _ => {}
            }
            if rng.chance(50) {
                claims.insert("role".into(), json!(rng.word(&["admin", "read", "ops"])));
            }
            if rng.chance(50) {
                claims.insert("admin".into(), json!(rng.chance(50)));
            }
            match rng.below(4) {
                0 => {
                    claims.insert("level".into(), json!(1));
                }
                1 => {
                    claims.insert("level".into(), json!(42));
                }
                2 => {
                    claims.insert("level".into(), json!(1.5));
                }
                _ => {}
            }
            if rng.chance(40) {
                claims.insert("email".into(), json!("alice@example.com"));
            }
            // Null, empty string and empty list claims: Envoy serves the payload
            // differently when a claim is null.
            if rng.chance(15) {
                claims.insert("note".into(), Value::Null);
            }
            if rng.chance(8) {
                claims.insert("tenant".into(), json!(""));
            }
            if rng.chance(8) {
                claims.insert("roles".into(), json!([]));
            }
            if rng.chance(50) {
                claims.insert(
                    "nested".into(),
                    json!({"role": rng.word(&["admin", "ops"]), "level": rng.range(1, 2)}),
                );
            }
            Value::Object(claims)
        })
        .collect()
}

struct Gen {
    rng: Rng,
    ports: Ports,
    root: String,
}

impl Gen {
    /// A word of `words` in one of Istio's value forms.
    fn form(&mut self, words: &[&str]) -> String {
        let word = self.rng.word(words);
        self.shape(&word)
    }

    fn shape(&mut self, word: &str) -> String {
        let len = word.len();
        match self.rng.weighted(&[62, 15, 15, 4]) {
            1 if len > 1 => {
                let cut = self.rng.range(1, len - 1);
                format!("{}*", word.get(..cut).unwrap_or(word))
            }
            2 if len > 1 => {
                let cut = self.rng.range(1, len - 1);
                format!("*{}", word.get(cut..).unwrap_or(word))
            }
            3 => "*".to_string(),
            _ => word.to_string(),
        }
    }

    /// A namespace value; rarely one with a `*` inside, which Istio turns into a regex
    /// and cordon refuses (a deliberate difference, README).
    fn namespace(&mut self) -> String {
        if self.rng.chance(1) {
            self.rng.word(vocab::ODD_NAMESPACES)
        } else {
            self.form(vocab::NAMESPACES)
        }
    }

    fn list(&mut self, max: usize, mut one: impl FnMut(&mut Gen) -> String) -> Vec<String> {
        let n = self.rng.range(1, max);
        (0..n).map(|_| one(self)).collect()
    }

    fn ports(&self) -> [String; 4] {
        [
            self.ports.v4.to_string(),
            self.ports.v6.to_string(),
            "8080".to_string(),
            "15006".to_string(),
        ]
    }

    fn port(&mut self) -> String {
        let ports = self.ports();
        let index = self.rng.below(ports.len());
        ports.get(index).cloned().unwrap_or_default()
    }

    fn policy(&mut self, index: usize) -> Value {
        let namespace = match self.rng.weighted(&[60, 25, 15]) {
            0 => vocab::WORKLOAD_NAMESPACE.to_string(),
            1 => self.root.clone(),
            _ => "shop".to_string(),
        };
        let action = match self.rng.weighted(&[55, 35, 10]) {
            0 => "ALLOW",
            1 => "DENY",
            _ => "AUDIT",
        };
        let mut metadata = json!({"name": format!("p{index}"), "namespace": namespace});
        // Istio accepts the annotation on ALLOW and DENY policies only.
        if action != "AUDIT" && self.rng.chance(10) {
            if let Some(metadata) = metadata.as_object_mut() {
                metadata.insert("annotations".into(), json!({"istio.io/dry-run": "true"}));
            }
        }
        let mut spec = Map::new();
        match self.rng.weighted(&[60, 25, 10, 5]) {
            1 => {
                spec.insert(
                    "selector".into(),
                    json!({"matchLabels": {"app": "billing"}}),
                );
            }
            2 => {
                spec.insert(
                    "selector".into(),
                    json!({"matchLabels": {"app": "frontend"}}),
                );
            }
            3 => {
                spec.insert(
                    "selector".into(),
                    json!({"matchLabels": {"app": "billing", "version": "v2"}}),
                );
            }
            _ => {}
        }
        spec.insert("action".into(), json!(action));
        // ALLOW with no rules allows nothing; `[{}]` matches everything.
        match self
            .rng
            .weighted(&[if action == "DENY" { 0 } else { 4 }, 5, 91])
        {
            0 => {}
            1 => {
                spec.insert("rules".into(), json!([{}]));
            }
            _ => {
                let n = self.rng.weighted(&[0, 60, 30, 10]);
                let rules: Vec<Value> = (0..n).map(|_| self.rule()).collect();
                spec.insert("rules".into(), Value::Array(rules));
            }
        }
        json!({
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": metadata,
            "spec": spec,
        })
    }

    fn rule(&mut self) -> Value {
        let mut rule = Map::new();
        let (from, to, when) = loop {
            let picks = (
                self.rng.chance(55),
                self.rng.chance(55),
                self.rng.chance(40),
            );
            if picks.0 || picks.1 || picks.2 {
                break picks;
            }
        };
        if from {
            let n = self.rng.weighted(&[0, 80, 20]);
            let sources: Vec<Value> = (0..n).map(|_| json!({"source": self.source()})).collect();
            rule.insert("from".into(), Value::Array(sources));
        }
        if to {
            let n = self.rng.weighted(&[0, 80, 20]);
            let operations: Vec<Value> = (0..n)
                .map(|_| json!({"operation": self.operation()}))
                .collect();
            rule.insert("to".into(), Value::Array(operations));
        }
        if when {
            let n = self.rng.weighted(&[0, 75, 25]);
            let conditions: Vec<Value> = (0..n).map(|_| self.condition()).collect();
            rule.insert("when".into(), Value::Array(conditions));
        }
        Value::Object(rule)
    }

    fn source(&mut self) -> Value {
        const FIELDS: &[&str] = &[
            "principals",
            "notPrincipals",
            "namespaces",
            "notNamespaces",
            "serviceAccounts",
            "notServiceAccounts",
            "trustDomains",
            "notTrustDomains",
            "requestPrincipals",
            "notRequestPrincipals",
            "ipBlocks",
            "notIpBlocks",
            "remoteIpBlocks",
            "notRemoteIpBlocks",
        ];
        const WEIGHTS: &[u32] = &[14, 5, 10, 4, 8, 3, 5, 2, 10, 4, 6, 3, 4, 2];
        let mut source = Map::new();
        let n = self.rng.weighted(&[0, 70, 30]);
        for _ in 0..n {
            let field = FIELDS
                .get(self.rng.weighted(WEIGHTS))
                .copied()
                .unwrap_or("principals");
            let accounts = field.ends_with("erviceAccounts");
            let identity = field.ends_with("rincipals") && !field.contains("equest")
                || field.ends_with("amespaces");
            // Istio refuses serviceAccounts next to principals or namespaces.
            let has_accounts = source.keys().any(|k| k.ends_with("erviceAccounts"));
            let has_identity = source.keys().any(|k| {
                (k.ends_with("rincipals") && !k.contains("equest")) || k.ends_with("amespaces")
            });
            if (accounts && has_identity) || (identity && has_accounts) {
                continue;
            }
            let values = match field {
                "principals" | "notPrincipals" => self.list(3, |g| g.form(vocab::PRINCIPALS)),
                "namespaces" | "notNamespaces" => self.list(2, Gen::namespace),
                "serviceAccounts" | "notServiceAccounts" => {
                    self.list(2, |g| g.rng.word(vocab::SERVICE_ACCOUNTS))
                }
                "trustDomains" | "notTrustDomains" => {
                    self.list(2, |g| g.form(vocab::TRUST_DOMAINS))
                }
                "requestPrincipals" | "notRequestPrincipals" => {
                    self.list(2, |g| g.form(vocab::REQUEST_PRINCIPALS))
                }
                _ => self.list(2, |g| g.rng.word(vocab::IPS)),
            };
            source.insert(field.to_string(), json!(values));
        }
        if source.is_empty() {
            source.insert("principals".into(), json!(["*"]));
        }
        Value::Object(source)
    }

    fn operation(&mut self) -> Value {
        const FIELDS: &[&str] = &[
            "hosts",
            "notHosts",
            "ports",
            "notPorts",
            "methods",
            "notMethods",
            "paths",
            "notPaths",
        ];
        const WEIGHTS: &[u32] = &[10, 4, 8, 3, 14, 5, 20, 7];
        let mut operation = Map::new();
        let n = self.rng.weighted(&[0, 65, 30, 5]);
        for _ in 0..n {
            let field = FIELDS
                .get(self.rng.weighted(WEIGHTS))
                .copied()
                .unwrap_or("paths");
            let values = match field {
                "hosts" | "notHosts" => self.list(2, |g| {
                    if g.rng.chance(70) {
                        g.rng.word(vocab::POLICY_HOSTS)
                    } else {
                        g.form(vocab::REQUEST_HOSTS)
                    }
                }),
                "ports" | "notPorts" => self.list(2, Gen::port),
                "methods" | "notMethods" => self.list(2, |g| g.rng.word(vocab::METHODS)),
                _ => self.list(3, |g| match g.rng.weighted(&[68, 30, 2]) {
                    0 => g.rng.word(vocab::POLICY_PATHS),
                    1 => g.form(vocab::REQUEST_PATHS),
                    _ => g.rng.word(vocab::ODD_POLICY_PATHS),
                }),
            };
            operation.insert(field.to_string(), json!(values));
        }
        Value::Object(operation)
    }

    fn condition(&mut self) -> Value {
        const KEYS: &[&str] = &[
            "request.headers",
            "source.ip",
            "remote.ip",
            "source.namespace",
            "source.serviceAccount",
            "source.trustDomain",
            "source.principal",
            "request.auth.principal",
            "request.auth.audiences",
            "request.auth.presenter",
            "request.auth.claims",
            "destination.ip",
            "destination.port",
            "connection.sni",
        ];
        const WEIGHTS: &[u32] = &[16, 5, 4, 5, 4, 3, 5, 6, 4, 3, 18, 3, 4, 4];
        let base = KEYS
            .get(self.rng.weighted(WEIGHTS))
            .copied()
            .unwrap_or("source.ip");
        let key = match base {
            "request.headers" => {
                let name = self.rng.word(vocab::HEADER_NAMES);
                let name = if self.rng.chance(10) {
                    name.to_uppercase()
                } else {
                    name
                };
                let name = match self.rng.weighted(&[80, 5, 15]) {
                    0 => name,
                    1 => "x-missing".to_string(),
                    _ => self.rng.word(vocab::PSEUDO_HEADERS),
                };
                format!("request.headers[{name}]")
            }
            "request.auth.claims" => {
                let path = self
                    .rng
                    .pick(vocab::CLAIM_KEYS)
                    .copied()
                    .unwrap_or(&["scope"]);
                let mut key = "request.auth.claims".to_string();
                for part in path {
                    key.push_str(&format!("[{part}]"));
                }
                key
            }
            other => other.to_string(),
        };
        let values = |g: &mut Gen| -> Vec<String> {
            match base {
                "request.headers" if key.contains("[:path]") => {
                    g.list(2, |g| g.form(vocab::REQUEST_PATHS))
                }
                "request.headers" if key.contains("[:authority]") || key.contains("[host]") => {
                    g.list(2, |g| g.form(vocab::REQUEST_HOSTS))
                }
                "request.headers" if key.contains("[:method]") => {
                    g.list(2, |g| g.rng.word(vocab::METHODS))
                }
                "request.headers" => g.list(2, |g| {
                    let words: Vec<&str> = vocab::HEADER_VALUES
                        .iter()
                        .copied()
                        .filter(|v| !v.is_empty())
                        .collect();
                    g.form(&words)
                }),
                "source.ip" | "remote.ip" | "destination.ip" => {
                    g.list(2, |g| g.rng.word(vocab::IPS))
                }
                "source.namespace" => g.list(2, Gen::namespace),
                "source.serviceAccount" => g.list(2, |g| g.rng.word(vocab::SERVICE_ACCOUNTS)),
                "source.trustDomain" => g.list(2, |g| g.form(vocab::TRUST_DOMAINS)),
                "source.principal" => g.list(2, |g| g.form(vocab::PRINCIPALS)),
                "request.auth.principal" => g.list(2, |g| g.form(vocab::REQUEST_PRINCIPALS)),
                "request.auth.audiences" => g.list(2, |g| g.form(vocab::AUDIENCES)),
                "request.auth.presenter" => g.list(2, |g| g.form(vocab::PRESENTERS)),
                "request.auth.claims" => g.list(2, |g| g.form(vocab::CLAIM_VALUES)),
                "destination.port" => g.list(2, Gen::port),
                _ => g.list(2, |g| g.form(vocab::SNI_NAMES)),
            }
        };
        let mut condition = Map::new();
        condition.insert("key".into(), json!(key));
        match self.rng.weighted(&[65, 20, 15]) {
            0 => {
                condition.insert("values".into(), json!(values(self)));
            }
            1 => {
                condition.insert("notValues".into(), json!(values(self)));
            }
            _ => {
                condition.insert("values".into(), json!(values(self)));
                condition.insert("notValues".into(), json!(values(self)));
            }
        }
        Value::Object(condition)
    }

    fn request(&mut self, profiles: usize, tokens: usize) -> Request {
        let method = match self.rng.weighted(&[45, 25, 30]) {
            0 => "GET".to_string(),
            1 => "POST".to_string(),
            _ => self.rng.word(vocab::METHODS),
        };
        let mut headers = Vec::new();
        let lines = self.rng.weighted(&[30, 35, 20, 15]);
        for _ in 0..lines {
            let name = self.rng.word(vocab::HEADER_NAMES);
            let name = if self.rng.chance(10) {
                name.to_uppercase()
            } else {
                name
            };
            headers.push((name, self.rng.word(vocab::HEADER_VALUES)));
        }
        if self.rng.chance(15) {
            headers.push((
                "x-forwarded-for".to_string(),
                self.rng.word(vocab::FORWARDED_FOR),
            ));
        }
        Request {
            profile: self.rng.below(profiles),
            method,
            target: self.rng.word(vocab::REQUEST_PATHS),
            host: self.rng.word(vocab::REQUEST_HOSTS),
            headers,
            token: if tokens > 0 && self.rng.chance(70) {
                Some(self.rng.below(tokens))
            } else {
                None
            },
        }
    }
}
