//! # cordon-lifecycle
//!
//! The segmentation lifecycle: map traffic, define least-privilege policy, simulate,
//! enforce, audit continuously. `cordon simulate` simulates and the filter enforces; these
//! modules do the rest. The crate is built on the engine alone (no Wasmtime), and never
//! judges a match itself: values, fields and rules are matched by `cordon_engine`
//! (`reference::Judge`, `partial`, `relation`).
//!
//! - [`sources`]: AuthorizationPolicy files (YAML or JSON) with the line and column of
//!   every field, read loudly (an unknown `kind` or a path with no policy is an error);
//! - [`discover`]: least-privilege AuthorizationPolicy from observed traffic (`cordon
//!   discover`), with [`templating`] turning request paths into Istio path templates;
//! - [`audit`]: a policy set held against observed traffic: stale and over-broad grants,
//!   denied requests grouped by identity and target, dry-run policies that would break live
//!   traffic (`cordon audit`);
//! - [`blast_radius`]: from the policies alone, what each identity can reach (`cordon
//!   blast-radius`), and [`blast_radius_html`] draws it as one self-contained HTML page;
//! - [`synthetic`]: deterministic generated mesh traffic for tests and benchmarks.
//!
//! Traffic is read line by line ([`input`]): memory holds aggregates, never the records.

pub mod audit;
pub mod blast_radius;
pub mod blast_radius_html;
pub mod discover;
pub mod input;
pub mod matcher;
pub mod sources;
pub mod synthetic;
pub mod templating;
pub mod time;
pub mod yaml;
