//! The three text forms of the analysis (table, JSON, Graphviz), written row by row to a
//! stream: nothing but one identity's row is held, so a mesh's output never sits in memory.
//! The same writers serve the in-memory [`BlastRadius`] (its `to_*` methods).

use std::io::{self, Write};

use serde_json::{json, Value};

use super::{Access, Analysis, BlastRadius, Grant, Subject, Target};

/// What a row's visitor is given: a workload's position, the access, the grants.
pub(super) type Visit<'v> = dyn FnMut(usize, Access, &[Grant]) -> io::Result<()> + 'v;

/// Identities, workloads, and each identity's reach of every workload, row by row.
pub(super) trait Rows {
    fn subjects(&self) -> &[Subject];
    fn targets(&self) -> &[Target];
    /// Calls `visit` with each workload's position, access and grants, in order.
    fn row(&self, subject: usize, visit: &mut Visit<'_>) -> io::Result<()>;
}

impl Rows for Analysis<'_> {
    fn subjects(&self) -> &[Subject] {
        Analysis::subjects(self)
    }

    fn targets(&self) -> &[Target] {
        Analysis::targets(self)
    }

    fn row(&self, subject: usize, visit: &mut Visit<'_>) -> io::Result<()> {
        let mut row = Analysis::row(self, subject);
        for target in 0..self.targets().len() {
            let (access, grants) = row.cell(target);
            visit(target, access, grants)?;
        }
        Ok(())
    }
}

impl Rows for BlastRadius {
    fn subjects(&self) -> &[Subject] {
        &self.subjects
    }

    fn targets(&self) -> &[Target] {
        &self.targets
    }

    fn row(&self, subject: usize, visit: &mut Visit<'_>) -> io::Result<()> {
        let width = self.targets.len();
        let start = subject * width;
        for (target, reach) in self
            .reach
            .get(start..start + width)
            .unwrap_or(&[])
            .iter()
            .enumerate()
        {
            visit(target, reach.access, &reach.grants)?;
        }
        Ok(())
    }
}

/// The matrix, then what each identity may do on each workload.
pub(super) fn table(rows: &dyn Rows, out: &mut dyn Write) -> io::Result<()> {
    let labels: Vec<String> = rows.subjects().iter().map(Subject::label).collect();
    let width = labels.iter().map(String::len).max().unwrap_or(8).max(8);
    let columns: Vec<String> = rows.targets().iter().map(Target::label).collect();
    write!(out, "{:width$}", "identity \\ workload")?;
    for column in &columns {
        write!(out, "  {column}")?;
    }
    writeln!(out)?;
    for (s, label) in labels.iter().enumerate() {
        write!(out, "{label:width$}")?;
        rows.row(s, &mut |t, access, _| {
            let w = columns.get(t).map_or(0, String::len);
            let cell = access.cell();
            out.write_all(b"  ")?;
            out.write_all(cell.as_bytes())?;
            pad(out, w.saturating_sub(cell.len()))
        })?;
        writeln!(out)?;
    }
    out.write_all(b"\n(ALL: anything; partial: some operations; cond: only under conditions besides the identity; -: nothing)\n")?;
    let target_width = columns.iter().map(String::len).max().unwrap_or(8);
    let nothing: Vec<String> = columns
        .iter()
        .map(|column| format!("  {column:target_width$}  nothing\n"))
        .collect();
    for (s, label) in labels.iter().enumerate() {
        write!(out, "\n{label}\n")?;
        rows.row(s, &mut |t, _, grants| {
            let column = columns.get(t).map_or("", String::as_str);
            if grants.is_empty() {
                return out.write_all(nothing.get(t).map_or("", String::as_str).as_bytes());
            }
            for (position, grant) in grants.iter().enumerate() {
                let name = if position == 0 { column } else { "" };
                let by = grant.rule.as_deref().map_or_else(
                    || " (no ALLOW policy applies)".to_string(),
                    |r| format!(" [{r}]"),
                );
                writeln!(out, "  {name:target_width$}  {}{by}", grant.describe())?;
            }
            Ok(())
        })?;
    }
    Ok(())
}

/// `count` spaces.
fn pad(out: &mut dyn Write, mut count: usize) -> io::Result<()> {
    const SPACES: &[u8; 64] = &[b' '; 64];
    while count > 0 {
        let now = count.min(SPACES.len());
        out.write_all(SPACES.get(..now).unwrap_or(&[]))?;
        count -= now;
    }
    Ok(())
}

fn grant_json(grant: &Grant) -> Value {
    json!({
        "rule": grant.rule,
        "methods": grant.methods,
        "paths": grant.paths,
        "hosts": grant.hosts,
        "ports": grant.ports,
        "excluded": grant.excluded,
        "conditions": grant.conditions,
        "except": grant.except,
    })
}

/// `{"identities": […], "workloads": […], "reach": [{identity, workload, access, grants}…]}`,
/// one `reach` item a line.
pub(super) fn json(rows: &dyn Rows, out: &mut dyn Write) -> io::Result<()> {
    // Each label once, as a JSON string.
    let quote = |text: String| serde_json::to_string(&text).map_err(io::Error::other);
    let subjects = rows
        .subjects()
        .iter()
        .map(|s| quote(s.label()))
        .collect::<io::Result<Vec<String>>>()?;
    let targets = rows
        .targets()
        .iter()
        .map(|t| quote(t.label()))
        .collect::<io::Result<Vec<String>>>()?;
    write!(
        out,
        "{{\"identities\":[{}],\"workloads\":[{}],\"reach\":[",
        subjects.join(","),
        targets.join(",")
    )?;
    let mut first = true;
    for (s, subject) in subjects.iter().enumerate() {
        rows.row(s, &mut |t, access, grants| {
            let target = targets.get(t).map_or("\"\"", String::as_str);
            let separator = if first { "\n" } else { ",\n" };
            first = false;
            for piece in [
                separator,
                "{\"identity\":",
                subject,
                ",\"workload\":",
                target,
                ",\"access\":\"",
                access.name(),
                "\",\"grants\":[",
            ] {
                out.write_all(piece.as_bytes())?;
            }
            for (position, grant) in grants.iter().enumerate() {
                if position > 0 {
                    out.write_all(b",")?;
                }
                serde_json::to_writer(&mut *out, &grant_json(grant)).map_err(io::Error::other)?;
            }
            out.write_all(b"]}")
        })?;
    }
    out.write_all(b"\n]}\n")
}

/// A Graphviz graph: identities → workloads, edges labelled with what is allowed (solid:
/// unconditional, dashed: conditional, bold red: everything).
pub(super) fn dot(rows: &dyn Rows, out: &mut dyn Write) -> io::Result<()> {
    out.write_all(b"digraph blast_radius {\n  rankdir=LR;\n  node [fontname=\"Helvetica\", fontsize=11];\n  edge [fontname=\"Helvetica\", fontsize=9];\n")?;
    out.write_all(
        b"  subgraph cluster_identities {\n    label=\"identities\";\n    style=dashed;\n",
    )?;
    for (s, subject) in rows.subjects().iter().enumerate() {
        let shape = match subject {
            Subject::Plaintext | Subject::Authenticated => {
                "box, style=\"rounded,filled\", fillcolor=\"#fde2e2\""
            }
            Subject::Namespace(_) | Subject::ServiceAccount(..) => {
                "box, style=\"rounded,filled\", fillcolor=\"#fff4d6\""
            }
            Subject::Principal(_) => "box, style=rounded",
        };
        writeln!(
            out,
            "    i{s} [label={}, shape={shape}];",
            dot_quote(&subject.label())
        )?;
    }
    out.write_all(
        b"  }\n  subgraph cluster_workloads {\n    label=\"workloads\";\n    style=dashed;\n",
    )?;
    for (t, target) in rows.targets().iter().enumerate() {
        writeln!(
            out,
            "    w{t} [label={}, shape=component];",
            dot_quote(&target.label())
        )?;
    }
    out.write_all(b"  }\n")?;
    for s in 0..rows.subjects().len() {
        rows.row(s, &mut |t, access, grants| {
            let style = match access {
                Access::None => return Ok(()),
                Access::All => "color=\"#c0392b\", penwidth=2.5",
                Access::Conditional => "style=dashed",
                Access::Partial => "color=\"#2c3e50\"",
            };
            let mut lines: Vec<String> = if access == Access::All {
                vec!["everything".to_string()]
            } else {
                grants.iter().map(Grant::describe).collect()
            };
            if lines.len() > 6 {
                let more = lines.len() - 5;
                lines.truncate(5);
                lines.push(format!("… {more} more"));
            }
            writeln!(
                out,
                "  i{s} -> w{t} [label={}, {style}];",
                dot_quote(&lines.join("\n"))
            )
        })?;
    }
    out.write_all(b"}\n")
}

/// A DOT string literal (`\n` makes a line break in labels).
fn dot_quote(text: &str) -> String {
    let mut out = String::from("\"");
    for ch in text.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
