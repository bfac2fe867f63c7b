//! The `rosterd` binary: parse arguments, run the command, turn the outcome
//! into an exit status (0 ok, 1 a run failed, 2 bad usage, config or manifest).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = rosterd::cli::Cli::parse();
    match rosterd::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // Output piped into a command that stopped reading (`| head`): nothing more to say.
        Err(rosterd::error::Error::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            let text = e.to_string();
            if !text.is_empty() {
                eprintln!("error: {}", rosterd::problem::printable(&text));
            }
            ExitCode::from(e.exit_code())
        }
    }
}
