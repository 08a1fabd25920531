//! The scheduling policy of action containers.
//!
//! Containers run under `SCHED_BATCH`: a container woken by a request does not preempt the
//! thread that sent it. Under the normal policy, every run handed to a container on a busy CPU
//! switches the server out right after its write, and every answer switches the container out
//! again; on a 2-core machine that ping-pong cost a tenth of the noop invokes per second at
//! saturation (BENCHMARKS.md). Containers still get their fair share of the CPU; they only wait
//! for the running thread's turn to end instead of cutting it short. An idle CPU still takes a
//! woken container at once, so a lone invoke waits for nothing.

use std::io;

/// Puts the process (or thread) `pid` under `SCHED_BATCH` (0: the calling thread). Threads and
/// processes it starts afterwards inherit the policy.
#[allow(unsafe_code, reason = "sched_setscheduler has no safe wrapper")]
pub fn batch(pid: i32) -> io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid sched_param that outlives the call; the call only reads it.
    let rc = unsafe { libc::sched_setscheduler(pid, libc::SCHED_BATCH, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_under_batch_reports_that_policy_and_its_children_inherit_it() {
        std::thread::spawn(|| {
            batch(0).unwrap();
            // SAFETY: no arguments; reads the calling thread's policy.
            #[allow(unsafe_code)]
            let own = unsafe { libc::sched_getscheduler(0) };
            assert_eq!(own, libc::SCHED_BATCH);
            let child = std::thread::spawn(|| {
                // SAFETY: as above.
                #[allow(unsafe_code)]
                unsafe {
                    libc::sched_getscheduler(0)
                }
            });
            assert_eq!(child.join().unwrap(), libc::SCHED_BATCH);
        })
        .join()
        .unwrap();
    }
}
