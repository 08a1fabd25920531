//! Throttles (wire spec §4.3): per-namespace invocations and fires per wall-clock minute,
//! per-namespace concurrent invocations, and a per-action limit on activations in flight
//! (`limits.instances`), which OpenWhisk lacks. A limit of 0 means unlimited.

use foldhash::HashMap;
use std::sync::Arc;

use brisk_model::now_millis;
use parking_lot::Mutex;

use crate::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rate {
    Invocations,
    Fires,
}

#[derive(Default)]
struct State {
    /// (namespace, rate) → (minute, count).
    minutes: HashMap<(String, Rate), (u64, u32)>,
    /// namespace → activations in flight.
    namespaces: HashMap<String, u32>,
    /// action doc id → activations in flight.
    actions: HashMap<String, u32>,
}

#[derive(Default)]
pub struct Throttles {
    state: Arc<Mutex<State>>,
}

/// Holds one concurrency slot; releases it on drop.
pub struct Permit {
    state: Arc<Mutex<State>>,
    namespace: String,
    action: Option<String>,
}

impl std::fmt::Debug for Permit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit")
            .field("namespace", &self.namespace)
            .field("action", &self.action)
            .finish()
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut s = self.state.lock();
        if let Some(n) = s.namespaces.get_mut(&self.namespace) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                s.namespaces.remove(&self.namespace);
            }
        }
        if let Some(a) = &self.action
            && let Some(n) = s.actions.get_mut(a)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                s.actions.remove(a);
            }
        }
    }
}

impl Throttles {
    /// Counts one request against a per-minute rate.
    pub fn check_rate(&self, namespace: &str, rate: Rate, limit: u32) -> Result<(), ApiError> {
        if limit == 0 {
            return Ok(());
        }
        let now = now_millis();
        let minute = now / 60_000;
        let mut s = self.state.lock();
        let entry = s
            .minutes
            .entry((namespace.to_owned(), rate))
            .or_insert((minute, 0));
        if entry.0 != minute {
            *entry = (minute, 0);
        }
        if entry.1 >= limit {
            let retry_after = 60 - (now / 1000) % 60;
            return Err(ApiError::TooManyRequests {
                message: format!(
                    "Too many requests in the last minute (count: {}, allowed: {limit}).",
                    entry.1
                ),
                retry_after,
            });
        }
        entry.1 += 1;
        Ok(())
    }

    /// Takes a concurrency slot for the namespace and, if limited, for the action.
    pub fn acquire(
        &self,
        namespace: &str,
        namespace_limit: u32,
        action: impl FnOnce() -> String,
        action_limit: Option<u32>,
    ) -> Result<Permit, ApiError> {
        let mut s = self.state.lock();
        let ns_count = s.namespaces.get(namespace).copied().unwrap_or(0);
        if namespace_limit > 0 && ns_count >= namespace_limit {
            return Err(ApiError::TooManyRequests {
                message: format!(
                    "Too many concurrent requests in flight (count: {ns_count}, allowed: {namespace_limit})."
                ),
                retry_after: 1,
            });
        }
        let action_key = match action_limit {
            Some(limit) => {
                // Named only for actions with a limit: most have none.
                let action = action();
                let count = s.actions.get(&action).copied().unwrap_or(0);
                if count >= limit {
                    return Err(ApiError::TooManyRequests {
                        message: format!(
                            "Too many concurrent requests in flight for action '{action}' (count: {count}, allowed: {limit})."
                        ),
                        retry_after: 1,
                    });
                }
                *s.actions.entry(action.clone()).or_insert(0) += 1;
                Some(action)
            }
            None => None,
        };
        *s.namespaces.entry(namespace.to_owned()).or_insert(0) += 1;
        Ok(Permit {
            state: self.state.clone(),
            namespace: namespace.to_owned(),
            action: action_key,
        })
    }

    /// Activations in flight in a namespace.
    #[cfg(test)]
    pub fn in_flight(&self, namespace: &str) -> u32 {
        self.state
            .lock()
            .namespaces
            .get(namespace)
            .copied()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_counts_up_to_the_limit() {
        let t = Throttles::default();
        for _ in 0..3 {
            t.check_rate("ns", Rate::Invocations, 3).unwrap();
        }
        let e = t.check_rate("ns", Rate::Invocations, 3).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("Too many requests in the last minute (count: 3, allowed: 3).")
        );
        // Other namespaces and other rates are independent.
        t.check_rate("other", Rate::Invocations, 3).unwrap();
        t.check_rate("ns", Rate::Fires, 3).unwrap();
        t.check_rate("ns", Rate::Invocations, 0).unwrap();
    }

    #[test]
    fn permits_release_on_drop() {
        let t = Throttles::default();
        let a = t.acquire("ns", 2, || "ns/a".into(), Some(1)).unwrap();
        assert!(t.acquire("ns", 2, || "ns/a".into(), Some(1)).is_err());
        let b = t.acquire("ns", 2, || "ns/b".into(), None).unwrap();
        let e = t.acquire("ns", 2, || "ns/c".into(), None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Too many concurrent requests in flight (count: 2, allowed: 2)."
        );
        drop(a);
        drop(b);
        assert_eq!(t.in_flight("ns"), 0);
        t.acquire("ns", 2, || "ns/a".into(), Some(1)).unwrap();
    }
}
