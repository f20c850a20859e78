//! The S3 blob store against moto: put/get/list/delete, multipart, encryption, aborts.

use aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use ferry::adapters::s3::{S3Blobs, S3Resolver};
use ferry::error::StoreError;
use ferry::flow::{Location, S3Location};
use ferry::ports::{BlobStore, DestinationResolver, PutOptions};
use ferry_tests::aws::{sdk_config, unique};

async fn bucket(client: &aws_sdk_s3::Client) -> String {
    let b = unique("blobs");
    client.create_bucket().bucket(&b).send().await.unwrap();
    b
}

fn body(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[tokio::test]
async fn put_get_list_delete() {
    let conf = sdk_config().await;
    let client = ferry::adapters::aws::s3_client(&conf);
    let b = bucket(&client).await;
    let s = S3Blobs::new(client.clone(), &b);
    let opts = PutOptions {
        content_type: Some("application/json".into()),
        content_encoding: Some("gzip".into()),
    };
    s.put("a/1.json", b"one".to_vec(), &opts).await.unwrap();
    s.put("a/2.json", b"two".to_vec(), &PutOptions::default())
        .await
        .unwrap();
    s.put("b/3.json", b"three".to_vec(), &PutOptions::default())
        .await
        .unwrap();
    assert_eq!(s.get("a/1.json").await.unwrap(), b"one");
    assert!(
        matches!(s.get("a/none").await, Err(StoreError::NotFound(u)) if u == format!("s3://{b}/a/none"))
    );
    assert_eq!(s.list("a/").await.unwrap(), ["a/1.json", "a/2.json"]);
    let head = client
        .head_object()
        .bucket(&b)
        .key("a/1.json")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_type(), Some("application/json"));
    assert_eq!(head.content_encoding(), Some("gzip"));
    assert_eq!(
        head.server_side_encryption().map(|e| e.as_str()),
        Some("AES256")
    );
    s.delete("a/1.json").await.unwrap();
    assert_eq!(s.list("").await.unwrap(), ["a/2.json", "b/3.json"]);
    assert_eq!(s.uri("x/y"), format!("s3://{b}/x/y"));
}

#[tokio::test]
async fn listing_and_prefix_delete_page_past_1000_keys() {
    let conf = sdk_config().await;
    let client = ferry::adapters::aws::s3_client(&conf);
    let b = bucket(&client).await;
    let s = S3Blobs::new(client.clone(), &b);
    let mut want = vec![];
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..1105 {
        let k = format!("p/{i:05}");
        want.push(k.clone());
        let s = s.clone();
        tasks.spawn(async move { s.put(&k, vec![1], &PutOptions::default()).await });
        if tasks.len() >= 32 {
            tasks.join_next().await.unwrap().unwrap().unwrap();
        }
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap().unwrap();
    }
    s.put("q/keep", vec![1], &PutOptions::default())
        .await
        .unwrap();
    assert_eq!(s.list("p/").await.unwrap(), want);
    s.delete_prefix("p/").await.unwrap();
    assert!(s.list("p/").await.unwrap().is_empty());
    assert_eq!(s.list("").await.unwrap(), ["q/keep"]);
}

#[tokio::test]
async fn large_objects_go_up_in_parts_with_sse_kms() {
    let conf = sdk_config().await;
    let client = ferry::adapters::aws::s3_client(&conf);
    let b = bucket(&client).await;
    let s = S3Blobs::new(client.clone(), &b)
        .with_kms_key(Some("alias/ferry-test".into()))
        .with_multipart(5 * 1024 * 1024, 5 * 1024 * 1024);
    let data = body(12 * 1024 * 1024 + 17);
    s.put(
        "big.bin",
        data.clone(),
        &PutOptions {
            content_type: Some("application/octet-stream".into()),
            content_encoding: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(s.get("big.bin").await.unwrap(), data);
    let head = client
        .head_object()
        .bucket(&b)
        .key("big.bin")
        .send()
        .await
        .unwrap();
    // A multipart ETag ends with -<parts>: 12 MiB + 17 in 5 MiB parts is 3 parts.
    assert!(
        head.e_tag().unwrap().trim_matches('"').ends_with("-3"),
        "{:?}",
        head.e_tag()
    );
    assert_eq!(
        head.server_side_encryption().map(|e| e.as_str()),
        Some("aws:kms")
    );
    assert_eq!(head.ssekms_key_id(), Some("alias/ferry-test"));
    assert_eq!(head.content_type(), Some("application/octet-stream"));
    // Below the threshold: one PutObject, same encryption.
    s.put("small.bin", body(100), &PutOptions::default())
        .await
        .unwrap();
    let head = client
        .head_object()
        .bucket(&b)
        .key("small.bin")
        .send()
        .await
        .unwrap();
    assert!(!head.e_tag().unwrap().contains('-'));
    assert_eq!(head.ssekms_key_id(), Some("alias/ferry-test"));
}

/// Fails every UploadPart of part 2, the way a dropped connection would.
#[derive(Debug)]
struct FailPartTwo;

impl Intercept for FailPartTwo {
    fn name(&self) -> &'static str {
        "FailPartTwo"
    }
    fn read_before_transmit(
        &self,
        ctx: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), aws_sdk_s3::error::BoxError> {
        let uri = ctx.request().uri();
        if uri.contains("partNumber=2") && uri.contains("uploadId=") {
            return Err("injected: connection reset during part 2".into());
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_failed_part_aborts_the_upload_and_leaves_nothing() {
    let conf = sdk_config().await;
    let plain = ferry::adapters::aws::s3_client(&conf);
    let b = bucket(&plain).await;
    let failing = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&conf)
            .force_path_style(true)
            .interceptor(FailPartTwo)
            .build(),
    );
    let s = S3Blobs::new(failing, &b).with_multipart(5 * 1024 * 1024, 5 * 1024 * 1024);
    let err = s
        .put("big.bin", body(11 * 1024 * 1024), &PutOptions::default())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("UploadPart") && err.to_string().contains("part 2"),
        "{err}"
    );
    // No object, and no multipart upload left open (its parts would be billed).
    assert!(plain
        .head_object()
        .bucket(&b)
        .key("big.bin")
        .send()
        .await
        .is_err());
    let uploads = plain
        .list_multipart_uploads()
        .bucket(&b)
        .send()
        .await
        .unwrap();
    assert!(uploads.uploads().is_empty(), "{:?}", uploads.uploads());
}

#[tokio::test]
async fn resolver_roots_a_store_at_the_destination_bucket() {
    let conf = sdk_config().await;
    let client = ferry::adapters::aws::s3_client(&conf);
    let b = bucket(&client).await;
    let r = S3Resolver::new(client.clone(), Some("default-key".into()));
    let loc = |kms: Option<&str>| {
        Location::S3(S3Location {
            bucket: b.clone(),
            prefix: "raw/crm".into(),
            kms_key_id: kms.map(str::to_string),
            bucket_owner_full_control: true,
        })
    };
    // Keys already include the prefix; the flow's key wins over the default one.
    let store = r.resolve(&loc(Some("flow-key"))).await.unwrap();
    store
        .put("raw/crm/x.parquet", vec![1, 2], &PutOptions::default())
        .await
        .unwrap();
    assert_eq!(
        store.uri("raw/crm/x.parquet"),
        format!("s3://{b}/raw/crm/x.parquet")
    );
    let head = client
        .head_object()
        .bucket(&b)
        .key("raw/crm/x.parquet")
        .send()
        .await
        .unwrap();
    assert_eq!(head.ssekms_key_id(), Some("flow-key"));
    let store = r.resolve(&loc(None)).await.unwrap();
    store
        .put("raw/crm/y.parquet", vec![1], &PutOptions::default())
        .await
        .unwrap();
    let head = client
        .head_object()
        .bucket(&b)
        .key("raw/crm/y.parquet")
        .send()
        .await
        .unwrap();
    assert_eq!(head.ssekms_key_id(), Some("default-key"));
    let err = r
        .resolve(&Location::Local { path: "out".into() })
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("destination.s3"), "{err}");
}
