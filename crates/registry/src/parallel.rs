//! Bounded parallel transfers on plain threads.
//!
//! Transfers block on the network, so they run on their own scoped threads, never in rayon's
//! pool (which is for CPU work and would be starved by blocking I/O).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::error::{Error, Result};

/// Runs `work` on every item with at most `limit` threads. The first error stops new items
/// from starting and is returned once the running ones finish.
pub(crate) fn for_each_bounded<T: Sync>(
    items: &[T],
    limit: usize,
    work: impl Fn(&T) -> Result<()> + Sync,
) -> Result<()> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    let threads = limit.max(1).min(items.len());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                while !failed.load(Ordering::SeqCst) {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(item) = items.get(i) else { break };
                    if let Err(e) = work(item) {
                        failed.store(true, Ordering::SeqCst);
                        let mut slot = first_error.lock().unwrap_or_else(|p| p.into_inner());
                        slot.get_or_insert(e);
                    }
                }
            });
        }
    });
    match first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    //! Every verdict here follows from the order of events the jobs themselves enforce
    //! (channels and a gate), never from how fast threads happen to run.

    use std::sync::atomic::AtomicUsize;
    use std::sync::mpsc;
    use std::sync::Condvar;

    use super::*;
    use crate::error::RegistryErrors;

    /// A job's error, telling which item failed.
    fn failure(item: u16) -> Error {
        Error::Status {
            method: "GET",
            url: format!("item {item}"),
            status: item,
            errors: RegistryErrors::default(),
        }
    }

    fn failed_item(result: Result<()>) -> u16 {
        match result {
            Err(Error::Status { status, .. }) => status,
            other => panic!("expected a job's error, got {other:?}"),
        }
    }

    /// Closed until opened once, then open for good.
    #[derive(Default)]
    struct Gate {
        open: Mutex<bool>,
        opened: Condvar,
    }

    impl Gate {
        fn wait(&self) {
            let mut open = self.open.lock().unwrap();
            while !*open {
                open = self.opened.wait(open).unwrap();
            }
        }
        fn open(&self) {
            *self.open.lock().unwrap() = true;
            self.opened.notify_all();
        }
    }

    #[test]
    fn runs_as_many_at_once_as_the_limit_and_no_more() {
        let items: Vec<u16> = (0..20).collect();
        for limit in [1, 3, 4] {
            let running = AtomicUsize::new(0);
            let peak = AtomicUsize::new(0);
            let ran = AtomicUsize::new(0);
            let gate = Gate::default();
            let (started, starts) = mpsc::channel();
            std::thread::scope(|scope| {
                let pool = scope.spawn(|| {
                    for_each_bounded(&items, limit, |_| {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        started.send(()).unwrap();
                        // The first jobs hold their threads until `limit` of them run at once.
                        gate.wait();
                        running.fetch_sub(1, Ordering::SeqCst);
                        ran.fetch_add(1, Ordering::SeqCst);
                        Ok(())
                    })
                });
                for _ in 0..limit {
                    starts.recv().unwrap();
                }
                gate.open();
                pool.join().unwrap().unwrap();
            });
            // `limit` jobs were seen running together; the pool never allows more.
            assert_eq!(peak.load(Ordering::SeqCst), limit, "limit {limit}");
            assert_eq!(ran.load(Ordering::SeqCst), items.len(), "limit {limit}");
        }
    }

    #[test]
    fn a_limit_of_zero_still_runs_every_item() {
        let ran = AtomicUsize::new(0);
        for_each_bounded(&[1, 2, 3], 0, |_| {
            ran.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .unwrap();
        assert_eq!(ran.load(Ordering::SeqCst), 3);
        for_each_bounded(&[] as &[u8], 4, |_| unreachable!("no items")).unwrap();
    }

    #[test]
    fn the_first_error_stops_new_items() {
        // One thread: items run in order, and nothing starts after item 3 fails.
        let items: Vec<u16> = (0..20).collect();
        let started = Mutex::new(Vec::new());
        let result = for_each_bounded(&items, 1, |&i| {
            started.lock().unwrap().push(i);
            if i == 3 {
                return Err(failure(i));
            }
            Ok(())
        });
        assert_eq!(failed_item(result), 3);
        assert_eq!(*started.lock().unwrap(), [0, 1, 2, 3]);
    }

    #[test]
    fn the_error_waits_for_running_items() {
        // Two threads: item 0 fails while item 1 is still running; the error comes back only
        // once item 1 has finished, and it is item 0's.
        let items: Vec<u16> = (0..20).collect();
        let finished_1 = AtomicBool::new(false);
        let gate = Gate::default();
        let (one_started, wait_for_one) = mpsc::channel();
        let (zero_failing, wait_for_zero) = mpsc::channel();
        let wait_for_one = Mutex::new(wait_for_one);
        std::thread::scope(|scope| {
            let pool = scope.spawn(|| {
                for_each_bounded(&items, 2, |&i| {
                    match i {
                        0 => {
                            wait_for_one.lock().unwrap().recv().unwrap();
                            zero_failing.send(()).unwrap();
                            return Err(failure(0));
                        }
                        1 => {
                            one_started.send(()).unwrap();
                            gate.wait();
                            finished_1.store(true, Ordering::SeqCst);
                        }
                        _ => {}
                    }
                    Ok(())
                })
            });
            wait_for_zero.recv().unwrap();
            gate.open();
            assert_eq!(failed_item(pool.join().unwrap()), 0);
        });
        assert!(finished_1.load(Ordering::SeqCst));
    }
}
