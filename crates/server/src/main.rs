//! `tickethub`: the Ticket Hub backend. `tickethub serve --help` lists the options.

use std::process::ExitCode;

fn main() -> ExitCode {
    match tickethub_server::main_with(ticket_hub_functions::app(), ticket_hub_functions::SCHEMA) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One readable line (with its causes), no backtrace.
            eprintln!("tickethub: {e:#}");
            ExitCode::FAILURE
        }
    }
}
