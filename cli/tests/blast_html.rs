//! `cordon blast-radius --format html`, rendered in headless Chromium (Debian's `chromium`,
//! which `scripts/setup.sh` installs): the DOM the page's script builds is held against
//! what `--format json` says of the same policies. Without Chromium these tests fail.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "support/run.rs"]
mod run;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use run::{cordon, stderr, stdout, tempdir};
use serde_json::Value;

const SHOP: &str = "policies/examples/shop/policies.yaml";

/// Chromium: `$CHROMIUM`, else `/usr/bin/chromium`, else `chromium` on the `PATH`.
fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return PathBuf::from(path);
    }
    let debian = Path::new("/usr/bin/chromium");
    if debian.exists() {
        return debian.to_path_buf();
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("chromium"))
            .find(|candidate| candidate.exists())
    });
    found.unwrap_or_else(|| {
        panic!(
            "chromium not found (neither $CHROMIUM, /usr/bin/chromium nor `chromium` on PATH): \
             install Debian's chromium package (scripts/setup.sh does)"
        )
    })
}

/// The DOM after the page's script ran, for `page` opened at `fragment` (`""` or
/// `#focus=…`). A fresh profile each time; a run that prints no DOM is tried once more (a
/// loaded machine can starve the first).
fn dump_dom(page: &Path, fragment: &str) -> String {
    let url = format!("file://{}{fragment}", page.display());
    let mut last_error = String::new();
    for _ in 0..2 {
        let profile = tempdir();
        // Into files, not pipes: a DOM bigger than a pipe's buffer would block Chromium
        // while this waits for it to end.
        let (out, err) = (profile.join("dom.html"), profile.join("stderr.txt"));
        let mut child = Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--window-size=1400,900",
                "--virtual-time-budget=5000",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("--dump-dom")
            .arg(&url)
            .stdout(Stdio::from(std::fs::File::create(&out).unwrap()))
            .stderr(Stdio::from(std::fs::File::create(&err).unwrap()))
            .spawn()
            .expect("chromium starts");
        let deadline = Instant::now() + Duration::from_secs(90);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                child.kill().unwrap();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child.wait().unwrap();
        let dom = std::fs::read_to_string(&out).unwrap_or_default();
        last_error = std::fs::read_to_string(&err).unwrap_or_default();
        let _ = std::fs::remove_dir_all(&profile);
        if dom.contains("</html>") {
            return dom;
        }
    }
    panic!("chromium printed no DOM for {url}: {last_error}");
}

/// One element of the dumped DOM: its name, attributes, and the text inside it.
#[derive(Debug, Clone)]
struct Element {
    name: String,
    attributes: BTreeMap<String, String>,
    /// All the text inside.
    text: String,
    /// The text inside that is drawn: not in a `<title>` (a tooltip).
    shown: String,
}

impl Element {
    fn classes(&self) -> BTreeSet<&str> {
        self.attributes
            .get("class")
            .map(|c| c.split_whitespace().collect())
            .unwrap_or_default()
    }
    fn has_class(&self, class: &str) -> bool {
        self.classes().contains(class)
    }
    fn attr(&self, name: &str) -> &str {
        self.attributes.get(name).map_or("", String::as_str)
    }
}

fn decode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let Some(end) = rest.find(';').filter(|end| *end < 10) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..end];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            "nbsp" => Some('\u{a0}'),
            _ => entity
                .strip_prefix("#x")
                .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Every element of an HTML serialization, in document order, with its text content
/// (raw-text elements, `script` and `style`, are skipped whole).
fn elements(html: &str) -> Vec<Element> {
    const VOID: [&str; 13] = [
        "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr",
    ];
    let mut done: Vec<Element> = Vec::new();
    let mut open: Vec<Element> = Vec::new();
    let mut rest = html;
    while !rest.is_empty() {
        let lt = rest.find('<').unwrap_or(rest.len());
        let text = decode(&rest[..lt]);
        let tooltip = open.iter().any(|e| e.name == "title");
        for element in &mut open {
            element.text.push_str(&text);
            if !tooltip {
                element.shown.push_str(&text);
            }
        }
        rest = &rest[lt..];
        if rest.is_empty() {
            break;
        }
        if rest.starts_with("<!--") {
            let end = rest.find("-->").map_or(rest.len(), |e| e + 3);
            rest = &rest[end..];
            continue;
        }
        if rest.starts_with("<!") {
            let end = rest.find('>').map_or(rest.len(), |e| e + 1);
            rest = &rest[end..];
            continue;
        }
        if let Some(close) = rest.strip_prefix("</") {
            let end = close.find('>').unwrap_or(close.len());
            let name = close[..end].trim().to_ascii_lowercase();
            if let Some(position) = open.iter().rposition(|e| e.name == name) {
                while open.len() > position {
                    done.push(open.pop().unwrap());
                }
            }
            rest = &close[(end + 1).min(close.len())..];
            continue;
        }
        // A start tag: a name, then attributes (quoted values may hold `>`).
        let tag = &rest[1..];
        let name_end = tag
            .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
            .unwrap_or(tag.len());
        let name = tag[..name_end].to_ascii_lowercase();
        let mut attributes = BTreeMap::new();
        let mut at = name_end;
        let bytes = tag.as_bytes();
        loop {
            while at < bytes.len() && (bytes[at] as char).is_whitespace() {
                at += 1;
            }
            if at >= bytes.len() || bytes[at] == b'>' || bytes[at] == b'/' {
                break;
            }
            let key_end = tag[at..]
                .find(|c: char| c == '=' || c == '>' || c.is_whitespace())
                .map_or(tag.len(), |e| at + e);
            let key = tag[at..key_end].to_ascii_lowercase();
            at = key_end;
            let mut value = String::new();
            if at < bytes.len() && bytes[at] == b'=' {
                at += 1;
                let quote = bytes[at];
                if quote == b'"' || quote == b'\'' {
                    let end = tag[at + 1..]
                        .find(quote as char)
                        .map_or(tag.len(), |e| at + 1 + e);
                    value = decode(&tag[at + 1..end]);
                    at = end + 1;
                } else {
                    let end = tag[at..]
                        .find(|c: char| c.is_whitespace() || c == '>')
                        .map_or(tag.len(), |e| at + e);
                    value = decode(&tag[at..end]);
                    at = end;
                }
            }
            attributes.insert(key, value);
        }
        let self_closing = tag[at..].starts_with('/');
        let close = tag[at..].find('>').map_or(tag.len(), |e| at + e + 1);
        rest = &tag[close.min(tag.len())..];
        let element = Element {
            name: name.clone(),
            attributes,
            text: String::new(),
            shown: String::new(),
        };
        if name == "script" || name == "style" {
            let end_tag = format!("</{name}>");
            let end = rest.find(&end_tag).unwrap_or(rest.len());
            rest = &rest[(end + end_tag.len()).min(rest.len())..];
            done.push(element);
        } else if VOID.contains(&name.as_str()) || self_closing {
            done.push(element);
        } else {
            open.push(element);
        }
    }
    done.extend(open.into_iter().rev());
    done
}

fn render(policy: &str, dir: &Path, name: &str) -> (PathBuf, String) {
    let output = cordon(&["blast-radius", "--policy", policy, "--format", "html"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let html = stdout(&output);
    let page = dir.join(name);
    std::fs::write(&page, &html).unwrap();
    (page.canonicalize().unwrap(), html)
}

fn analysis(policy: &str) -> Value {
    let output = cordon(&["blast-radius", "--policy", policy, "--format", "json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    serde_json::from_str(&stdout(&output)).unwrap()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

fn nodes<'a>(dom: &'a [Element], side: &str) -> Vec<&'a Element> {
    dom.iter()
        .filter(|e| e.name == "g" && e.has_class("node") && e.has_class(side))
        .collect()
}

fn labels(found: &[&Element]) -> BTreeSet<String> {
    found
        .iter()
        .map(|e| e.attr("data-label").to_string())
        .collect()
}

/// The reaches that are edges: every one whose access is not `none`.
fn reached(json: &Value) -> Vec<&Value> {
    json["reach"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["access"] != "none")
        .collect()
}

/// The parts of the page outside its JSON blob: what is fetched would be named there.
fn outside_the_data(html: &str) -> String {
    let open = "<script type=\"application/json\" id=\"blast-data\">";
    let start = html.find(open).expect("the page has its data blob") + open.len();
    let end = start + html[start..].find("</script>").unwrap();
    assert_eq!(html.matches(open).count(), 1);
    format!("{}{}", &html[..start], &html[end..])
}

#[test]
fn the_shop_graph_shows_every_identity_workload_and_reach() {
    let dir = tempdir();
    let (page, html) = render(SHOP, &dir, "shop.html");
    let json = analysis(SHOP);

    // Self-contained: no URL outside the data (the shop's JWT issuer is data), no tag that
    // loads anything.
    let code = outside_the_data(&html);
    for needle in ["http://", "https://", "<link", " src=", "@import", "url("] {
        assert!(!code.contains(needle), "the page names `{needle}`");
    }

    let dom = elements(&dump_dom(&page, ""));
    assert!(
        !dom.iter().any(|e| {
            ["src", "href", "xlink:href"]
                .iter()
                .any(|a| e.attributes.get(*a).is_some_and(|v| !v.is_empty()))
        }),
        "an element of the rendered page loads something"
    );
    let identities = strings(&json["identities"]);
    let workloads = strings(&json["workloads"]);
    assert_eq!(identities.len(), 5);
    assert_eq!(
        labels(&nodes(&dom, "identity")),
        identities.iter().cloned().collect()
    );
    assert_eq!(
        labels(&nodes(&dom, "workload")),
        workloads.iter().cloned().collect()
    );

    let edges: Vec<&Element> = dom
        .iter()
        .filter(|e| e.name == "path" && e.has_class("edge"))
        .collect();
    let reach = reached(&json);
    assert_eq!(edges.len(), reach.len(), "one edge per reach");
    assert_eq!(reach.len(), 13);
    let mut deny_markers = 0;
    for r in &reach {
        let (identity, workload) = (
            r["identity"].as_str().unwrap(),
            r["workload"].as_str().unwrap(),
        );
        let on = |e: &Element| {
            e.attr("data-identity") == identity && e.attr("data-workload") == workload
        };
        let edge = edges
            .iter()
            .find(|e| on(e))
            .unwrap_or_else(|| panic!("no edge {identity} -> {workload}"));
        let access = r["access"].as_str().unwrap();
        assert!(
            edge.has_class(&format!("access-{access}")),
            "{identity} -> {workload}: {:?}",
            edge.classes()
        );
        let label = dom
            .iter()
            .filter(|e| e.name == "g" && e.has_class("edge-label"))
            .find(|e| on(e))
            .unwrap_or_else(|| panic!("no label on {identity} -> {workload}"));
        // Every label of the shop fits: none waits for a hover.
        assert!(
            !label.has_class("quiet"),
            "{identity} -> {workload}: label hidden"
        );
        let text = &label.shown;
        for grant in r["grants"].as_array().unwrap() {
            match (&grant["methods"], &grant["paths"]) {
                (Value::Null, Value::Null) => assert!(
                    text.contains("everything"),
                    "{identity} -> {workload}: {text}"
                ),
                (methods, paths) => {
                    if !methods.is_null() {
                        assert!(
                            text.contains(&strings(methods).join(",")),
                            "{identity} -> {workload}: {text}"
                        );
                    } else {
                        assert!(
                            text.contains("any method on"),
                            "{identity} -> {workload}: {text}"
                        );
                    }
                    if !paths.is_null() {
                        assert!(
                            text.contains(&strings(paths).join(", ")),
                            "{identity} -> {workload}: {text}"
                        );
                    }
                }
            }
            if !grant["conditions"].as_array().unwrap().is_empty() {
                assert!(
                    text.contains(" if "),
                    "{identity} -> {workload}: a conditional grant unmarked: {text}"
                );
            }
            // A DENY that closes paths: named on the label, and a marker on the edge.
            for except in strings(&grant["except"]) {
                let (what, conditional) = match except.split_once(" (may be denied by ") {
                    Some((what, _)) => (what.to_string(), true),
                    None => (
                        except.split_once(" (denied by ").unwrap().0.to_string(),
                        false,
                    ),
                };
                let said = if conditional {
                    format!("may DENY {what}")
                } else {
                    format!("DENY {what}")
                };
                assert!(
                    text.contains(&said),
                    "{identity} -> {workload}: `{said}` not in {text}"
                );
                let marker = dom
                    .iter()
                    .filter(|e| e.name == "g" && e.has_class("deny-marker"))
                    .filter(|e| e.has_class("may") == conditional)
                    .find(|e| on(e));
                assert!(marker.is_some(), "{identity} -> {workload}: no DENY marker");
                deny_markers += 1;
            }
        }
    }
    // Four identities lose the finance admin API to admin-deny on `finance/*`.
    assert_eq!(deny_markers, 4);
    assert_eq!(
        dom.iter()
            .filter(|e| e.name == "g" && e.has_class("deny-marker"))
            .count(),
        4
    );
    // The reaches that are `none` have no edge.
    let unreached = json["reach"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["access"] == "none");
    for r in unreached {
        assert!(!edges
            .iter()
            .any(|e| e.attr("data-identity") == r["identity"]
                && e.attr("data-workload") == r["workload"]));
    }
}

#[test]
fn a_focus_highlights_what_an_identity_reaches_and_the_filter_keeps_its_matches() {
    let dir = tempdir();
    let (page, _) = render(SHOP, &dir, "shop.html");
    let json = analysis(SHOP);
    let reach = reached(&json);

    // `#focus=` clicks the node: the identity is the focus, the workloads it reaches are
    // `reached`, every other node and edge is dimmed.
    let engine = "cluster.local/ns/shop/sa/order-engine";
    let dom = elements(&dump_dom(
        &page,
        "#focus=cluster.local%2Fns%2Fshop%2Fsa%2Forder-engine",
    ));
    let focused: Vec<&Element> = dom
        .iter()
        .filter(|e| e.name == "g" && e.has_class("focus"))
        .collect();
    assert_eq!(labels(&focused), BTreeSet::from([engine.to_string()]));
    let expected: BTreeSet<String> = reach
        .iter()
        .filter(|r| r["identity"] == engine)
        .map(|r| r["workload"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        expected,
        BTreeSet::from([
            "finance/billing-service".to_string(),
            "finance/*".to_string(),
            "shop/*".to_string()
        ])
    );
    let workloads = nodes(&dom, "workload");
    let highlighted: Vec<&Element> = workloads
        .iter()
        .copied()
        .filter(|e| e.has_class("reached"))
        .collect();
    assert_eq!(labels(&highlighted), expected);
    let dimmed: Vec<&Element> = workloads
        .iter()
        .copied()
        .filter(|e| e.has_class("dim"))
        .collect();
    assert_eq!(labels(&dimmed), BTreeSet::from(["shop/orders".to_string()]));
    for identity in nodes(&dom, "identity") {
        assert_eq!(
            identity.has_class("dim"),
            identity.attr("data-label") != engine
        );
    }
    let edges: Vec<&Element> = dom
        .iter()
        .filter(|e| e.name == "path" && e.has_class("edge"))
        .collect();
    for edge in &edges {
        let mine = edge.attr("data-identity") == engine;
        assert_eq!(edge.has_class("hl"), mine, "{edge:?}");
        assert_eq!(edge.has_class("dim"), !mine, "{edge:?}");
    }
    assert_eq!(edges.iter().filter(|e| e.has_class("hl")).count(), 3);
    // The side panel lists its grants, the rule behind each and the DENY that closes paths.
    let panel = dom.iter().find(|e| e.name == "aside").unwrap();
    assert!(panel.text.contains(engine), "{}", panel.text);
    assert!(
        panel
            .text
            .contains("ns[finance]-policy[billing-service-allow]-rule[1]"),
        "{}",
        panel.text
    );
    assert!(
        panel.text.contains("denied: /admin, /admin/{**}"),
        "{}",
        panel.text
    );

    // A workload as the focus: the identities that reach it.
    let dom = elements(&dump_dom(&page, "#focus=finance%2Fbilling-service"));
    let callers: BTreeSet<String> = reach
        .iter()
        .filter(|r| r["workload"] == "finance/billing-service")
        .map(|r| r["identity"].as_str().unwrap().to_string())
        .collect();
    let highlighted: Vec<&Element> = nodes(&dom, "identity")
        .into_iter()
        .filter(|e| e.has_class("reached"))
        .collect();
    assert_eq!(labels(&highlighted), callers);
    assert_eq!(callers.len(), 2);

    // The filter keeps the identities it matches and the workloads they reach.
    let dom = elements(&dump_dom(&page, "#filter=finance-ops"));
    assert_eq!(
        labels(&nodes(&dom, "identity")),
        BTreeSet::from(["namespace finance-ops".to_string()])
    );
    let theirs: BTreeSet<String> = reach
        .iter()
        .filter(|r| r["identity"] == "namespace finance-ops")
        .map(|r| r["workload"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(labels(&nodes(&dom, "workload")), theirs);
    let edges = dom
        .iter()
        .filter(|e| e.name == "path" && e.has_class("edge"))
        .count();
    assert_eq!(edges, theirs.len());
}

/// A policy value holding `</script>` stays data: the page's script still runs, and shows
/// it as text.
#[test]
fn policy_text_cannot_break_out_of_the_page() {
    let dir = tempdir();
    let policy = dir.join("evil.yaml");
    let path = "/a</script><script>document.title='pwned'</script><!--";
    std::fs::write(
        &policy,
        format!(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: evil\n  namespace: shop\nspec:\n  selector:\n    matchLabels:\n      app: orders\n  rules:\n  - from:\n    - source:\n        principals: [\"cluster.local/ns/shop/sa/web\"]\n    to:\n    - operation:\n        paths: [\"{path}\"]\n"
        ),
    )
    .unwrap();
    let policy = policy.to_str().unwrap();
    let (page, html) = render(policy, &dir, "evil.html");
    assert!(!html.contains(path));
    let dom = elements(&dump_dom(&page, ""));
    let title = dom.iter().find(|e| e.name == "title").unwrap();
    assert_eq!(title.text, "cordon · blast radius");
    let label = dom
        .iter()
        .find(|e| {
            e.name == "g" && e.has_class("edge-label") && e.attr("data-workload") == "shop/orders"
        })
        .expect("the edge to shop/orders is drawn");
    assert!(label.text.contains("</script><script>"), "{}", label.text);
    assert_eq!(nodes(&dom, "identity").len(), 3);
}

/// Hundreds of workloads: one line per node, every node and edge drawn, and highlighting an
/// identity keeps exactly the workloads it reaches (so that they are on screen with it).
#[test]
fn a_mesh_of_hundreds_of_workloads_stays_usable() {
    let dir = tempdir();
    let mut yaml = String::new();
    for n in 0..8 {
        for w in 0..40 {
            // Workload w of namespace n: GET from service accounts w % 5 and (w + 1) % 5.
            let principals: Vec<String> = [w % 5, (w + 1) % 5]
                .iter()
                .map(|sa| format!("\"cluster.local/ns/ns{n}/sa/sa{sa}\""))
                .collect();
            yaml.push_str(&format!(
                "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: w{w}-allow\n  namespace: ns{n}\nspec:\n  selector:\n    matchLabels:\n      app: w{w}\n  rules:\n  - from:\n    - source:\n        principals: [{}]\n    to:\n    - operation:\n        methods: [\"GET\"]\n        paths: [\"/api/w{w}/{{*}}\"]\n",
                principals.join(", ")
            ));
        }
    }
    let policy = dir.join("mesh.yaml");
    std::fs::write(&policy, yaml).unwrap();
    let policy = policy.to_str().unwrap();
    let (page, _) = render(policy, &dir, "mesh.html");
    let json = analysis(policy);
    let identities = strings(&json["identities"]);
    let workloads = strings(&json["workloads"]);
    assert_eq!(identities.len(), 8 * 5 + 2);
    assert_eq!(workloads.len(), 8 * 41);

    let dom = elements(&dump_dom(&page, ""));
    assert_eq!(
        labels(&nodes(&dom, "identity")),
        identities.iter().cloned().collect()
    );
    assert_eq!(
        labels(&nodes(&dom, "workload")),
        workloads.iter().cloned().collect()
    );
    let edges = dom
        .iter()
        .filter(|e| e.name == "path" && e.has_class("edge"))
        .count();
    assert_eq!(edges, reached(&json).len());
    // One line per node: the boxes are the compact height.
    let heights: BTreeSet<&str> = dom
        .iter()
        .filter(|e| e.name == "rect" && e.has_class("box"))
        .map(|e| e.attr("height"))
        .collect();
    assert_eq!(heights, BTreeSet::from(["26"]));

    let sa = "cluster.local/ns/ns3/sa/sa2";
    let dom = elements(&dump_dom(
        &page,
        "#focus=cluster.local%2Fns%2Fns3%2Fsa%2Fsa2",
    ));
    let theirs: BTreeSet<String> = reached(&json)
        .iter()
        .filter(|r| r["identity"] == sa)
        .map(|r| r["workload"].as_str().unwrap().to_string())
        .collect();
    // sa2 is named by w1, w2, w6, w7, … (w % 5 == 2 or (w + 1) % 5 == 2): 16 workloads,
    // and reaches every namespace's unselected rest.
    assert_eq!(theirs.len(), 16 + 8, "{theirs:?}");
    let shown = nodes(&dom, "workload");
    assert_eq!(labels(&shown), theirs);
    assert!(shown.iter().all(|e| e.has_class("reached")));
    let hl = dom
        .iter()
        .filter(|e| e.name == "path" && e.has_class("edge") && e.has_class("hl"))
        .count();
    assert_eq!(hl, theirs.len());
}
