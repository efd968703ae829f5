fn main() -> std::process::ExitCode {
    perch::cli::main_entry()
}
