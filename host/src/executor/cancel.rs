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
    /// Registers a switch under `execution_id` until the returned guard is dropped (also when
    /// the run's future is dropped half-way).
    pub(crate) fn track<'a>(&'a self, execution_id: &'a str) -> Tracked<'a> {
        let cancel = Arc::new(Cancel::default());
        lock(&self.by_id).insert(execution_id.to_string(), cancel.clone());
        Tracked {
            running: self,
            id: execution_id,
            cancel,
        }
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

/// A tracked run's switch; dropping it unregisters the run.
pub(crate) struct Tracked<'a> {
    running: &'a Running,
    id: &'a str,
    /// The run's switch.
    pub(crate) cancel: Arc<Cancel>,
}

impl Drop for Tracked<'_> {
    fn drop(&mut self) {
        lock(&self.running.by_id).remove(self.id);
    }
}
