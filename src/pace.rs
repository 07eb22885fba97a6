//! Background work in short turns: the log writer's batches, the router's access records
//! packed into rows, retention's deletes. They are CPU work that can wait, beside the
//! router's requests, which should not.
//!
//! Why turns and not only a lower priority: on a host with few CPUs, a request's next step
//! (the proxy, the backend, the client) is often woken on the CPU where background work
//! runs, and waits there for that work's whole time slice, whatever its nice value or
//! policy. Measured on a 2-CPU VM (BENCHMARKS.md, issue 23): a separate process burning
//! 2.5 ms of CPU every 100 ms raised one connection's p99 through the router from 0.08 ms
//! to 1.0-1.3 ms at nice 10 and to 0.55 ms at `SCHED_IDLE`; the same work in 0.1 ms turns
//! with a `sched_yield` between them left it at 0.08 ms.
//!
//! Invariants: [`point`] costs a clock read and does nothing on a thread that has not
//! entered [`Background`], so code shared with request paths (the store's writer
//! connection) may call it; a [`Background`] guard gives the thread its nice value back
//! when dropped (tokio's blocking threads serve other work afterwards).

use std::cell::Cell;
use std::time::{Duration, Instant};

/// The longest stretch of background work between two chances for others to run.
const TURN: Duration = Duration::from_micros(100);

/// The nice value background work runs at (the API's and the router's threads stay at the
/// agent's own): under full load it gets a smaller share of the CPUs than the requests.
const BACKGROUND_NICE: i32 = 10;

/// A yield that gave the CPU away this long means every CPU is busy: the work then runs on
/// without yielding until its guard ends, or it would fall behind (the access log's buffers
/// filled and dropped records at full load when it yielded every turn).
const BUSY_YIELD: Duration = Duration::from_micros(200);

thread_local! {
    /// When the current turn of this thread's background work began; None outside it.
    static TURN_START: Cell<Option<Instant>> = const { Cell::new(None) };
    /// Set when a yield found the CPUs busy (`BUSY_YIELD`), until the guard ends.
    static BUSY: Cell<bool> = const { Cell::new(false) };
}

/// The calling thread doing background work until dropped: [`point`] yields the CPU once a
/// turn is used up, and [`Background::enter`] also nices the thread. A guard inside another
/// changes nothing (the outer one ends the turns and restores the priority).
pub struct Background {
    nice_before: Option<i32>,
    outer: bool,
}

impl Background {
    /// Niced and in turns: work that may wait while requests run (the log writer's
    /// batches, retention).
    pub fn enter() -> Background {
        Background::start(true)
    }

    /// In turns at the thread's own priority: work that must keep pace with the requests
    /// (the access records, whose buffers drop what the next round cannot take).
    pub fn turns() -> Background {
        Background::start(false)
    }

    fn start(nice: bool) -> Background {
        let outer = TURN_START.with(|t| {
            let outer = t.get().is_none();
            if outer {
                t.set(Some(Instant::now()));
                BUSY.set(false);
            }
            outer
        });
        Background {
            nice_before: if outer && nice {
                renice(BACKGROUND_NICE)
            } else {
                None
            },
            outer,
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if self.outer {
            TURN_START.with(|t| t.set(None));
            BUSY.set(false);
        }
        if let Some(before) = self.nice_before {
            // SAFETY: sets the calling thread's (who 0) nice value. Lowering it back needs
            // CAP_SYS_NICE, which the agent (root) has; without it the thread stays niced,
            // which is harmless.
            unsafe {
                libc::setpriority(libc::PRIO_PROCESS, 0, before);
            }
        }
    }
}

/// The calling thread's nice value raised to `nice` (Linux keeps it per thread); the value
/// before, when it was changed.
fn renice(nice: i32) -> Option<i32> {
    // SAFETY: getpriority/setpriority of the calling thread (who 0); errno is cleared first
    // because -1 is also a valid nice value.
    unsafe {
        *libc::__errno_location() = 0;
        let before = libc::getpriority(libc::PRIO_PROCESS, 0);
        if *libc::__errno_location() != 0 || before >= nice {
            return None;
        }
        (libc::setpriority(libc::PRIO_PROCESS, 0, nice) == 0).then_some(before)
    }
}

/// A point in background work where it may give its CPU up: when the thread's turn is used
/// up, a `sched_yield` lets whatever waits for this CPU run first. Nothing outside
/// [`Background`], nor once a yield found every CPU busy.
pub fn point() {
    #[cfg(test)]
    POINTS.with(|p| p.set(p.get() + 1));
    TURN_START.with(|t| {
        if let Some(start) = t.get()
            && !BUSY.get()
            && start.elapsed() >= TURN
        {
            let yielded = Instant::now();
            std::thread::yield_now();
            let now = Instant::now();
            if now - yielded >= BUSY_YIELD {
                BUSY.set(true);
            }
            t.set(Some(now));
        }
    });
}

#[cfg(test)]
thread_local! {
    /// How many points this thread passed (tests check that work they expect to be paced is).
    pub(crate) static POINTS: Cell<u64> = const { Cell::new(0) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nice_now() -> i32 {
        // SAFETY: reads the calling thread's nice value.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
    }

    fn in_turn() -> bool {
        TURN_START.with(|t| t.get().is_some())
    }

    #[test]
    fn background_work_runs_niced_in_turns_and_the_thread_gets_its_priority_back() {
        std::thread::spawn(|| {
            let before = nice_now();
            assert!(!in_turn());
            {
                let _turns = Background::turns();
                assert!(in_turn());
                assert_eq!(nice_now(), before, "turns alone keep the thread's priority");
            }
            assert!(!in_turn());
            {
                let _bg = Background::enter();
                assert_eq!(nice_now(), BACKGROUND_NICE.max(before));
                assert!(in_turn());
                {
                    // Nested (the store's progress handler inside a batch): one turn.
                    let _inner = Background::enter();
                }
                assert!(in_turn(), "an inner guard does not end the outer turn");
                let start = TURN_START.with(|t| t.get()).expect("turn");
                std::thread::sleep(TURN * 2);
                point();
                let next = TURN_START.with(|t| t.get()).expect("turn");
                assert!(next > start, "a used-up turn starts a new one");
            }
            assert!(!in_turn());
            point(); // a no-op outside background work
            assert!(!in_turn());
            // Root (the agent, and the suite) may lower it back; others stay niced.
            let is_root = nix::unistd::geteuid().is_root();
            assert_eq!(nice_now() == before, is_root || before >= BACKGROUND_NICE);
        })
        .join()
        .expect("thread");
    }
}
