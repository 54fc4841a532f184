//! SARIF 2.1.0 for GitHub code scanning: one result per grant (a role's finding absorbs its
//! binding's, which becomes a related location), the offending rule's own line and column,
//! URIs relative to `%SRCROOT%`, rule metadata with help and `security-severity`, and stable
//! `partialFingerprints`.

use std::path::{Component, Path, PathBuf};

use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use serde_json::{json, Value};

use super::check::{Index, Located, Report, Reported};
use super::sources::{Anchor, Sources, STDIN};
use crate::manifest::{InputError, Origin};
use crate::rbac::{Finding, IndirectRoute, ObjectRef, RbacKind, Severity};

pub const SRCROOT: &str = "%SRCROOT%";

/// Everything but unreserved characters and `/` is encoded in a path segment: spaces, `#`, `?`,
/// `%` and `:` (a relative reference whose first segment has a colon reads as a scheme).
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b':')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b']')
    .add(b'\\')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

pub struct Options {
    pub show_info: bool,
    /// Absolute directory that `%SRCROOT%` stands for.
    pub base: PathBuf,
    /// The README that rule `helpUri`s point into (its sections by anchor).
    pub help_uri: Option<String>,
}

/// `dir` made absolute against the current directory and lexically normalized.
pub fn absolute(dir: &Path) -> PathBuf {
    let joined = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(dir)
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

fn encode_path(path: &Path) -> String {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(s) => {
                Some(utf8_percent_encode(&s.to_string_lossy(), SEGMENT).to_string())
            }
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// An artifactLocation: relative to `%SRCROOT%` when under the base, else an absolute `file:`
/// URI; stdin has no file, so its URI is the encoded `<stdin>` with no base.
fn artifact(file: &str, base: &Path) -> Value {
    if file == STDIN {
        return json!({"uri": utf8_percent_encode(STDIN, SEGMENT).to_string()});
    }
    let abs = absolute(Path::new(file));
    match abs.strip_prefix(base) {
        Ok(rel) => json!({"uri": encode_path(rel), "uriBaseId": SRCROOT}),
        Err(_) => json!({"uri": format!("file:///{}", encode_path(&abs))}),
    }
}

fn physical(file: &str, line: u64, column: Option<u64>, base: &Path) -> Value {
    let mut region = json!({"startLine": line.max(1)});
    if let Some(c) = column {
        region["startColumn"] = json!(c.max(1));
    }
    json!({"physicalLocation": {"artifactLocation": artifact(file, base), "region": region}})
}

/// FNV-1a: stable across builds and Rust versions (std's hasher is not promised to be).
fn fingerprint(parts: &[&str]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes().chain([0]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

fn level(s: Severity) -> &'static str {
    match s {
        Severity::Deny => "error",
        Severity::Warn => "warning",
        Severity::Info => "note",
    }
}

struct RuleMeta {
    id: String,
    name: String,
    short: String,
    full: String,
    level: &'static str,
    security_severity: Option<&'static str>,
    tags: Vec<&'static str>,
    anchor: &'static str,
}

/// Every rule secretscope can report, in a fixed order (so `ruleIndex` is stable).
fn catalog() -> Vec<RuleMeta> {
    let mut rules = vec![RuleMeta {
        id: "secrets".into(),
        name: "ClusterWideSecretsAccess".into(),
        short: "Secrets access granted beyond one namespace".into(),
        full: "A ClusterRole rule grants verbs on core Secrets, and a ClusterRoleBinding (or \
               scope: strict) makes that grant cluster-wide: every Secret of every namespace, \
               tenancy namespaces included."
            .into(),
        level: "error",
        security_severity: Some("9.1"),
        tags: vec!["security", "kubernetes", "rbac", "secrets"],
        anchor: "what-it-decides",
    }];
    for route in IndirectRoute::ALL {
        let (action, why) = route.describe();
        rules.push(RuleMeta {
            id: format!("indirect/{route}"),
            name: format!("IndirectSecretsRoute/{route}"),
            short: format!("Indirect route to Secrets: {action}"),
            full: format!(
                "Granted cluster-wide, the permission to {action} is an indirect route to \
                 Secrets, {why}."
            ),
            level: "warning",
            security_severity: Some("7.5"),
            tags: vec!["security", "kubernetes", "rbac", "secrets", "indirect"],
            anchor: "what-it-decides",
        });
    }
    rules.push(RuleMeta {
        id: "azure/secrets".into(),
        name: "AzureRoleSecretsAccess".into(),
        short: "Azure role granting AKS Secrets access beyond one namespace".into(),
        full: "An Azure role definition (AKS with Azure RBAC) whose DataActions match the \
               managedClusters secrets actions, or whose Actions hand out the admin kubeconfig, \
               and which can be assigned wider than one namespace."
            .into(),
        level: "error",
        security_severity: Some("9.1"),
        tags: vec!["security", "azure", "aks", "secrets"],
        anchor: "secretscope-check",
    });
    rules.push(RuleMeta {
        id: "input-error".into(),
        name: "InputError".into(),
        short: "A manifest that could not be read or judged".into(),
        full: "A file, document or object secretscope could not read; nothing in it was judged, \
               so the check fails (exit 2)."
            .into(),
        level: "error",
        security_severity: None,
        tags: vec!["input"],
        anchor: "secretscope-check",
    });
    rules
}

fn rule_json(r: &RuleMeta, help_uri: Option<&str>) -> Value {
    let help = format!(
        "{} {} Remove the grant from the rule the result points at (`secretscope fix` writes \
         the rewrite for Secrets rules), and grant what is needed per namespace instead: \
         secretscope's `tenancy:` policy or RoleBindings in the namespaces that need it.",
        r.short, r.full
    );
    let markdown = format!(
        "**{}**\n\n{}\n\nTo fix: remove the grant from the rule the result points at \
         (`secretscope fix` writes the rewrite for Secrets rules), and grant what is needed per \
         namespace instead, with secretscope's `tenancy:` policy or RoleBindings in the \
         namespaces that need it.",
        r.short, r.full
    );
    let mut v = json!({
        "id": r.id,
        "name": r.name,
        "shortDescription": {"text": r.short},
        "fullDescription": {"text": r.full},
        "help": {"text": help, "markdown": markdown},
        "defaultConfiguration": {"level": r.level},
        "properties": {"tags": r.tags, "precision": "very-high"}
    });
    if let Some(s) = r.security_severity {
        v["properties"]["security-severity"] = json!(s);
    }
    if let Some(base) = help_uri {
        v["helpUri"] = json!(format!("{base}#{}", r.anchor));
    }
    v
}

/// One result in the making: the primary finding and the objects folded into it.
struct Grant<'a> {
    primary: &'a Located<Finding>,
    related: Vec<&'a Located<Finding>>,
}

/// A binding's finding is folded into its role's when both say the same about the same route.
fn group<'a>(findings: &[&'a Located<Finding>], index: &Index<'_>) -> Vec<Grant<'a>> {
    let mut grants: Vec<Grant<'a>> = Vec::new();
    let is_binding =
        |k: RbacKind| matches!(k, RbacKind::ClusterRoleBinding | RbacKind::RoleBinding);
    for l in findings
        .iter()
        .filter(|l| !is_binding(l.finding.object.kind))
    {
        grants.push(Grant {
            primary: l,
            related: Vec::new(),
        });
    }
    for l in findings
        .iter()
        .filter(|l| is_binding(l.finding.object.kind))
    {
        let f = &l.finding;
        let role = index.role_ref(&f.object);
        let host = grants.iter_mut().find(|g| {
            let p = &g.primary.finding;
            Some(&p.object) == role.as_ref() && p.route == f.route && p.severity == f.severity
        });
        match host {
            Some(g) => g.related.push(l),
            None => grants.push(Grant {
                primary: l,
                related: Vec::new(),
            }),
        }
    }
    grants
}

/// The finding's own place: its first granting rule when that rule's role is an input, a
/// binding's `roleRef`, else the document's line.
fn place(
    l: &Located<Finding>,
    index: &Index<'_>,
    sources: &Sources,
) -> (Origin, Option<(u64, u64)>) {
    let f = &l.finding;
    let origin = Origin {
        file: l.file.clone(),
        document: l.document,
        line: l.line,
    };
    let rule_role = f.via.first().and_then(|r| {
        let role = ObjectRef {
            kind: if r.role_kind == "Role" {
                RbacKind::Role
            } else {
                RbacKind::ClusterRole
            },
            name: r.role.clone(),
            namespace: f.object.namespace.clone().filter(|_| r.role_kind == "Role"),
        };
        let o = index.get(&role)?;
        Some((o, role, r.rule.checked_sub(1)?))
    });
    let found = match rule_role {
        Some((o, role, i))
            if !matches!(
                f.object.kind,
                RbacKind::ClusterRoleBinding | RbacKind::RoleBinding
            ) =>
        {
            sources
                .position(&o.origin, &role, Anchor::Rule(i))
                .map(|p| (o.origin.clone(), p))
        }
        _ => sources
            .position(&origin, &f.object, Anchor::RoleRef)
            .map(|p| (origin.clone(), p)),
    };
    match found {
        Some((o, p)) => (Origin { line: p.line, ..o }, Some((p.line, p.column))),
        None => (origin, None),
    }
}

fn grant_result(
    g: &Grant<'_>,
    index: &Index<'_>,
    sources: &Sources,
    opts: &Options,
    rule_index: usize,
) -> Value {
    let f = &g.primary.finding;
    let (at, column) = place(g.primary, index, sources);
    let related: Vec<Value> = g
        .related
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut loc = physical(&r.file, r.line, None, &opts.base);
            loc["id"] = json!(i + 1);
            loc["message"] = json!({"text": format!("{} grants it to {}", r.finding.object, crate::rbac::finding::describe_subjects(&r.finding.subjects))});
            loc
        })
        .collect();
    let message = format!(
        "{} Fix: {}",
        f.message()
            .strip_prefix("secretscope: ")
            .unwrap_or(f.message()),
        g.primary.remediation.text
    );
    let via: Vec<String> = f
        .via
        .iter()
        .map(|r| format!("{}/{}#{}", r.role_kind, r.role, r.rule))
        .collect();
    let object = format!(
        "{}/{}/{}",
        f.object.kind,
        f.object.namespace.as_deref().unwrap_or(""),
        f.object.name
    );
    let rule_id = f.rule_id();
    let mut result = json!({
        "ruleId": rule_id,
        "ruleIndex": rule_index,
        "level": level(g.related.iter().map(|r| r.finding.severity).fold(f.severity, Ord::max)),
        "message": {"text": message},
        "locations": [physical(&at.file, at.line, column.map(|c| c.1), &opts.base)],
        "partialFingerprints": {"secretscope/v1": fingerprint(&[&rule_id, &object, &via.join(",")])},
        "properties": {
            "severity": f.severity,
            "scope": f.scope,
            "verbs": f.verbs,
            "reach": f.reach,
            "subjects": f.subjects,
            "bindings": f.bindings,
            "remediation": g.primary.remediation,
        }
    });
    if !related.is_empty() {
        result["relatedLocations"] = json!(related);
    }
    result
}

fn error_result(e: &InputError, opts: &Options, rule_index: usize) -> Value {
    let document = e.document.map(|d| d.to_string()).unwrap_or_default();
    json!({
        "ruleId": "input-error",
        "ruleIndex": rule_index,
        "level": "error",
        "message": {"text": e.message},
        "locations": [physical(&e.file, e.line.unwrap_or(1), None, &opts.base)],
        "partialFingerprints": {"secretscope/v1": fingerprint(&["input-error", &e.file, &document, &e.message])},
    })
}

pub fn sarif(report: &Report, index: &Index<'_>, sources: &Sources, opts: &Options) -> Value {
    let rules = catalog();
    let rule_index = |id: &str| rules.iter().position(|r| r.id == id).unwrap_or(0);
    let keep = |s: Severity| opts.show_info || s > Severity::Info;
    let findings: Vec<&Located<Finding>> = report
        .findings
        .iter()
        .filter(|l| keep(l.finding.severity))
        .collect();
    let mut results: Vec<Value> = group(&findings, index)
        .iter()
        .map(|g| {
            grant_result(
                g,
                index,
                sources,
                opts,
                rule_index(&g.primary.finding.rule_id()),
            )
        })
        .collect();
    for l in report.azure.iter().filter(|l| keep(l.finding.severity)) {
        let f = &l.finding;
        results.push(json!({
            "ruleId": f.rule_id(),
            "ruleIndex": rule_index(&f.rule_id()),
            "level": level(f.severity),
            "message": {"text": format!("{} Fix: {}", f.message, l.remediation.text)},
            "locations": [physical(&l.file, l.line, None, &opts.base)],
            "partialFingerprints": {"secretscope/v1": fingerprint(&["azure/secrets", &l.file, &f.role])},
            "properties": {"severity": f.severity, "verbs": f.verbs, "remediation": l.remediation},
        }));
    }
    let input_error = rule_index("input-error");
    results.extend(
        report
            .errors
            .iter()
            .map(|e| error_result(e, opts, input_error)),
    );
    let base_uri = match encode_path(&opts.base) {
        root if root.is_empty() => "file:///".to_string(),
        dir => format!("file:///{dir}/"),
    };
    let mut log = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "secretscope",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules.iter().map(|r| rule_json(r, opts.help_uri.as_deref())).collect::<Vec<_>>(),
            }},
            "originalUriBaseIds": {SRCROOT: {"uri": base_uri}},
            "columnKind": "unicodeCodePoints",
            "results": results,
        }]
    });
    if let Some(uri) = &opts.help_uri {
        log["runs"][0]["tool"]["driver"]["informationUri"] = json!(uri);
    }
    log
}
