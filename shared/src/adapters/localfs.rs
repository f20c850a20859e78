//! A directory as a blob store: the embedded engine's staging area and local destinations.
//! Writes go to a temporary file renamed into place, so a reader never sees half an object.

use crate::error::StoreError;
use crate::flow::Location;
use crate::ports::{BlobStore, DestinationResolver, PutOptions};
use async_trait::async_trait;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

pub struct LocalDir {
    root: PathBuf,
}

impl LocalDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file for a key; keys may not climb out of the root.
    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        let rel = Path::new(key);
        if key.is_empty() || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(StoreError::Invalid(format!(
                "object key '{key}' is not a plain relative path"
            )));
        }
        Ok(self.root.join(rel))
    }
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> StoreError {
    move |e| StoreError::backend(what, e)
}

#[async_trait]
impl BlobStore for LocalDir {
    async fn put(&self, key: &str, body: Vec<u8>, _opts: &PutOptions) -> Result<(), StoreError> {
        let path = self.path(key)?;
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(io(format!("create {}", dir.display())))?;
        let tmp = dir.join(format!(
            ".{}.tmp-{}",
            path.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default(),
            uuid::Uuid::new_v4()
        ));
        // A put cancelled mid-write (its step stopped with the run) leaves nothing behind, as
        // an interrupted S3 PutObject does: the guard removes the temporary file unless the
        // rename happened.
        let mut guard = TmpGuard(Some(tmp.clone()));
        tokio::fs::write(&tmp, body)
            .await
            .map_err(io(format!("write {}", tmp.display())))?;
        tokio::fs::rename(&tmp, &path)
            .await
            .map_err(io(format!("rename into {}", path.display())))?;
        guard.0 = None;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        let path = self.path(key)?;
        match tokio::fs::read(&path).await {
            Ok(b) => Ok(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(StoreError::NotFound(path.display().to_string()))
            }
            Err(e) => Err(StoreError::backend(format!("read {}", path.display()), e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let root = self.root.clone();
        let prefix = prefix.to_string();
        tokio::task::spawn_blocking(move || {
            let mut out = vec![];
            let mut stack = vec![root.clone()];
            while let Some(dir) = stack.pop() {
                let rd = match std::fs::read_dir(&dir) {
                    Ok(rd) => rd,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => {
                        return Err(StoreError::backend(format!("list {}", dir.display()), e))
                    }
                };
                for entry in rd {
                    let entry = entry.map_err(io(format!("list {}", dir.display())))?;
                    let p = entry.path();
                    let name = entry.file_name();
                    if name.to_string_lossy().starts_with('.') {
                        continue;
                    }
                    if p.is_dir() {
                        stack.push(p);
                    } else if let Ok(rel) = p.strip_prefix(&root) {
                        let key = rel
                            .components()
                            .map(|c| c.as_os_str().to_string_lossy())
                            .collect::<Vec<_>>()
                            .join("/");
                        if key.starts_with(&prefix) {
                            out.push(key);
                        }
                    }
                }
            }
            out.sort();
            Ok(out)
        })
        .await
        .map_err(|e| StoreError::backend("list", e))?
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::backend(format!("delete {}", path.display()), e)),
        }
        // Remove directories left empty, up to the root.
        let mut dir = path.parent().map(Path::to_path_buf);
        while let Some(d) = dir {
            if d == self.root || !d.starts_with(&self.root) || std::fs::remove_dir(&d).is_err() {
                break;
            }
            dir = d.parent().map(Path::to_path_buf);
        }
        Ok(())
    }

    fn uri(&self, key: &str) -> String {
        self.root.join(key).display().to_string()
    }
}

/// Resolves `local:` destinations to directories, and `s3:` ones through an optional S3
/// resolver (the embedded engine can write to S3 when AWS credentials or an endpoint are set).
pub struct LocalResolver {
    pub base: PathBuf,
    pub s3: Option<Arc<dyn DestinationResolver>>,
}

#[async_trait]
impl DestinationResolver for LocalResolver {
    async fn resolve(&self, location: &Location) -> Result<Arc<dyn BlobStore>, StoreError> {
        match location {
            Location::Local { path } => Ok(Arc::new(LocalDir::new(self.base.join(path)))),
            Location::S3(_) => match &self.s3 {
                Some(r) => r.resolve(location).await,
                None => Err(StoreError::Invalid(format!(
                    "destination {location} is on S3, but this engine has no S3 access configured (the ferry CLI writes s3: destinations when built with `--features remote`)"
                ))),
            },
        }
    }
}

/// Removes a temporary file when dropped while still armed.
struct TmpGuard(Option<PathBuf>);

impl Drop for TmpGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_get_list_delete() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalDir::new(dir.path());
        s.put("a/b/c.txt", b"hi".to_vec(), &PutOptions::default())
            .await
            .unwrap();
        s.put("a/d.txt", b"yo".to_vec(), &PutOptions::default())
            .await
            .unwrap();
        assert_eq!(s.get("a/b/c.txt").await.unwrap(), b"hi");
        assert_eq!(s.list("a/").await.unwrap(), vec!["a/b/c.txt", "a/d.txt"]);
        assert_eq!(s.list("a/b").await.unwrap(), vec!["a/b/c.txt"]);
        s.delete_prefix("a/b/").await.unwrap();
        assert!(
            s.delete_prefix("a/d").await.is_err(),
            "a prefix that is not a folder is refused"
        );
        assert_eq!(s.list("").await.unwrap(), vec!["a/d.txt"]);
        assert!(
            !dir.path().join("a/b").exists(),
            "empty directories are removed"
        );
        assert!(matches!(
            s.get("a/b/c.txt").await,
            Err(StoreError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn keys_cannot_escape_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalDir::new(dir.path().join("inner"));
        for k in ["../x", "/etc/passwd", "a/../../x", ""] {
            assert!(
                s.put(k, vec![], &PutOptions::default()).await.is_err(),
                "{k}"
            );
        }
    }
}
