//! A read-through, write-through cache of entities in front of any store.
//!
//! Invocations read the same few actions and packages over and over; the cache answers those
//! reads from memory. A write through this wrapper replaces the one entry it changed with what
//! was written (or with "absent" after a delete), so the first invoke of a newly created or
//! updated action is a hit too, and the other cached entities stay. A stale read after a write
//! in this process is impossible: writes are serialized with their cache update, a read that
//! missed inserts what it fetched only if no write finished meanwhile, and a write whose
//! request is cancelled (the store may have applied it) forgets its entity. [`invalidate`]
//! drops everything, for changes made behind this wrapper's back (several controllers sharing
//! one store need a cross-process signal for that; the bus provides it).
//!
//! [`invalidate`]: CachedStore::invalidate

use foldhash::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use brisk_model::{Activation, ActivationId, AuthKey, Entity, EntityName, UserLimits};
use parking_lot::RwLock;

use crate::{
    ActivationQuery, ActivationStore, AlarmRecord, AlarmStore, AuthStore, EntityQuery, EntityStore,
    Fetched, NamespaceRecord, Result, Stored,
};

const MAX_ENTRIES: usize = 10_000;
/// Code held by the cache at most, summed over its actions. Hits share an action rather than
/// copy it, so a large action (a zip with its dependencies) costs its memory once, and its warm
/// invokes do not read it back from the store each time.
const CODE_BUDGET: usize = 256 * 1024 * 1024;

/// (generation, entity with code or `None` for "absent"). An action is held behind an `Arc`
/// that hits share.
type Entry = (u64, Option<Fetched>);

pub struct CachedStore<S> {
    inner: S,
    /// Bumped by [`CachedStore::invalidate`]: entries of an older generation are stale.
    generation: AtomicU64,
    entries: RwLock<Entries>,
    /// Held across a write to the store and its cache update, so that two writes of one
    /// entity update the cache in the order the store applied them.
    writing: tokio::sync::Mutex<()>,
}

struct Entries {
    /// Writes finished through this wrapper (under this lock): a read that missed caches what
    /// it fetched only when no write finished since it started, as it may have read what the
    /// write replaced.
    writes: u64,
    /// doc id → entry.
    map: HashMap<String, Entry>,
    /// Sum of the code sizes of the cached actions.
    code: usize,
    /// Most code to hold.
    budget: usize,
}

impl Entries {
    fn clear(&mut self) {
        self.map.clear();
        self.code = 0;
    }

    fn forget(&mut self, doc_id: &str) {
        if let Some((_, old)) = self.map.remove(doc_id) {
            self.code -= code_size(&old);
        }
    }

    /// Caches `found` under `doc_id`, first dropping entries (any, the cache has no recency
    /// order) while the entry count or the code budget would be exceeded.
    fn insert(&mut self, doc_id: &str, generation: u64, found: Option<Fetched>) {
        self.forget(doc_id);
        let size = code_size(&found);
        if size > self.budget {
            return;
        }
        if self.map.len() >= MAX_ENTRIES {
            self.clear();
        }
        while self.code + size > self.budget {
            let Some(victim) = self.map.keys().next().cloned() else {
                break;
            };
            if let Some((_, old)) = self.map.remove(&victim) {
                self.code -= code_size(&old);
            }
        }
        self.code += size;
        self.map.insert(doc_id.to_owned(), (generation, found));
    }
}

fn code_size(f: &Option<Fetched>) -> usize {
    match f {
        Some(Fetched::Action { action, .. }) => action.exec.code_size(),
        _ => 0,
    }
}

impl<S> CachedStore<S> {
    pub fn new(inner: S) -> Self {
        Self::with_code_budget(inner, CODE_BUDGET)
    }

    /// A cache that holds at most `budget` bytes of action code.
    pub fn with_code_budget(inner: S, budget: usize) -> Self {
        Self {
            inner,
            generation: AtomicU64::new(0),
            entries: RwLock::new(Entries {
                writes: 0,
                map: HashMap::default(),
                code: 0,
                budget,
            }),
            writing: tokio::sync::Mutex::new(()),
        }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The entity with code, from the cache when it holds the current generation's copy.
    async fn lookup(&self, doc_id: &str) -> Result<Option<Fetched>>
    where
        S: EntityStore,
    {
        let generation = self.generation.load(Ordering::Acquire);
        let writes = {
            let entries = self.entries.read();
            if let Some((g, hit)) = entries.map.get(doc_id)
                && *g == generation
            {
                return Ok(hit.clone());
            }
            entries.writes
        };
        let found = self.inner.get(doc_id, true).await?.map(Fetched::from);
        let mut entries = self.entries.write();
        if self.generation.load(Ordering::Acquire) == generation && entries.writes == writes {
            entries.insert(doc_id, generation, found.clone());
        }
        Ok(found)
    }

    /// After a write of `doc_id` finished (successfully or not): caches `now` (what the store
    /// holds, when known) in place of the old entry.
    fn written(&self, doc_id: &str, now: Option<Option<Fetched>>) {
        let generation = self.generation.load(Ordering::Acquire);
        let mut entries = self.entries.write();
        entries.writes += 1;
        match now {
            Some(found) => entries.insert(doc_id, generation, found),
            None => entries.forget(doc_id),
        }
    }

    /// Drops every cached entity (for changes made behind this wrapper's back).
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.entries.write().clear();
    }
}

/// A write in progress. Dropped before [`Pending::done`] (the request was cancelled while the
/// store may already have applied the write), it forgets the entity as a failed write does,
/// so no read can keep or cache what the write replaced.
struct Pending<'a, S> {
    cache: &'a CachedStore<S>,
    doc_id: &'a str,
    finished: bool,
}

impl<'a, S> Pending<'a, S> {
    fn new(cache: &'a CachedStore<S>, doc_id: &'a str) -> Self {
        Self {
            cache,
            doc_id,
            finished: false,
        }
    }

    /// The write finished: see [`CachedStore::written`].
    fn done(mut self, now: Option<Option<Fetched>>) {
        self.finished = true;
        self.cache.written(self.doc_id, now);
    }
}

impl<S> Drop for Pending<'_, S> {
    fn drop(&mut self) {
        if !self.finished {
            self.cache.written(self.doc_id, None);
        }
    }
}

#[async_trait]
impl<S: EntityStore> EntityStore for CachedStore<S> {
    async fn get(&self, doc_id: &str, _with_code: bool) -> Result<Option<Stored>> {
        Ok(self.lookup(doc_id).await?.map(|f| match f {
            Fetched::Action { action, rev } => Stored {
                entity: Entity::Action(Arc::unwrap_or_clone(action)),
                rev,
            },
            Fetched::Other(stored) => Arc::unwrap_or_clone(stored),
        }))
    }

    async fn get_shared(&self, doc_id: &str) -> Result<Option<Fetched>> {
        self.lookup(doc_id).await
    }

    async fn put(&self, entity: &Entity, expected_rev: Option<u64>) -> Result<u64> {
        let _serial = self.writing.lock().await;
        let doc_id = entity.fqn().doc_id();
        let pending = Pending::new(self, &doc_id);
        let r = self.inner.put(entity, expected_rev).await;
        // What a read would return: the entity as its stored document decodes.
        let now = match &r {
            Ok(rev) => Entity::from_doc(entity.collection(), entity.to_doc())
                .ok()
                .map(|entity| Some(Fetched::from(Stored { entity, rev: *rev }))),
            Err(_) => None,
        };
        pending.done(now);
        r
    }

    async fn delete(&self, doc_id: &str, rev: u64) -> Result<()> {
        let _serial = self.writing.lock().await;
        let pending = Pending::new(self, doc_id);
        let r = self.inner.delete(doc_id, rev).await;
        pending.done(r.is_ok().then_some(None));
        r
    }

    async fn list(&self, query: &EntityQuery) -> Result<Vec<Entity>> {
        self.inner.list(query).await
    }

    async fn count(&self, query: &EntityQuery) -> Result<u64> {
        self.inner.count(query).await
    }
}

#[async_trait]
impl<S: ActivationStore> ActivationStore for CachedStore<S> {
    async fn store_batch(&self, records: &[std::sync::Arc<Activation>]) -> Result<()> {
        self.inner.store_batch(records).await
    }

    async fn get_activation(&self, ns: &str, id: &ActivationId) -> Result<Option<Activation>> {
        self.inner.get_activation(ns, id).await
    }

    async fn list_activations(&self, q: &ActivationQuery) -> Result<Vec<Activation>> {
        self.inner.list_activations(q).await
    }

    async fn count_activations(&self, q: &ActivationQuery) -> Result<u64> {
        self.inner.count_activations(q).await
    }
}

#[async_trait]
impl<S: AuthStore> AuthStore for CachedStore<S> {
    async fn namespace_by_uuid(&self, uuid: &str) -> Result<Option<NamespaceRecord>> {
        self.inner.namespace_by_uuid(uuid).await
    }

    async fn namespace_by_name(&self, ns: &str) -> Result<Option<NamespaceRecord>> {
        self.inner.namespace_by_name(ns).await
    }

    async fn create_namespace(&self, s: &str, ns: &EntityName, k: &AuthKey) -> Result<()> {
        self.inner.create_namespace(s, ns, k).await
    }

    async fn list_namespaces(&self) -> Result<Vec<NamespaceRecord>> {
        self.inner.list_namespaces().await
    }

    async fn delete_namespace(&self, ns: &str) -> Result<bool> {
        self.inner.delete_namespace(ns).await
    }

    async fn set_blocked(&self, subject: &str, blocked: bool) -> Result<u64> {
        self.inner.set_blocked(subject, blocked).await
    }

    async fn set_limits(&self, ns: &str, limits: &UserLimits) -> Result<()> {
        self.inner.set_limits(ns, limits).await
    }
}

#[async_trait]
impl<S: AlarmStore> AlarmStore for CachedStore<S> {
    async fn put_alarm(&self, alarm: &AlarmRecord) -> Result<()> {
        self.inner.put_alarm(alarm).await
    }

    async fn get_alarm(&self, trigger: &str) -> Result<Option<AlarmRecord>> {
        self.inner.get_alarm(trigger).await
    }

    async fn delete_alarm(&self, trigger: &str) -> Result<bool> {
        self.inner.delete_alarm(trigger).await
    }

    async fn list_alarms(&self) -> Result<Vec<AlarmRecord>> {
        self.inner.list_alarms().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SqliteStore;
    use brisk_model::{Action, Collection, EntityPath, Exec};

    fn action(code: &str) -> Entity {
        named("hello", code)
    }

    fn named(name: &str, code: &str) -> Entity {
        Entity::Action(Action::from_code(
            EntityPath::root(EntityName::new("guest").unwrap()),
            EntityName::new(name).unwrap(),
            "nodejs:20",
            code,
        ))
    }

    fn shared(f: Option<Fetched>) -> (Arc<Action>, u64) {
        match f {
            Some(Fetched::Action { action, rev }) => (action, rev),
            other => panic!("expected an action, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn hits_share_the_cached_action_until_a_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = CachedStore::new(SqliteStore::open(dir.path()).unwrap());
        let rev = store
            .put(&action("function main() { return {v: 1} }"), None)
            .await
            .unwrap();

        let (first, r1) = shared(store.get_shared("guest/hello").await.unwrap());
        let (second, r2) = shared(store.get_shared("guest/hello").await.unwrap());
        assert!(
            Arc::ptr_eq(&first, &second),
            "a hit must not copy the action"
        );
        assert_eq!((r1, r2), (rev, rev));
        // The owned read is a copy of the same document.
        let owned = store.get("guest/hello", true).await.unwrap().unwrap();
        assert_eq!(owned.entity, Entity::Action((*first).clone()));

        let rev2 = store
            .put(&action("function main() { return {v: 2} }"), Some(rev))
            .await
            .unwrap();
        let (third, r3) = shared(store.get_shared("guest/hello").await.unwrap());
        assert!(
            !Arc::ptr_eq(&first, &third),
            "a write must invalidate the cached action"
        );
        assert_eq!(r3, rev2);
        assert!(matches!(&third.exec, Exec::Code { code, .. } if code.contains("v: 2")));

        assert!(store.get_shared("guest/nope").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn the_code_budget_bounds_what_is_cached() {
        let dir = tempfile::tempdir().unwrap();
        let store = CachedStore::with_code_budget(SqliteStore::open(dir.path()).unwrap(), 100);
        let code = |c: char| format!("//{}", c.to_string().repeat(58));
        store.put(&named("a", &code('a')), None).await.unwrap();
        store.put(&named("b", &code('b')), None).await.unwrap();
        store
            .put(&named("big", &"x".repeat(101)), None)
            .await
            .unwrap();

        let a1 = shared(store.get_shared("guest/a").await.unwrap()).0;
        assert!(Arc::ptr_eq(
            &a1,
            &shared(store.get_shared("guest/a").await.unwrap()).0
        ));
        // Caching b (60 bytes) next to a (60 bytes) exceeds 100 bytes: a is dropped.
        let b1 = shared(store.get_shared("guest/b").await.unwrap()).0;
        assert!(Arc::ptr_eq(
            &b1,
            &shared(store.get_shared("guest/b").await.unwrap()).0
        ));
        assert!(store.entries.read().code <= 100);
        assert!(!Arc::ptr_eq(
            &a1,
            &shared(store.get_shared("guest/a").await.unwrap()).0
        ));
        // An action larger than the whole budget is read from the store each time, correctly.
        let big1 = shared(store.get_shared("guest/big").await.unwrap()).0;
        let big2 = shared(store.get_shared("guest/big").await.unwrap()).0;
        assert!(!Arc::ptr_eq(&big1, &big2));
        assert_eq!(big1.exec.code_size(), 101);
        assert!(store.entries.read().code <= 100);
    }

    /// Every kind of entity, with the optional parts set.
    fn entities() -> Vec<Entity> {
        let doc = |c: Collection, v: serde_json::Value| Entity::from_doc(c, v).unwrap();
        let mut act = Action::from_code(
            EntityPath::in_package(
                EntityName::new("guest").unwrap(),
                EntityName::new("pkg").unwrap(),
            ),
            EntityName::new("packaged").unwrap(),
            "python:3.11",
            "def main(a):\n    return a\n",
        );
        act.updated = 1_700_000_000_123;
        act.publish = true;
        vec![
            action("function main() { return {v: 1} }"),
            Entity::Action(act),
            doc(
                Collection::Packages,
                serde_json::json!({"namespace": "guest", "name": "pkg", "version": "0.0.2",
                    "binding": {"namespace": "whisk.system", "name": "utils"},
                    "parameters": [{"key": "p", "value": {"deep": [1, 2]}}],
                    "annotations": [{"key": "a", "value": true}], "updated": 5}),
            ),
            doc(
                Collection::Triggers,
                serde_json::json!({"namespace": "guest", "name": "t", "version": "0.0.1",
                    "parameters": [{"key": "x", "value": 1}],
                    "rules": {"guest/r": {"action": {"path": "guest", "name": "hello"},
                        "status": "active"}}}),
            ),
            doc(
                Collection::Rules,
                serde_json::json!({"namespace": "guest", "name": "r", "version": "0.0.1",
                    "trigger": {"path": "guest", "name": "t"},
                    "action": {"path": "guest", "name": "hello"}, "status": "active"}),
            ),
        ]
    }

    #[tokio::test]
    async fn a_write_caches_what_a_read_of_the_store_returns_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let store = CachedStore::new(SqliteStore::open(dir.path()).unwrap());
        let uncached = SqliteStore::open(dir.path()).unwrap();
        let other = named("other", "function main() { return {} }");
        store.put(&other, None).await.unwrap();
        let (other1, _) = shared(store.get_shared("guest/other").await.unwrap());

        for entity in entities() {
            let doc_id = entity.fqn().doc_id();
            let rev = store.put(&entity, None).await.unwrap();
            // Answered from the cache: the entry the write left, shared by every read.
            let (a, b) = (
                store.get_shared(&doc_id).await.unwrap().unwrap(),
                store.get_shared(&doc_id).await.unwrap().unwrap(),
            );
            match (&a, &b) {
                (Fetched::Action { action: x, .. }, Fetched::Action { action: y, .. }) => {
                    assert!(Arc::ptr_eq(x, y), "{doc_id}: not answered from the cache")
                }
                (Fetched::Other(x), Fetched::Other(y)) => {
                    assert!(Arc::ptr_eq(x, y), "{doc_id}: not answered from the cache")
                }
                _ => panic!("{doc_id}: {a:?} / {b:?}"),
            }
            let cached = store.get(&doc_id, true).await.unwrap().unwrap();
            let stored = uncached.get(&doc_id, true).await.unwrap().unwrap();
            assert_eq!(cached.entity, stored.entity, "{doc_id}");
            assert_eq!((cached.rev, stored.rev), (rev, rev), "{doc_id}");
        }
        // Writes of other entities left this one cached.
        let (other2, _) = shared(store.get_shared("guest/other").await.unwrap());
        assert!(Arc::ptr_eq(&other1, &other2));

        // A delete caches the absence; a failed write (a conflict) leaves the store's copy.
        let (_, rev) = shared(store.get_shared("guest/hello").await.unwrap());
        store.delete("guest/hello", rev).await.unwrap();
        assert!(store.get_shared("guest/hello").await.unwrap().is_none());
        assert!(uncached.get("guest/hello", true).await.unwrap().is_none());
        let stale = store.put(&other, Some(99)).await;
        assert!(matches!(stale, Err(crate::Error::Conflict)), "{stale:?}");
        let (other3, rev3) = shared(store.get_shared("guest/other").await.unwrap());
        assert_eq!(Entity::Action((*other3).clone()), other);
        assert_eq!(rev3, 1);
    }

    /// A store that can hold its next read or write once it has done it, until released: a
    /// read that missed can then wait while a write finishes, and a request can be cancelled
    /// after the store applied its write.
    struct Held {
        inner: SqliteStore,
        hold_read: std::sync::atomic::AtomicBool,
        hold_write: std::sync::atomic::AtomicBool,
        /// Signalled when a held read or write is done and waits.
        reached: tokio::sync::Notify,
        release: tokio::sync::Notify,
    }

    impl Held {
        fn new(dir: &std::path::Path) -> Self {
            Self {
                inner: SqliteStore::open(dir).unwrap(),
                hold_read: false.into(),
                hold_write: false.into(),
                reached: tokio::sync::Notify::new(),
                release: tokio::sync::Notify::new(),
            }
        }

        async fn hold_if(&self, armed: &std::sync::atomic::AtomicBool) {
            if armed.swap(false, Ordering::SeqCst) {
                self.reached.notify_one();
                self.release.notified().await;
            }
        }
    }

    #[async_trait]
    impl EntityStore for Held {
        async fn get(&self, doc_id: &str, with_code: bool) -> Result<Option<Stored>> {
            let r = self.inner.get(doc_id, with_code).await;
            self.hold_if(&self.hold_read).await;
            r
        }
        async fn put(&self, entity: &Entity, expected_rev: Option<u64>) -> Result<u64> {
            let r = self.inner.put(entity, expected_rev).await;
            self.hold_if(&self.hold_write).await;
            r
        }
        async fn delete(&self, doc_id: &str, rev: u64) -> Result<()> {
            self.inner.delete(doc_id, rev).await
        }
        async fn list(&self, query: &EntityQuery) -> Result<Vec<Entity>> {
            self.inner.list(query).await
        }
        async fn count(&self, query: &EntityQuery) -> Result<u64> {
            self.inner.count(query).await
        }
    }

    #[tokio::test]
    async fn a_write_cancelled_after_the_store_applied_it_leaves_no_stale_entry() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(CachedStore::new(Held::new(dir.path())));
        let v1 = store
            .put(&action("function main() { return {v: 1} }"), None)
            .await
            .unwrap();
        // Version 1 is cached.
        let (cached, _) = shared(store.get_shared("guest/hello").await.unwrap());
        assert!(Arc::ptr_eq(
            &cached,
            &shared(store.get_shared("guest/hello").await.unwrap()).0
        ));
        store.inner().hold_write.store(true, Ordering::SeqCst);
        let writer = {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .put(&action("function main() { return {v: 2} }"), Some(v1))
                    .await
            })
        };
        // The store holds version 2; the request goes away before the write returns.
        store.inner().reached.notified().await;
        writer.abort();
        assert!(writer.await.unwrap_err().is_cancelled());
        let (now, rev) = shared(store.get_shared("guest/hello").await.unwrap());
        assert_eq!(rev, v1 + 1);
        assert!(matches!(&now.exec, Exec::Code { code, .. } if code.contains("v: 2")));
    }

    #[tokio::test]
    async fn a_read_that_raced_a_write_does_not_cache_what_it_fetched() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(CachedStore::new(Held::new(dir.path())));
        let v1 = store
            .put(&action("function main() { return {v: 1} }"), None)
            .await
            .unwrap();
        store.invalidate();
        store.inner().hold_read.store(true, Ordering::SeqCst);
        let reader = {
            let store = store.clone();
            tokio::spawn(async move { shared(store.get_shared("guest/hello").await.unwrap()) })
        };
        // The read has fetched version 1 and waits; version 2 is written meanwhile.
        store.inner().reached.notified().await;
        let v2 = store
            .put(&action("function main() { return {v: 2} }"), Some(v1))
            .await
            .unwrap();
        store.inner().release.notify_one();
        let (old, rev) = reader.await.unwrap();
        assert_eq!(rev, v1, "the held read returns what it fetched");
        assert!(matches!(&old.exec, Exec::Code { code, .. } if code.contains("v: 1")));
        // ...but it did not replace the written entry in the cache.
        let (now, rev) = shared(store.get_shared("guest/hello").await.unwrap());
        assert_eq!(rev, v2);
        assert!(matches!(&now.exec, Exec::Code { code, .. } if code.contains("v: 2")));
    }
}
