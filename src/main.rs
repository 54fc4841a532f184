use std::process::ExitCode;

use clap::Parser;
use secretscope::cli::{self, Cli, Command};

// A review allocates a few hundred small strings and frees them at once; glibc's malloc spent a
// fifth of a review's instructions there (callgrind, README "Performance"), and the release
// image's musl malloc is slower still.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_logging(cli.log_format, cli.command.default_log_filter());
    let result = match cli.command {
        Command::Check(args) => cli::check::run(&args),
        Command::Fix(args) => cli::fix::run(&args),
        Command::Test(args) => cli::cases::run(&args),
        Command::Completions(args) => cli::completions(&args),
        Command::Man(args) => cli::man(&args),
        Command::Certs(args) => cli::certs::run(&args).map(|()| 0),
        Command::Manifests(args) => cli::manifests::run(&args).map(|()| 0),
        Command::Serve(args) => runtime().and_then(|rt| {
            let served = rt.block_on(cli::serve::run(*args));
            // A review cut off by its deadline may still be judging on the blocking pool (its
            // work budget ends it); exit without waiting for it.
            rt.shutdown_timeout(std::time::Duration::from_secs(1));
            served.map(|()| 0)
        }),
        Command::Audit(args) => runtime().and_then(|rt| rt.block_on(cli::audit::run(&args))),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // `check` reserves 2 for input errors; any fatal error is one.
            eprintln!("secretscope: {e:#}");
            ExitCode::from(2)
        }
    }
}
