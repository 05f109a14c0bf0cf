//! `emanager`: a thin binary over the `emanager` library.

fn main() {
    std::process::exit(emanager::cli::main());
}
