//! The keys blocked clients wait on, and their wake-up when a write changes one.
//!
//! A client blocked in `BLPOP` (or another blocking pop) registers its keys
//! with a [`Waiter`] of its own and sleeps. Every committed write hands the
//! keys its effects changed to [`ReadyKeys::signal`], which wakes the clients
//! waiting on them, in the order they began to wait; each runs its command
//! again and pops, or sleeps on. The wake-up is a `Notify` permit, so a
//! write that lands between a client's attempt and its sleep is not missed.
//! While no client is blocked a commit costs one atomic load here.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

/// The registry: which clients wait on which keys.
#[derive(Default)]
pub struct ReadyKeys {
    /// Clients waiting now (the registry's fast path and `INFO`'s `blocked_clients`).
    blocked: AtomicUsize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// For each key, the waiters on it, oldest first.
    keys: HashMap<Bytes, Vec<(u64, Arc<Notify>)>>,
    next_id: u64,
}

/// One blocked client's registration; unregisters when dropped.
pub struct Waiter<'a> {
    registry: &'a ReadyKeys,
    id: u64,
    keys: Vec<Bytes>,
    notify: Arc<Notify>,
}

impl ReadyKeys {
    /// Registers a client waiting on `keys` (duplicates count once).
    pub fn wait_on(&self, keys: &[Bytes]) -> Waiter<'_> {
        let mut keys = keys.to_vec();
        keys.sort_unstable();
        keys.dedup();
        let notify = Arc::new(Notify::new());
        let mut state = self.state.lock();
        let id = state.next_id;
        state.next_id += 1;
        for key in &keys {
            state.keys.entry(key.clone()).or_default().push((id, notify.clone()));
        }
        self.blocked.fetch_add(1, Ordering::Relaxed);
        Waiter { registry: self, id, keys, notify }
    }

    /// Wakes the clients waiting on any of `keys`, oldest first.
    pub fn signal<'k>(&self, keys: impl IntoIterator<Item = &'k Bytes>) {
        if self.blocked.load(Ordering::Relaxed) == 0 {
            return;
        }
        let state = self.state.lock();
        for key in keys {
            for (_, notify) in state.keys.get(key).into_iter().flatten() {
                notify.notify_one();
            }
        }
    }

    /// How many clients are blocked now.
    pub fn blocked_clients(&self) -> usize {
        self.blocked.load(Ordering::Relaxed)
    }
}

impl Waiter<'_> {
    /// Resolves once a write changed one of the keys since the last call (at once if one
    /// did meanwhile).
    pub async fn changed(&self) {
        self.notify.notified().await;
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        let mut state = self.registry.state.lock();
        for key in &self.keys {
            if let Some(waiters) = state.keys.get_mut(key) {
                waiters.retain(|(id, _)| *id != self.id);
                if waiters.is_empty() {
                    state.keys.remove(key);
                }
            }
        }
        self.registry.blocked.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn b(text: &str) -> Bytes {
        Bytes::copy_from_slice(text.as_bytes())
    }

    async fn woken(waiter: &Waiter<'_>) -> bool {
        tokio::time::timeout(Duration::from_millis(20), waiter.changed()).await.is_ok()
    }

    #[tokio::test]
    async fn a_signal_wakes_the_waiters_of_its_keys_even_before_they_sleep() {
        let registry = ReadyKeys::default();
        let on_a = registry.wait_on(&[b("a"), b("a")]);
        let on_b = registry.wait_on(&[b("b"), b("c")]);
        assert_eq!(registry.blocked_clients(), 2);
        registry.signal(&[b("c")]);
        assert!(!woken(&on_a).await);
        assert!(woken(&on_b).await, "the permit waited for the sleep");
        assert!(!woken(&on_b).await, "one signal, one wake-up");
        registry.signal(&[b("a"), b("x")]);
        assert!(woken(&on_a).await);
        drop(on_a);
        assert_eq!(registry.blocked_clients(), 1);
        assert!(!registry.state.lock().keys.contains_key(&b("a")[..]), "an unwatched key is forgotten");
        drop(on_b);
        assert!(registry.state.lock().keys.is_empty());
        assert_eq!(registry.blocked_clients(), 0);
    }
}
