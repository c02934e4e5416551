//! A list of AuthorizationPolicy objects read straight from JSON text, one rule at a time.
//!
//! [`super::parse_policies`] validates policies that are already JSON trees. A proxy that
//! receives its policies as one JSON document would first build that tree, 20 to 50 times
//! the size of the text, and a wasm module's memory never shrinks: the peak stays resident
//! for the life of the VM. [`PolicyList`] is a `serde` seed that reads the same list while
//! it streams in: each policy's small parts (`metadata`, `spec.selector`, ...) become JSON
//! values as before, but each item of `spec.rules` is validated into a [`super::Rule`] as
//! soon as it is read and its tree dropped. The validation is the same code
//! ([`super::read_policy`], [`super::read_rule`]), so the results are the same: the same
//! policies, warnings and errors, in the same order.
//!
//! Rules read before their policy's `metadata` (a document that puts `spec` first) are
//! kept as JSON values and validated with the policy, as [`super::parse_policies`] does,
//! because a `serviceAccounts` value and every report depend on the policy's namespace.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize as _;
use serde_json::{Map, Value};

use super::{read_policy, read_rule, Policy, ReadRules};
use crate::compile::Limits;
use crate::error::{PolicyError, PolicyWarning};

/// What reading a list of policies gave.
#[derive(Debug, Default)]
pub struct ReadPolicies {
    /// The policies without errors.
    pub policies: Vec<Policy>,
    /// Every warning.
    pub warnings: Vec<PolicyWarning>,
    /// Every error.
    pub errors: Vec<PolicyError>,
    /// Items of the list, read or not.
    pub policy_count: usize,
    /// Items of every policy's `spec.rules`, read or not.
    pub rule_count: usize,
    /// Each field's `location` is dropped once its rule is read ([`PolicyList::without_locations`]).
    strip_locations: bool,
}

/// A `serde` seed that reads a JSON list of AuthorizationPolicy objects, as
/// [`super::parse_policies`] would read them as JSON values, holding at most one rule as a
/// JSON tree at a time. Once the list holds more policies or rules than `limits` allows,
/// the rest is only counted (the caller refuses the list; see
/// [`crate::PolicySet::compile_read`]), so an oversized list costs no memory either.
#[derive(Debug, Clone, Copy)]
pub struct PolicyList {
    limits: Limits,
    locations: bool,
}

impl PolicyList {
    /// A reader that stops validating beyond `limits.max_policies` and `limits.max_rules`.
    pub fn new(limits: Limits) -> Self {
        PolicyList {
            limits,
            locations: true,
        }
    }

    /// Drops each field's `location` (its JSON path, which only reports read: `explain`,
    /// lints) as soon as its rule is validated, for a reader that only compiles and decides
    /// (with [`crate::Options::explain`] off): at 10,000 rules a fifth of what the read
    /// policies hold. Errors and warnings still name their fields.
    pub fn without_locations(self) -> Self {
        PolicyList {
            locations: false,
            ..self
        }
    }
}

/// Forgets where a rule's fields were written.
fn strip_locations(rule: &mut super::Rule) {
    for clause in rule
        .from
        .iter_mut()
        .chain(&mut rule.to)
        .chain(&mut rule.when)
    {
        for field in &mut clause.fields {
            field.location = String::new();
        }
    }
}

impl<'de> DeserializeSeed<'de> for PolicyList {
    type Value = ReadPolicies;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<ReadPolicies, D::Error> {
        deserializer.deserialize_seq(ListVisitor {
            limits: self.limits,
            locations: self.locations,
        })
    }
}

struct ListVisitor {
    limits: Limits,
    locations: bool,
}

impl<'de> Visitor<'de> for ListVisitor {
    type Value = ReadPolicies;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of AuthorizationPolicy objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ReadPolicies, A::Error> {
        let mut read = ReadPolicies {
            strip_locations: !self.locations,
            ..ReadPolicies::default()
        };
        loop {
            let seed = PolicySeed {
                index: read.policy_count,
                limits: &self.limits,
                read: &mut read,
            };
            if seq.next_element_seed(seed)?.is_none() {
                return Ok(read);
            }
            read.policy_count += 1;
        }
    }
}

/// Whether reading has gone over the limits, after which items are only counted.
fn over(read: &ReadPolicies, limits: &Limits) -> bool {
    read.policy_count >= limits.max_policies || read.rule_count > limits.max_rules
}

/// One item of the list: validated into `read`.
struct PolicySeed<'r> {
    index: usize,
    limits: &'r Limits,
    read: &'r mut ReadPolicies,
}

impl<'de> DeserializeSeed<'de> for PolicySeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        if over(self.read, self.limits) {
            return deserializer.deserialize_any(CountVisitor {
                counted: &mut self.read.rule_count,
                depth: 0,
            });
        }
        let (value, rules) = deserializer.deserialize_any(PolicyVisitor {
            index: self.index,
            limits: self.limits,
            read: &mut *self.read,
        })?;
        let (mut policy, mut warnings, mut errors) = read_policy(self.index, &value, rules);
        if self.read.strip_locations {
            for rule in policy.iter_mut().flat_map(|policy| policy.rules.iter_mut()) {
                strip_locations(rule);
            }
        }
        self.read.policies.extend(policy);
        self.read.warnings.append(&mut warnings);
        self.read.errors.append(&mut errors);
        Ok(())
    }
}

/// A policy as a JSON value without its rules (`spec.rules` an empty list) and its rules
/// already read, or the whole policy as a JSON value.
type PolicyParts = (Value, Option<ReadRules>);

struct PolicyVisitor<'r> {
    index: usize,
    limits: &'r Limits,
    read: &'r mut ReadPolicies,
}

impl<'de> Visitor<'de> for PolicyVisitor<'_> {
    type Value = PolicyParts;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an AuthorizationPolicy object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PolicyParts, A::Error> {
        let mut root = Map::new();
        let mut rules = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == "spec" {
                let metadata = root.get("metadata").cloned();
                let (spec, read) = map.next_value_seed(SpecSeed {
                    index: self.index,
                    metadata: metadata.as_ref(),
                    limits: self.limits,
                    read: &mut *self.read,
                })?;
                rules = read.map(|read| (read, metadata));
                root.insert(key, spec);
            } else {
                let value = map.next_value::<Value>()?;
                root.insert(key, value);
            }
        }
        // The rules were read with the policy's identity as `metadata` gave it then; a
        // second `metadata` (a duplicate key) that says otherwise is refused rather than
        // left to name the policy differently from its rules' reports.
        let rules = match rules {
            Some((read, used)) if used.as_ref() == root.get("metadata") => Some(read),
            Some(_) => {
                return Err(serde::de::Error::custom(
                    "policy has `metadata` twice, once after `spec`",
                ))
            }
            None => None,
        };
        Ok((Value::Object(root), rules))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PolicyParts, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Value>()? {
            items.push(item);
        }
        Ok((Value::Array(items), None))
    }

    fn visit_bool<E>(self, value: bool) -> Result<PolicyParts, E> {
        Ok((Value::Bool(value), None))
    }

    fn visit_i64<E>(self, value: i64) -> Result<PolicyParts, E> {
        Ok((Value::from(value), None))
    }

    fn visit_u64<E>(self, value: u64) -> Result<PolicyParts, E> {
        Ok((Value::from(value), None))
    }

    fn visit_f64<E>(self, value: f64) -> Result<PolicyParts, E> {
        Ok((Value::from(value), None))
    }

    fn visit_str<E>(self, value: &str) -> Result<PolicyParts, E> {
        Ok((Value::from(value), None))
    }

    fn visit_unit<E>(self) -> Result<PolicyParts, E> {
        Ok((Value::Null, None))
    }
}

/// `spec`: a JSON value, with `spec.rules` read rule by rule when the policy's `metadata`
/// came first.
struct SpecSeed<'r> {
    index: usize,
    metadata: Option<&'r Value>,
    limits: &'r Limits,
    read: &'r mut ReadPolicies,
}

impl<'de> DeserializeSeed<'de> for SpecSeed<'_> {
    type Value = (Value, Option<ReadRules>);

    fn deserialize<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<(Value, Option<ReadRules>), D::Error> {
        if self.metadata.is_none() {
            let spec = Value::deserialize(deserializer)?;
            self.read.rule_count += spec
                .get("rules")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            return Ok((spec, None));
        }
        deserializer.deserialize_any(SpecVisitor { seed: self })
    }
}

struct SpecVisitor<'r> {
    seed: SpecSeed<'r>,
}

impl<'de> Visitor<'de> for SpecVisitor<'_> {
    type Value = (Value, Option<ReadRules>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a policy spec")
    }

    fn visit_map<A: MapAccess<'de>>(
        self,
        mut map: A,
    ) -> Result<(Value, Option<ReadRules>), A::Error> {
        let SpecSeed {
            index,
            metadata,
            limits,
            read,
        } = self.seed;
        let mut spec = Map::new();
        let mut rules = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == "rules" {
                match map.next_value_seed(RulesSeed {
                    index,
                    metadata,
                    limits,
                    read: &mut *read,
                })? {
                    Ok(read_rules) => {
                        rules = Some(read_rules);
                        spec.insert(key, Value::Array(Vec::new()));
                    }
                    Err(value) => {
                        rules = None;
                        spec.insert(key, value);
                    }
                }
            } else {
                let value = map.next_value::<Value>()?;
                spec.insert(key, value);
            }
        }
        Ok((Value::Object(spec), rules))
    }

    fn visit_seq<A: SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> Result<(Value, Option<ReadRules>), A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Value>()? {
            items.push(item);
        }
        Ok((Value::Array(items), None))
    }

    fn visit_bool<E>(self, value: bool) -> Result<(Value, Option<ReadRules>), E> {
        Ok((Value::Bool(value), None))
    }

    fn visit_i64<E>(self, value: i64) -> Result<(Value, Option<ReadRules>), E> {
        Ok((Value::from(value), None))
    }

    fn visit_u64<E>(self, value: u64) -> Result<(Value, Option<ReadRules>), E> {
        Ok((Value::from(value), None))
    }

    fn visit_f64<E>(self, value: f64) -> Result<(Value, Option<ReadRules>), E> {
        Ok((Value::from(value), None))
    }

    fn visit_str<E>(self, value: &str) -> Result<(Value, Option<ReadRules>), E> {
        Ok((Value::from(value), None))
    }

    fn visit_unit<E>(self) -> Result<(Value, Option<ReadRules>), E> {
        Ok((Value::Null, None))
    }
}

/// `spec.rules`: read rule by rule if it is a list (`Ok`), else the JSON value (`Err`),
/// which the policy's validation reports.
struct RulesSeed<'r> {
    index: usize,
    metadata: Option<&'r Value>,
    limits: &'r Limits,
    read: &'r mut ReadPolicies,
}

impl<'de> DeserializeSeed<'de> for RulesSeed<'_> {
    type Value = Result<ReadRules, Value>;

    fn deserialize<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Result<ReadRules, Value>, D::Error> {
        deserializer.deserialize_any(RulesVisitor { seed: self })
    }
}

struct RulesVisitor<'r> {
    seed: RulesSeed<'r>,
}

impl<'de> Visitor<'de> for RulesVisitor<'_> {
    type Value = Result<ReadRules, Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of rules")
    }

    fn visit_seq<A: SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> Result<Result<ReadRules, Value>, A::Error> {
        let RulesSeed {
            index,
            metadata,
            limits,
            read,
        } = self.seed;
        let mut rules = ReadRules::default();
        loop {
            read.rule_count += 1;
            if read.rule_count > limits.max_rules {
                // Over the limit: the list is refused whole; count the rest unread.
                if seq.next_element::<IgnoredAny>()?.is_none() {
                    read.rule_count -= 1;
                    return Ok(Ok(rules));
                }
                rules.count += 1;
                continue;
            }
            let Some(value) = seq.next_element::<Value>()? else {
                read.rule_count -= 1;
                return Ok(Ok(rules));
            };
            let before = rules.rules.len();
            read_rule(index, metadata, rules.count, &value, &mut rules);
            if read.strip_locations && rules.rules.len() > before {
                if let Some(rule) = rules.rules.last_mut() {
                    strip_locations(rule);
                }
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Result<ReadRules, Value>, A::Error> {
        let value = Value::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        Ok(Err(value))
    }

    fn visit_bool<E>(self, value: bool) -> Result<Result<ReadRules, Value>, E> {
        Ok(Err(Value::Bool(value)))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Result<ReadRules, Value>, E> {
        Ok(Err(Value::from(value)))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Result<ReadRules, Value>, E> {
        Ok(Err(Value::from(value)))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Result<ReadRules, Value>, E> {
        Ok(Err(Value::from(value)))
    }

    fn visit_str<E>(self, value: &str) -> Result<Result<ReadRules, Value>, E> {
        Ok(Err(Value::from(value)))
    }

    fn visit_unit<E>(self) -> Result<Result<ReadRules, Value>, E> {
        Ok(Err(Value::Null))
    }
}

/// A policy past the limits: only the items of its `spec.rules` are counted.
struct CountVisitor<'r> {
    counted: &'r mut usize,
    /// 0: the policy, 1: its `spec`.
    depth: u8,
}

impl<'de> Visitor<'de> for CountVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            match (self.depth, key.as_str()) {
                (0, "spec") => map.next_value_seed(CountSeed {
                    counted: &mut *self.counted,
                    depth: 1,
                })?,
                (1, "rules") => map.next_value_seed(CountSeed {
                    counted: &mut *self.counted,
                    depth: 2,
                })?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {
            if self.depth == 2 {
                *self.counted += 1;
            }
        }
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

struct CountSeed<'r> {
    counted: &'r mut usize,
    depth: u8,
}

impl<'de> DeserializeSeed<'de> for CountSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(CountVisitor {
            counted: self.counted,
            depth: self.depth,
        })
    }
}
