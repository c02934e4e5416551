//! The oracle: istiod's translation of AuthorizationPolicy into Envoy's native RBAC
//! filters (crate `cordon-rbac`), behind one adapter function.

use serde_json::Value;

pub use cordon_rbac::{MeshSettings, Translation, Workload};

/// What the oracle makes of a policy set.
#[derive(Debug, Clone)]
pub enum Oracle {
    /// istiod's translation; cordon accepts the policies too.
    Translated(Translation),
    /// istiod's translation, of policies cordon refuses (each error as `cordon check`
    /// says it): cordon would not load this configuration at all.
    CordonRefuses(Translation, Vec<String>),
    /// Not a well-formed policy set (the harness generated something Kubernetes would
    /// not store): nothing to compare.
    Malformed(String),
}

/// The oracle's view of `policies` for `workload`: `cordon_rbac::translate_unvalidated`
/// (istiod's translation of anything structurally valid), and whether cordon accepts the
/// policies (`cordon_rbac::translate`, which validates with cordon first).
pub fn translate(policies: &[Value], workload: &Workload, mesh: &MeshSettings) -> Oracle {
    let translation = match cordon_rbac::translate_unvalidated(policies, workload, mesh) {
        Ok(translation) => translation,
        Err(error) => return Oracle::Malformed(error.to_string()),
    };
    match cordon_rbac::translate(policies, workload, mesh) {
        Ok(_) => Oracle::Translated(translation),
        Err(cordon_rbac::TranslateError::Rejected(errors)) => Oracle::CordonRefuses(
            translation,
            errors.iter().map(ToString::to_string).collect(),
        ),
        Err(error) => Oracle::Malformed(error.to_string()),
    }
}
