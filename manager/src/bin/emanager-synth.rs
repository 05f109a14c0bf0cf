//! `emanager-synth`: the synthetic task program of skeleton workflows.

use clap::Parser;
use emanager::skeleton::synth::{run, SynthArgs};
use std::process::ExitCode;

fn main() -> ExitCode {
    emanager::cli::exit_quietly_on_broken_pipe();
    let args = SynthArgs::parse();
    match run(&args) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("emanager-synth: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
