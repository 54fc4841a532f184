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
}

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Policy file (secretscope.yaml): its exemptions mark subjects as exempt.
    #[arg(long, env = "SECRETSCOPE_CONFIG")]
    pub config: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
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
    let client = crate::cluster::client()
        .await
        .context("cannot build a Kubernetes client (KUBECONFIG, ~/.kube/config or in-cluster)")?;
    let state = tokio::time::timeout(Duration::from_secs(60), crate::cluster::list_rbac(client))
        .await
        .context("listing RBAC objects timed out after 60s")?
        .context("cannot list ClusterRoles and ClusterRoleBindings")?;
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
    }
    Ok(code)
}
