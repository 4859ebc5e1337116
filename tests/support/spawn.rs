//! Server processes that die with the test process, however it ends.
//!
//! A server the tests start is killed by the kernel when the test process dies, through
//! `PR_SET_PDEATHSIG`. That signal fires when the *thread* that forked the child exits, and
//! libtest runs each test on its own short-lived thread, so every server is forked by one spawner
//! thread that lives as long as the process.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::{OnceLock, mpsc};
use std::thread;

/// Spawns `cmd`, which receives `signal` when this process dies.
pub fn spawn_tied_to_this_process(mut cmd: Command, signal: i32) -> io::Result<Child> {
    // SAFETY: the hook only calls prctl, which is async-signal-safe. It runs after any uid
    // change the command asks for, which would otherwise clear the death signal.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    spawn_from_immortal_thread(cmd)
}

/// Spawns `cmd` from a thread that lives as long as the process, so that a child's
/// `PR_SET_PDEATHSIG` fires when the process dies, not when the calling test's thread ends.
fn spawn_from_immortal_thread(cmd: Command) -> io::Result<Child> {
    type Request = (Command, mpsc::Sender<io::Result<Child>>);
    static SPAWNER: OnceLock<io::Result<mpsc::Sender<Request>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        thread::Builder::new()
            .name("server-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    // The requester waits on `reply`; it only goes away if it panicked.
                    let _ = reply.send(cmd.spawn());
                }
            })?;
        Ok(tx)
    });
    let spawner = spawner
        .as_ref()
        .map_err(|e| io::Error::new(e.kind(), e.to_string()))?;
    let (reply_tx, reply_rx) = mpsc::channel();
    let gone = || io::Error::other("the server-spawner thread is gone");
    spawner.send((cmd, reply_tx)).map_err(|_| gone())?;
    reply_rx.recv().map_err(|_| gone())?
}
