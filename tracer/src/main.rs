//! The `tracer` binary: parse flags, run the library, turn errors into one
//! sentence and an exit status.

use clap::Parser as _;

/// The signals that ask the tracer to stop.
const STOP_SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

fn main() {
    // First of all, before the runtime is built: a stop signal that comes
    // now waits (blocked, pending) for the handlers instead of killing the
    // process. The runtime's threads inherit the mask, which is harmless:
    // the handlers take the signal on this thread once it is unblocked.
    let old_mask = block(&STOP_SIGNALS);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
    let code = match rt {
        // On a worker, not on this thread: the worker that waits for the
        // timers and events then runs the job itself, where this thread
        // would be woken by it on every tick (two thread wake-ups, a
        // futex and an eventfd write per 20 ms, idle).
        Ok(rt) => rt.block_on(async_main(old_mask)),
        Err(e) => {
            eprintln!("tracer: cannot start the async runtime: {e}");
            1
        }
    };
    std::process::exit(code);
}

async fn async_main(old_mask: Option<libc::sigset_t>) -> i32 {
    // From here on SIGINT, SIGTERM and SIGHUP ask for a clean stop, also
    // while programs are being loaded and attached.
    let shutdown = match tracer::app::Shutdown::on_signals() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tracer: cannot install the signal handlers: {e}");
            return 1;
        }
    };
    unblock(old_mask);
    let cli = match tracer::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            // One sentence, not clap's whole usage block.
            let msg = e.to_string();
            let first = msg.lines().next().unwrap_or("invalid arguments");
            eprintln!("tracer: {} (see tracer --help)", tracer::app::sentence(first.trim_start_matches("error: ")));
            return 2;
        }
    };
    raise_fd_limit();
    match tracer::app::run(cli, shutdown).await {
        Ok(code) => code,
        Err(e) => {
            // The sentence may quote names from outside (containers,
            // namespaces, paths): escaped and cut, like all text output.
            eprintln!("tracer: {}", tracer::app::sentence(&e.to_string()));
            e.exit_code()
        }
    }
}

/// Blocks `signals` on this thread (and the threads it starts); returns
/// the mask before, to restore.
fn block(signals: &[libc::c_int]) -> Option<libc::sigset_t> {
    // SAFETY: sigset_t is plain data that sigemptyset initialises; the
    // calls get valid pointers to it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in signals {
            libc::sigaddset(&mut set, *s);
        }
        (libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old) == 0).then_some(old)
    }
}

/// Restores this thread's mask from [`block`]; a signal that came
/// meanwhile is delivered now, to the handlers.
fn unblock(old: Option<libc::sigset_t>) {
    if let Some(old) = old {
        // SAFETY: a mask pthread_sigmask itself returned.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
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
