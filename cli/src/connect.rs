//! `ferry profiles connect CONNECTOR NAME`: the vendor's OAuth consent, as AppFlow's "Connect"
//! button runs it. ferry listens on a loopback port, opens (or prints) the vendor's consent
//! page, receives the authorization code on its redirect, exchanges it (with PKCE where the
//! vendor supports it) and stores the profile: the secrets file, or Secrets Manager with
//! `--remote`. The vendor rules live in `ferry::connector::consent`.

use crate::out::{invalid_argument, CliError};
use crate::profiles;
use anyhow::{Context, Result};
use ferry::adapters::secrets_file::SecretsFile;
use ferry::connector::consent::{Consent, Pending};
use ferry::connector::registry::REGISTRY;
use ferry::ports::{Secret, SecretStore};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The redirect port registered with the vendor's app when the user does not choose one.
pub const DEFAULT_PORT: u16 = 8765;

pub struct ConnectArgs {
    pub connector: String,
    pub name: String,
    pub client_id: String,
    pub client_secret_file: Option<PathBuf>,
    pub host: Option<String>,
    pub port: u16,
    pub scopes: Vec<String>,
    pub no_browser: bool,
    pub timeout: Duration,
    /// Jira: the site the profile is for (`acme.atlassian.net`) when the token reaches several.
    pub site: Option<String>,
}

/// Where the connected profile goes.
pub enum Destination {
    Local,
    #[cfg(feature = "remote")]
    Remote(Box<dyn SecretStore>),
}

/// The client secret: a file, or `FERRY_CLIENT_SECRET` (never a command-line argument, which
/// other users of the machine can read in the process list).
fn client_secret(file: Option<&Path>) -> Result<Option<String>> {
    match file {
        Some(p) => {
            let s = std::fs::read_to_string(p).map_err(|e| {
                invalid_argument(format!("--client-secret-file {}: {e}", p.display()))
            })?;
            Ok(Some(s.trim().to_string()).filter(|s| !s.is_empty()))
        }
        None => Ok(std::env::var("FERRY_CLIENT_SECRET")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())),
    }
}

/// A Jira 3LO token reaches the sites the user granted; the API base is
/// `https://api.atlassian.com/ex/jira/<cloud id>`. One site (or the one `--site` names) becomes
/// the flow's `base_url`.
async fn jira_site(
    p: &Pending,
    secret: &Value,
    site: Option<&str>,
) -> Result<Vec<(String, Value)>> {
    let token = secret
        .get("access_token")
        .or_else(|| secret.get("token"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let sites = ferry::connector::consent::jira_sites(p, token)
        .await
        .map_err(|m| {
            CliError::new(
                "AuthFailed",
                format!("jira: cannot list the sites the token reaches ({m}); nothing was stored"),
            )
        })?;
    let chosen: Vec<&(String, String)> = sites
        .iter()
        .filter(|(_, url)| {
            site.is_none_or(|want| {
                url.trim_end_matches('/')
                    .ends_with(want.trim_end_matches('/'))
            })
        })
        .collect();
    match chosen.as_slice() {
        [(id, _)] => Ok(vec![(
            "base_url".into(),
            json!(ferry::connector::consent::jira_api_base(p, id)),
        )]),
        _ => Err(invalid_argument(format!(
            "the token reaches {} Jira site(s){}: pass --site with one of {} (nothing was stored)",
            chosen.len(),
            site.map(|s| format!(" matching '{s}'")).unwrap_or_default(),
            sites
                .iter()
                .map(|(_, u)| u.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

fn consent_for(connector: &str) -> Result<&'static Consent> {
    let with_consent = || {
        REGISTRY
            .iter()
            .filter(|c| c.consent.is_some())
            .map(|c| c.name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    match REGISTRY.get(connector) {
        None => Err(invalid_argument(format!(
            "unknown connector '{connector}'; `profiles connect` knows {}",
            with_consent()
        ))),
        Some(c) => c.consent.ok_or_else(|| {
            invalid_argument(format!(
                "the {connector} connector has no OAuth consent to run; store its credentials with `ferry profiles put NAME --file secret.json --connector {connector}` (connectors with consent: {})",
                with_consent()
            ))
        }),
    }
}

pub async fn connect(
    home: &Path,
    args: ConnectArgs,
    dest: Destination,
    json_out: bool,
) -> Result<i32> {
    ferry::flow::validate_profile_name(&args.name).map_err(invalid_argument)?;
    let consent = consent_for(&args.connector)?;
    let secret = client_secret(args.client_secret_file.as_deref())?;
    if consent.needs_client_secret && secret.is_none() {
        return Err(invalid_argument(format!(
            "{} needs the OAuth app's client secret for the code exchange: set FERRY_CLIENT_SECRET or pass --client-secret-file FILE",
            args.connector
        )));
    }
    let listener = TcpListener::bind(("127.0.0.1", args.port))
        .await
        .map_err(|e| {
            invalid_argument(format!(
                "cannot listen on 127.0.0.1:{} for the redirect ({e}); pass --port with a free port registered as the app's redirect URL",
                args.port
            ))
        })?;
    let port = listener.local_addr()?.port();
    let redirect_uri = format!("http://{}:{port}/callback", consent.redirect_host);
    let scopes = (!args.scopes.is_empty()).then_some(args.scopes.as_slice());
    let pending = consent
        .begin(args.host.as_deref(), &args.client_id, &redirect_uri, scopes)
        .map_err(invalid_argument)?;
    eprintln!(
        "Register {redirect_uri} as a redirect (callback) URL of your {} OAuth app, then open:\n\n  {}\n\nWaiting up to {}s for the consent (Ctrl-C to give up)...",
        args.connector,
        pending.authorize_url,
        args.timeout.as_secs()
    );
    if !args.no_browser {
        open_browser(&pending.authorize_url);
    }
    let code = tokio::time::timeout(args.timeout, wait_for_code(&listener, &pending))
        .await
        .map_err(|_| {
            CliError::new(
                "Timeout",
                format!(
                    "no consent arrived on {redirect_uri} within {}s; nothing was stored (open the URL above, or pass --timeout)",
                    args.timeout.as_secs()
                ),
            )
        })??;
    let value = consent
        .exchange(&pending, &code, &args.client_id, secret.as_deref())
        .await
        .map_err(|m| {
            CliError::new(
                "AuthFailed",
                format!("{}: {m}; nothing was stored", args.connector),
            )
        })?;
    profiles::check_secret(Some(&args.connector), &value).map_err(|m| {
        CliError::new(
            "AuthFailed",
            format!(
                "the vendor's answer does not make a {} profile: {m}",
                args.connector
            ),
        )
    })?;
    let properties = api_properties(&args, consent, &pending, &value).await?;
    match dest {
        Destination::Local => {
            SecretsFile::new(home.join("secrets.json"))
                .put_secret(&args.name, &Secret::new(value.clone()))
                .await?;
            profiles::remember(home, &args.name, &args.connector, properties.clone())?;
        }
        #[cfg(feature = "remote")]
        Destination::Remote(store) => {
            store
                .put_secret(&args.name, &Secret::new(value.clone()))
                .await
                .context("storing the profile in Secrets Manager")?;
        }
    }
    let kind = value
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if json_out {
        crate::out::json(&json!({
            "name": args.name,
            "connector": args.connector,
            "type": kind,
            "hosts": value.get("hosts"),
            "properties": Value::Object(properties.iter().cloned().collect()),
            "stored": true,
        }));
    } else {
        outln!(
            "connected: stored profile '{}' ({} {kind}, hosts {})",
            args.name,
            args.connector,
            value
                .get("hosts")
                .and_then(Value::as_array)
                .map(|h| h
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default()
        );
        if !properties.is_empty() {
            outln!(
                "use it in a flow with source.profile: {} and source.properties: {}",
                args.name,
                Value::Object(properties.iter().cloned().collect())
            );
        }
    }
    Ok(0)
}

/// The flow properties that point a connector at the connected account's API host, where the
/// connector cannot find it alone (a Zendesk subdomain, a ServiceNow instance, a stand-in
/// server for a fixed-host vendor). Salesforce's API host is the token's `instance_url`.
async fn api_properties(
    args: &ConnectArgs,
    consent: &Consent,
    p: &Pending,
    secret: &Value,
) -> Result<Vec<(String, Value)>> {
    use ferry::connector::registry::ApiHostProperty as A;
    let base = p.api_origin();
    let fixed = consent.api_host.is_some_and(|h| h == p.api_host);
    let connector = REGISTRY.get(&args.connector).map(|c| c.api_host_property);
    Ok(match connector.unwrap_or(A::None) {
        A::Subdomain(suffix) => match p.api_host.strip_suffix(suffix) {
            Some(sub) => vec![("subdomain".into(), json!(sub))],
            None => vec![("base_url".into(), json!(base))],
        },
        A::InstanceUrl => vec![("instance_url".into(), json!(base))],
        // Slack's Web API base includes its `/api` path.
        A::BaseUrl(path) if !fixed => vec![("base_url".into(), json!(format!("{base}{path}")))],
        // Jira's 3LO base names the site's cloud id, which only the token can tell.
        A::TokenSite => jira_site(p, secret, args.site.as_deref()).await?,
        A::BaseUrl(_) | A::None => vec![],
    })
}

/// Serve the redirect until the vendor sends the code (or its refusal) with our state.
async fn wait_for_code(listener: &TcpListener, p: &Pending) -> Result<String> {
    loop {
        let (mut stream, _) = listener.accept().await?;
        let query = match read_request_target(&mut stream).await {
            Ok(Some(q)) => q,
            Ok(None) => {
                respond(&mut stream, 404, "Not the ferry redirect.").await;
                continue;
            }
            Err(_) => continue,
        };
        let q: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        if q.get("state") != Some(&p.state) {
            // A stale tab or a forged request: not ours. Keep waiting for the real one.
            respond(
                &mut stream,
                400,
                "This consent does not belong to the running `ferry profiles connect` (state mismatch). Open the URL it printed.",
            )
            .await;
            continue;
        }
        if let Some(err) = q.get("error") {
            let said = match q.get("error_description") {
                Some(d) => format!("{err}: {d}"),
                None => err.clone(),
            };
            respond(
                &mut stream,
                200,
                &format!("ferry was not connected: {said}"),
            )
            .await;
            return Err(CliError::new(
                "AuthFailed",
                format!("the consent was refused ({said}); nothing was stored"),
            )
            .into());
        }
        match q.get("code").filter(|c| !c.is_empty()) {
            Some(code) => {
                respond(
                    &mut stream,
                    200,
                    "ferry is connected. You can close this tab and return to the terminal.",
                )
                .await;
                return Ok(code.clone());
            }
            None => {
                respond(&mut stream, 400, "The redirect carried no code.").await;
            }
        }
    }
}

/// The query of a `GET /callback?...` request; `None` for any other request.
async fn read_request_target(stream: &mut TcpStream) -> Result<Option<String>> {
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = [0u8; 2048];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .context("the browser sent no request")??;
        if n == 0 {
            anyhow::bail!("the connection closed before a request arrived");
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf)? {
            httparse::Status::Complete(_) => {
                let target = req.path.unwrap_or_default();
                let (path, query) = target.split_once('?').unwrap_or((target, ""));
                return Ok(
                    (req.method == Some("GET") && path == "/callback").then(|| query.to_string())
                );
            }
            httparse::Status::Partial if buf.len() > 64 * 1024 => {
                anyhow::bail!("request head too large")
            }
            httparse::Status::Partial => {}
        }
    }
}

async fn respond(stream: &mut TcpStream, status: u16, text: &str) {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        _ => "Not Found",
    };
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>ferry</title></head><body><p>{}</p></body></html>",
        text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
    );
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Open the consent page in the user's browser where there is one; the URL is printed anyway.
fn open_browser(url: &str) {
    let candidates: &[&str] = if cfg!(target_os = "macos") {
        &["open"]
    } else if cfg!(target_os = "windows") {
        &["explorer"]
    } else {
        &["xdg-open", "sensible-browser"]
    };
    for c in candidates {
        if std::process::Command::new(c)
            .arg(url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .is_ok()
        {
            return;
        }
    }
}
