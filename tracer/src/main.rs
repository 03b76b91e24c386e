//! The `tracer` binary: parse flags, run the library, turn errors into one
//! sentence and an exit status.

use clap::Parser as _;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // First of all: from here on SIGINT, SIGTERM and SIGHUP ask for a clean
    // stop instead of killing the process, also while programs are being
    // loaded and attached.
    let shutdown = match tracer::shutdown::Shutdown::on_signals() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tracer: cannot install the signal handlers: {e}");
            std::process::exit(1);
        }
    };
    let cli = match tracer::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            // One sentence, not clap's whole usage block.
            let msg = e.to_string();
            let first = msg.lines().next().unwrap_or("invalid arguments");
            eprintln!("tracer: {} (see tracer --help)", first.trim_start_matches("error: "));
            std::process::exit(2);
        }
    };
    raise_fd_limit();
    match tracer::run(cli, shutdown).await {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("tracer: {e}");
            std::process::exit(match e {
                tracer::Error::Usage(_) => 2,
                _ => 1,
            });
        }
    }
}

/// Lifts the soft limit on open files to the hard one: each traced
/// interface holds file descriptors (TCX links, or its namespace for
/// netlink-tc), and hundreds of interfaces pass the usual soft 1024.
fn raise_fd_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid rlimit struct; failure only
    // leaves the limit as it was.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}
