//! Deterministic synthetic mesh traffic, for the lifecycle tests and benchmarks.
//!
//! A shop of thirteen workloads in five namespaces (plus the ingress gateway as a caller)
//! talks over REST paths full of numbers, UUIDs, hex tokens and prefixed IDs. Mixed in,
//! always the same few dozen records whatever the size: attackers probing — plaintext
//! callers, a compromised `frontend` calling workloads it never calls, a stray
//! `default/sa/default` identity, and a compromised `reviews` whose attempts the filter
//! refused (written as Envoy decision-log lines). Every record says whether it is
//! legitimate, so tests know what a discovered policy must allow and deny.

use std::fmt::Write as _;

use super::time::{format_rfc3339, parse_rfc3339, Millis};

/// The trust domain of the synthetic mesh.
pub const TRUST_DOMAIN: &str = "cluster.local";

/// A destination workload: namespace and `app` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Workload {
    /// Namespace.
    pub namespace: &'static str,
    /// `app` label.
    pub app: &'static str,
}

/// Every workload of the mesh.
pub const WORKLOADS: &[Workload] = &[
    Workload {
        namespace: "shop",
        app: "frontend",
    },
    Workload {
        namespace: "shop",
        app: "cart",
    },
    Workload {
        namespace: "shop",
        app: "checkout",
    },
    Workload {
        namespace: "shop",
        app: "orders",
    },
    Workload {
        namespace: "catalog",
        app: "products",
    },
    Workload {
        namespace: "catalog",
        app: "search",
    },
    Workload {
        namespace: "catalog",
        app: "reviews",
    },
    Workload {
        namespace: "identity",
        app: "users",
    },
    Workload {
        namespace: "identity",
        app: "auth",
    },
    Workload {
        namespace: "finance",
        app: "billing",
    },
    Workload {
        namespace: "finance",
        app: "payments",
    },
    Workload {
        namespace: "finance",
        app: "ledger",
    },
    Workload {
        namespace: "messaging",
        app: "notifier",
    },
];

/// A calling identity: namespace and service account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Caller {
    /// Namespace.
    pub namespace: &'static str,
    /// Service account.
    pub service_account: &'static str,
}

impl Caller {
    /// `spiffe://cluster.local/ns/<ns>/sa/<sa>`.
    pub fn spiffe_id(&self) -> String {
        format!(
            "spiffe://{TRUST_DOMAIN}/ns/{}/sa/{}",
            self.namespace, self.service_account
        )
    }

    /// The principal as Istio writes it (no scheme).
    pub fn principal(&self) -> String {
        format!(
            "{TRUST_DOMAIN}/ns/{}/sa/{}",
            self.namespace, self.service_account
        )
    }
}

const fn caller(namespace: &'static str, service_account: &'static str) -> Caller {
    Caller {
        namespace,
        service_account,
    }
}

const INGRESS: Caller = caller("istio-ingress", "istio-ingressgateway");
const FRONTEND: Caller = caller("shop", "frontend");
const CHECKOUT: Caller = caller("shop", "checkout");
const ORDERS: Caller = caller("shop", "orders");
const SEARCH: Caller = caller("catalog", "search");
const REVIEWS: Caller = caller("catalog", "reviews");
const PAYMENTS: Caller = caller("finance", "payments");
const BILLING: Caller = caller("finance", "billing");
const ADMIN_CONSOLE: Caller = caller("identity", "admin-console");
const STRAY: Caller = caller("default", "default");

/// How one path segment is filled in.
#[derive(Debug, Clone, Copy)]
enum Part {
    Lit(&'static str),
    Number,
    Uuid,
    Hex,
    Prefixed(&'static str),
    Query(&'static str),
}

/// One legitimate operation on an edge.
#[derive(Debug, Clone, Copy)]
struct Operation {
    method: &'static str,
    parts: &'static [Part],
    weight: u32,
}

/// A legitimate edge: who calls which workload, with what.
#[derive(Debug, Clone, Copy)]
struct Edge {
    caller: Caller,
    workload: usize,
    host: Option<&'static str>,
    operations: &'static [Operation],
}

const fn op(method: &'static str, parts: &'static [Part], weight: u32) -> Operation {
    Operation {
        method,
        parts,
        weight,
    }
}

use Part::{Hex, Lit, Number, Prefixed, Query, Uuid};

const EDGES: &[Edge] = &[
    Edge {
        caller: INGRESS,
        workload: 0,
        host: Some("shop.example.com"),
        operations: &[
            op("GET", &[Lit("")], 30),
            op("GET", &[Lit("products"), Number], 40),
            op(
                "GET",
                &[Lit("static"), Lit("js"), Lit("main.3f2a9c1e.js")],
                10,
            ),
            op("POST", &[Lit("cart"), Lit("items")], 8),
        ],
    },
    Edge {
        caller: FRONTEND,
        workload: 4,
        host: None,
        operations: &[
            op("GET", &[Lit("v1"), Lit("products"), Query("page")], 20),
            op("GET", &[Lit("v1"), Lit("products"), Number], 60),
        ],
    },
    Edge {
        caller: FRONTEND,
        workload: 5,
        host: None,
        operations: &[op("GET", &[Lit("v1"), Lit("search"), Query("q")], 25)],
    },
    Edge {
        caller: FRONTEND,
        workload: 1,
        host: None,
        operations: &[
            op("GET", &[Lit("v1"), Lit("carts"), Uuid], 30),
            op("POST", &[Lit("v1"), Lit("carts"), Uuid, Lit("items")], 15),
            op(
                "DELETE",
                &[Lit("v1"), Lit("carts"), Uuid, Lit("items"), Number],
                5,
            ),
        ],
    },
    Edge {
        caller: FRONTEND,
        workload: 7,
        host: None,
        operations: &[
            op("GET", &[Lit("users"), Number], 20),
            op("GET", &[Lit("users"), Lit("me")], 30),
            op("PUT", &[Lit("users"), Number, Lit("preferences")], 4),
        ],
    },
    Edge {
        caller: FRONTEND,
        workload: 8,
        host: None,
        operations: &[
            op("POST", &[Lit("v1"), Lit("sessions")], 10),
            op("DELETE", &[Lit("v1"), Lit("sessions"), Hex], 4),
        ],
    },
    Edge {
        caller: FRONTEND,
        workload: 3,
        host: None,
        operations: &[
            op("GET", &[Lit("v1"), Lit("orders"), Uuid], 12),
            op("GET", &[Lit("v1"), Lit("orders"), Query("customer")], 6),
        ],
    },
    Edge {
        caller: FRONTEND,
        workload: 6,
        host: None,
        operations: &[
            op(
                "GET",
                &[Lit("v1"), Lit("products"), Number, Lit("reviews")],
                15,
            ),
            op(
                "POST",
                &[Lit("v1"), Lit("products"), Number, Lit("reviews")],
                2,
            ),
        ],
    },
    Edge {
        caller: CHECKOUT,
        workload: 1,
        host: None,
        operations: &[op("GET", &[Lit("v1"), Lit("carts"), Uuid], 10)],
    },
    Edge {
        caller: CHECKOUT,
        workload: 3,
        host: None,
        operations: &[
            op("POST", &[Lit("v1"), Lit("orders")], 10),
            op("GET", &[Lit("v1"), Lit("orders"), Uuid], 5),
        ],
    },
    Edge {
        caller: CHECKOUT,
        workload: 10,
        host: None,
        operations: &[
            op("POST", &[Lit("v1"), Lit("payments")], 10),
            op("GET", &[Lit("v1"), Lit("payments"), Prefixed("pay_")], 4),
        ],
    },
    Edge {
        caller: ORDERS,
        workload: 9,
        host: None,
        operations: &[
            op("POST", &[Lit("v1"), Lit("invoices")], 8),
            op("GET", &[Lit("v1"), Lit("invoices"), Prefixed("inv-")], 4),
        ],
    },
    Edge {
        caller: ORDERS,
        workload: 12,
        host: None,
        operations: &[
            op("POST", &[Lit("v1"), Lit("notify"), Lit("email")], 8),
            op("POST", &[Lit("v1"), Lit("notify"), Lit("sms")], 3),
        ],
    },
    Edge {
        caller: PAYMENTS,
        workload: 11,
        host: None,
        operations: &[
            op("POST", &[Lit("v1"), Lit("entries")], 8),
            op(
                "GET",
                &[Lit("v1"), Lit("accounts"), Number, Lit("balance")],
                6,
            ),
        ],
    },
    Edge {
        caller: BILLING,
        workload: 11,
        host: None,
        operations: &[op("POST", &[Lit("v1"), Lit("entries")], 6)],
    },
    Edge {
        caller: SEARCH,
        workload: 4,
        host: None,
        operations: &[
            op("GET", &[Lit("v1"), Lit("products"), Number], 20),
            op("GET", &[Lit("v1"), Lit("products"), Query("page")], 5),
        ],
    },
    Edge {
        caller: ADMIN_CONSOLE,
        workload: 7,
        host: None,
        operations: &[
            op("POST", &[Lit("users"), Lit("export")], 3),
            op("GET", &[Lit("users"), Number], 3),
        ],
    },
];

/// One attack: who, where, what, and how the line is written.
#[derive(Debug, Clone, Copy)]
struct Attack {
    caller: Option<Caller>,
    workload: usize,
    method: &'static str,
    path: &'static str,
    /// Written as a decision-log line of a refused request.
    refused: bool,
}

const fn attack(
    caller: Option<Caller>,
    workload: usize,
    method: &'static str,
    path: &'static str,
    refused: bool,
) -> Attack {
    Attack {
        caller,
        workload,
        method,
        path,
        refused,
    }
}

const ATTACKS: &[Attack] = &[
    // Plaintext probes: no peer certificate.
    attack(None, 11, "GET", "/v1/accounts/1/balance", false),
    attack(None, 11, "GET", "/admin", false),
    attack(None, 7, "GET", "/.env", false),
    attack(None, 7, "GET", "/users/1", false),
    attack(None, 10, "POST", "/v1/payments", false),
    attack(None, 12, "POST", "/v1/notify/sms", false),
    // A compromised frontend reaching for workloads it never calls.
    attack(Some(FRONTEND), 11, "GET", "/v1/accounts/1/balance", false),
    attack(Some(FRONTEND), 11, "GET", "/v1/accounts/2/balance", false),
    attack(Some(FRONTEND), 10, "GET", "/v1/payments", false),
    attack(Some(FRONTEND), 9, "GET", "/admin/reindex", false),
    attack(Some(FRONTEND), 12, "POST", "/v1/notify/email", false),
    attack(Some(FRONTEND), 2, "POST", "/v1/checkout", false),
    // A stray identity nobody granted anything.
    attack(Some(STRAY), 7, "GET", "/users/me", false),
    attack(Some(STRAY), 8, "POST", "/v1/sessions", false),
    attack(Some(STRAY), 3, "GET", "/v1/orders", false),
    // A compromised reviews service, refused by the filter (decision-log lines).
    attack(Some(REVIEWS), 7, "GET", "/users/1", true),
    attack(Some(REVIEWS), 7, "GET", "/users/2", true),
    attack(Some(REVIEWS), 7, "GET", "/users/3", true),
    attack(Some(REVIEWS), 7, "GET", "/users/4", true),
    attack(Some(REVIEWS), 7, "GET", "/users/5", true),
    attack(Some(REVIEWS), 7, "GET", "/users/6", true),
    attack(Some(REVIEWS), 7, "POST", "/users/export", true),
    attack(Some(REVIEWS), 7, "POST", "/users/export", true),
    attack(Some(REVIEWS), 11, "GET", "/v1/accounts/7/balance", true),
    attack(Some(REVIEWS), 11, "GET", "/v1/accounts/8/balance", true),
    attack(Some(REVIEWS), 11, "GET", "/v1/accounts/9/balance", true),
    attack(Some(REVIEWS), 11, "GET", "/v1/accounts/10/balance", true),
    attack(Some(REVIEWS), 11, "GET", "/v1/accounts/11/balance", true),
    attack(Some(REVIEWS), 11, "GET", "/v1/accounts/12/balance", true),
];

/// One generated line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntheticRecord {
    /// The JSONL line (a traffic record, or an Envoy decision-log line).
    pub line: String,
    /// Part of the mesh's normal traffic (not an attack).
    pub legitimate: bool,
    /// The caller's principal (no scheme), `None` for plaintext.
    pub principal: Option<String>,
    /// The destination.
    pub workload: Workload,
}

/// The `index`th of an endless list of distinct lowercase names without digits (`na`,
/// `nb`, … `naab`, …): path segments templating keeps literal, unlike IDs.
pub fn literal_name(mut index: usize) -> String {
    let mut text = String::from("n");
    loop {
        text.push(char::from(b'a' + (index % 26) as u8));
        index /= 26;
        if index == 0 {
            return text;
        }
    }
}

/// The mesh's legitimate (principal, workload) pairs.
pub fn legitimate_pairs() -> Vec<(String, Workload)> {
    let mut pairs: Vec<(String, Workload)> = EDGES
        .iter()
        .filter_map(|edge| Some((edge.caller.principal(), *WORKLOADS.get(edge.workload)?)))
        .collect();
    pairs.sort();
    pairs.dedup();
    pairs
}

/// Every identity that appears in the traffic, legitimate or not (principals, no scheme).
pub fn identities() -> Vec<String> {
    let mut all: Vec<String> = EDGES
        .iter()
        .map(|edge| edge.caller.principal())
        .chain(
            ATTACKS
                .iter()
                .filter_map(|a| a.caller.map(|c| c.principal())),
        )
        .collect();
    all.sort();
    all.dedup();
    all
}

/// A small, fast, seeded generator (SplitMix64).
#[derive(Debug, Clone)]
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }
}

/// Generates `count` lines of traffic (plus the fixed attacks, spread through it),
/// deterministic for a `seed`. Times start at 2026-11-20T00:00:00Z and advance by
/// `step_millis` per record.
#[derive(Debug, Clone)]
pub struct Generator {
    random: Random,
    count: usize,
    produced: usize,
    attacks: usize,
    time: Millis,
    step_millis: Millis,
    total_weight: u64,
}

impl Generator {
    /// A generator of `count` legitimate records and the attacks.
    pub fn new(count: usize, seed: u64) -> Generator {
        let total_weight = EDGES
            .iter()
            .flat_map(|edge| edge.operations.iter())
            .map(|operation| u64::from(operation.weight))
            .sum();
        Generator {
            random: Random(seed),
            count,
            produced: 0,
            attacks: 0,
            time: parse_rfc3339("2026-11-20T00:00:00Z").unwrap_or(0),
            step_millis: 600,
            total_weight,
        }
    }

    /// Milliseconds between consecutive records (default 600).
    pub fn step_millis(mut self, step: Millis) -> Generator {
        self.step_millis = step;
        self
    }

    fn legitimate(&mut self) -> Option<SyntheticRecord> {
        let mut pick = self.random.below(self.total_weight);
        for edge in EDGES {
            for operation in edge.operations {
                let weight = u64::from(operation.weight);
                if pick < weight {
                    return self.render_edge(edge, operation);
                }
                pick -= weight;
            }
        }
        None
    }

    fn render_edge(&mut self, edge: &Edge, operation: &Operation) -> Option<SyntheticRecord> {
        let workload = *WORKLOADS.get(edge.workload)?;
        let mut path = String::new();
        let mut query = String::new();
        for part in operation.parts {
            match part {
                Lit(text) => {
                    path.push('/');
                    path.push_str(text);
                }
                Number => {
                    let _ = write!(path, "/{}", 1 + self.random.below(50_000));
                }
                Uuid => {
                    let a = self.random.next();
                    let b = self.random.next();
                    let _ = write!(
                        path,
                        "/{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
                        a >> 32,
                        (a >> 16) & 0xffff,
                        a & 0xfff,
                        (b >> 48) & 0xfff,
                        b & 0xffff_ffff_ffff
                    );
                }
                Hex => {
                    let _ = write!(
                        path,
                        "/{:016x}{:016x}",
                        self.random.next(),
                        self.random.next()
                    );
                }
                Prefixed(prefix) => {
                    let _ = write!(path, "/{prefix}{}", 10_000 + self.random.below(90_000));
                }
                Query(name) => {
                    let _ = write!(query, "?{name}={}", self.random.below(100));
                }
            }
        }
        path.push_str(&query);
        let host = edge.host.map_or_else(
            || {
                format!(
                    "{}.{}.svc.cluster.local:8080",
                    workload.app, workload.namespace
                )
            },
            str::to_string,
        );
        let line = self.render(
            Some(edge.caller),
            workload,
            operation.method,
            &path,
            &host,
            None,
        );
        Some(SyntheticRecord {
            line,
            legitimate: true,
            principal: Some(edge.caller.principal()),
            workload,
        })
    }

    fn render_attack(&mut self, attack: &Attack) -> Option<SyntheticRecord> {
        let workload = *WORKLOADS.get(attack.workload)?;
        let host = format!(
            "{}.{}.svc.cluster.local:8080",
            workload.app, workload.namespace
        );
        let decision = attack.refused.then_some(
            r#""decision":{"allowed":false,"enforced":true,"status":403,"reason":"no_allow_match","policy":null,"audit":null,"dry_run":{"allowed":false,"policy":null},"identity":"verified"}"#,
        );
        let record = self.render(
            attack.caller,
            workload,
            attack.method,
            attack.path,
            &host,
            decision,
        );
        let line = if attack.refused {
            format!(
                "[{}][27][info][wasm] [source/extensions/common/wasm/context.cc:1195] wasm log cordon cordon_root: cordon.decision {record}",
                format_rfc3339(self.time).replace('T', " ").trim_end_matches('Z')
            )
        } else {
            record
        };
        Some(SyntheticRecord {
            line,
            legitimate: false,
            principal: attack.caller.map(|c| c.principal()),
            workload,
        })
    }

    fn render(
        &mut self,
        caller: Option<Caller>,
        workload: Workload,
        method: &str,
        path: &str,
        host: &str,
        decision: Option<&str>,
    ) -> String {
        let request_id = self.random.next();
        let source_ip = 1 + self.random.below(250);
        let source = match caller {
            Some(caller) => format!(
                r#"{{"principal":"{}","ip":"10.1.{source_ip}.{}"}}"#,
                caller.spiffe_id(),
                1 + request_id % 250
            ),
            None => format!(r#"{{"ip":"10.9.{source_ip}.{}"}}"#, 1 + request_id % 250),
        };
        let mtls = caller.is_some();
        let mut line = format!(
            r#"{{"source":{source},"destination":{{"ip":"10.2.0.{}","port":8080,"namespace":"{}","labels":{{"app":"{}","version":"v3"}}}},"connection":{{"mtls":{mtls},"sni":"{}.{}.svc.cluster.local"}},"request":{{"method":"{method}","path":"{path}","host":"{host}","headers":{{"user-agent":"mesh-client/1.8","x-request-id":"{request_id:016x}"}}}},"time":"{}""#,
            1 + (request_id >> 8) % 200,
            workload.namespace,
            workload.app,
            workload.app,
            workload.namespace,
            format_rfc3339(self.time),
        );
        if let Some(decision) = decision {
            line.push(',');
            line.push_str(decision);
        }
        line.push('}');
        self.time += self.step_millis;
        line
    }
}

impl Iterator for Generator {
    type Item = SyntheticRecord;

    fn next(&mut self) -> Option<SyntheticRecord> {
        let total = self.count + ATTACKS.len();
        let position = self.produced + self.attacks;
        if position >= total {
            return None;
        }
        // Attack k goes at position (k + 1) * total / (attacks + 1).
        let due = (self.attacks + 1) * total / (ATTACKS.len() + 1);
        if self.attacks < ATTACKS.len() && (position >= due || self.produced >= self.count) {
            let attack = *ATTACKS.get(self.attacks)?;
            self.attacks += 1;
            return self.render_attack(&attack);
        }
        self.produced += 1;
        self.legitimate()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn deterministic_and_valid() {
        let first: Vec<SyntheticRecord> = Generator::new(500, 7).collect();
        let again: Vec<SyntheticRecord> = Generator::new(500, 7).collect();
        assert_eq!(first, again);
        assert_eq!(first.len(), 500 + ATTACKS.len());
        assert_eq!(
            first.iter().filter(|r| !r.legitimate).count(),
            ATTACKS.len()
        );
        for record in &first {
            let read = cordon_engine::traffic::read_line(record.line.as_bytes()).unwrap();
            assert!(matches!(read, cordon_engine::traffic::Line::Record(_)));
        }
        assert_eq!(WORKLOADS.len(), 13);
        assert!(legitimate_pairs().len() >= 15);
    }
}
