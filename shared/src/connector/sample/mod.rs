//! The `sample` connector: deterministic synthetic CRM data, paged through the same [`Source`]
//! trait as every real connector and honouring the incremental window.
//!
//! Data model: an entity holds `records` records (property, default 10,000). Record `j`
//! (0-based) was last updated at `as_of - 90 days + j * step`, `step = 90 days / records`, where
//! `as_of` is the end of the run's window (or of the window being read when no run says; or the
//! `as_of` property, to pin the data set), so every slice of a run reads the same data set.
//! Records are served in `updated_at` order, `page_size` per page; the cursor is the next
//! index. A window `(start, end]` maps to a contiguous index range, so an incremental run reads
//! exactly the records updated in its window and no page is wasted. Every other field is a pure
//! function of the record's index, so two runs see the same values.

use super::*;
use chrono::{DateTime, Duration as ChronoDuration, NaiveDate, Utc};
use serde_json::{json, Value};

mod config;
mod source;
mod types;
use config::*;
pub use source::*;
use types::*;

/// The `sample` connector in the [registry](super::registry).
pub static CONNECTOR: super::registry::Connector = super::registry::Connector {
    name: "sample",
    appflow_type: None,
    needs_profile: false,
    oauth_client_auth: super::auth::ClientAuth::Basic,
    auth_kinds: &[],
    consent: None,
    static_description: false,
    last_modified: &[("*", "updated_at")],
    example_host: "",
    probe_entity: None,
    account_properties: None,
    api_host_property: super::registry::ApiHostProperty::None,
    validate,
    build: |source, _profile| Ok(Box::new(SampleSource::from_properties(&source.properties)?)),
};

#[cfg(test)]
mod tests {
    use super::*;

    fn src(n: u64) -> SampleSource {
        let mut p = serde_json::Map::new();
        p.insert("records".into(), json!(n));
        SampleSource::from_properties(&p).unwrap()
    }

    async fn read_all(s: &SampleSource, req: &ReadRequest) -> Vec<Value> {
        let mut out = vec![];
        let mut cursor = None;
        loop {
            let p = s.read_page(req, cursor.as_ref()).await.unwrap();
            out.extend(p.records);
            match p.next {
                Some(c) => cursor = Some(c),
                None => return out,
            }
        }
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[tokio::test]
    async fn complete_read_pages_every_record_once() {
        let s = src(2_500);
        let req = ReadRequest {
            entity: "accounts".into(),
            window: None,
            incremental_field: None,
            page_size: Some(1000),
            filters: vec![],
        };
        let all = read_all(&s, &req).await;
        assert_eq!(all.len(), 2_500);
        let ids: std::collections::BTreeSet<_> = all
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(ids.len(), 2_500);
    }

    #[tokio::test]
    async fn window_reads_exactly_the_records_inside_it() {
        let s = src(10_000);
        let end = t("2026-06-01T00:00:00Z");
        for start in [
            None,
            Some(end - ChronoDuration::days(1)),
            Some(end - ChronoDuration::hours(5)),
            Some(end - ChronoDuration::days(100)),
        ] {
            let w = Window { start, end };
            let req = ReadRequest {
                entity: "contacts".into(),
                window: Some(w),
                incremental_field: Some("updated_at".into()),
                page_size: Some(333),
                filters: vec![],
            };
            let got = read_all(&s, &req).await;
            let expected = (0..10_000)
                .filter(|j| w.contains(s.updated_at(*j, end)))
                .count();
            assert_eq!(got.len(), expected, "window {w:?}");
            for r in &got {
                assert!(w.contains(t(r["updated_at"].as_str().unwrap())), "{r}");
            }
        }
    }

    #[tokio::test]
    async fn values_are_deterministic_and_typed() {
        let s = src(100);
        let req = ReadRequest {
            entity: "accounts".into(),
            window: None,
            incremental_field: None,
            page_size: None,
            filters: vec![],
        };
        let a = read_all(&s, &req).await;
        let b = read_all(&s, &req).await;
        assert_eq!(a, b);
        assert!(a[0]["employees"].is_u64());
        assert!(a[0]["address"]["city"].is_string());
        assert!(a.iter().any(|r| r["internal_notes"].is_null()));
    }

    #[test]
    fn properties_are_checked() {
        let mut p = serde_json::Map::new();
        p.insert("recrods".into(), json!(5));
        assert!(
            matches!(SampleSource::from_properties(&p), Err(SourceError::Config { field, .. }) if field == "source.properties.recrods")
        );
    }
}
