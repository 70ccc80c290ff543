//! The `alpool` command: parse, run, map the error chain to a message and
//! an exit code. All real work lives in the library.

use std::process::ExitCode;

mod cli;

// Counts heap bytes so `alpool bench` can report exact extra memory.
#[global_allocator]
static ALLOC: alpool::bench::CountingAlloc = alpool::bench::CountingAlloc;

/// On a machine with no display, Mesa's Vulkan device-select layer still
/// tries to reach one and prints "XDG_RUNTIME_DIR is invalid or not set"
/// twice per probe. alpool picks adapters itself, so the layer is told to
/// stand aside (its documented switch), unless the user set it.
fn quiet_headless_vulkan() {
    let headless = ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .all(|v| std::env::var_os(v).is_none());
    if headless && std::env::var_os("NODEVICE_SELECT").is_none() {
        // SAFETY: called first thing in `main`, before any other thread
        // exists, so nothing reads the environment concurrently.
        unsafe { std::env::set_var("NODEVICE_SELECT", "1") };
    }
}

fn main() -> ExitCode {
    quiet_headless_vulkan();
    match cli::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // A closed pipe (e.g. `alpool select ... | head`) is not an error.
            if err.chain().any(|e| {
                e.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            // Library errors already name their cause; print a cause only
            // when it adds something.
            let top = err.to_string();
            eprintln!("alpool: error: {top}");
            for cause in err.chain().skip(1) {
                let c = cause.to_string();
                if !top.contains(&c) {
                    eprintln!("  caused by: {c}");
                }
            }
            ExitCode::from(1)
        }
    }
}
