//! `secretscope test`: directories of cases with expected verdicts, as `kyverno test` runs
//! `kyverno-test.yaml`. Each `secretscope-test.yaml` names its manifests (and optionally a
//! policy) relative to itself and lists objects with the verdict they must get:
//!
//! ```yaml
//! name: cert-manager
//! policy: secretscope.yaml          # optional
//! resources: [rbac.yaml, charts/]   # files or directories, relative to this file
//! results:
//! - {kind: ClusterRole, name: cert-manager-cainjector, result: deny}
//! - {kind: ClusterRoleBinding, name: ci-exec, route: indirect/pod-exec, result: warn}
//! - {kind: ClusterRole, name: viewer, result: pass}
//! ```
//!
//! Exit codes: 0 every expectation met, 1 some not, 2 a test file or its inputs cannot be read.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

use super::check::{judge, Report, Reported};
use crate::manifest;
use crate::policy::Policy;
use crate::rbac::{RbacKind, Severity};

pub const FILE_NAMES: [&str; 2] = ["secretscope-test.yaml", "secretscope-test.yml"];

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// Test files, or directories searched for secretscope-test.yaml.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    name: String,
    #[serde(default)]
    policy: Option<PathBuf>,
    resources: Vec<PathBuf>,
    /// Add the built-in ClusterRoles (cluster-admin, ...), as `check` does by default.
    #[serde(default = "yes")]
    builtins: bool,
    results: Vec<Expected>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expected {
    kind: String,
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    /// `secrets` or `indirect/<route>`: only findings of that rule count.
    #[serde(default)]
    route: Option<String>,
    result: Verdict,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Verdict {
    Pass,
    Info,
    Warn,
    Deny,
}

impl From<Option<Severity>> for Verdict {
    fn from(s: Option<Severity>) -> Self {
        match s {
            None => Self::Pass,
            Some(Severity::Info) => Self::Info,
            Some(Severity::Warn) => Self::Warn,
            Some(Severity::Deny) => Self::Deny,
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Pass => "pass",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Deny => "deny",
        })
    }
}

/// The verdict an object got: its most severe finding (of `route`, when given), or pass.
fn verdict(report: &Report, e: &Expected) -> Verdict {
    report
        .findings
        .iter()
        .map(|l| &l.finding)
        .filter(|f| {
            f.object.kind.as_str() == e.kind
                && f.object.name == e.name
                && f.object.namespace == e.namespace
                && e.route.as_deref().is_none_or(|r| r == f.rule_id())
        })
        .map(|f| f.severity)
        .max()
        .into()
}

fn test_files(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            for entry in walkdir::WalkDir::new(path)
                .follow_links(true)
                .sort_by_file_name()
                .into_iter()
                .filter_map(Result::ok)
            {
                let name = entry.file_name().to_string_lossy();
                if entry.file_type().is_file() && FILE_NAMES.contains(&name.as_ref()) {
                    files.push(entry.into_path());
                }
            }
        } else {
            files.push(path.clone());
        }
    }
    files
}

/// Runs one test file; `Ok(failures)` or an error when it or its inputs cannot be read.
fn run_file(path: &Path, out: &mut impl Write) -> anyhow::Result<usize> {
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    let test: TestFile = serde_saphyr::from_str_with_options(&text, manifest::yaml_options())
        .with_context(|| format!("{}: not a secretscope test file", path.display()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let policy = match &test.policy {
        Some(p) => Policy::load(&dir.join(p))?,
        None => Policy::default(),
    };
    for e in &test.results {
        if RbacKind::from_kind(&e.kind).is_none() {
            anyhow::bail!(
                "{}: {}: kind {:?} is not an RBAC kind",
                path.display(),
                test.name,
                e.kind
            );
        }
    }
    let resources: Vec<PathBuf> = test.resources.iter().map(|r| dir.join(r)).collect();
    let mut loaded = manifest::load_paths(&resources);
    loaded.require_documents();
    if let Some(e) = loaded.errors.first() {
        anyhow::bail!("{}: {}: {e}", path.display(), test.name);
    }
    let report = judge(&loaded, &policy, test.builtins);
    let mut failures = 0;
    for e in &test.results {
        let known = loaded.objects.iter().any(|o| {
            let r = o.object.object_ref();
            r.kind.as_str() == e.kind && r.name == e.name && r.namespace == e.namespace
        });
        let got = verdict(&report, e);
        let what = match &e.namespace {
            Some(ns) => format!("{} \"{ns}/{}\"", e.kind, e.name),
            None => format!("{} \"{}\"", e.kind, e.name),
        };
        let route = e
            .route
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        if !known {
            // A typo must not pass as "no findings".
            failures += 1;
            writeln!(out, "FAIL  {}: {what}: not among the resources", test.name)?;
        } else if got == e.result {
            writeln!(out, "PASS  {}: {what}{route}: {got}", test.name)?;
        } else {
            failures += 1;
            writeln!(
                out,
                "FAIL  {}: {what}{route}: expected {}, got {got}",
                test.name, e.result
            )?;
        }
    }
    Ok(failures)
}

pub fn run(args: &TestArgs) -> anyhow::Result<u8> {
    let files = test_files(&args.paths);
    if files.is_empty() {
        anyhow::bail!("no secretscope-test.yaml under the given paths");
    }
    let mut out = std::io::stdout().lock();
    let (mut failures, mut errors) = (0, 0);
    for file in &files {
        match run_file(file, &mut out) {
            Ok(n) => failures += n,
            Err(e) => {
                errors += 1;
                writeln!(out, "ERROR {e:#}")?;
            }
        }
    }
    writeln!(
        out,
        "secretscope test: {} files, {failures} failed expectations, {errors} errors",
        files.len()
    )?;
    Ok(if errors > 0 {
        2
    } else {
        u8::from(failures > 0)
    })
}
