//! A deterministic generated mesh of AuthorizationPolicies, for the blast-radius tests and
//! benchmark (`cargo run --release -p cordon-lifecycle --example mesh_policies`).
//!
//! `namespaces` namespaces `ns00`, `ns01`, … each hold [`WORKLOADS`] workloads (`app: w00`…)
//! running as [`ACCOUNTS`] service accounts (`sa0`…`sa9`, workload `wNN` as `sa<NN mod 10>`),
//! so the mesh has `namespaces × 10` identities. Each namespace has one ALLOW policy per
//! workload but the last (`w49` keeps no policy of its own: it is one of the namespace's
//! other workloads), each with one to three rules, and one namespace-wide DENY policy that
//! closes `/admin/{**}` to callers from other namespaces: 50 policies a namespace, 3,000 for
//! 60 namespaces. A rule names one to three callers, mostly exact principals, sometimes a
//! whole namespace (`namespaces`), a principal prefix (`cluster.local/ns/ns03/sa/*`) or a
//! request principal as a condition, and one or two operations with methods and paths
//! drawn from exact paths, prefixes (`/api/v1/items*`) and templates
//! (`/api/v1/items/{*}/status`, `/api/{**}`). A seeded xorshift makes every choice, so a
//! given size and seed always give the same policies.

use serde_json::{json, Value};

/// Workloads per namespace.
pub const WORKLOADS: usize = 50;

/// Service accounts per namespace.
pub const ACCOUNTS: usize = 10;

const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH"];

const RESOURCES: &[&str] = &[
    "orders", "items", "users", "carts", "payments", "reports", "events", "accounts",
];

/// xorshift64*: small, fast, and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..bound` (`bound` > 0).
    fn below(&mut self, bound: usize) -> usize {
        let bound = bound.max(1) as u64;
        usize::try_from(self.next() % bound).unwrap_or(0)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        let at = self.below(items.len());
        items.get(at).copied().unwrap_or("")
    }
}

/// The namespace name for an index.
pub fn namespace(index: usize) -> String {
    format!("ns{index:02}")
}

/// The principal (no scheme) of service account `account` of namespace `index`.
pub fn principal(index: usize, account: usize) -> String {
    format!("cluster.local/ns/{}/sa/sa{account}", namespace(index))
}

/// The policies of a mesh of `namespaces` namespaces (see the module documentation), as
/// JSON values `parse_policies` reads.
pub fn policies(namespaces: usize, seed: u64) -> Vec<Value> {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut out = Vec::with_capacity(namespaces * WORKLOADS);
    for ns in 0..namespaces {
        for workload in 0..WORKLOADS.saturating_sub(1) {
            let rules: Vec<Value> = (0..1 + rng.below(3))
                .map(|_| rule(&mut rng, namespaces, ns))
                .collect();
            out.push(json!({
                "apiVersion": "security.istio.io/v1",
                "kind": "AuthorizationPolicy",
                "metadata": {"name": format!("w{workload:02}-allow"), "namespace": namespace(ns)},
                "spec": {
                    "selector": {"matchLabels": {"app": format!("w{workload:02}")}},
                    "action": "ALLOW",
                    "rules": rules,
                }
            }));
        }
        out.push(json!({
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": {"name": "admin-deny", "namespace": namespace(ns)},
            "spec": {
                "action": "DENY",
                "rules": [{
                    "from": [{"source": {"notNamespaces": [namespace(ns)]}}],
                    "to": [{"operation": {"paths": ["/admin/{**}", "/admin"]}}],
                }],
            }
        }));
    }
    out
}

fn rule(rng: &mut Rng, namespaces: usize, own: usize) -> Value {
    // Callers: half from the own namespace, half from anywhere.
    let caller_ns = |rng: &mut Rng| {
        if rng.below(2) == 0 {
            own
        } else {
            rng.below(namespaces.max(1))
        }
    };
    let mut source = serde_json::Map::new();
    let kind = rng.below(20);
    if kind == 0 {
        source.insert("namespaces".into(), json!([namespace(caller_ns(rng))]));
    } else if kind == 1 {
        source.insert(
            "principals".into(),
            json!([format!(
                "cluster.local/ns/{}/sa/*",
                namespace(caller_ns(rng))
            )]),
        );
    } else {
        let count = 1 + rng.below(3);
        let principals: Vec<String> = (0..count)
            .map(|_| {
                let ns = caller_ns(rng);
                principal(ns, rng.below(ACCOUNTS))
            })
            .collect();
        source.insert("principals".into(), json!(principals));
        if kind == 2 {
            source.insert("requestPrincipals".into(), json!(["https://idp.example/*"]));
        }
    }
    let operations: Vec<Value> = (0..1 + rng.below(2))
        .map(|_| {
            let methods: Vec<&str> = (0..1 + rng.below(2)).map(|_| rng.pick(METHODS)).collect();
            let resource = rng.pick(RESOURCES);
            let path = match rng.below(6) {
                0 | 1 => format!("/api/v1/{resource}"),
                2 | 3 => format!("/api/v1/{resource}*"),
                4 => format!("/api/v1/{resource}/{{*}}/status"),
                _ => "/api/{**}".to_string(),
            };
            let mut paths = vec![path];
            if rng.below(4) == 0 {
                paths.push("/admin/{**}".to_string());
            }
            json!({"operation": {"methods": methods, "paths": paths}})
        })
        .collect();
    json!({"from": [{"source": source}], "to": operations})
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use cordon_engine::model::parse_policies;

    #[test]
    fn the_generated_mesh_is_valid_and_deterministic() {
        let values = policies(4, 1);
        assert_eq!(values.len(), 4 * WORKLOADS);
        assert_eq!(values, policies(4, 1));
        assert_ne!(values, policies(4, 2));
        let (parsed, _, errors) = parse_policies(&values);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(parsed.len(), values.len());
    }
}
