//! Cancelling runs: each tracked run's switch, by execution id.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::lock;

/// A running execution's cancel switch.
#[derive(Default)]
pub struct Cancel {
    flag: AtomicBool,
    notify: tokio::sync::Notify,
}

impl Cancel {
    /// Whether the run was cancelled.
    pub(crate) fn is_set(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Cancels the run and wakes a wait in [`Cancel::cancelled`].
    fn set(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.notify.notify_one();
    }

    /// Resolves once the run is cancelled.
    pub(crate) async fn cancelled(&self) {
        if !self.is_set() {
            self.notify.notified().await;
        }
    }
}

/// The cancel switches of the runs under way, by execution id.
#[derive(Default)]
pub(crate) struct Running {
    by_id: Mutex<HashMap<String, Arc<Cancel>>>,
}

impl Running {
    /// Runs `f` with a switch registered under `execution_id` for its duration.
    pub(crate) fn tracked<T>(&self, execution_id: &str, f: impl FnOnce(&Arc<Cancel>) -> T) -> T {
        let cancel = Arc::new(Cancel::default());
        lock(&self.by_id).insert(execution_id.to_string(), cancel.clone());
        let result = f(&cancel);
        lock(&self.by_id).remove(execution_id);
        result
    }

    /// Flips the switch of `execution_id`; whether it was running (or queued) here.
    pub(crate) fn cancel(&self, execution_id: &str) -> bool {
        match lock(&self.by_id).get(execution_id) {
            Some(c) => {
                c.set();
                true
            }
            None => false,
        }
    }

    /// Whether `execution_id` is tracked now.
    #[cfg(test)]
    pub(crate) fn contains(&self, execution_id: &str) -> bool {
        lock(&self.by_id).contains_key(execution_id)
    }
}
