//! S3 blob store (staging and destinations) and the resolver of `s3:` destinations.
//!
//! Objects above a threshold go up as a multipart upload (parts of at least 5 MiB, fewer than
//! 10,000 parts, aborted on any failure so no partial object or orphaned parts remain).
//! Encryption is SSE-S3, or SSE-KMS when a key id is given.

use crate::error::StoreError;
use crate::flow::Location;
use crate::ports::{BlobStore, DestinationResolver, PutOptions};
use async_trait::async_trait;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, Delete, ObjectCannedAcl, ObjectIdentifier,
    ServerSideEncryption,
};
use aws_sdk_s3::Client;
use std::sync::Arc;

/// S3's smallest part (except the last).
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;
/// S3's part-count limit is 10,000; stay under it.
pub const MAX_PARTS: usize = 9_999;
/// Objects larger than this are uploaded in parts.
pub const DEFAULT_MULTIPART_THRESHOLD: usize = 16 * 1024 * 1024;
/// Preferred part size.
pub const DEFAULT_PART_SIZE: usize = 8 * 1024 * 1024;

/// The part size for an object of `len` bytes: at least `preferred` (and 5 MiB), large enough
/// that the object fits in fewer than 10,000 parts.
pub fn part_size(len: usize, preferred: usize) -> usize {
    let floor = len.div_ceil(MAX_PARTS);
    preferred.max(MIN_PART_SIZE).max(floor)
}

fn s3e<E, R>(what: String, e: SdkError<E, R>) -> StoreError
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    super::sdk_error(what, e)
}

/// One bucket. Keys are full object keys (a destination's prefix is already part of them).
#[derive(Clone, Debug)]
pub struct S3Blobs {
    client: Client,
    bucket: String,
    kms_key_id: Option<String>,
    bucket_owner_full_control: bool,
    multipart_threshold: usize,
    part_size: usize,
}

impl S3Blobs {
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        S3Blobs {
            client,
            bucket: bucket.into(),
            kms_key_id: None,
            bucket_owner_full_control: false,
            multipart_threshold: DEFAULT_MULTIPART_THRESHOLD,
            part_size: DEFAULT_PART_SIZE,
        }
    }
    /// SSE-KMS with this key (id, alias or ARN); SSE-S3 when `None`.
    pub fn with_kms_key(mut self, key: Option<String>) -> Self {
        self.kms_key_id = key;
        self
    }
    /// Grant the bucket owner full control (writing into another account's bucket).
    pub fn with_bucket_owner_full_control(mut self, on: bool) -> Self {
        self.bucket_owner_full_control = on;
        self
    }
    /// Upload objects larger than `threshold` in parts of `part_size` (at least 5 MiB).
    pub fn with_multipart(mut self, threshold: usize, part_size: usize) -> Self {
        self.multipart_threshold = threshold;
        self.part_size = part_size.max(MIN_PART_SIZE);
        self
    }
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    fn sse(&self) -> (ServerSideEncryption, Option<String>) {
        match &self.kms_key_id {
            Some(k) => (ServerSideEncryption::AwsKms, Some(k.clone())),
            None => (ServerSideEncryption::Aes256, None),
        }
    }

    fn acl(&self) -> Option<ObjectCannedAcl> {
        self.bucket_owner_full_control
            .then_some(ObjectCannedAcl::BucketOwnerFullControl)
    }

    async fn put_multipart(
        &self,
        key: &str,
        body: Vec<u8>,
        opts: &PutOptions,
    ) -> Result<(), StoreError> {
        let (sse, kms) = self.sse();
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .server_side_encryption(sse)
            .set_ssekms_key_id(kms)
            .set_acl(self.acl())
            .set_content_type(opts.content_type.clone())
            .set_content_encoding(opts.content_encoding.clone())
            .send()
            .await
            .map_err(|e| s3e(format!("s3 CreateMultipartUpload {}", self.uri(key)), e))?;
        let upload_id = created.upload_id.ok_or_else(|| {
            StoreError::Invalid(format!(
                "s3 CreateMultipartUpload {}: no upload id",
                self.uri(key)
            ))
        })?;
        match self.upload_parts(key, &upload_id, body).await {
            Ok(()) => Ok(()),
            Err(e) => {
                if let Err(abort) = self
                    .client
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .send()
                    .await
                {
                    tracing::warn!(key, error = %abort, "could not abort a failed multipart upload; the bucket's lifecycle rule must clean it");
                }
                Err(e)
            }
        }
    }

    async fn upload_parts(
        &self,
        key: &str,
        upload_id: &str,
        body: Vec<u8>,
    ) -> Result<(), StoreError> {
        use futures::{StreamExt, TryStreamExt};
        let size = part_size(body.len(), self.part_size);
        let body = bytes::Bytes::from(body);
        let parts = (0..body.len().div_ceil(size)).map(|i| {
            let chunk = body.slice(i * size..((i + 1) * size).min(body.len()));
            let number = i as i32 + 1;
            async move {
                let out = self
                    .client
                    .upload_part()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .part_number(number)
                    .body(ByteStream::from(chunk))
                    .send()
                    .await
                    .map_err(|e| {
                        s3e(format!("s3 UploadPart {} part {number}", self.uri(key)), e)
                    })?;
                Ok::<_, StoreError>(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(out.e_tag)
                        .build(),
                )
            }
        });
        let mut done: Vec<CompletedPart> = futures::stream::iter(parts)
            .buffer_unordered(4)
            .try_collect()
            .await?;
        done.sort_by_key(|p| p.part_number);
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(done))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| s3e(format!("s3 CompleteMultipartUpload {}", self.uri(key)), e))?;
        Ok(())
    }
}

#[async_trait]
impl BlobStore for S3Blobs {
    async fn put(&self, key: &str, body: Vec<u8>, opts: &PutOptions) -> Result<(), StoreError> {
        if body.len() > self.multipart_threshold {
            return self.put_multipart(key, body, opts).await;
        }
        let (sse, kms) = self.sse();
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(body))
            .server_side_encryption(sse)
            .set_ssekms_key_id(kms)
            .set_acl(self.acl())
            .set_content_type(opts.content_type.clone())
            .set_content_encoding(opts.content_encoding.clone())
            .send()
            .await
            .map_err(|e| s3e(format!("s3 PutObject {}", self.uri(key)), e))?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(o) => o,
            Err(e) if e.as_service_error().is_some_and(|se| se.is_no_such_key()) => {
                return Err(StoreError::NotFound(self.uri(key)))
            }
            Err(e) => return Err(s3e(format!("s3 GetObject {}", self.uri(key)), e)),
        };
        let data = out.body.collect().await.map_err(|e| {
            StoreError::backend(format!("s3 GetObject {} (body)", self.uri(key)), e)
        })?;
        Ok(data.into_bytes().to_vec())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        let mut keys = vec![];
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|e| s3e(format!("s3 ListObjectsV2 {}", self.uri(prefix)), e))?;
            keys.extend(
                page.contents
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|o| o.key),
            );
        }
        keys.sort();
        Ok(keys)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| s3e(format!("s3 DeleteObject {}", self.uri(key)), e))?;
        Ok(())
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<(), StoreError> {
        crate::ports::require_folder(prefix)?;
        let keys = self.list(prefix).await?;
        for batch in keys.chunks(1000) {
            let objects = batch
                .iter()
                .map(|k| ObjectIdentifier::builder().key(k).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| StoreError::backend("s3 DeleteObjects request", e))?;
            let out = self
                .client
                .delete_objects()
                .bucket(&self.bucket)
                .delete(
                    Delete::builder()
                        .set_objects(Some(objects))
                        .quiet(true)
                        .build()
                        .map_err(|e| StoreError::backend("s3 DeleteObjects request", e))?,
                )
                .send()
                .await
                .map_err(|e| s3e(format!("s3 DeleteObjects {}", self.uri(prefix)), e))?;
            if let Some(err) = out.errors.unwrap_or_default().first() {
                return Err(StoreError::Invalid(format!(
                    "s3 DeleteObjects {}: {} {}",
                    self.uri(err.key().unwrap_or_default()),
                    err.code().unwrap_or_default(),
                    err.message().unwrap_or_default()
                )));
            }
        }
        Ok(())
    }

    fn uri(&self, key: &str) -> String {
        format!("s3://{}/{}", self.bucket, key)
    }
}

/// Resolves `s3:` destinations to a store rooted at the bucket, with the destination's
/// encryption (its own `kms_key_id`, else the default key, else SSE-S3) and ACL.
pub struct S3Resolver {
    client: Client,
    default_kms_key_id: Option<String>,
}

impl S3Resolver {
    pub fn new(client: Client, default_kms_key_id: Option<String>) -> Self {
        S3Resolver {
            client,
            default_kms_key_id,
        }
    }
}

/// An [`S3Resolver`] whose SDK client is built from the default chain (region, credentials,
/// `AWS_ENDPOINT_URL`) on first use: the embedded engine writes to `s3:` destinations with the
/// user's own credentials, and a flow with a local destination never loads AWS configuration.
#[derive(Default)]
pub struct LazyS3Resolver {
    inner: tokio::sync::OnceCell<S3Resolver>,
}

#[async_trait]
impl DestinationResolver for LazyS3Resolver {
    async fn resolve(&self, location: &Location) -> Result<Arc<dyn BlobStore>, StoreError> {
        let r = self
            .inner
            .get_or_init(|| async {
                let conf = super::aws::sdk_config().await;
                S3Resolver::new(super::aws::s3_client(&conf), None)
            })
            .await;
        r.resolve(location).await
    }
}

#[async_trait]
impl DestinationResolver for S3Resolver {
    async fn resolve(&self, location: &Location) -> Result<Arc<dyn BlobStore>, StoreError> {
        match location {
            Location::S3(loc) => Ok(Arc::new(
                S3Blobs::new(self.client.clone(), loc.bucket.clone())
                    .with_kms_key(loc.kms_key_id.clone().or_else(|| self.default_kms_key_id.clone()))
                    .with_bucket_owner_full_control(loc.bucket_owner_full_control),
            )),
            Location::Local { path } => Err(StoreError::Invalid(format!(
                "destination '{path}' is a local directory, which a deployed flow cannot write to; set `destination.s3: {{ bucket: ..., prefix: ... }}`"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_size_respects_s3_limits() {
        assert_eq!(part_size(6 * 1024 * 1024, 1024), MIN_PART_SIZE);
        assert_eq!(part_size(100, DEFAULT_PART_SIZE), DEFAULT_PART_SIZE);
        // 100 GB at 8 MiB would be 11,921 parts: the part grows so the count stays under 10,000.
        let len = 100_000_000_000usize;
        let p = part_size(len, DEFAULT_PART_SIZE);
        assert!(len.div_ceil(p) <= MAX_PARTS, "{} parts", len.div_ceil(p));
        assert!(p >= MIN_PART_SIZE);
    }
}
