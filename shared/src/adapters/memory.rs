//! In-memory adapters for unit tests: blobs, secrets, events.

use crate::error::StoreError;
use crate::ports::{BlobStore, Event, EventSink, PutOptions, Secret, SecretStore};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct MemoryBlobs {
    pub objects: Mutex<BTreeMap<String, (Vec<u8>, PutOptions)>>,
}

#[async_trait]
impl BlobStore for MemoryBlobs {
    async fn put(&self, key: &str, body: Vec<u8>, opts: &PutOptions) -> Result<(), StoreError> {
        self.objects
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key.to_string(), (body, opts.clone()));
        Ok(())
    }
    async fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        self.objects
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(key)
            .map(|(b, _)| b.clone())
            .ok_or_else(|| StoreError::NotFound(key.into()))
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .objects
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect())
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.objects
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
        Ok(())
    }
    fn uri(&self, key: &str) -> String {
        format!("memory://{key}")
    }
}

#[derive(Default)]
pub struct MemorySecrets {
    pub secrets: Mutex<BTreeMap<String, Secret>>,
}

#[async_trait]
impl SecretStore for MemorySecrets {
    async fn get_secret(&self, profile: &str) -> Result<Option<Secret>, StoreError> {
        Ok(self
            .secrets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(profile)
            .cloned())
    }
    async fn put_secret(&self, profile: &str, secret: &Secret) -> Result<(), StoreError> {
        self.secrets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(profile.to_string(), secret.clone());
        Ok(())
    }
    async fn put_secret_if(
        &self,
        profile: &str,
        secret: &Secret,
        version: &str,
    ) -> Result<bool, StoreError> {
        let mut all = self
            .secrets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if all.get(profile).map(Secret::digest).as_deref() != Some(version) {
            return Ok(false);
        }
        all.insert(profile.to_string(), secret.clone());
        Ok(true)
    }
}

#[derive(Default)]
pub struct MemoryEvents {
    pub events: Mutex<Vec<Event>>,
}

#[async_trait]
impl EventSink for MemoryEvents {
    async fn publish(&self, event: &Event) -> Result<(), StoreError> {
        self.events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(event.clone());
        Ok(())
    }
}
