//! The command line: `serve`, `check`, `certs`.

#[cfg(feature = "serve")]
pub mod audit;
pub mod cases;
#[cfg(feature = "serve")]
pub mod certs;
pub mod check;
pub mod fix;
pub mod manifests;
pub mod policyreport;
pub mod sarif;
#[cfg(feature = "serve")]
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
    // Help for flags whose doc comments live in files this module's owner does not edit;
    // move them to the field doc comments there when convenient.
    #[cfg(feature = "serve")]
    #[command(
        mut_arg("listen", |a| a.help("Address to serve HTTPS on")),
        mut_arg("lease_name", |a| a.help("Name of the leader-election Lease"))
    )]
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
    #[cfg(feature = "serve")]
    Audit(audit::AuditArgs),
    /// Write a development CA and serving certificate.
    #[cfg(feature = "serve")]
    Certs(certs::CertsArgs),
    /// Print the plain install (deploy/base with the serving Secret and caBundle) as YAML.
    #[command(mut_arg("tls_key", |a| a.help("The serving key for the secretscope-tls Secret (with --tls-cert)")))]
    Manifests(manifests::ManifestsArgs),
    /// Print a shell completion script (e.g. `secretscope completions bash > /etc/bash_completion.d/secretscope`).
    Completions(CompletionsArgs),
    /// Write man pages generated from this command line (secretscope.1 and one per subcommand).
    Man(ManArgs),
}

#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Directory to write the pages to (created if missing); default: secretscope.1 to stdout.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<std::path::PathBuf>,
}

/// `secretscope completions SHELL`: the script on stdout.
pub fn completions(args: &CompletionsArgs) -> anyhow::Result<u8> {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "secretscope", &mut std::io::stdout());
    Ok(0)
}

/// `secretscope man`: roff pages rendered from the same definition clap parses with.
pub fn man(args: &ManArgs) -> anyhow::Result<u8> {
    use anyhow::Context;
    use clap::CommandFactory;
    let cmd = Cli::command();
    let Some(dir) = &args.out_dir else {
        clap_mangen::Man::new(cmd).render(&mut std::io::stdout())?;
        return Ok(0);
    };
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut pages = vec![("secretscope".to_string(), cmd.clone())];
    pages.extend(
        cmd.get_subcommands()
            .map(|sub| (format!("secretscope-{}", sub.get_name()), sub.clone())),
    );
    for (name, page) in pages {
        let path = dir.join(format!("{name}.1"));
        let mut out = Vec::new();
        clap_mangen::Man::new(page).title(name).render(&mut out)?;
        std::fs::write(&path, out).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(0)
}

impl Command {
    /// The log filter when `RUST_LOG` is unset: `info` for the server; one-shot commands report
    /// their own errors in one line, so only warnings, and none of kube-client's copies of them.
    pub fn default_log_filter(&self) -> &'static str {
        match self {
            #[cfg(feature = "serve")]
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
