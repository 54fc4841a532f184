//! `secretscope fix`: the minimal safe rewrite of the given manifests. Each deny-level Secrets
//! rule loses `secrets` (split when other API groups share it; every non-Secrets permission
//! kept), documents without such a rule are copied byte for byte, and the `tenancy:` snippet that
//! grants the same verbs in tenancy namespaces only is printed. Rules that RBAC cannot express
//! "minus Secrets" (`resources: ["*"]`), built-in roles and Azure role definitions (their edits
//! are in the list) are left and listed for a person.
//! Exit codes: 0 every Secrets denial rewritten, 1 some need a person, 2 input errors.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::Value;

use super::check::{judge, ScopeArg};
use super::sources::{self, STDIN};
use crate::manifest::{self, Origin};
use crate::policy::Policy;
use crate::rbac::remediation::RuleFix;
use crate::rbac::{
    BindingScope, ObjectRef, PolicyRule, RbacKind, Route, SecretsVerb, Severity, Subject,
};

#[derive(Debug, clap::Args)]
pub struct FixArgs {
    /// Files or directories (walked for .yaml, .yml and .json); `-` reads stdin.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Write each rewritten file under DIR (same relative path) instead of one stream to stdout.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
    /// Policy file (secretscope.yaml): its scope and exemptions decide what is denied.
    #[arg(long, env = "SECRETSCOPE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Override the policy's scope.
    #[arg(long, value_enum)]
    pub scope: Option<ScopeArg>,
}

/// What `fix` changes: per role, rule index (0-based) to its replacement rules.
type Edits = BTreeMap<ObjectRef, BTreeMap<usize, Vec<PolicyRule>>>;

struct Plan {
    edits: Edits,
    /// Rules and roles left for a person, with why.
    manual: BTreeSet<String>,
    subjects: BTreeSet<Subject>,
    verbs: BTreeSet<SecretsVerb>,
}

fn plan(report: &super::check::Report) -> Plan {
    let mut p = Plan {
        edits: Edits::new(),
        manual: BTreeSet::new(),
        subjects: BTreeSet::new(),
        verbs: BTreeSet::new(),
    };
    let denied = report
        .findings
        .iter()
        .filter(|l| l.finding.route == Route::Secrets && l.finding.severity == Severity::Deny);
    for l in denied {
        let f = &l.finding;
        for e in &l.remediation.edits {
            let role = ObjectRef {
                kind: if e.rule.role_kind == "Role" {
                    RbacKind::Role
                } else {
                    RbacKind::ClusterRole
                },
                name: e.rule.role.clone(),
                namespace: f
                    .object
                    .namespace
                    .clone()
                    .filter(|_| e.rule.role_kind == "Role"),
            };
            match &e.fix {
                RuleFix::DropSecrets { rules, .. } => {
                    p.edits
                        .entry(role)
                        .or_default()
                        .insert(e.rule.rule.saturating_sub(1), rules.clone());
                }
                RuleFix::NeedsHuman { reason } => {
                    p.manual
                        .insert(format!("{role} rule {}: {reason}", e.rule.rule));
                }
            }
        }
        if l.remediation.edits.is_empty() {
            p.manual
                .insert(format!("{}: {}", f.object, l.remediation.text));
        }
        if let Some(t) = &l.remediation.tenancy {
            p.subjects.extend(t.subjects.iter().cloned());
            p.verbs
                .extend(t.verbs.iter().filter_map(|v| SecretsVerb::parse(v)));
        }
    }
    // Role definitions are JSON the user keeps elsewhere (az role definition update): the
    // edits are listed, not applied, and the run does not count as fixed.
    for l in report
        .azure
        .iter()
        .filter(|l| l.finding.severity == Severity::Deny)
    {
        // The text names the role ("in role \"...\": ...").
        p.manual
            .insert(format!("{}: Azure {}", l.file, l.remediation.text));
    }
    p
}

/// Applies the plan's edits to one decoded document (an object or a `List` of them); whether it
/// changed anything.
fn rewrite(doc: &mut Value, edits: &Edits) -> bool {
    let kind = doc
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if kind.ends_with("List") {
        let item_kind = kind.trim_end_matches("List").to_string();
        let mut changed = false;
        if let Some(Value::Array(items)) = doc.get_mut("items") {
            for item in items {
                if item.get("kind").is_none() && !item_kind.is_empty() {
                    // Typed lists (ClusterRoleList) name the kind once; look it up as such.
                    let mut typed = item.clone();
                    typed["kind"] = Value::from(item_kind.clone());
                    if rewrite(&mut typed, edits) {
                        item["rules"] = typed["rules"].take();
                        changed = true;
                    }
                } else {
                    changed |= rewrite(item, edits);
                }
            }
        }
        return changed;
    }
    let Some(kind) = RbacKind::from_kind(&kind) else {
        return false;
    };
    let meta = |k: &str| {
        doc.pointer(&format!("/metadata/{k}"))
            .and_then(Value::as_str)
            .map(String::from)
    };
    let object = ObjectRef {
        kind,
        name: meta("name").unwrap_or_default(),
        namespace: meta("namespace").filter(|_| kind == RbacKind::Role),
    };
    let (Some(fixes), Some(Value::Array(rules))) = (edits.get(&object), doc.get_mut("rules"))
    else {
        return false;
    };
    let mut out = Vec::with_capacity(rules.len());
    for (i, rule) in rules.drain(..).enumerate() {
        match fixes.get(&i) {
            // Rules secretscope does not change keep every field as written.
            None => out.push(rule),
            Some(replacement) => out.extend(
                replacement
                    .iter()
                    .filter_map(|r| serde_json::to_value(r).ok()),
            ),
        }
    }
    *rules = out;
    true
}

/// The file's text with rewritten documents re-serialized (their comments are lost, said in a
/// comment) and every other document copied byte for byte.
fn rewrite_file(text: &str, json: bool, edits: &Edits) -> anyhow::Result<Option<String>> {
    if json {
        let mut v: Value = serde_json::from_str(text).context("invalid JSON")?;
        return Ok(rewrite(&mut v, edits)
            .then(|| serde_json::to_string_pretty(&v).map(|s| s + "\n"))
            .transpose()?);
    }
    let mut out = String::with_capacity(text.len());
    let mut changed = false;
    for (_, chunk) in manifest::yaml_documents(text) {
        let mut parsed: Option<Value> =
            serde_saphyr::from_str_with_options(chunk, manifest::yaml_options()).ok();
        let rewritten = parsed.as_mut().is_some_and(|v| rewrite(v, edits));
        match parsed.filter(|_| rewritten) {
            Some(v) => {
                changed = true;
                if chunk.starts_with("---") {
                    out.push_str("---\n");
                }
                out.push_str("# secretscope fix: Secrets removed from this document's rules (its comments are not kept)\n");
                out.push_str(&serde_saphyr::to_string(&v).context("cannot write YAML")?);
            }
            _ => out.push_str(chunk),
        }
    }
    Ok(changed.then_some(out))
}

/// The `tenancy:` policy snippet granting the same verbs in tenancy namespaces only.
fn tenancy_snippet(p: &Plan) -> Option<String> {
    if p.subjects.is_empty() {
        return None;
    }
    let mut s = String::from(
        "# secretscope.yaml: the same Secrets verbs, in tenancy namespaces only\ntenancy:\n  verbs: [",
    );
    s.push_str(
        &p.verbs
            .iter()
            .map(|v| v.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    );
    s.push_str("]\n  subjects:\n");
    for subject in &p.subjects {
        let mut line = format!(
            "  - {{kind: {}, name: {}",
            subject.kind,
            yaml_scalar(&subject.name)
        );
        if let Some(ns) = &subject.namespace {
            line.push_str(&format!(", namespace: {}", yaml_scalar(ns)));
        }
        s.push_str(&line);
        s.push_str("}\n");
    }
    Some(s)
}

/// Names go out quoted: a subject named `no` or `1` must stay a string.
fn yaml_scalar(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

fn out_path(dir: &Path, file: &str) -> PathBuf {
    if file == STDIN {
        return dir.join("stdin.yaml");
    }
    let rel: PathBuf = Path::new(file)
        .components()
        .filter(|c| matches!(c, std::path::Component::Normal(_)))
        .collect();
    dir.join(rel)
}

pub fn run(args: &FixArgs) -> anyhow::Result<u8> {
    let mut policy = match &args.config {
        Some(path) => Policy::load(path)?,
        None => Policy::default(),
    };
    if let Some(scope) = args.scope {
        policy.eval.scope = match scope {
            ScopeArg::Bindings => BindingScope::Bindings,
            ScopeArg::Strict => BindingScope::Strict,
        };
    }
    let inputs = sources::load(&args.paths);
    let report = judge(&inputs.loaded, &policy, true);
    if !report.errors.is_empty() {
        for e in &report.errors {
            eprintln!("ERROR {e}");
        }
        eprintln!("secretscope fix: nothing written: fix the input errors first");
        return Ok(2);
    }
    let p = plan(&report);
    let files: BTreeSet<&str> = inputs
        .loaded
        .objects
        .iter()
        .map(|o| o.origin.file.as_str())
        .chain(
            inputs
                .loaded
                .other
                .iter()
                .map(|(o, _): &(Origin, _)| o.file.as_str()),
        )
        .collect();
    let mut stdout = std::io::stdout().lock();
    let mut changed = 0;
    for file in files {
        let text = inputs
            .sources
            .text(file)
            .with_context(|| format!("{file}: cannot read it again"))?;
        let json = file != STDIN && file.ends_with(".json");
        let rewritten = rewrite_file(&text, json, &p.edits).with_context(|| file.to_string())?;
        changed += usize::from(rewritten.is_some());
        match &args.out_dir {
            Some(dir) => {
                if let Some(new) = rewritten {
                    let path = out_path(dir, file);
                    if let Some(parent) = path.parent() {
                        std::fs::create_dir_all(parent)
                            .with_context(|| format!("cannot create {}", parent.display()))?;
                    }
                    std::fs::write(&path, new)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    eprintln!("secretscope fix: wrote {}", path.display());
                }
            }
            None => {
                // One stream of every input, so `fix ... | check -` sees the whole picture.
                let body = rewritten.as_deref().unwrap_or(&text);
                writeln!(stdout, "---\n# Source: {file}")?;
                stdout.write_all(body.as_bytes())?;
                if !body.ends_with('\n') {
                    writeln!(stdout)?;
                }
            }
        }
    }
    summarize(&p, changed);
    Ok(u8::from(!p.manual.is_empty()))
}

fn summarize(p: &Plan, files: usize) {
    let rules: usize = p.edits.values().map(BTreeMap::len).sum();
    eprintln!(
        "secretscope fix: {rules} rules in {} roles rewritten in {files} files; {} left for a person",
        p.edits.len(),
        p.manual.len()
    );
    for m in &p.manual {
        eprintln!("  needs a person: {m}");
    }
    if let Some(snippet) = tenancy_snippet(p) {
        eprintln!("{snippet}");
    }
}
