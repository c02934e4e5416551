//! The corpus format of `policies/CORPUS-FORMAT.md` as typed structs. Every struct denies
//! unknown keys, so a misspelled key (`"polcy"`, `"polices"`) is a load error instead of a
//! check that silently never runs.

use cordon_engine::{Options, PathNormalization};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

/// One corpus file as written: `description`, default `policies` and `options`, `cases`.
///
/// The cases are kept as JSON values here so that each one is read on its own and an
/// error names the case it is in.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFile {
    pub(crate) description: String,
    #[serde(default)]
    pub(crate) policies: Option<Vec<Value>>,
    #[serde(default)]
    pub(crate) options: Option<CaseOptions>,
    pub(crate) cases: Vec<Value>,
}

/// One case: its name, the policies and options that override the file's, the request
/// (absent for a case whose policies must be rejected) and what is expected.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// A name unique in the whole corpus (kebab-case).
    pub name: String,
    /// Overrides the file's `policies`.
    #[serde(default)]
    pub policies: Option<Vec<Value>>,
    /// Overrides the file's `options`, key by key.
    #[serde(default)]
    pub options: Option<CaseOptions>,
    /// One traffic record, read by each engine with
    /// [`TrafficRecord::from_json`](cordon_engine::TrafficRecord::from_json). Present
    /// exactly when [`Case::expect`] is a decision.
    #[serde(default)]
    pub request: Option<Value>,
    /// The expected outcome.
    pub expect: Expect,
}

/// The compile options a file or a case sets; unset keys take the engine's defaults.
/// The names are the plugin configuration's (the filter reads the same keys).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseOptions {
    /// Istio's root namespace (`istio-system` when unset).
    #[serde(default)]
    pub root_namespace: Option<String>,
    /// The mesh's trust domain.
    #[serde(default)]
    pub trust_domain: Option<String>,
    /// Other names of the trust domain.
    #[serde(default)]
    pub trust_domain_aliases: Option<Vec<String>>,
    /// Request path normalization, by its configuration name (`STRICT`, `NONE`, ...).
    #[serde(default, deserialize_with = "path_normalization")]
    pub path_normalization: Option<PathNormalization>,
}

impl CaseOptions {
    /// These options, with every unset key taken from `base` (a case's options over its
    /// file's).
    pub fn over(&self, base: &CaseOptions) -> CaseOptions {
        CaseOptions {
            root_namespace: self
                .root_namespace
                .clone()
                .or_else(|| base.root_namespace.clone()),
            trust_domain: self
                .trust_domain
                .clone()
                .or_else(|| base.trust_domain.clone()),
            trust_domain_aliases: self
                .trust_domain_aliases
                .clone()
                .or_else(|| base.trust_domain_aliases.clone()),
            path_normalization: self.path_normalization.or(base.path_normalization),
        }
    }

    /// The engine's compile options: the defaults with every set key applied. The
    /// workload is left unset: an engine takes it from the request
    /// ([`TrafficRecord::workload`](cordon_engine::TrafficRecord::workload)).
    pub fn engine_options(&self) -> Options {
        let mut options = Options::default();
        if let Some(namespace) = &self.root_namespace {
            options.root_namespace.clone_from(namespace);
        }
        if let Some(domain) = &self.trust_domain {
            options.trust_domain = Some(domain.clone());
        }
        if let Some(aliases) = &self.trust_domain_aliases {
            options.trust_domain_aliases.clone_from(aliases);
        }
        if let Some(mode) = self.path_normalization {
            options.path_normalization = mode;
        }
        options
    }

    /// The set keys as plugin configuration settings (the JSON object the filter reads),
    /// for engines that run the `.wasm`.
    pub fn settings(&self) -> Map<String, Value> {
        let mut settings = Map::new();
        if let Some(namespace) = &self.root_namespace {
            settings.insert("root_namespace".into(), Value::from(namespace.as_str()));
        }
        if let Some(domain) = &self.trust_domain {
            settings.insert("trust_domain".into(), Value::from(domain.as_str()));
        }
        if let Some(aliases) = &self.trust_domain_aliases {
            settings.insert("trust_domain_aliases".into(), Value::from(aliases.clone()));
        }
        if let Some(mode) = self.path_normalization {
            settings.insert("path_normalization".into(), Value::from(mode.name()));
        }
        settings
    }
}

fn path_normalization<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<PathNormalization>, D::Error> {
    let name = String::deserialize(deserializer)?;
    PathNormalization::from_name(&name).map(Some).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "unknown path_normalization `{name}`: expected `STRICT`, `NONE`, `BASE`, `MERGE_SLASHES` or `DECODE_AND_MERGE_SLASHES`"
        ))
    })
}

/// What a case expects: a decision for its request, or that its policies are rejected.
/// Exactly one of the two; a case that states neither fails to load.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawExpect")]
pub enum Expect {
    /// The policies compile and decide the request so.
    Decision(ExpectDecision),
    /// The policies are rejected with this error.
    Error(ExpectError),
}

/// An allow or a deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// The request proceeds.
    Allow,
    /// The request is refused.
    Deny,
}

impl Decision {
    /// Whether the request proceeds.
    pub fn allowed(self) -> bool {
        self == Decision::Allow
    }

    /// `allow` or `deny`, as the corpus spells it.
    pub fn name(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
        }
    }

    /// The decision for `allowed`.
    pub fn of(allowed: bool) -> Decision {
        if allowed {
            Decision::Allow
        } else {
            Decision::Deny
        }
    }
}

/// The peer identity an engine saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExpectedIdentity {
    /// A valid SPIFFE identity.
    Verified,
    /// No peer identity (plaintext, or no certificate).
    None,
    /// A peer identity that is not a valid SPIFFE id.
    Invalid,
}

impl ExpectedIdentity {
    /// The name the engine's `Identity::name` gives.
    pub fn name(self) -> &'static str {
        match self {
            ExpectedIdentity::Verified => "verified",
            ExpectedIdentity::None => "none",
            ExpectedIdentity::Invalid => "invalid",
        }
    }
}

/// The expected decision and, when present, the other fields an engine reports.
/// An absent field is not checked; `Some(None)` expects JSON `null` (no rule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectDecision {
    /// Allow or deny.
    pub decision: Decision,
    /// The response status; 200 for an allow and 403 for a deny when unset.
    pub status: Option<u16>,
    /// The deciding rule's id (`Some(None)`: no rule decided).
    pub policy: Option<Option<String>>,
    /// The first matching AUDIT rule's id (`Some(None)`: none matched).
    pub audit: Option<Option<String>>,
    /// The decision with dry-run policies enforced too.
    pub dry_run: Option<ExpectDryRun>,
    /// The peer identity as the engine saw it.
    pub identity: Option<ExpectedIdentity>,
    /// A substring (any case) of one of the compile warnings.
    pub warning: Option<String>,
}

impl ExpectDecision {
    /// The status the case expects: its `status`, or 200 for an allow, 403 for a deny.
    pub fn expected_status(&self) -> u16 {
        self.status.unwrap_or(match self.decision {
            Decision::Allow => 200,
            Decision::Deny => 403,
        })
    }
}

/// The expected decision with dry-run policies enforced.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectDryRun {
    /// Allow or deny.
    pub decision: Decision,
    /// The deciding rule (`Some(None)`: none); not checked when absent.
    #[serde(default, deserialize_with = "present")]
    pub policy: Option<Option<String>>,
}

/// The error a case's policies must be rejected with; every field is required.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectError {
    /// `namespace/name` of the rejected policy.
    pub policy: String,
    /// The JSON path of the field inside the policy object.
    pub field: String,
    /// A substring (any case) of the message.
    pub contains: String,
}

/// `expect` as written, before the decision-or-error rule is applied.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    #[serde(default)]
    decision: Option<Decision>,
    #[serde(default)]
    status: Option<u16>,
    #[serde(default, deserialize_with = "present")]
    policy: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    audit: Option<Option<String>>,
    #[serde(default)]
    dry_run: Option<ExpectDryRun>,
    #[serde(default)]
    identity: Option<ExpectedIdentity>,
    #[serde(default)]
    warning: Option<String>,
    #[serde(default)]
    error: Option<ExpectError>,
}

impl TryFrom<RawExpect> for Expect {
    type Error = String;

    fn try_from(raw: RawExpect) -> Result<Self, String> {
        if let Some(error) = raw.error {
            let beside: Vec<&str> = [
                ("decision", raw.decision.is_some()),
                ("status", raw.status.is_some()),
                ("policy", raw.policy.is_some()),
                ("audit", raw.audit.is_some()),
                ("dry_run", raw.dry_run.is_some()),
                ("identity", raw.identity.is_some()),
                ("warning", raw.warning.is_some()),
            ]
            .into_iter()
            .filter_map(|(key, set)| set.then_some(key))
            .collect();
            if !beside.is_empty() {
                return Err(format!(
                    "expect.error stands alone (rejected policies decide nothing), found `{}` beside it",
                    beside.join("`, `")
                ));
            }
            return Ok(Expect::Error(error));
        }
        let Some(decision) = raw.decision else {
            return Err(
                "expect states neither `decision` (\"allow\" or \"deny\") nor `error`".to_string(),
            );
        };
        Ok(Expect::Decision(ExpectDecision {
            decision,
            status: raw.status,
            policy: raw.policy,
            audit: raw.audit,
            dry_run: raw.dry_run,
            identity: raw.identity,
            warning: raw.warning,
        }))
    }
}

/// Tells a key written as `null` (`Some(None)`) from an absent one (`None`, through
/// `#[serde(default)]`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}
