//! `secretscope check`: the engine over manifests, offline, for CI pipelines.
//! Exit codes: 0 clean, 1 deny-level findings, 2 input errors (which win over findings).

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

use serde::Serialize;

use super::sources::{self, Sources};
use crate::manifest::{self, InputError, LoadedObject, Origin};
use crate::policy::Policy;
use crate::rbac::azure::{evaluate_azure, AzureFinding, RoleDefinition};
use crate::rbac::remediation::{remediate, remediate_azure, Remediation};
use crate::rbac::{
    evaluate, BindingScope, ClusterState, Finding, ObjectRef, PolicyRule, RbacKind, RbacObject,
    RuleRef, Severity,
};

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
    /// Output format: text for people, json for scripts, sarif for code scanning.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Also print info-level findings (namespace-scoped grants, unbound or exempt roles).
    #[arg(long)]
    pub show_info: bool,
    /// Judge only the given objects: do not add the built-in ClusterRoles (cluster-admin, ...).
    #[arg(long)]
    pub no_builtins: bool,
    /// Exit 1 on findings of this severity or above (input errors always exit 2).
    #[arg(long, value_enum, default_value_t = FailOn::Deny)]
    pub fail_on: FailOn,
    /// SARIF: the directory result URIs are relative to (`%SRCROOT%`, the repository root).
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub sarif_base: PathBuf,
    /// SARIF: the README that rule help links point into.
    #[arg(long, env = "SECRETSCOPE_HELP_URI", value_name = "URL", default_value = HELP_URI)]
    pub help_uri: String,
}

/// The README rule help links point into; `--help-uri` for a fork or mirror.
pub const HELP_URI: &str = match option_env!("CARGO_PKG_REPOSITORY") {
    Some(repo) if !repo.is_empty() => repo,
    _ => "",
};

/// The least severity that fails the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FailOn {
    Deny,
    Warn,
    Info,
}

impl FailOn {
    fn threshold(self) -> Severity {
        match self {
            Self::Deny => Severity::Deny,
            Self::Warn => Severity::Warn,
            Self::Info => Severity::Info,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ScopeArg {
    Bindings,
    Strict,
}

/// A finding (RBAC or Azure) with the place it was found and what to change.
#[derive(Debug, Clone, Serialize)]
pub struct Located<F> {
    pub file: String,
    pub document: usize,
    pub line: u64,
    #[serde(flatten)]
    pub finding: F,
    pub remediation: Remediation,
}

/// The input objects by reference: where each is, what its rules and its binding's role are.
pub struct Index<'a>(HashMap<ObjectRef, &'a LoadedObject>);

impl<'a> Index<'a> {
    /// The first of duplicates wins, as it does nowhere else: duplicates are rare and any is fine
    /// for positions and rule text.
    pub fn new(objects: &'a [LoadedObject]) -> Self {
        let mut map = HashMap::new();
        for o in objects {
            map.entry(o.object.object_ref()).or_insert(o);
        }
        Self(map)
    }

    pub fn get(&self, r: &ObjectRef) -> Option<&'a LoadedObject> {
        self.0.get(r).copied()
    }

    /// Rule `r` (1-based) of the named role, when that role is an input (a Role in `namespace`).
    pub fn rule(&self, r: &RuleRef, namespace: Option<&str>) -> Option<&'a PolicyRule> {
        let (kind, namespace) = match r.role_kind {
            "Role" => (RbacKind::Role, namespace.map(String::from)),
            _ => (RbacKind::ClusterRole, None),
        };
        let object = self.get(&ObjectRef {
            kind,
            name: r.role.clone(),
            namespace,
        })?;
        let rules = match &object.object {
            RbacObject::ClusterRole(c) => &c.rules,
            RbacObject::Role(role) => &role.rules,
            _ => return None,
        };
        rules.get(r.rule.checked_sub(1)?)
    }

    /// The role a binding refers to.
    pub fn role_ref(&self, binding: &ObjectRef) -> Option<ObjectRef> {
        let (role_ref, namespace) = match &self.get(binding)?.object {
            RbacObject::ClusterRoleBinding(b) => (&b.role_ref, None),
            RbacObject::RoleBinding(b) => (&b.role_ref, b.metadata.namespace.clone()),
            _ => return None,
        };
        Some(ObjectRef {
            kind: RbacKind::from_kind(&role_ref.kind)?,
            name: role_ref.name.clone(),
            namespace: namespace.filter(|_| role_ref.kind == "Role"),
        })
    }
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
    /// 2 on input errors, 1 on deny-level findings, else 0.
    pub fn exit_code(&self) -> u8 {
        self.exit_code_at(FailOn::Deny)
    }

    /// 2 on input errors, 1 on a finding at `fail_on` or above, else 0.
    pub fn exit_code_at(&self, fail_on: FailOn) -> u8 {
        let s = &self.summary;
        let failing = match fail_on.threshold() {
            Severity::Deny => s.deny,
            Severity::Warn => s.deny + s.warn,
            Severity::Info => s.deny + s.warn + s.info,
        };
        if s.errors > 0 {
            2
        } else if failing > 0 {
            1
        } else {
            0
        }
    }

    /// Info-level findings out (the summary still counts them), unless asked for.
    fn without_info(mut self, show_info: bool) -> Self {
        if !show_info {
            self.findings
                .retain(|l| l.finding.severity > Severity::Info);
            self.azure.retain(|l| l.finding.severity > Severity::Info);
        }
        self
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
    let index = Index::new(&loaded.objects);
    let mut report = Report {
        errors: loaded.errors.clone(),
        ..Default::default()
    };
    for o in &loaded.objects {
        match evaluate(&o.object, &state, &policy.eval) {
            Ok(findings) => report.findings.extend(findings.into_iter().map(|f| {
                let namespace = f.object.namespace.clone();
                let remediation = remediate(&f, |r| index.rule(r, namespace.as_deref()));
                locate(&o.origin, f, remediation)
            })),
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
                        let remediation = remediate_azure(&role);
                        report.azure.push(locate(origin, finding, remediation));
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

fn locate<F>(origin: &Origin, finding: F, remediation: Remediation) -> Located<F> {
    Located {
        file: origin.file.clone(),
        document: origin.document,
        line: origin.line,
        finding,
        remediation,
    }
}

/// Input errors in the findings' convention (`rule 1` is `.rules[0]`), with a hint for an
/// unrendered Helm template.
fn explain(e: &mut InputError, sources: &Sources) {
    static RULE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"^(invalid \w+: )rules\[(\d+)\]\.?").expect("valid regex")
    });
    if let Some(c) = RULE.captures(&e.message) {
        let n: usize = c[2].parse().unwrap_or(0);
        let end = c.get(0).map_or(0, |m| m.end());
        e.message = format!("{}rule {}: {}", &c[1], n + 1, &e.message[end..]);
    }
    let templated = e.message.starts_with("invalid YAML")
        && sources.text(&e.file).is_some_and(|t| t.contains("{{"));
    if templated {
        // After the first line: the parser's snippet of the offending lines follows it.
        let hint = " (this looks like an unrendered Helm template: check the output of `helm template` instead)";
        let at = e.message.find('\n').unwrap_or(e.message.len());
        e.message.insert_str(at, hint);
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
    let inputs = sources::load(&args.paths);
    let mut report = judge(&inputs.loaded, &policy, !args.no_builtins);
    for e in &mut report.errors {
        explain(e, &inputs.sources);
    }
    let code = report.exit_code_at(args.fail_on);
    let report = report.without_info(args.show_info);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match args.format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &report)?;
            writeln!(out)?;
        }
        Format::Text => write_text(&mut out, &report)?,
        Format::Sarif => {
            let opts = super::sarif::Options {
                show_info: args.show_info,
                base: super::sarif::absolute(&args.sarif_base),
                help_uri: (!args.help_uri.is_empty()).then(|| args.help_uri.clone()),
            };
            let index = Index::new(&inputs.loaded.objects);
            let log = super::sarif::sarif(&report, &index, &inputs.sources, &opts);
            serde_json::to_writer_pretty(&mut out, &log)?;
            writeln!(out)?;
        }
    }
    Ok(code)
}

fn write_text(out: &mut impl Write, report: &Report) -> std::io::Result<()> {
    for e in &report.errors {
        writeln!(out, "ERROR {e}")?;
    }
    write_findings(out, &report.findings)?;
    write_findings(out, &report.azure)?;
    let s = &report.summary;
    writeln!(
        out,
        "secretscope check: {} objects in {} files: {} deny, {} warn, {} info, {} input errors",
        s.objects, s.files, s.deny, s.warn, s.info, s.errors
    )
}

/// `DENY  file:line: message` and, indented below, `fix: remediation`.
fn write_findings<F: Reported>(
    out: &mut impl Write,
    findings: &[Located<F>],
) -> std::io::Result<()> {
    for l in findings {
        let message = l.finding.message();
        let message = message.strip_prefix("secretscope: ").unwrap_or(message);
        writeln!(
            out,
            "{:<5} {}:{}: {message}\n      fix: {}",
            l.finding.severity().to_string().to_uppercase(),
            l.file,
            l.line,
            l.remediation.text
        )?;
    }
    Ok(())
}
