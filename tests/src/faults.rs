//! Fault injection for end-to-end tests: a destination whose writes fail on demand.

use async_trait::async_trait;
use ferry::error::StoreError;
use ferry::flow::Location;
use ferry::ports::{BlobStore, DestinationResolver, PutOptions};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

type KeyMatch = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Wraps a destination: while the switch is on, a `put` of a key `when` matches fails with
/// `StoreError::Invalid("injected write failure for <key>")` (not retried by the state machine).
pub struct FailingDestination {
    inner: Arc<dyn DestinationResolver>,
    switch: Arc<AtomicBool>,
    when: KeyMatch,
}

impl FailingDestination {
    /// The wrapped resolver and its switch (initially `on`).
    pub fn wrap(
        inner: Arc<dyn DestinationResolver>,
        on: bool,
        when: impl Fn(&str) -> bool + Send + Sync + 'static,
    ) -> (Arc<dyn DestinationResolver>, Arc<AtomicBool>) {
        let switch = Arc::new(AtomicBool::new(on));
        let me = FailingDestination {
            inner,
            switch: switch.clone(),
            when: Arc::new(when),
        };
        (Arc::new(me), switch)
    }
}

struct FailingBlobs {
    inner: Arc<dyn BlobStore>,
    switch: Arc<AtomicBool>,
    when: KeyMatch,
}

#[async_trait]
impl DestinationResolver for FailingDestination {
    async fn resolve(&self, l: &Location) -> Result<Arc<dyn BlobStore>, StoreError> {
        Ok(Arc::new(FailingBlobs {
            inner: self.inner.resolve(l).await?,
            switch: self.switch.clone(),
            when: self.when.clone(),
        }))
    }
}

#[async_trait]
impl BlobStore for FailingBlobs {
    async fn put(&self, key: &str, body: Vec<u8>, o: &PutOptions) -> Result<(), StoreError> {
        if self.switch.load(Ordering::SeqCst) && (self.when)(key) {
            return Err(StoreError::Invalid(format!(
                "injected write failure for {key}"
            )));
        }
        self.inner.put(key, body, o).await
    }
    async fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        self.inner.get(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
    fn uri(&self, key: &str) -> String {
        self.inner.uri(key)
    }
}
