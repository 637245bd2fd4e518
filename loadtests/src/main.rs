//! `loadgen`: parse the command line, run, print the report, pick the exit
//! status (0 ok, 1 error, 2 bad arguments, 3 over-admission with
//! `--fail-on-over-admission`).

use std::process::ExitCode;

use clap::Parser;
use loadgen::Cli;

fn main() -> ExitCode {
    let settings = match Cli::parse().into_settings() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = runtime.block_on(loadgen::run(&settings));
    print!("{}", report.to_text(settings.top));
    if let Err(e) = loadgen::write_outputs(&settings, &report) {
        eprintln!("error: {e:#}");
        return ExitCode::FAILURE;
    }
    if report.answered == 0 {
        eprintln!("error: no request was answered");
        return ExitCode::FAILURE;
    }
    if settings.fail_on_over_admission {
        if report.accuracy.is_none() {
            eprintln!("error: --fail-on-over-admission, but over-admission could not be checked");
            return ExitCode::from(3);
        }
        if report.over_admitted() {
            eprintln!("error: over-admission: some keys were allowed more than their limit permits");
            return ExitCode::from(3);
        }
    }
    ExitCode::SUCCESS
}
