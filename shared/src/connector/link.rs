//! `Link` response headers (RFC 8288, Web Linking), as every connector that pages by them reads
//! them: the `rest` connector's `link_header` paginator and ServiceNow's Table API.
//!
//! The grammar (RFC 8288 §3) is `Link = #link-value`, `link-value = "<" URI-Reference ">"
//! *( OWS ";" OWS link-param )`, `link-param = token BWS [ "=" BWS ( token / quoted-string ) ]`.
//! A comma inside `<…>` or inside a quoted string does not separate link values: a ServiceNow
//! instance echoes `sysparm_fields=number,short_description` with raw commas inside its URLs,
//! which a split on `,` would cut in two (and silently lose every page after the first). The
//! parsing itself is the `nom-rfc8288` crate (a nom grammar of RFC 8288, also used by Servo);
//! this module adds what ferry needs on top:
//!
//! - several `Link` field lines are one list (RFC 9110 §5.3);
//! - relation types are a space-separated list compared case-insensitively (RFC 8288 §2.1.1,
//!   §3.3); parameter names are case-insensitive too;
//! - a link value without a `rel` (RFC 8288 §3.3: "The rel parameter MUST be present"), or a
//!   header that does not parse, is an error — never "no next page", which would end a read
//!   early and let the watermark move past records that were never read;
//! - targets are resolved against the URL of the request that got the header (RFC 8288 §3.1).
//!
//! Error messages never quote the header: its URLs echo the request's query, which can hold an
//! API key.

use super::SourceError;
use reqwest::header::{HeaderMap, LINK};

/// One link: its target (absolute) and relation types (lower-case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub target: String,
    pub rels: Vec<String>,
}

/// What the `Link` header of a response says about the relation asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkTarget {
    /// The response has no `Link` header at all.
    NoHeader,
    /// A well-formed `Link` header without that relation (for `next`: the last page).
    Absent,
    /// The target of the first link with that relation.
    Found(String),
}

/// Every link of a response's `Link` header lines; `Ok(None)` when it has none. `base` is the
/// URL the response came from (targets are resolved against it); `shown` is that URL as it may
/// appear in a message (secrets redacted).
pub fn parse(
    headers: &HeaderMap,
    base: &str,
    shown: &str,
) -> Result<Option<Vec<Link>>, SourceError> {
    let lines: Vec<_> = headers.get_all(LINK).iter().collect();
    if lines.is_empty() {
        return Ok(None);
    }
    let bad = |why: &str| {
        SourceError::Rejected {
        message: format!(
            "{shown}: the response's Link header is not valid RFC 8288 ({why}); ferry cannot tell whether more pages follow, so it stops instead of treating the page as the last"
        ),
    }
    };
    let base = url::Url::parse(base).map_err(|_| bad("the request URL does not parse"))?;
    let mut out = vec![];
    for line in lines {
        let text = line
            .to_str()
            .map_err(|_| bad("it holds bytes that are not visible ASCII"))?
            .trim();
        if text.is_empty() {
            continue;
        }
        let values =
            nom_rfc8288::complete::link_lenient::<nom_language::error::VerboseError<&str>>(text)
                .map_err(|_| bad("expected `<URI>; rel=\"…\"` entries separated by commas"))?;
        // Empty list elements (`a, , b`) are allowed by the list rule and carry nothing.
        for v in values.into_iter().flatten() {
            let rel = v
                .params
                .iter()
                .find(|p| p.key.eq_ignore_ascii_case("rel"))
                .and_then(|p| p.val.as_deref())
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .ok_or_else(|| bad("a link has no rel parameter, which RFC 8288 §3.3 requires"))?;
            let target = base
                .join(v.url.trim())
                .map_err(|_| bad("a link target is not a URI reference"))?;
            out.push(Link {
                target: target.to_string(),
                rels: rel
                    .split_ascii_whitespace()
                    .map(str::to_ascii_lowercase)
                    .collect(),
            });
        }
    }
    Ok(Some(out))
}

/// The target of the first link whose relation types include `rel` (case-insensitive).
pub fn target(
    headers: &HeaderMap,
    rel: &str,
    base: &str,
    shown: &str,
) -> Result<LinkTarget, SourceError> {
    let Some(links) = parse(headers, base, shown)? else {
        return Ok(LinkTarget::NoHeader);
    };
    let rel = rel.to_ascii_lowercase();
    Ok(links
        .into_iter()
        .find(|l| l.rels.contains(&rel))
        .map(|l| LinkTarget::Found(l.target))
        .unwrap_or(LinkTarget::Absent))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(lines: &[&str]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for l in lines {
            m.append(LINK, l.parse().unwrap());
        }
        m
    }

    fn next(lines: &[&str]) -> Result<LinkTarget, SourceError> {
        target(
            &h(lines),
            "next",
            "https://acme.service-now.com/api/now/table/incident?x=1",
            "u",
        )
    }

    #[test]
    fn commas_inside_urls_do_not_split_link_values() {
        // A ServiceNow instance echoes sysparm_fields with raw commas.
        let v = "<https://acme.service-now.com/api/now/table/incident?sysparm_fields=number,short_description,sys_id&sysparm_offset=0&sysparm_limit=10>;rel=\"first\",\
                 <https://acme.service-now.com/api/now/table/incident?sysparm_fields=number,short_description,sys_id&sysparm_offset=10&sysparm_limit=10>;rel=\"next\",\
                 <https://acme.service-now.com/api/now/table/incident?sysparm_fields=number,short_description,sys_id&sysparm_offset=90&sysparm_limit=10>;rel=\"last\"";
        assert_eq!(
            next(&[v]).unwrap(),
            LinkTarget::Found("https://acme.service-now.com/api/now/table/incident?sysparm_fields=number,short_description,sys_id&sysparm_offset=10&sysparm_limit=10".into())
        );
    }

    #[test]
    fn quoted_strings_relative_targets_case_and_several_lines() {
        let v = r#"</x?page=1>; rel="prev"; title="page 1, the first", </x?page=3>; title="a;b,c"; REL="Next last""#;
        assert_eq!(
            next(&[v]).unwrap(),
            LinkTarget::Found("https://acme.service-now.com/x?page=3".into())
        );
        assert_eq!(
            target(&h(&[v]), "LAST", "https://a.example/y", "u").unwrap(),
            LinkTarget::Found("https://a.example/x?page=3".into())
        );
        // Two field lines are one list; unquoted tokens work too.
        assert_eq!(
            next(&["</a>; rel=prev", "</b>;rel=next"]).unwrap(),
            LinkTarget::Found("https://acme.service-now.com/b".into())
        );
        assert_eq!(next(&["</a>; rel=prev"]).unwrap(), LinkTarget::Absent);
        assert_eq!(next(&[]).unwrap(), LinkTarget::NoHeader);
    }

    #[test]
    fn a_link_without_rel_or_a_broken_header_is_an_error_not_the_last_page() {
        for bad in [
            "</a?api_key=s3cret>; title=\"no rel\"",
            "https://no-brackets/?page=2; rel=next",
            "</a>; rel=\"unclosed",
            "</a>; rel=",
        ] {
            let e = next(&[bad]).unwrap_err();
            assert_eq!(e.kind(), crate::error::ErrorKind::SourceRejected, "{bad}");
            assert!(!e.to_string().contains("s3cret"), "{e}");
            assert!(e.to_string().contains("RFC 8288"), "{e}");
        }
    }
}
