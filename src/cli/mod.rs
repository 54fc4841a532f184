//! The command line: `serve`, `check`, `certs`.

pub mod audit;
pub mod cases;
pub mod certs;
pub mod check;
pub mod fix;
pub mod manifests;
pub mod policyreport;
pub mod sarif;
pub mod serve;
pub mod sources;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "secretscope",
    version,
    about = "Keeps Kubernetes Secrets access scoped to tenancy namespaces"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log format (logs go to stderr).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human, env = "SECRETSCOPE_LOG_FORMAT")]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the admission webhook over HTTPS.
    Serve(Box<serve::ServeArgs>),
    /// Judge manifests offline; exit 0 clean, 1 deny-level findings, 2 input errors.
    Check(check::CheckArgs),
    /// Rewrite manifests without their cluster-wide Secrets rules and print the tenancy policy
    /// that grants the same verbs per namespace; exit 0 all rewritten, 1 some need a person.
    Fix(fix::FixArgs),
    /// Run secretscope-test.yaml cases (manifests with expected verdicts, like `kyverno test`);
    /// exit 0 all met, 1 some not, 2 unreadable cases.
    Test(cases::TestArgs),
    /// List every subject with cluster-wide Secrets access in the current cluster; exit 0 none
    /// outside the exemptions, 1 some, 2 the cluster could not be read.
    Audit(audit::AuditArgs),
    /// Write a development CA and serving certificate.
    Certs(certs::CertsArgs),
    /// Print the plain install (deploy/base with the serving Secret and caBundle) as YAML.
    Manifests(manifests::ManifestsArgs),
}

impl Command {
    /// The log filter when `RUST_LOG` is unset: `info` for the server; one-shot commands report
    /// their own errors in one line, so only warnings, and none of kube-client's copies of them.
    pub fn default_log_filter(&self) -> &'static str {
        match self {
            Self::Serve(_) => "info",
            _ => "warn,kube_client=off",
        }
    }
}

/// Logs to stderr; `RUST_LOG` filters (default `default_filter`). Colour only on a terminal:
/// escape codes in a log file or a CI log are noise.
pub fn init_logging(format: LogFormat, default_filter: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
