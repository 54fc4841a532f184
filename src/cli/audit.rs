//! `secretscope audit`: who holds cluster-wide Secrets access in a live cluster today.
//! Exit codes as `check`: 0 none outside the exemptions, 1 some, 2 the cluster could not be read.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;

use crate::policy::Policy;
use crate::rbac::audit::{audit, SubjectAccess};
use crate::rbac::Route;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
    /// A wg-policy ClusterPolicyReport (wgpolicyk8s.io/v1alpha2) to `kubectl apply`.
    Policyreport,
}

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Policy file (secretscope.yaml): its exemptions mark subjects as exempt.
    #[arg(long, env = "SECRETSCOPE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Output format: text for people, json for scripts, policyreport for Policy Reporter.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Kubeconfig file (default: KUBECONFIG, ~/.kube/config, else in-cluster).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use (default: the current context).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
}

/// A client from `--kubeconfig`/`--context` when given, else inferred as `serve` does
/// (KUBECONFIG, ~/.kube/config, in-cluster), with the server's URL for error messages.
async fn client(args: &AuditArgs) -> anyhow::Result<(kube::Client, String)> {
    let options = kube::config::KubeConfigOptions {
        context: args.context.clone(),
        ..Default::default()
    };
    let mut config = match (&args.kubeconfig, &args.context) {
        (Some(path), _) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), root_cause(&e)))?;
            kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), root_cause(&e)))?
        }
        (None, Some(_)) => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| anyhow::anyhow!("kubeconfig: {}", root_cause(&e)))?,
        (None, None) => kube::Config::infer()
            .await
            .map_err(|e| anyhow::anyhow!("{}", root_cause(&e)))?,
    };
    // As `cluster::client`: a CLI run fails fast rather than retrying.
    config.default_retry = false;
    let url = config.cluster_url.to_string();
    let client =
        kube::Client::try_from(config).map_err(|e| anyhow::anyhow!("{}", root_cause(&e)))?;
    Ok((client, url))
}

/// The innermost cause only: kube's error chains repeat the same cause at every level, which
/// made a 700-character line out of one "connection refused".
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let (outer, inner) = (e.to_string(), cause.to_string());
    if outer.contains(&inner) {
        outer
    } else {
        format!("{outer}: {inner}")
    }
}

#[derive(Serialize)]
struct AuditReport<'a> {
    subjects: &'a [SubjectAccess],
    summary: AuditSummary,
}

#[derive(Serialize)]
struct AuditSummary {
    /// Subjects with cluster-wide Secrets access, exempt ones excluded.
    secrets: usize,
    exempt: usize,
    /// Subjects with only indirect routes.
    indirect_only: usize,
}

pub async fn run(args: &AuditArgs) -> anyhow::Result<u8> {
    let policy = match &args.config {
        Some(path) => Policy::load(path)?,
        None => Policy::default(),
    };
    let (client, url) = client(args).await.context(
        "cannot build a Kubernetes client (--kubeconfig, KUBECONFIG, ~/.kube/config or in-cluster)",
    )?;
    let state = tokio::time::timeout(Duration::from_secs(60), crate::cluster::list_rbac(client))
        .await
        .context("listing RBAC objects timed out after 60s")?
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot list ClusterRoles and ClusterRoleBindings from {url}: {}",
                root_cause(&e)
            )
        })?;
    let subjects = audit(&state, &policy.eval);
    let summary = AuditSummary {
        secrets: subjects
            .iter()
            .filter(|s| s.has_secrets() && !s.exempt)
            .count(),
        exempt: subjects.iter().filter(|s| s.exempt).count(),
        indirect_only: subjects.iter().filter(|s| !s.has_secrets()).count(),
    };
    let code = u8::from(summary.secrets > 0);
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Text => {
            for s in &subjects {
                let exempt = if s.exempt { " (exempt)" } else { "" };
                writeln!(out, "{}{exempt}", s.subject)?;
                for g in &s.grants {
                    let what = match g.route {
                        Route::Secrets if g.names.is_empty() => {
                            format!("Secrets: {}", g.verbs.join(", "))
                        }
                        Route::Secrets => format!(
                            "Secrets named {}: {}",
                            g.names.join(", "),
                            g.verbs.join(", ")
                        ),
                        Route::Indirect(r) => format!("indirect route: {}", r.describe().0),
                    };
                    let rules: Vec<String> = g
                        .via
                        .iter()
                        .map(|v| format!("{} \"{}\" rule {}", v.role_kind, v.role, v.rule))
                        .collect();
                    writeln!(
                        out,
                        "  {what} through ClusterRoleBinding \"{}\" (ClusterRole \"{}\"; {})",
                        g.binding,
                        g.role,
                        rules.join(", ")
                    )?;
                    writeln!(out, "    fix: {}", g.remediation.text)?;
                }
                if let Some(entry) = &s.exemption {
                    writeln!(
                        out,
                        "  or, if intended, exempt it (secretscope.yaml exemptions.subjects): {entry}"
                    )?;
                }
            }
            writeln!(
                out,
                "secretscope audit: {} subjects with cluster-wide Secrets access, {} exempt, {} with indirect routes only",
                summary.secrets, summary.exempt, summary.indirect_only
            )?;
        }
        Format::Json => {
            serde_json::to_writer_pretty(
                &mut out,
                &AuditReport {
                    subjects: &subjects,
                    summary,
                },
            )?;
            writeln!(out)?;
        }
        Format::Policyreport => {
            let now = time::OffsetDateTime::now_utc();
            let report = super::policyreport::cluster_policy_report(&subjects, now);
            serde_json::to_writer_pretty(&mut out, &report)?;
            writeln!(out)?;
        }
    }
    Ok(code)
}
