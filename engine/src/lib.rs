//! # cordon-engine
//!
//! Istio AuthorizationPolicy semantics, compiled once and evaluated per request at a cost
//! that does not grow with the number of rules.
//!
//! The engine is the part of cordon that decides. It knows nothing of proxies: a caller
//! (the proxy-wasm filter, the `cordon` CLI, a benchmark) hands it policies as JSON values
//! and requests as borrowed attributes, and gets decisions back.
//!
//! The layers, each a module:
//! - [`model`]: AuthorizationPolicy objects read from JSON and validated as Istio's
//!   admission webhook does; errors name the policy, the field path and the problem.
//! - [`compile`]: validated policies become an immutable [`PolicySet`] for one workload:
//!   value sets shared across rules, per-attribute indexes (hash tables, tries, one
//!   trie over path segments for templates), rules expanded into triggered conjunctions.
//! - [`evaluate`]: one request becomes a [`Decision`]: DENY first, then ALLOW, AUDIT
//!   marked, dry-run policies evaluated in shadow.
//! - [`spiffe`] and [`path`]: peer identity validation and request path normalization.
//! - [`reference`]: a deliberately simple interpreter of the same semantics, used to test
//!   the compiled evaluator and as a baseline in benchmarks.
//!
//! # Example
//!
//! ```
//! use cordon_engine::{Options, PolicySet, Request};
//!
//! let policy = serde_json::json!({
//!     "apiVersion": "security.istio.io/v1",
//!     "kind": "AuthorizationPolicy",
//!     "metadata": {"name": "credits", "namespace": "finance"},
//!     "spec": {"rules": [{
//!         "from": [{"source": {"principals": ["cluster.local/ns/shop/sa/order-engine"]}}],
//!         "to": [{"operation": {"methods": ["POST"], "paths": ["/v1/credits"]}}]
//!     }]}
//! });
//! let set = PolicySet::compile(&[policy], Options::default()).unwrap();
//! let mut scratch = set.new_scratch();
//! let request = Request {
//!     peer_identity: Some("spiffe://cluster.local/ns/shop/sa/order-engine"),
//!     method: Some("POST"),
//!     path: Some("/v1/credits?id=7"),
//!     ..Request::default()
//! };
//! let decision = set.evaluate(&request, &mut scratch);
//! assert!(decision.allowed);
//! assert_eq!(set.rule_id(decision.policy.unwrap()), "ns[finance]-policy[credits]-rule[0]");
//! ```
//!
//! # Crate features
//! - `std` (default): implements `std::error::Error` for the error types. Without it the
//!   crate is `no_std` and needs only `alloc` (the filter builds it that way).
#![no_std]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

extern crate alloc;
#[cfg(any(test, feature = "std"))]
extern crate std;

pub mod compile;
pub mod diff;
pub mod error;
pub mod evaluate;
pub mod explain;
pub mod identity;
mod index;
pub mod lint;
pub mod model;
pub mod partial;
pub mod path;
pub mod pattern;
pub mod reference;
pub mod relation;
pub mod request;
pub mod spiffe;
pub mod traffic;

pub use compile::{Limits, Needs, Options, PolicySet, RuleInfo, RuleRole, Workload};
pub use error::{CompileError, PolicyError, PolicyWarning};
pub use evaluate::{Decision, Identity, Outcome, Reason, RuleRef, Scratch};
pub use model::{Action, Policy};
pub use path::{PathNormalization, PathRejection};
pub use request::{Claims, Headers, NoHeaders, Request};
pub use spiffe::{SpiffeError, SpiffeId};
pub use traffic::TrafficRecord;
