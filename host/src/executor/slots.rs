//! The executor's instance slots: a fixed number of runs at once, and a share of them per
//! caller so one key (its formulas' children included) cannot take them all.
//!
//! A run within its caller's share waits for a free slot (until its deadline or a cancel);
//! a run past its share is refused at once ([`SlotWait::Busy`]), so it holds nothing,
//! neither a slot nor, upstream, a router instance waiting on it.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};
use std::time::Instant;

/// Slot accounting under one lock.
struct State {
    free: u32,
    /// Runs in flight or queued, by caller (absent: none).
    by_caller: HashMap<String, u32>,
}

/// The pool's slots and who holds or waits for them.
pub(crate) struct Slots {
    state: Mutex<State>,
    freed: Condvar,
    share: u32,
}

/// Why a run got no slot.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SlotWait {
    /// Cancelled while it waited.
    Cancelled,
    /// Its deadline passed while it waited.
    TimedOut,
    /// Its caller already has `share` runs in flight or queued.
    Busy {
        /// The per-caller share.
        share: u32,
    },
}

/// One held slot; dropping it gives the slot (and the caller's place) back.
pub(crate) struct SlotGuard<'a> {
    slots: &'a Slots,
    caller: Option<String>,
}

impl Slots {
    /// `total` slots, at most `share` of them (running or queued) per caller.
    pub(crate) fn new(total: u32, share: u32) -> Slots {
        Slots {
            state: Mutex::new(State {
                free: total,
                by_caller: HashMap::new(),
            }),
            freed: Condvar::new(),
            share,
        }
    }

    /// Free slots now.
    #[cfg(test)]
    pub(crate) fn free(&self) -> u32 {
        lock(&self.state).free
    }

    /// Runs `caller` has in flight or queued.
    #[cfg(test)]
    pub(crate) fn held_by(&self, caller: &str) -> u32 {
        lock(&self.state)
            .by_caller
            .get(caller)
            .copied()
            .unwrap_or(0)
    }

    /// Wakes every waiter (to look at its cancel flag).
    pub(crate) fn wake(&self) {
        self.freed.notify_all();
    }

    /// Takes a slot for `caller` (`None`: a trusted in-process caller, outside any share)
    /// once more than `keep_free` slots are free; a caller past its share is refused at once.
    pub(crate) fn acquire(
        &self,
        caller: Option<&str>,
        keep_free: u32,
        deadline: Instant,
        cancelled: impl Fn() -> bool,
    ) -> Result<SlotGuard<'_>, SlotWait> {
        let mut state = lock(&self.state);
        if let Some(c) = caller {
            let held = state.by_caller.entry(c.to_string()).or_insert(0);
            if *held >= self.share {
                return Err(SlotWait::Busy { share: self.share });
            }
            *held += 1;
        }
        // From here on the caller's place is counted; `release` gives it back on every exit.
        let mut guard = SlotGuard {
            slots: self,
            caller: caller.map(String::from),
        };
        loop {
            if cancelled() {
                guard.release(&mut state, false);
                std::mem::forget(guard);
                return Err(SlotWait::Cancelled);
            }
            if state.free > keep_free {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                guard.release(&mut state, false);
                std::mem::forget(guard);
                return Err(SlotWait::TimedOut);
            }
            state = self
                .freed
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        state.free -= 1;
        drop(state);
        Ok(guard)
    }
}

impl SlotGuard<'_> {
    /// Gives back the caller's place, and the slot itself when `slot` (it was taken).
    fn release(&mut self, state: &mut State, slot: bool) {
        if slot {
            state.free += 1;
        }
        if let Some(c) = self.caller.take() {
            if let Some(n) = state.by_caller.get_mut(&c) {
                *n -= 1;
                if *n == 0 {
                    state.by_caller.remove(&c);
                }
            }
        }
    }
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        let slots = self.slots;
        let mut state = lock(&slots.state);
        self.release(&mut state, true);
        drop(state);
        // All: the first waiter may be a formula that still cannot start.
        slots.freed.notify_all();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_caller_past_its_share_is_refused_at_once_and_others_still_get_slots() {
        let slots = Slots::new(4, 2);
        let later = Instant::now() + Duration::from_secs(60);
        let a1 = slots.acquire(Some("a"), 0, later, || false).unwrap();
        let a2 = slots.acquire(Some("a"), 0, later, || false).unwrap();
        // Refused without waiting, although two slots are free.
        assert_eq!(
            slots.acquire(Some("a"), 0, later, || false).err(),
            Some(SlotWait::Busy { share: 2 })
        );
        assert_eq!(slots.held_by("a"), 2);
        let b = slots.acquire(Some("b"), 0, later, || false).unwrap();
        assert_eq!(slots.free(), 1);
        drop(a1);
        let a3 = slots.acquire(Some("a"), 0, later, || false).unwrap();
        // A queued run counts against its caller too, and a failed wait gives its place back.
        drop(b);
        let _c = slots.acquire(Some("c"), 0, later, || false).unwrap();
        let _e = slots.acquire(Some("e"), 0, later, || false).unwrap();
        assert_eq!(slots.free(), 0);
        let now = Instant::now();
        assert_eq!(
            slots.acquire(Some("d"), 0, now, || false).err(),
            Some(SlotWait::TimedOut)
        );
        assert_eq!(
            slots.acquire(Some("d"), 0, later, || true).err(),
            Some(SlotWait::Cancelled)
        );
        assert_eq!(slots.held_by("d"), 0);
        drop((a2, a3));
        assert_eq!(slots.held_by("a"), 0);
        assert_eq!(slots.free(), 2);
        // Trusted in-process runs take no share.
        let _t: Vec<_> = (0..2)
            .map(|_| slots.acquire(None, 0, later, || false).unwrap())
            .collect();
        assert_eq!(slots.free(), 0);
    }
}
