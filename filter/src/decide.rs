//! One request through the filter: read attributes, ask the engine, answer, count, log.

use std::cell::{Cell, RefCell};
use std::sync::Arc;

use cordon_engine::traffic::{self, TrafficRecord};
use cordon_engine::{Decision, PolicySet, Reason, Request, RuleRef, Scratch};
use serde_json::{json, Value};

use crate::attributes::{self, claims_to_json, Attributes, MetadataClaims};
use crate::config::FilterConfig;
use crate::host::{Counter, Host, LogLevel};

/// Whether the proxy should go on with the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Let the request through.
    Continue,
    /// A local response was sent; stop the request here.
    Stop,
}

/// The property the decision is written to; Envoy keeps it as filter state
/// `wasm.cordon.decision`, so access logs can print `%FILTER_STATE(wasm.cordon.decision:PLAIN)%`.
pub const DECISION_PROPERTY: &str = "cordon.decision";

/// A loaded configuration and the per-plugin state requests share. Replaced whole on
/// reconfiguration; requests in flight keep the one they started with.
#[derive(Debug)]
pub struct Filter {
    /// Shared: the native twin keeps one `Filter` per worker thread over one configuration.
    config: Arc<FilterConfig>,
    scratch: RefCell<Scratch>,
    /// Sampling credit for allowed requests: each adds the sample rate; a record is
    /// written whenever it reaches one.
    sample_credit: Cell<f64>,
    /// The decision summary of the last request, reused across requests.
    summary: RefCell<String>,
    /// The decision `summary` was written for (with whether it was let through): a
    /// request decided the same way reuses the text as it is.
    summarized: Cell<Option<(Decision, bool)>>,
    /// The headers a request is read from when the proxy reads them by name
    /// ([`attributes::header_reads`]).
    header_reads: Vec<String>,
}

impl Filter {
    /// Wraps a loaded configuration.
    pub fn new(config: FilterConfig) -> Filter {
        Filter::shared(Arc::new(config))
    }

    /// Wraps a loaded configuration other `Filter`s share (one per thread: a `Filter`
    /// keeps per-request scratch space and is not `Sync`).
    pub fn shared(config: Arc<FilterConfig>) -> Filter {
        let scratch = RefCell::new(config.policies.new_scratch());
        let header_reads = attributes::header_reads(config.policies.needs());
        Filter {
            config,
            scratch,
            sample_credit: Cell::new(0.0),
            summary: RefCell::new(String::with_capacity(512)),
            summarized: Cell::new(None),
            header_reads,
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &FilterConfig {
        &self.config
    }

    /// Decides a request whose headers have arrived.
    pub fn on_request_headers(&self, host: &dyn Host) -> Verdict {
        let policies = &self.config.policies;
        let needs = policies.needs();
        let mut attributes = attributes::read_with(host, &self.config, needs, &self.header_reads);
        let claims = if needs.claims {
            MetadataClaims::fetch(host, &self.config)
        } else {
            None
        };
        let decision = self.evaluate(&attributes, claims.as_ref());

        let enforce = !self.config.dry_run;
        let allowed = decision.allowed || !enforce;
        let would_deny = if enforce {
            !decision.dry_run.allowed
        } else {
            !decision.allowed || !decision.dry_run.allowed
        };
        host.increment(
            if allowed {
                Counter::Allowed
            } else {
                Counter::Denied
            },
            1,
        );
        if allowed && would_deny {
            host.increment(Counter::DryRunDenied, 1);
        }
        if decision.audit.is_some() {
            host.increment(Counter::Audited, 1);
        }
        if matches!(decision.reason, Reason::PathRejected(_)) {
            host.increment(Counter::PathRejected, 1);
        }
        match self.summary.try_borrow_mut() {
            Ok(mut buffer) => {
                // The summary is a function of the decision alone (the policies never
                // change under a `Filter`).
                if self.summarized.get() != Some((decision, allowed)) {
                    // Forgotten first: a panic while writing leaves no stale match.
                    self.summarized.set(None);
                    write_summary(&mut buffer, policies, &decision, allowed);
                    self.summarized.set(Some((decision, allowed)));
                }
                host.set_property(&[DECISION_PROPERTY], buffer.as_bytes());
            }
            Err(_) => {
                let mut buffer = String::new();
                write_summary(&mut buffer, policies, &decision, allowed);
                host.set_property(&[DECISION_PROPERTY], buffer.as_bytes());
            }
        }

        if self.config.log.enabled && (!allowed || would_deny || self.sample_allowed()) {
            attributes::complete_for_log(host, &mut attributes, needs, &self.config);
            let claims = match claims {
                Some(claims) => Some(claims),
                None => MetadataClaims::fetch(host, &self.config),
            };
            let record = decision_record(
                host,
                policies,
                &attributes,
                claims.as_ref(),
                &decision,
                allowed,
            );
            host.log(self.config.log.level, &record);
        }

        if allowed {
            return Verdict::Continue;
        }
        let (status, body) = match decision.reason {
            Reason::PathRejected(_) => (400, "Bad Request"),
            Reason::HeadersTooLarge => (431, "Request Header Fields Too Large"),
            _ => (self.config.deny.status, self.config.deny.body.as_str()),
        };
        host.send_response(status, &[("content-type", "text/plain")], body.as_bytes());
        Verdict::Stop
    }

    fn evaluate(&self, attributes: &Attributes, claims: Option<&MetadataClaims>) -> Decision {
        let request = Request {
            peer_identity: attributes.peer_identity.as_deref(),
            source_ip: attributes.source_ip,
            remote_ip: attributes.remote_ip,
            destination_ip: attributes.destination_ip,
            destination_port: attributes.destination_port,
            sni: attributes.sni.as_deref(),
            method: attributes.method.as_deref(),
            path: attributes.path.as_deref(),
            host: attributes.host.as_deref(),
            headers: &attributes.headers,
            claims: claims.map(|claims| claims as &dyn cordon_engine::Claims),
        };
        match self.scratch.try_borrow_mut() {
            Ok(mut scratch) => self.config.policies.evaluate(&request, &mut scratch),
            // Only reachable through re-entrancy, which the proxy never does; stay correct.
            Err(_) => self
                .config
                .policies
                .evaluate(&request, &mut self.config.policies.new_scratch()),
        }
    }

    fn sample_allowed(&self) -> bool {
        let rate = self.config.log.allow_sample_rate;
        if rate <= 0.0 {
            return false;
        }
        let credit = self.sample_credit.get() + rate;
        if credit >= 1.0 {
            self.sample_credit.set(credit - 1.0);
            true
        } else {
            self.sample_credit.set(credit);
            false
        }
    }
}

fn rule_name(policies: &PolicySet, rule: Option<RuleRef>) -> Value {
    rule.map_or(Value::Null, |rule| {
        Value::String(policies.rule_id(rule).to_string())
    })
}

/// Writes the decision as one compact JSON object, for filter state and access logs.
/// Written by hand into a reused buffer: this runs on every request.
fn write_summary(out: &mut String, policies: &PolicySet, decision: &Decision, allowed: bool) {
    use std::fmt::Write;
    let rule = |out: &mut String, rule: Option<RuleRef>| match rule {
        Some(rule) => write_json_string(out, policies.rule_id(rule)),
        None => out.push_str("null"),
    };
    out.clear();
    let _ = write!(out, "{{\"allowed\":{allowed},\"audit\":");
    rule(out, decision.audit);
    let _ = write!(
        out,
        ",\"dry_run\":{{\"allowed\":{},\"policy\":",
        decision.dry_run.allowed
    );
    rule(out, decision.dry_run.rule);
    let _ = write!(
        out,
        "}},\"enforced\":{},\"identity\":\"{}\",\"policy\":",
        allowed == decision.allowed,
        decision.identity.name()
    );
    rule(out, decision.policy);
    let _ = write!(
        out,
        ",\"reason\":\"{}\",\"status\":{}}}",
        decision.reason.name(),
        if allowed { 200 } else { decision.status }
    );
}

fn write_json_string(out: &mut String, text: &str) {
    use std::fmt::Write;
    out.push('"');
    for ch in text.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ch if u32::from(ch) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(ch));
            }
            ch => out.push(ch),
        }
    }
    out.push('"');
}

fn decision_json(policies: &PolicySet, decision: &Decision, allowed: bool) -> Value {
    json!({
        "allowed": allowed,
        "enforced": allowed == decision.allowed,
        "status": if allowed { 200 } else { decision.status },
        "reason": decision.reason.name(),
        "policy": rule_name(policies, decision.policy),
        "audit": rule_name(policies, decision.audit),
        "dry_run": {"allowed": decision.dry_run.allowed, "policy": rule_name(policies, decision.dry_run.rule)},
        "identity": decision.identity.name(),
    })
}

/// One decision record: the request in the traffic-record format plus the decision, so
/// logs can be replayed by `cordon simulate` and mined by `cordon discover`. Written by
/// the engine's traffic-record writer, the format every reader reads.
fn decision_record(
    host: &dyn Host,
    policies: &PolicySet,
    attributes: &Attributes,
    claims: Option<&MetadataClaims>,
    decision: &Decision,
    allowed: bool,
) -> String {
    let workload = &policies.options().workload;
    let record = TrafficRecord {
        principal: attributes.peer_identity.clone(),
        source_ip: attributes.source_ip,
        remote_ip: attributes.remote_ip,
        destination_ip: attributes.destination_ip,
        destination_port: attributes.destination_port,
        destination_namespace: workload.namespace.clone(),
        destination_labels: workload.labels.clone(),
        mtls: Some(attributes.peer_identity.is_some()),
        sni: attributes.sni.clone(),
        method: attributes.method.clone(),
        path: attributes.path.clone(),
        host: attributes.host.clone(),
        // Pseudo-headers are the record's `method`, `path` and `host`.
        headers: attributes
            .headers
            .iter()
            .filter(|(name, _)| !name.starts_with(':'))
            .cloned()
            .collect(),
        claims: claims.map(|claims| claims_to_json(claims.payload())),
        time: Some(rfc3339(host.now_nanos())),
    };
    traffic::decision_line(&record, decision_json(policies, decision, allowed))
}

/// Formats nanoseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC).
pub fn rfc3339(nanos: u64) -> String {
    let seconds = nanos / 1_000_000_000;
    let millis = (nanos / 1_000_000) % 1000;
    let days = seconds / 86_400;
    let time = seconds % 86_400;
    // Howard Hinnant's civil-from-days algorithm.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        time / 3600,
        (time / 60) % 60,
        time % 60
    )
}

/// Logs a configuration failure the way operators will grep for it.
pub fn log_config_errors(host: &dyn Host, errors: &[crate::config::ConfigError]) {
    host.increment(Counter::ConfigErrors, 1);
    let reasons: Vec<String> = errors.iter().map(ToString::to_string).collect();
    host.log(
        LogLevel::Critical,
        &format!("cordon: configuration rejected: {}", reasons.join("; ")),
    );
}
