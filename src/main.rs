use std::process::ExitCode;

use clap::Parser;
use ratelimiter::app::{self, App};
use ratelimiter::cli::{self, Cli, Command, ServeArgs};
use ratelimiter::telemetry;

/// mimalloc: the service allocates small, short-lived buffers on every
/// request from every worker thread, where it beats glibc's malloc (see
/// docs/PERFORMANCE.md for the measurement).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::CheckConfig { path, config }) => {
            let path = path.or(config).unwrap_or_default();
            let ok = cli::check_config(&path, &mut std::io::stdout(), &mut std::io::stderr());
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Some(Command::Check(args)) => {
            remote(async move { cli::remote_check(&args, &mut std::io::stdout(), &mut std::io::stderr()).await })
        }
        Some(Command::Health { url, ready, timeout }) => {
            remote(async move { cli::remote_health(&url, ready, timeout, &mut std::io::stderr()).await })
        }
        Some(Command::Completions { shell }) => {
            cli::completions(shell, &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Some(Command::ConfigSchema) => {
            print!("{}", cli::config_schema());
            ExitCode::SUCCESS
        }
        Some(Command::Manpage) => match cli::manpage(&mut std::io::stdout()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Some(Command::Serve(args)) => serve(&args),
        None => serve(&cli.serve),
    }
}

/// Runs a command that talks to a server on a small runtime: exit 0, 1 or 2.
fn remote(command: impl std::future::Future<Output = cli::Outcome>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(command) {
        cli::Outcome::Yes => ExitCode::SUCCESS,
        cli::Outcome::No => ExitCode::from(1),
        cli::Outcome::Error => ExitCode::from(2),
    }
}

fn serve(args: &ServeArgs) -> ExitCode {
    let settings = match args.settings() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The trace exporter runs on the runtime.
    let telemetry = {
        let _runtime = runtime.enter();
        let log = &settings.log;
        match telemetry::init(log.format, log.level.as_deref(), &settings.telemetry) {
            Ok(telemetry) => telemetry,
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::FAILURE;
            }
        }
    };
    for (name, meant) in ratelimiter::settings::misspelt_env(std::env::vars().map(|(name, _)| name)) {
        tracing::warn!(variable = %name, meant = %meant, "an environment variable is not read: overrides are RATELIMITER__SECTION__KEY, with double underscores");
    }
    let result: anyhow::Result<()> = runtime.block_on(async move {
        let app = App::builder(settings).rules_file(args.config.clone()).build().await?;
        if let Some(admin) = app.admin_addr() {
            tracing::info!(addr = %admin, "admin listening");
        }
        if let Some(grpc) = app.grpc_addr() {
            tracing::info!(addr = %grpc, "grpc listening");
        }
        tracing::info!(addr = %app.local_addr()?, version = env!("CARGO_PKG_VERSION"), "listening");
        app.run_until_stopped(app::shutdown_signal()).await?;
        tracing::info!("stopped");
        Ok(())
    });
    // The runtime's workers still run the exporter: the last spans go out.
    telemetry.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
