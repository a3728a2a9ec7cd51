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
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use super::*;
    use crate::error::RegistryErrors;

    #[test]
    fn bounded_and_stops_on_error() {
        let running = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let items: Vec<u32> = (0..20).collect();
        for_each_bounded(&items, 4, |_| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(5));
            running.fetch_sub(1, Ordering::SeqCst);
            Ok(())
        })
        .unwrap();
        assert_eq!(peak.load(Ordering::SeqCst), 4);

        let done = AtomicUsize::new(0);
        let err = for_each_bounded(&items, 2, |&i| {
            done.fetch_add(1, Ordering::SeqCst);
            if i == 3 {
                return Err(Error::Status {
                    method: "GET",
                    url: "u".into(),
                    status: 404,
                    errors: RegistryErrors::default(),
                });
            }
            Ok(())
        });
        assert!(err.is_err());
        assert!(done.load(Ordering::SeqCst) < items.len(), "stopped early");
    }
}
