//! Errors and warnings about policies, each naming the policy, the field and the problem.

use alloc::string::String;
use core::fmt;

/// A policy the engine cannot accept. Compilation reports every error it finds, not only
/// the first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// Position of the policy in the input list, so a caller can map it back to a file.
    pub index: usize,
    /// `namespace/name` of the policy, or `#<index>` when it has no readable name.
    pub policy: String,
    /// JSON path of the offending field inside the policy, e.g.
    /// `spec.rules[2].to[0].operation.paths[1]`; empty for the policy as a whole.
    pub field: String,
    /// What is wrong, lowercase, user input in backticks.
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "policy `{}`: {}", self.policy, self.message)
        } else {
            write!(
                f,
                "policy `{}`: {}: {}",
                self.policy, self.field, self.message
            )
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for PolicyError {}

/// Something accepted but worth a person's attention (a policy skipped, a value that
/// can never match as probably intended).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyWarning {
    /// Position of the policy in the input list.
    pub index: usize,
    /// `namespace/name` of the policy.
    pub policy: String,
    /// JSON path of the field concerned; empty for the policy as a whole.
    pub field: String,
    /// What was noticed.
    pub message: String,
}

impl fmt::Display for PolicyWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "policy `{}`: {}", self.policy, self.message)
        } else {
            write!(
                f,
                "policy `{}`: {}: {}",
                self.policy, self.field, self.message
            )
        }
    }
}

/// A compilation failure: every policy error found, or a resource limit exceeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    /// The individual problems, in input order.
    pub errors: alloc::vec::Vec<PolicyError>,
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (position, error) in self.errors.iter().enumerate() {
            if position > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

#[cfg(feature = "std")]
impl std::error::Error for CompileError {}
