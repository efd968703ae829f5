// The static (musl) builds, the ones that ship, use mimalloc: under 20 s of 8 concurrent
// createRecord writers musl's own allocator grew to 50-145 MiB of anonymous memory and
// kept it, where glibc's and mimalloc's stay at 13-18 MiB (scripts/bench.sh, issue 18).
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    perch::cli::main_entry()
}
