//! Cooperative cancellation shared by the scheduler and running ops.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// A flag that, once set, stays set; clones share it.
///
/// Executors either poll [`CancelToken::is_cancelled`] or block in
/// [`CancelToken::wait_timeout`] (for instance in a thread that kills a child process when the
/// build is cancelled), so cancellation needs no async runtime.
#[derive(Clone, Debug, Default)]
pub struct CancelToken {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    cancelled: AtomicBool,
    lock: Mutex<()>,
    wake: Condvar,
}

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        CancelToken::default()
    }

    /// Sets the flag and wakes every waiter.
    pub fn cancel(&self) {
        self.inner.cancelled.store(true, Ordering::SeqCst);
        // Taking the lock orders the store before waiters re-check the flag.
        let _guard = self.inner.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.inner.wake.notify_all();
    }

    /// Whether [`CancelToken::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::SeqCst)
    }

    /// Blocks until cancelled or until `timeout` passes; returns whether it was cancelled.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let guard = self.inner.lock.lock().unwrap_or_else(|e| e.into_inner());
        let (_guard, _) = self
            .inner
            .wake
            .wait_timeout_while(guard, timeout, |_| !self.is_cancelled())
            .unwrap_or_else(|e| e.into_inner());
        self.is_cancelled()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn waiters_wake_promptly_on_cancel() {
        let token = CancelToken::new();
        let waiter = token.clone();
        let start = Instant::now();
        let handle = std::thread::spawn(move || waiter.wait_timeout(Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(50));
        token.cancel();
        assert!(handle.join().unwrap());
        assert!(start.elapsed() < Duration::from_secs(2));
        assert!(!CancelToken::new().wait_timeout(Duration::from_millis(1)));
    }
}
