//! The `alpool` command: parse, run, map the error chain to a message and
//! an exit code. All real work lives in the library.

use std::process::ExitCode;

mod cli;

// Counts heap bytes so `alpool bench` can report exact extra memory.
#[global_allocator]
static ALLOC: alpool::bench::CountingAlloc = alpool::bench::CountingAlloc;

fn main() -> ExitCode {
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
