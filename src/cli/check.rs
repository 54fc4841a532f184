//! `secretscope check`: the engine over manifests, offline, for CI pipelines.
//! Exit codes: 0 clean, 1 deny-level findings, 2 input errors (which win over findings).

use std::io::Write;
use std::path::PathBuf;

use serde::Serialize;

use crate::manifest::{self, InputError, Origin};
use crate::policy::Policy;
use crate::rbac::azure::{evaluate_azure, AzureFinding, RoleDefinition};
use crate::rbac::{evaluate, BindingScope, ClusterState, Finding, Severity};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
    /// SARIF 2.1.0, for code-scanning dashboards.
    Sarif,
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Files or directories (walked for .yaml, .yml and .json); `-` reads stdin.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Policy file (secretscope.yaml); defaults apply without one.
    #[arg(long, env = "SECRETSCOPE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Override the policy's scope.
    #[arg(long, value_enum)]
    pub scope: Option<ScopeArg>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Also print info-level findings (namespace-scoped grants, unbound or exempt roles).
    #[arg(long)]
    pub show_info: bool,
    /// Judge only the given objects: do not add the built-in ClusterRoles (cluster-admin, ...).
    #[arg(long)]
    pub no_builtins: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ScopeArg {
    Bindings,
    Strict,
}

/// A finding (RBAC or Azure) with the place it was found.
#[derive(Debug, Clone, Serialize)]
pub struct Located<F> {
    pub file: String,
    pub document: usize,
    pub line: u64,
    #[serde(flatten)]
    pub finding: F,
}

/// What the text and SARIF outputs need of a finding.
pub trait Reported {
    fn severity(&self) -> Severity;
    fn message(&self) -> &str;
    /// A stable rule id: `secrets`, `indirect/pod-exec`, `azure/secrets`.
    fn rule_id(&self) -> String;
}

impl Reported for Finding {
    fn severity(&self) -> Severity {
        self.severity
    }
    fn message(&self) -> &str {
        &self.message
    }
    fn rule_id(&self) -> String {
        match self.route {
            crate::rbac::Route::Secrets => "secrets".into(),
            crate::rbac::Route::Indirect(r) => format!("indirect/{r}"),
        }
    }
}

impl Reported for AzureFinding {
    fn severity(&self) -> Severity {
        self.severity
    }
    fn message(&self) -> &str {
        &self.message
    }
    fn rule_id(&self) -> String {
        "azure/secrets".into()
    }
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub findings: Vec<Located<Finding>>,
    /// Azure role definitions (AKS with Azure RBAC) that grant Secrets access.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub azure: Vec<Located<AzureFinding>>,
    pub errors: Vec<InputError>,
    pub summary: Summary,
}

#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub files: usize,
    pub objects: usize,
    pub deny: usize,
    pub warn: usize,
    pub info: usize,
    pub errors: usize,
}

impl Report {
    pub fn exit_code(&self) -> u8 {
        if self.summary.errors > 0 {
            2
        } else if self.summary.deny > 0 {
            1
        } else {
            0
        }
    }
}

/// Judges every RBAC object in `loaded` against all of them (plus the built-in ClusterRoles).
pub fn judge(loaded: &manifest::Loaded, policy: &Policy, builtins: bool) -> Report {
    let mut state = if builtins {
        ClusterState::with_builtins()
    } else {
        ClusterState::new()
    };
    state.extend(loaded.objects.iter().map(|o| o.object.clone()));
    let mut report = Report {
        errors: loaded.errors.clone(),
        ..Default::default()
    };
    for o in &loaded.objects {
        match evaluate(&o.object, &state, &policy.eval) {
            Ok(findings) => report
                .findings
                .extend(findings.into_iter().map(|f| locate(&o.origin, f))),
            // Not judged is not clean: an input error, so the gate fails (exit 2).
            Err(e) => report.errors.push(manifest::InputError {
                file: o.origin.file.clone(),
                document: Some(o.origin.document),
                line: Some(o.origin.line),
                message: format!("{} cannot be judged: {e}", o.object.object_ref()),
            }),
        }
    }
    let mut azure_roles = 0;
    for (origin, value) in &loaded.other {
        // A definition file holds one role; `az role definition list` prints an array of them.
        let docs = match value {
            serde_json::Value::Array(items) => items.iter().collect(),
            v => vec![v],
        };
        for doc in docs {
            match RoleDefinition::from_value(doc) {
                Ok(Some(role)) => {
                    azure_roles += 1;
                    if let Some(finding) = evaluate_azure(&role) {
                        report.azure.push(locate(origin, finding));
                    }
                }
                Ok(None) => {}
                Err(message) => report.errors.push(manifest::InputError {
                    file: origin.file.clone(),
                    document: Some(origin.document),
                    line: Some(origin.line),
                    message,
                }),
            }
        }
    }
    let count = |s| {
        report
            .findings
            .iter()
            .filter(|f| f.finding.severity == s)
            .count()
            + report
                .azure
                .iter()
                .filter(|f| f.finding.severity == s)
                .count()
    };
    report.summary = Summary {
        files: loaded.files,
        // Azure role definitions are judged objects too.
        objects: loaded.objects.len() + azure_roles,
        deny: count(Severity::Deny),
        warn: count(Severity::Warn),
        info: count(Severity::Info),
        errors: report.errors.len(),
    };
    report
}

fn locate<F>(origin: &Origin, finding: F) -> Located<F> {
    Located {
        file: origin.file.clone(),
        document: origin.document,
        line: origin.line,
        finding,
    }
}

pub fn run(args: &CheckArgs) -> anyhow::Result<u8> {
    let mut policy = match &args.config {
        Some(path) => Policy::load(path)?,
        None => Policy::default(),
    };
    for warning in policy.warnings() {
        eprintln!("secretscope: warning: policy: {warning}");
    }
    if let Some(scope) = args.scope {
        policy.eval.scope = match scope {
            ScopeArg::Bindings => BindingScope::Bindings,
            ScopeArg::Strict => BindingScope::Strict,
        };
    }
    let mut loaded = manifest::load_paths(&args.paths);
    loaded.require_documents();
    let report = judge(&loaded, &policy, !args.no_builtins);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match args.format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &report)?;
            writeln!(out)?;
        }
        Format::Text => write_text(&mut out, &report, args.show_info)?,
        Format::Sarif => {
            serde_json::to_writer_pretty(&mut out, &sarif(&report, args.show_info))?;
            writeln!(out)?;
        }
    }
    Ok(report.exit_code())
}

fn write_text(out: &mut impl Write, report: &Report, show_info: bool) -> std::io::Result<()> {
    for e in &report.errors {
        writeln!(out, "ERROR {e}")?;
    }
    write_findings(out, &report.findings, show_info)?;
    write_findings(out, &report.azure, show_info)?;
    let s = &report.summary;
    writeln!(
        out,
        "secretscope check: {} objects in {} files: {} deny, {} warn, {} info, {} input errors",
        s.objects, s.files, s.deny, s.warn, s.info, s.errors
    )
}

/// SARIF 2.1.0: one result per finding (deny = error, warn = warning, info = note, the latter only
/// with --show-info) and per input error.
fn sarif(report: &Report, show_info: bool) -> serde_json::Value {
    use serde_json::json;
    fn result<F: Reported>(l: &Located<F>) -> serde_json::Value {
        let level = match l.finding.severity() {
            Severity::Deny => "error",
            Severity::Warn => "warning",
            Severity::Info => "note",
        };
        json!({
            "ruleId": l.finding.rule_id(),
            "level": level,
            "message": {"text": l.finding.message()},
            "locations": [{"physicalLocation": {
                "artifactLocation": {"uri": l.file},
                "region": {"startLine": l.line.max(1)}
            }}]
        })
    }
    let keep = |s: Severity| show_info || s > Severity::Info;
    let mut results: Vec<serde_json::Value> = report
        .findings
        .iter()
        .filter(|l| keep(l.finding.severity))
        .map(result)
        .chain(
            report
                .azure
                .iter()
                .filter(|l| keep(l.finding.severity))
                .map(result),
        )
        .collect();
    results.extend(report.errors.iter().map(|e| {
        json!({
            "ruleId": "input-error",
            "level": "error",
            "message": {"text": e.message},
            "locations": [{"physicalLocation": {
                "artifactLocation": {"uri": e.file},
                "region": {"startLine": e.line.unwrap_or(1).max(1)}
            }}]
        })
    }));
    let mut rule_ids: Vec<String> = results
        .iter()
        .filter_map(|r| r["ruleId"].as_str().map(String::from))
        .collect();
    rule_ids.sort();
    rule_ids.dedup();
    let rules: Vec<serde_json::Value> = rule_ids
        .iter()
        .map(|id| json!({"id": id, "shortDescription": {"text": rule_description(id)}}))
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "secretscope", "version": env!("CARGO_PKG_VERSION"), "rules": rules}},
            "results": results
        }]
    })
}

fn rule_description(id: &str) -> String {
    match id {
        "secrets" => "Secrets access granted beyond one namespace".into(),
        "azure/secrets" => "Azure role granting AKS Secrets access beyond one namespace".into(),
        "input-error" => "A manifest that could not be read".into(),
        other => format!(
            "Indirect route to Secrets: {}",
            other.strip_prefix("indirect/").unwrap_or(other)
        ),
    }
}

/// `DENY  file:line: message`, info only when asked for.
fn write_findings<F: Reported>(
    out: &mut impl Write,
    findings: &[Located<F>],
    show_info: bool,
) -> std::io::Result<()> {
    for l in findings {
        let severity = l.finding.severity();
        if severity == Severity::Info && !show_info {
            continue;
        }
        let message = l.finding.message();
        let message = message.strip_prefix("secretscope: ").unwrap_or(message);
        writeln!(
            out,
            "{:<5} {}:{}: {message}",
            severity.to_string().to_uppercase(),
            l.file,
            l.line
        )?;
    }
    Ok(())
}
