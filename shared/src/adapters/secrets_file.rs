//! Local secrets: one JSON file, `{ "<profile>": { ...credentials... } }`, created with mode 0600.

use crate::error::StoreError;
use crate::ports::{Secret, SecretStore};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::path::PathBuf;
use tokio::sync::Mutex;

pub struct SecretsFile {
    path: PathBuf,
    lock: Mutex<()>,
}

impl SecretsFile {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SecretsFile {
            path: path.into(),
            lock: Mutex::new(()),
        }
    }

    /// The profiles in the file, by name (values stay in the file).
    pub async fn list(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.load().await?.into_keys().collect())
    }

    /// Remove a profile; false when there was none.
    pub async fn delete(&self, profile: &str) -> Result<bool, StoreError> {
        let _g = self.lock.lock().await;
        let _f = self.file_lock().await?;
        let mut all = self.load().await?;
        if all.remove(profile).is_none() {
            return Ok(false);
        }
        self.save(&all).await?;
        Ok(true)
    }

    async fn load(&self) -> Result<BTreeMap<String, Secret>, StoreError> {
        match tokio::fs::read(&self.path).await {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                StoreError::Invalid(format!(
                    "{} is not a JSON object of profiles ({e}); fix or remove it",
                    self.path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(StoreError::backend(
                format!("read {}", self.path.display()),
                e,
            )),
        }
    }
}

#[async_trait]
impl SecretStore for SecretsFile {
    async fn get_secret(&self, profile: &str) -> Result<Option<Secret>, StoreError> {
        Ok(self.load().await?.remove(profile))
    }

    async fn put_secret(&self, profile: &str, secret: &Secret) -> Result<(), StoreError> {
        let _g = self.lock.lock().await;
        let _f = self.file_lock().await?;
        let mut all = self.load().await?;
        all.insert(profile.to_string(), secret.clone());
        self.save(&all).await
    }

    async fn put_secret_if(
        &self,
        profile: &str,
        secret: &Secret,
        version: &str,
    ) -> Result<bool, StoreError> {
        let _g = self.lock.lock().await;
        let _f = self.file_lock().await?;
        let mut all = self.load().await?;
        if all.get(profile).map(Secret::digest).as_deref() != Some(version) {
            return Ok(false);
        }
        all.insert(profile.to_string(), secret.clone());
        self.save(&all).await?;
        Ok(true)
    }
}

/// An exclusive `flock` on `<secrets file>.lock`, held while it lives: two `ferry` processes
/// sharing a profile write back one at a time.
struct FileLock(#[allow(dead_code)] std::fs::File);

impl SecretsFile {
    async fn file_lock(&self) -> Result<FileLock, StoreError> {
        let path = self.path.with_extension("lock");
        tokio::task::spawn_blocking(move || {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)?;
            #[cfg(unix)]
            {
                use std::os::unix::io::AsRawFd;
                // SAFETY: flock on a descriptor this function owns; released when `f` closes.
                if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(FileLock(f))
        })
        .await
        .map_err(|e| StoreError::backend("lock secrets", e))?
        .map_err(|e| StoreError::backend("lock secrets", e))
    }
}

impl SecretsFile {
    /// Write every profile (mode 0600, through a temporary file renamed into place).
    async fn save(&self, all: &BTreeMap<String, Secret>) -> Result<(), StoreError> {
        let body =
            serde_json::to_vec_pretty(all).map_err(|e| StoreError::backend("encode secrets", e))?;
        if let Some(dir) = self.path.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| StoreError::backend("create secrets dir", e))?;
        }
        let tmp = self.path.with_extension("tmp");
        let mut opts = tokio::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        opts.mode(0o600);
        use tokio::io::AsyncWriteExt;
        let mut f = opts
            .open(&tmp)
            .await
            .map_err(|e| StoreError::backend("write secrets", e))?;
        f.write_all(&body)
            .await
            .map_err(|e| StoreError::backend("write secrets", e))?;
        f.flush()
            .await
            .map_err(|e| StoreError::backend("write secrets", e))?;
        tokio::fs::rename(&tmp, &self.path)
            .await
            .map_err(|e| StoreError::backend("write secrets", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip_and_redaction() {
        let dir = tempfile::tempdir().unwrap();
        let s = SecretsFile::new(dir.path().join("secrets.json"));
        assert!(s.get_secret("crm").await.unwrap().is_none());
        let secret = Secret::new(serde_json::json!({"token": "hunter2"}));
        s.put_secret("crm", &secret).await.unwrap();
        let back = s.get_secret("crm").await.unwrap().unwrap();
        assert_eq!(back, secret);
        assert!(!format!("{back:?} {back}").contains("hunter2"));
        s.put_secret("erp", &secret).await.unwrap();
        assert_eq!(s.list().await.unwrap(), ["crm", "erp"]);
        assert!(s.delete("crm").await.unwrap());
        assert!(!s.delete("crm").await.unwrap());
        assert_eq!(s.list().await.unwrap(), ["erp"]);
        assert!(s.get_secret("crm").await.unwrap().is_none());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("secrets.json"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
