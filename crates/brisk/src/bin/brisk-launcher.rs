//! The sandbox launcher alone: `brisk serve` runs it for every container when it sits beside
//! the `brisk` binary (see `sandbox_launcher` in `main.rs`). It links nothing but the launcher,
//! so it starts faster and its long-lived processes (launcher and init) hold less memory than
//! `brisk` re-executed under its hidden argument, which stays the fallback.

fn main() {
    brisk_sandbox::launcher_main()
}
