//! The ga4 connector's flow properties: parsed, checked, with their defaults.

use super::*;

pub const DEFAULT_BASE_URL: &str = "https://analyticsdata.googleapis.com";
/// The Data API's largest `limit`.
pub const MAX_LIMIT: u32 = 250_000;
pub(super) const DEFAULT_LIMIT: u32 = 100_000;
/// GA4's earliest date (`dateRanges` before it are refused).
pub const EARLIEST: &str = "2015-08-14";
/// Per request: at most 9 dimensions and 10 metrics.
pub(super) const MAX_DIMENSIONS: usize = 9;
pub(super) const MAX_METRICS: usize = 10;
/// One report: the entity a flow reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSpec {
    pub dimensions: Vec<String>,
    pub metrics: Vec<String>,
    /// Rows whose metrics are all zero too (GA4 leaves them out by default).
    #[serde(default)]
    pub keep_empty_rows: bool,
    /// A Data API `FilterExpression`, passed as `dimensionFilter`.
    #[serde(default)]
    pub dimension_filter: Option<Value>,
}

/// `source.properties` of a `ga4` flow.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ga4Config {
    pub property_id: String,
    #[serde(default = "default_base")]
    pub base_url: String,
    pub reports: BTreeMap<String, ReportSpec>,
    #[serde(default)]
    pub page_size: Option<u32>,
    #[serde(default)]
    pub http: HttpSettings,
}

pub(super) fn default_base() -> String {
    DEFAULT_BASE_URL.into()
}

impl Ga4Config {
    pub fn parse(props: &Map<String, Value>) -> Result<Self, SourceError> {
        let c: Ga4Config = parse_properties(
            props,
            Some("ga4 takes property_id, reports, base_url, page_size, http"),
        )?;
        c.check()?;
        Ok(c)
    }

    pub(super) fn check(&self) -> Result<(), SourceError> {
        if self.property_id.is_empty() || !self.property_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SourceError::config(
                "source.properties.property_id",
                format!("'{}' is not a GA4 property id: give the number only (Admin > Property details), e.g. \"123456789\", not G-XXXX or properties/…", self.property_id),
            ));
        }
        super::http_url(
            "source.properties.base_url",
            &self.base_url,
            &format!("leave it out for {DEFAULT_BASE_URL}"),
        )?;
        if self.reports.is_empty() {
            return Err(SourceError::config(
                "source.properties.reports",
                "name at least one report: reports: { traffic: { dimensions: [date, country], metrics: [sessions] } }",
            ));
        }
        for (name, r) in &self.reports {
            let at = format!("source.properties.reports.{name}");
            if r.metrics.is_empty() || r.metrics.len() > MAX_METRICS {
                return Err(SourceError::config(
                    format!("{at}.metrics"),
                    format!("list 1 to {MAX_METRICS} metrics (a Data API request takes at most {MAX_METRICS})"),
                ));
            }
            if r.dimensions.len() > MAX_DIMENSIONS {
                return Err(SourceError::config(
                    format!("{at}.dimensions"),
                    format!("at most {MAX_DIMENSIONS} dimensions per report"),
                ));
            }
            let mut all: Vec<&String> = r.dimensions.iter().chain(&r.metrics).collect();
            for (i, n) in r.dimensions.iter().enumerate() {
                if n.is_empty() || n.contains(',') {
                    return Err(SourceError::config(
                        format!("{at}.dimensions[{i}]"),
                        format!("'{n}' is not a dimension name"),
                    ));
                }
            }
            all.sort();
            if let Some(w) = all.windows(2).find(|w| w[0] == w[1]) {
                return Err(SourceError::config(
                    at,
                    format!("'{}' is named twice (columns must be unique)", w[0]),
                ));
            }
        }
        if let Some(p) = self.page_size {
            if p == 0 || p > MAX_LIMIT {
                return Err(SourceError::config(
                    "source.properties.page_size",
                    format!("must be between 1 and {MAX_LIMIT}"),
                ));
            }
        }
        self.http.validate("source.properties.http")
    }

    pub(super) fn report(&self, entity: &str) -> Result<&ReportSpec, SourceError> {
        self.reports.get(entity).ok_or_else(|| {
            SourceError::config(
                "source.entity",
                format!(
                    "'{entity}' is not a report of source.properties.reports; use one of: {}",
                    self.reports.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            )
        })
    }
}

pub(crate) fn validate(entity: &str, props: &Map<String, Value>) -> Vec<crate::flow::FieldError> {
    let r = Ga4Config::parse(props).and_then(|c| {
        if entity.is_empty() {
            Ok(())
        } else {
            c.report(entity).map(|_| ())
        }
    });
    match r {
        Ok(()) => vec![],
        Err(SourceError::Config { field, message }) => {
            vec![crate::flow::FieldError::new(field, message)]
        }
        Err(e) => vec![crate::flow::FieldError::new(
            "source.properties",
            e.to_string(),
        )],
    }
}
