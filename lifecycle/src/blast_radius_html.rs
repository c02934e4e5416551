//! `cordon blast-radius --format html`: the analysis as one self-contained HTML page.
//!
//! The page holds everything it needs: its styles and its script are inline (no network, no
//! fonts to fetch), and the analysis is one JSON blob in a `<script type="application/json">`
//! element, escaped so that nothing in a policy (a path holding `</script>`) can end it
//! early. The script (in `blast_radius.html`, beside this file) draws identities on the
//! left, grouped by namespace, and workloads on the right, grouped by namespace, with one
//! SVG edge per identity and workload it reaches, labelled with what is allowed; the paths
//! DENY rules close (or may close) are marked on the edge. A text box filters identities, a
//! select or a click highlights what one identity reaches (or who reaches one workload),
//! and the URL fragment `#focus=<identity>&filter=<text>` does the same on load.
//!
//! Everything the page shows is computed here, from [`BlastRadius`]: the script only lays
//! it out. What is shown is what `--format json` says, summarised for edge labels: one line
//! per grant (`GET,POST /v1/orders*`, `any method on /admin`, `everything`), one per DENY
//! exception.
//!
//! # Example
//!
//! ```
//! use cordon_engine::model::parse_policies;
//! use cordon_lifecycle::blast_radius::analyze;
//! use cordon_lifecycle::blast_radius_html::to_html;
//!
//! let (policies, _, _) = parse_policies(&[serde_json::json!({
//!     "metadata": {"name": "orders-allow", "namespace": "shop"},
//!     "spec": {"selector": {"matchLabels": {"app": "orders"}},
//!              "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/shop/sa/web"]}}],
//!                         "to": [{"operation": {"methods": ["GET"]}}]}]}})]);
//! let page = to_html(&analyze(&policies, None, "istio-system"), "example");
//! assert!(page.starts_with("<!doctype html>"));
//! assert!(page.contains("cluster.local/ns/shop/sa/web"));
//! ```

use std::collections::HashMap;

use serde_json::{json, Value};

use super::blast_radius::{Access, Analysis, BlastRadius, Grant, Subject, Target};

/// The page: markup, styles and script, with one `/*CORDON-DATA*/` where the data goes.
const TEMPLATE: &str = include_str!("blast_radius.html");

/// Where the JSON blob goes in [`TEMPLATE`].
const DATA_MARKER: &str = "/*CORDON-DATA*/";

/// The page for `radius`; `caption` says where it comes from (the policy files).
pub fn to_html(radius: &BlastRadius, caption: &str) -> String {
    fill(&page_data(radius, caption))
}

/// The page for a prepared [`Analysis`], gathered row by row: memory holds what is reached
/// (the edges and their distinct grants), never every identity against every workload.
pub fn analysis_to_html(analysis: &Analysis<'_>, caption: &str) -> String {
    let mut page = Page::default();
    for s in 0..analysis.subjects().len() {
        let mut row = analysis.row(s);
        for t in 0..analysis.targets().len() {
            let (access, grants) = row.cell(t);
            page.add(s, t, access, grants);
        }
    }
    fill(&page.finish(analysis.subjects(), analysis.targets(), caption))
}

/// The template with `data` in it.
fn fill(data: &Value) -> String {
    let blob = script_safe_json(data);
    // The marker is in the template once (a unit test says so); the data goes in last, so
    // nothing in it is ever read as a marker.
    match TEMPLATE.split_once(DATA_MARKER) {
        Some((before, after)) => {
            let mut page = String::with_capacity(TEMPLATE.len() + blob.len());
            page.push_str(before);
            page.push_str(&blob);
            page.push_str(after);
            page
        }
        None => TEMPLATE.to_string(),
    }
}

/// JSON that can sit inside a `<script>` element: `<`, `>` and `&` are written as `\u003c`,
/// `\u003e`, `\u0026` (they only occur inside strings), so no `</script>` or `<!--` can
/// appear; U+2028 and U+2029 too, for old parsers.
pub fn script_safe_json(value: &Value) -> String {
    let text = value.to_string();
    let mut out = String::with_capacity(text.len() + 16);
    for ch in text.chars() {
        match ch {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// The data the page draws: identities, workloads, the distinct grants, and one edge per
/// identity and workload it reaches (`access` other than `none`), naming its grants by index.
fn page_data(radius: &BlastRadius, caption: &str) -> Value {
    let mut page = Page::default();
    // `reach` is subject-major: `reach[s * targets + t]`.
    let width = radius.targets.len().max(1);
    for (position, reach) in radius.reach.iter().enumerate() {
        page.add(
            position / width,
            position % width,
            reach.access,
            &reach.grants,
        );
    }
    page.finish(&radius.subjects, &radius.targets, caption)
}

/// The page's data as it is gathered: what is reached, never the cells that are not.
#[derive(Default)]
struct Page {
    grants: Vec<Value>,
    grant_index: HashMap<String, usize>,
    edges: Vec<Value>,
}

impl Page {
    /// One identity (`i`) against one workload (`w`); nothing when it reaches nothing.
    fn add(&mut self, i: usize, w: usize, access: Access, grants: &[Grant]) {
        if access == Access::None {
            return;
        }
        // Grants repeat (every identity the policies do not restrict reaches `everything`
        // of the same workloads): each distinct one is written once.
        let mut indexes = Vec::with_capacity(grants.len());
        for grant in grants {
            let value = grant_data(grant);
            let next = self.grants.len();
            let index = *self.grant_index.entry(value.to_string()).or_insert(next);
            if index == next {
                self.grants.push(value);
            }
            indexes.push(index);
        }
        self.edges
            .push(json!({"i": i, "w": w, "a": access.name(), "g": indexes}));
    }

    fn finish(self, subjects: &[Subject], targets: &[Target], caption: &str) -> Value {
        let identities: Vec<Value> = subjects.iter().map(identity).collect();
        let workloads: Vec<Value> = targets.iter().map(workload).collect();
        json!({
            "caption": caption,
            "identities": identities,
            "workloads": workloads,
            "grants": self.grants,
            "edges": self.edges,
        })
    }
}

/// An identity: its label (as `--format json` writes it), a short name and a detail line
/// for its node, its kind, and the namespace it is grouped under.
fn identity(subject: &Subject) -> Value {
    let label = subject.label();
    let (kind, group, short, detail) = match subject {
        Subject::Principal(principal) => {
            // `<trust domain>/ns/<namespace>/sa/<name>`: grouped under its namespace.
            let parts: Vec<&str> = principal.split('/').collect();
            match parts.as_slice() {
                [domain, "ns", namespace, "sa", name] => (
                    "principal",
                    (*namespace).to_string(),
                    (*name).to_string(),
                    format!("{domain} · service account"),
                ),
                _ => (
                    "principal",
                    "other principals".to_string(),
                    principal.clone(),
                    "principal".to_string(),
                ),
            }
        }
        Subject::ServiceAccount(namespace, name) => (
            "service-account",
            namespace.clone(),
            name.clone(),
            "service account, any trust domain".to_string(),
        ),
        Subject::Namespace(namespace) => (
            "namespace",
            namespace.clone(),
            format!("{namespace}/*"),
            "any workload of the namespace".to_string(),
        ),
        Subject::Authenticated => (
            "authenticated",
            "not named by the policies".to_string(),
            "any authenticated identity".to_string(),
            "an mTLS identity no policy names".to_string(),
        ),
        Subject::Plaintext => (
            "plaintext",
            "not named by the policies".to_string(),
            "plaintext".to_string(),
            "no mTLS identity at all".to_string(),
        ),
    };
    json!({"label": label, "kind": kind, "group": group, "short": short, "detail": detail})
}

/// A workload: its label, the namespace it is grouped under, and its name there.
fn workload(target: &Target) -> Value {
    let label = target.label();
    let (short, rest) = match &target.labels {
        Some(_) => (
            label
                .strip_prefix(&format!("{}/", target.namespace))
                .unwrap_or(&label)
                .to_string(),
            false,
        ),
        None => ("other workloads".to_string(), true),
    };
    json!({"label": label, "namespace": target.namespace, "short": short, "rest": rest})
}

/// A grant: the one-line summary an edge label shows (methods, paths, hosts, ports,
/// exclusions), its conditions, the rule, the DENY exceptions split into what and by whom,
/// and the full description.
fn grant_data(grant: &Grant) -> Value {
    let denials: Vec<Value> = grant
        .except
        .iter()
        .map(|except| {
            let denial = Denial::parse(except);
            json!({"what": denial.what, "by": denial.by, "conditional": denial.conditional})
        })
        .collect();
    json!({
        "summary": summary(grant),
        "conditions": grant.conditions,
        "rule": grant.rule,
        "deny": denials,
        "describe": grant.describe(),
    })
}

/// What the grant allows, without its exceptions and conditions: `GET,POST /a, /b`,
/// `any method on /admin`, `GET on any path`, `everything`, with `:port`s and `@host`s.
fn summary(grant: &Grant) -> String {
    let mut text = match (&grant.methods, &grant.paths) {
        (None, None) => "everything".to_string(),
        (None, Some(paths)) => format!("any method on {}", paths.join(", ")),
        (Some(methods), None) => format!("{} on any path", methods.join(",")),
        (Some(methods), Some(paths)) => format!("{} {}", methods.join(","), paths.join(", ")),
    };
    if !grant.hosts.is_empty() {
        text.push_str(&format!(" @{}", grant.hosts.join(",")));
    }
    if !grant.ports.is_empty() {
        text.push_str(&format!(" :{}", grant.ports.join(",")));
    }
    for excluded in &grant.excluded {
        text.push_str(&format!(" not {excluded}"));
    }
    text
}

/// One of a grant's DENY exceptions, as `blast_radius` words it:
/// `<what> (denied by <rule>)` or `<what> (may be denied by <rule>[ if …])`.
#[derive(Debug, PartialEq, Eq)]
struct Denial<'a> {
    what: &'a str,
    by: &'a str,
    conditional: bool,
}

impl<'a> Denial<'a> {
    fn parse(except: &'a str) -> Denial<'a> {
        for (marker, conditional) in [(" (may be denied by ", true), (" (denied by ", false)] {
            if let Some((what, rest)) = except.split_once(marker) {
                return Denial {
                    what,
                    by: rest.strip_suffix(')').unwrap_or(rest),
                    conditional,
                };
            }
        }
        // Any other wording is still a DENY exception; shown whole.
        Denial {
            what: except,
            by: "",
            conditional: false,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::blast_radius::{analyze, Scope};
    use cordon_engine::model::parse_policies;

    #[test]
    fn the_template_has_one_data_marker_and_no_network() {
        assert_eq!(TEMPLATE.matches(DATA_MARKER).count(), 1);
        assert!(TEMPLATE.contains("<script type=\"application/json\" id=\"blast-data\">"));
        for url in ["http://", "https://", "//cdn", "@import", "url("] {
            assert!(!TEMPLATE.contains(url), "the template names {url}");
        }
    }

    #[test]
    fn the_blob_cannot_end_its_script_element() {
        let value = json!({"path": "/a</script><script>alert(1)</script>", "x": "<!-- & \u{2028}"});
        let blob = script_safe_json(&value);
        assert!(!blob.contains('<'), "{blob}");
        assert!(!blob.contains('>'), "{blob}");
        assert!(!blob.contains('&'), "{blob}");
        let back: Value = serde_json::from_str(&blob).unwrap();
        assert_eq!(back, value);
    }

    fn policies(values: &[Value]) -> Vec<cordon_engine::model::Policy> {
        let (policies, _, errors) = parse_policies(values);
        assert!(errors.is_empty(), "{errors:?}");
        policies
    }

    /// The exceptions' wording is `blast_radius`'s: if it changes, the page would show a
    /// conditional DENY as a sure one; this says so.
    #[test]
    fn deny_exceptions_are_split_into_what_and_by_whom() {
        let set = policies(&[
            json!({"metadata": {"name": "allow", "namespace": "shop"},
                "spec": {"rules": [{"to": [{"operation": {"paths": ["/a/{**}", "/b"]}}]}]}}),
            json!({"metadata": {"name": "no-admin", "namespace": "shop"},
                "spec": {"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/a/admin"]}}]}]}}),
            json!({"metadata": {"name": "no-b-without-jwt", "namespace": "shop"},
                "spec": {"action": "DENY", "rules": [{
                    "from": [{"source": {"notRequestPrincipals": ["*"]}}],
                    "to": [{"operation": {"paths": ["/b"]}}]}]}}),
        ]);
        let radius = analyze(&set, Some(Subject::Plaintext), "istio-system");
        let data = page_data(&radius, "test");
        let denials: Vec<(String, String, bool)> = data["grants"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|grant| grant["deny"].as_array().unwrap().clone())
            .map(|d| {
                (
                    d["what"].as_str().unwrap().to_string(),
                    d["by"].as_str().unwrap().to_string(),
                    d["conditional"].as_bool().unwrap(),
                )
            })
            .collect();
        assert!(
            denials.contains(&(
                "/a/admin".to_string(),
                "ns[shop]-policy[no-admin]-rule[0]".to_string(),
                false
            )),
            "{denials:?}"
        );
        assert!(
            denials.iter().any(|(what, by, conditional)| what == "/b"
                && by.starts_with("ns[shop]-policy[no-b-without-jwt]-rule[0] if ")
                && *conditional),
            "{denials:?}"
        );
        assert_eq!(
            Denial::parse("something else"),
            Denial {
                what: "something else",
                by: "",
                conditional: false
            }
        );
    }

    #[test]
    fn one_edge_per_reach_with_access_and_grants_shared() {
        let set = policies(
            &[json!({"metadata": {"name": "orders", "namespace": "shop"},
                "spec": {"selector": {"matchLabels": {"app": "orders"}},
                    "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/shop/sa/web"]}}],
                        "to": [{"operation": {"methods": ["GET", "POST"], "paths": ["/v1/orders*"], "ports": ["8080"]}}]}]}})],
        );
        let radius = analyze(&set, None, "istio-system");
        let data = page_data(&radius, "caption");
        let reached = radius
            .reach
            .iter()
            .filter(|r| r.access != Access::None)
            .count();
        let edges = data["edges"].as_array().unwrap();
        assert_eq!(edges.len(), reached);
        assert!(reached >= 2, "{radius:?}");
        let web = &data["identities"][0];
        assert_eq!(web["label"], "cluster.local/ns/shop/sa/web");
        assert_eq!(web["group"], "shop");
        assert_eq!(web["short"], "web");
        let summaries: Vec<&str> = data["grants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["summary"].as_str().unwrap())
            .collect();
        assert!(
            summaries.contains(&"GET,POST /v1/orders* :8080"),
            "{summaries:?}"
        );
        // `shop/*` is open to everyone: one `everything` grant, shared by every edge.
        assert_eq!(
            summaries.iter().filter(|s| **s == "everything").count(),
            1,
            "{summaries:?}"
        );
        let page = to_html(&radius, "caption");
        assert!(!page.contains(DATA_MARKER));
        // Row by row, the same page.
        let analysis = Analysis::new(&set, None, "istio-system", &Scope::all());
        assert_eq!(analysis_to_html(&analysis, "caption"), page);
        assert!(page.contains("\"caption\":\"caption\""));
    }
}
