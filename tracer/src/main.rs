//! The `tracer` binary: parse flags, run the library, turn errors into one
//! sentence and an exit status.

use clap::Parser as _;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let cli = match tracer::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            // One sentence, not clap's whole usage block.
            let msg = e.to_string();
            let first = msg.lines().next().unwrap_or("invalid arguments");
            eprintln!("tracer: {} (see tracer --help)", tracer::output::field(first.trim_start_matches("error: "), tracer::output::SENTENCE_MAX));
            std::process::exit(2);
        }
    };
    let shutdown = async {
        use tokio::signal::unix::{SignalKind, signal};
        match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
            (Ok(mut int), Ok(mut term)) => {
                tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
            }
            _ => std::future::pending::<()>().await,
        }
    };
    match tracer::run(cli, shutdown).await {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            // The sentence may quote names from outside (containers,
            // namespaces, paths): escaped and cut, like all text output.
            eprintln!("tracer: {}", tracer::output::field(&e.to_string(), tracer::output::SENTENCE_MAX));
            std::process::exit(match e {
                tracer::Error::Usage(_) => 2,
                _ => 1,
            });
        }
    }
}
