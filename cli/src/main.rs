//! `ferry`: validate and run flows on the embedded engine, inspect flows and runs.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

#[macro_use]
mod out;
mod backfill;
mod catalog;
mod connect;
mod import_appflow;
mod profiles;
#[cfg(feature = "remote")]
mod remote;
mod remote_args;
mod validate;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use ferry::connector::ConnectorContext;
use ferry::flow::Flow;
use ferry::local::{self, asl::Observer, Engine};
use ferry::model::{PullMode, RunRecord, RunStatus, TriggerType};
use ferry::ports::{FlowStore, RunStore};
use ferry::steps::start_run::RunRequest;
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use out::{not_found, CliError};
use serde_json::{json, Value};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "ferry",
    version,
    about = "Move SaaS data into S3 as Parquet, CSV or JSON lines",
    after_help = "Remote mode: `run`, `flows`, `runs` and `stop` also work against a deployed stack \
                  (`--remote` or FERRY_REMOTE=true); their `--help` lists its settings."
)]
struct Cli {
    /// State directory of the embedded engine (SQLite store, staging, secrets, event log).
    #[arg(long, env = "FERRY_HOME", global = true, value_name = "DIR")]
    home: Option<PathBuf>,
    /// Print JSON on stdout (the schemas are in the README); a failure prints
    /// {"error": {"name", "message", "problems"}} and exits non-zero.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Check a flow file: every problem at once, with its line, field and fix; then what only the
    /// source can tell (entity, fields, types, credentials) unless --offline.
    Validate {
        /// The flow file (YAML or JSON).
        file: PathBuf,
        /// Skip the checks against the source (no profile, no network).
        #[arg(long)]
        offline: bool,
    },
    /// Run a flow (a file, validated and registered first, or a registered flow's name).
    Run {
        /// A flow file (YAML or JSON) or the name of a registered flow.
        flow: String,
        /// Reread everything, whatever the watermark (the watermark does not move).
        #[arg(long, conflicts_with_all = ["from", "to"])]
        complete: bool,
        /// Backfill from this time (exclusive): RFC 3339, a date `2026-11-01`, or
        /// `2026-11-01T10:00` in the flow's time zone. Alone, the backfill reads up to now. The
        /// watermark does not move.
        #[arg(long, value_name = "TIME")]
        from: Option<String>,
        /// Backfill up to this time (inclusive); needs --from. Same forms as --from.
        #[arg(long, value_name = "TIME", requires = "from")]
        to: Option<String>,
        #[command(flatten)]
        remote: remote_args::RemoteArgs,
    },
    /// Stop a run: locally, the `ferry run` process running it ends it as Canceled (or, if that
    /// process is gone, it is ended here); with --remote, StopExecution, and the run ends
    /// Canceled through the failure path.
    Stop {
        /// The run id (the execution name).
        run_id: String,
        #[command(flatten)]
        remote: remote_args::RemoteArgs,
    },
    /// Flow definitions.
    Flows {
        #[command(subcommand)]
        cmd: FlowsCmd,
        #[command(flatten)]
        remote: remote_args::RemoteArgs,
    },
    /// Run history.
    Runs {
        #[command(subcommand)]
        cmd: RunsCmd,
        #[command(flatten)]
        remote: remote_args::RemoteArgs,
    },
    /// Connector profiles (credentials) of the embedded engine.
    Profiles {
        #[command(subcommand)]
        cmd: ProfilesCmd,
    },
    /// The data catalog table of a flow with `destination.catalog` (the embedded engine's
    /// catalog under FERRY_HOME; deployed, the Glue Data Catalog is kept by the functions).
    Catalog {
        #[command(subcommand)]
        cmd: CatalogCmd,
    },
    /// Run SQL over a flow's committed output with the DuckDB command line (`duckdb` on PATH or
    /// FERRY_DUCKDB): a view named after the flow's table over the files its manifests list.
    Query {
        /// A registered flow's name.
        flow: String,
        /// The SQL, e.g. "SELECT count(*) FROM crm_accounts".
        sql: String,
    },
    /// What a connector offers: entities, or one entity's fields.
    Entities {
        /// A flow file or registered flow whose source to ask.
        flow: String,
        /// Describe this entity's fields instead of listing entities.
        #[arg(long, value_name = "ENTITY")]
        describe: Option<String>,
    },
}

#[derive(Subcommand)]
pub(crate) enum FlowsCmd {
    /// Registered flows, with their version, status, trigger and watermark.
    List,
    /// A flow's definition (latest version, or --version).
    Get {
        /// The flow's name.
        name: String,
        /// This version instead of the latest.
        #[arg(long)]
        version: Option<u32>,
    },
    /// Validate and register a flow file (a changed definition becomes a new version).
    Put {
        /// The flow file (YAML or JSON).
        file: PathBuf,
    },
    /// Delete a flow, its versions and its state (its output and run history are kept).
    Delete {
        /// The flow's name.
        name: String,
    },
    /// Translate an AppFlow flow (CreateFlow/DescribeFlow JSON, or a CloudFormation template
    /// with an AWS::AppFlow::Flow, JSON or YAML) into a ferry flow; lists what cannot be
    /// translated (exit code 2).
    ImportAppflow {
        /// The AppFlow definition or CloudFormation template.
        file: PathBuf,
        /// Write the flow here instead of printing it.
        #[arg(short, long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Write the flow even if parts could not be translated (noted as comments).
        #[arg(long)]
        partial: bool,
        /// A value a CloudFormation `Ref`/`Fn::Sub`/`Fn::GetAtt` stands for (a parameter, a
        /// resource, `AWS::Region`, `Resource.Attribute`), e.g. `--set Env=prod`.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
}

#[derive(Subcommand)]
pub(crate) enum RunsCmd {
    /// A flow's runs, newest first: status, mode, start, duration, records and bytes written.
    List {
        /// The flow's name.
        flow: String,
        /// At most this many runs.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// One run's record.
    Get {
        /// The run id.
        run_id: String,
    },
}

#[derive(Subcommand)]
enum CatalogCmd {
    /// Print the flow's table: location, format, columns, partition keys, partitions.
    Show {
        /// A registered flow's name.
        flow: String,
    },
    /// Rebuild the flow's table and partitions from its committed runs' manifests (after a
    /// catalog failure, or a table dropped by hand).
    Sync {
        /// A registered flow's name.
        flow: String,
    },
}

#[derive(Subcommand)]
enum ProfilesCmd {
    /// Store a profile's credentials from a JSON file, checked for the connector's shape.
    Put {
        /// The profile name (letters, digits, `_`, `-`, `.`, `@`).
        name: String,
        /// The JSON secret, e.g. {"type": "bearer", "token": "..."} (see docs/connectors/).
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// The connector the profile is for: its secret shape is checked, and `profiles test`
        /// knows what to call.
        #[arg(long)]
        connector: Option<String>,
        /// A host the profile's credentials may go to, e.g. `acme.zendesk.com` or
        /// `*.zendesk.com` (repeatable; added to the secret's "hosts"). A request to any other
        /// host is refused.
        #[arg(long = "host", value_name = "HOST")]
        hosts: Vec<String>,
        /// A connector property `profiles test` needs, e.g. `subdomain=acme` (repeatable).
        #[arg(long = "property", value_name = "KEY=VALUE")]
        properties: Vec<String>,
    },
    /// Bind a stored profile to the hosts its credentials may go to (a profile stored before
    /// profiles had to name them is refused until it does).
    Migrate {
        /// The profile name.
        name: String,
        /// A host, e.g. `acme.zendesk.com` or `*.zendesk.com` (repeatable).
        #[arg(long = "host", value_name = "HOST", required = true)]
        hosts: Vec<String>,
    },
    /// Stored profiles: name, connector, auth type and hosts (never a secret value).
    List,
    /// One cheap authenticated call through the connector; the vendor's error on failure.
    Test {
        /// The profile name.
        name: String,
        /// The connector (default: the one given to `profiles put`).
        #[arg(long)]
        connector: Option<String>,
        /// Use this flow's connector, entity and properties (a file or a registered flow).
        #[arg(long, value_name = "FLOW")]
        flow: Option<String>,
        /// A connector property, e.g. `subdomain=acme` (repeatable).
        #[arg(long = "property", value_name = "KEY=VALUE")]
        properties: Vec<String>,
    },
    /// Delete a stored profile.
    Delete {
        /// The profile name.
        name: String,
    },
    /// Connect an account by the vendor's OAuth consent (authorization code with PKCE) and
    /// store the profile: salesforce, hubspot, zendesk, servicenow, slack, ga4, jira.
    Connect {
        /// The connector: salesforce, hubspot, zendesk, servicenow, slack, ga4 or jira.
        connector: String,
        /// The profile name (letters, digits, `_`, `-`, `.`, `@`).
        name: String,
        /// The OAuth app's client id (Salesforce: consumer key).
        #[arg(long, env = "FERRY_CLIENT_ID")]
        client_id: String,
        /// A file holding the OAuth app's client secret (default: the FERRY_CLIENT_SECRET
        /// environment variable; not needed for a PKCE public client).
        #[arg(long, value_name = "FILE")]
        client_secret_file: Option<PathBuf>,
        /// The account's login host: acme.zendesk.com, acme.service-now.com,
        /// test.salesforce.com (sandbox) or a My Domain; a test server for fixed-host vendors.
        #[arg(long)]
        host: Option<String>,
        /// The loopback port of the redirect URL registered with the app
        /// (http://localhost:PORT/callback, or 127.0.0.1 where the vendor says so).
        #[arg(long, default_value_t = connect::DEFAULT_PORT)]
        port: u16,
        /// Scopes instead of the connector's read-only default (repeatable).
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
        /// Print the consent URL without opening a browser.
        #[arg(long)]
        no_browser: bool,
        /// Jira: the site (e.g. acme.atlassian.net) when the consent grants several.
        #[arg(long)]
        site: Option<String>,
        /// Seconds to wait for the consent.
        #[arg(long, default_value_t = 300, value_name = "SECONDS")]
        timeout: u64,
        /// Store the profile in the deployed stack's Secrets Manager instead of the local
        /// secrets file.
        #[arg(long)]
        remote: bool,
        /// The stack the secret is for: tagged `ferry:stack=<name>` so its functions may read
        /// it (with --remote).
        #[arg(long, env = "FERRY_STACK_NAME", value_name = "STACK")]
        stack_name: Option<String>,
        /// Secret name prefix (with --remote).
        #[arg(
            long,
            env = "FERRY_SECRET_PREFIX",
            default_value = "ferry/profiles/",
            value_name = "PREFIX"
        )]
        secret_prefix: String,
    },
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let json_flag = std::env::args().any(|a| a == "--json");
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if json_flag && e.use_stderr() => {
            let msg = e.render().to_string();
            out::json(
                &json!({ "error": { "name": "InvalidArgument", "message": msg.trim(), "problems": [] } }),
            );
            std::process::exit(2);
        }
        Err(e) => e.exit(),
    };
    let json_out = cli.json;
    match real_main(cli).await {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            if json_out {
                out::json(&out::error_json(&e));
            } else {
                eprintln!("error: {e:#}");
            }
            std::process::exit(1);
        }
    }
}

fn looks_like_file(s: &str) -> bool {
    s.ends_with(".yaml") || s.ends_with(".yml") || s.ends_with(".json") || Path::new(s).is_file()
}

/// The connector context of the embedded engine: the local secrets file, read only.
fn local_ctx(home: &Path) -> ConnectorContext {
    ConnectorContext {
        secrets: Arc::new(ferry::adapters::secrets_file::SecretsFile::new(
            home.join("secrets.json"),
        )),
    }
}

/// Validate a parsed flow against its source; an error lists every problem.
async fn check_against_source(
    flow: &Flow,
    text: Option<&str>,
    origin: &str,
    ctx: &ConnectorContext,
) -> Result<ferry::connector::check::SourceCheck> {
    let (problems, check) = validate::source_problems(flow, text, ctx).await;
    if problems.is_empty() {
        Ok(check)
    } else {
        Err(CliError::invalid_flow(
            format!(
                "{origin}: {} problem(s) found against the {} source (nothing was registered or run)",
                problems.len(),
                flow.source.connector
            ),
            problems,
        )
        .into())
    }
}

async fn real_main(cli: Cli) -> Result<i32> {
    let home = cli.home.clone().unwrap_or_else(local::ferry_home);
    let json_out = cli.json;
    match cli.cmd {
        Cmd::Validate { file, offline } => {
            return validate_command(&home, &file, offline, json_out).await
        }
        Cmd::Flows {
            cmd:
                FlowsCmd::ImportAppflow {
                    file,
                    out,
                    partial,
                    set,
                },
            ..
        } => return import_appflow::run(&file, out.as_deref(), partial, &set, json_out),
        Cmd::Profiles { cmd } => {
            return match cmd {
                ProfilesCmd::Put {
                    name,
                    file,
                    connector,
                    hosts,
                    properties,
                } => {
                    let props = parse_properties(&properties)?;
                    profiles::put(
                        &home,
                        &name,
                        &file,
                        connector.as_deref(),
                        &hosts,
                        props,
                        json_out,
                    )
                    .await
                }
                ProfilesCmd::Migrate { name, hosts } => {
                    profiles::migrate(&home, &name, &hosts, json_out).await
                }
                ProfilesCmd::List => profiles::list(&home, json_out).await,
                ProfilesCmd::Connect {
                    connector,
                    name,
                    client_id,
                    client_secret_file,
                    host,
                    port,
                    scopes,
                    no_browser,
                    site,
                    timeout,
                    remote,
                    stack_name,
                    secret_prefix,
                } => {
                    let dest = connect_destination(remote, stack_name, secret_prefix).await?;
                    let args = connect::ConnectArgs {
                        connector,
                        name,
                        client_id,
                        client_secret_file,
                        host,
                        port,
                        scopes,
                        no_browser,
                        timeout: Duration::from_secs(timeout),
                        site,
                    };
                    connect::connect(&home, args, dest, json_out).await
                }
                ProfilesCmd::Delete { name } => profiles::delete(&home, &name, json_out).await,
                ProfilesCmd::Test {
                    name,
                    connector,
                    flow,
                    properties,
                } => {
                    let props = parse_properties(&properties)?;
                    let flow = match flow {
                        None => None,
                        Some(f) if looks_like_file(&f) => {
                            Some(validate::read_flow(Path::new(&f))?.0)
                        }
                        Some(f) => Some(registered(&home, &f).await?),
                    };
                    profiles::test(&home, &name, connector, flow, props, json_out).await
                }
            };
        }
        _ => {}
    }
    let remote_args = match &cli.cmd {
        Cmd::Run { remote, .. }
        | Cmd::Stop { remote, .. }
        | Cmd::Flows { remote, .. }
        | Cmd::Runs { remote, .. } => Some(remote.clone()),
        _ => None,
    };
    #[cfg(feature = "remote")]
    if let Some(args) = remote_args.filter(|r| r.remote) {
        let r = remote::Remote::new(args, json_out).await;
        return match cli.cmd {
            Cmd::Flows { cmd, .. } => r.flows(cmd).await,
            Cmd::Runs { cmd, .. } => r.runs(cmd).await,
            Cmd::Stop { run_id, .. } => r.stop(&run_id).await,
            Cmd::Run {
                flow,
                complete,
                from,
                to,
                ..
            } => {
                if looks_like_file(&flow) {
                    return Err(out::invalid_argument(format!("with --remote, run a registered flow by name; register the file first with `ferry flows put {flow} --remote`")));
                }
                r.run(flow, complete, from.as_deref(), to.as_deref()).await
            }
            _ => unreachable!("only commands with a remote mode get here"),
        };
    }
    #[cfg(not(feature = "remote"))]
    if remote_args.is_some_and(|r| r.remote) {
        return Err(out::invalid_argument(NO_REMOTE.to_string()));
    }
    match cli.cmd {
        Cmd::Stop { run_id, .. } => {
            let deps = open_deps(&home)?;
            stop_local(&deps, &run_id, json_out).await
        }
        Cmd::Run {
            flow,
            complete,
            from,
            to,
            ..
        } => {
            run_command(
                &home,
                &flow,
                complete,
                from.as_deref(),
                to.as_deref(),
                json_out,
            )
            .await
        }
        Cmd::Flows { cmd, .. } => {
            let deps = open_deps(&home)?;
            flows_command(deps.flows.as_ref(), deps.runs.as_ref(), cmd, json_out, "").await
        }
        Cmd::Runs { cmd, .. } => {
            let deps = open_deps(&home)?;
            runs_command(deps.flows.as_ref(), deps.runs.as_ref(), cmd, "", json_out).await
        }
        Cmd::Catalog { cmd } => {
            let deps = open_deps(&home)?;
            match cmd {
                CatalogCmd::Show { flow } => {
                    let f = registered(&home, &flow).await?;
                    catalog::show(&deps, &f, json_out).await
                }
                CatalogCmd::Sync { flow } => {
                    let f = registered(&home, &flow).await?;
                    catalog::sync(&deps, &f, json_out).await
                }
            }
        }
        Cmd::Query { flow, sql } => {
            let deps = open_deps(&home)?;
            let f = registered(&home, &flow).await?;
            catalog::query(&deps, &f, &sql).await
        }
        Cmd::Entities { flow, describe } => {
            let f = if looks_like_file(&flow) {
                validate::read_flow(Path::new(&flow))?.0
            } else {
                registered(&home, &flow).await?
            };
            let source = ferry::connector::build(&f.source, &local_ctx(&home)).await?;
            match describe {
                None => {
                    let list = source.list_entities().await?;
                    if json_out {
                        out::json(&json!(list
                            .iter()
                            .map(|e| json!({ "name": e.name, "label": e.label, "description": e.description }))
                            .collect::<Vec<_>>()));
                    }
                    for e in list.iter().filter(|_| !json_out) {
                        outln!(
                            "{:<24} {}",
                            e.name,
                            e.description.clone().unwrap_or_default()
                        );
                    }
                }
                Some(entity) => {
                    // A connector that describes from its own tables answers without a
                    // request: try the profile with its entity listing first, so a wrong
                    // credential is not met with a field list.
                    let static_description = ferry::connector::registry::REGISTRY
                        .get(&f.source.connector)
                        .is_some_and(|c| c.static_description);
                    if static_description && f.source.profile.is_some() {
                        source.list_entities().await?;
                    }
                    let d = source.describe(&entity).await?;
                    if json_out {
                        out::json(&json!({ "entity": d.entity, "fields": d.fields }));
                    } else {
                        outln!("{}", serde_json::to_string_pretty(&d.fields)?);
                    }
                }
            }
            Ok(0)
        }
        Cmd::Validate { .. } | Cmd::Profiles { .. } => {
            unreachable!("handled above")
        }
    }
}

/// Where `profiles connect` stores the profile.
async fn connect_destination(
    remote: bool,
    stack_name: Option<String>,
    secret_prefix: String,
) -> Result<connect::Destination> {
    if !remote {
        return Ok(connect::Destination::Local);
    }
    #[cfg(feature = "remote")]
    {
        let stack = stack_name.ok_or_else(|| {
            out::invalid_argument(
                "--remote needs the stack the profile is for: pass --stack-name or set FERRY_STACK_NAME (its functions read only secrets tagged with their stack)",
            )
        })?;
        let conf = ferry::adapters::aws::sdk_config().await;
        let store =
            ferry::adapters::secretsmanager::SecretsManagerStore::from_config(&conf, secret_prefix)
                .with_stack_tag(Some(stack));
        Ok(connect::Destination::Remote(Box::new(store)))
    }
    #[cfg(not(feature = "remote"))]
    {
        let _ = (stack_name, secret_prefix);
        Err(out::invalid_argument(NO_REMOTE))
    }
}

fn parse_properties(list: &[String]) -> Result<Vec<(String, Value)>> {
    list.iter()
        .map(|p| profiles::parse_property(p).map_err(out::invalid_argument))
        .collect()
}

/// What `--remote` (and an `s3:` destination on the embedded engine) says in a build without
/// the `remote` feature.
#[cfg(not(feature = "remote"))]
const NO_REMOTE: &str = "this ferry was built without AWS support (remote mode and s3: destinations); \
    build it with `cargo install --path cli --features remote` (or `cargo run --release --features remote -- ...`)";

fn open_deps(home: &Path) -> Result<ferry::steps::Deps> {
    let cwd = std::env::current_dir()?;
    // `s3:` destinations are written with the user's own AWS credentials (default chain).
    #[cfg(feature = "remote")]
    let s3: Option<Arc<dyn ferry::ports::DestinationResolver>> =
        Some(Arc::new(ferry::adapters::s3::LazyS3Resolver::default()));
    #[cfg(not(feature = "remote"))]
    let s3: Option<Arc<dyn ferry::ports::DestinationResolver>> = None;
    local::embedded_deps(home, &cwd, s3)
        .with_context(|| format!("cannot open the ferry state in {}", home.display()))
}

/// A registered flow of the embedded engine, by name.
async fn registered(home: &Path, name: &str) -> Result<Flow> {
    let deps = open_deps(home)?;
    Ok(deps
        .flows
        .get_flow(name, None)
        .await?
        .ok_or_else(|| {
            not_found(format!(
                "flow '{name}' is not registered; register it with `ferry flows put FILE` (`ferry flows list` shows them)"
            ))
        })?
        .flow)
}

async fn validate_command(home: &Path, file: &Path, offline: bool, json_out: bool) -> Result<i32> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| out::invalid_argument(format!("cannot read {}: {e}", file.display())))?;
    let origin = file.display().to_string();
    let parsed = validate::parse_flow(&text, &origin);
    let (flow, problems, checked, message) = match parsed {
        Err(e) => (None, e.problems, false, e.message),
        Ok(f) if offline => (Some(f), vec![], false, String::new()),
        Ok(f) => {
            let (p, _) = validate::source_problems(&f, Some(&text), &local_ctx(home)).await;
            let m = format!(
                "{origin}: {} problem(s) found against the {} source",
                p.len(),
                f.source.connector
            );
            (Some(f), p, true, m)
        }
    };
    let valid = problems.is_empty();
    if json_out {
        out::json(&json!({
            "file": origin,
            "valid": valid,
            "flow": flow.as_ref().map(|f| f.name.clone()),
            "source_checked": checked,
            "problems": problems,
            "error": if valid { Value::Null } else {
                json!({ "name": "InvalidFlow", "message": message, "problems": problems })
            },
        }));
        return Ok(if valid { 0 } else { 1 });
    }
    match flow {
        Some(f) if valid => {
            outln!(
                "{origin}: valid flow '{}' ({} -> {}, {} task(s)){}",
                f.name,
                f.source.connector,
                f.destination.location(),
                f.tasks.len(),
                if checked {
                    format!("; checked against the {} source", f.source.connector)
                } else {
                    " (not checked against the source: --offline)".into()
                }
            );
            Ok(0)
        }
        _ => {
            eprintln!("error: {message}:");
            for p in &problems {
                eprintln!("  - {p}");
            }
            if problems.iter().any(|p| p.path == "source.profile") {
                eprintln!("(a flow for the deployed stack, whose profile is a Secrets Manager secret: check it with --offline)");
            }
            Ok(1)
        }
    }
}

async fn run_command(
    home: &Path,
    flow_arg: &str,
    complete: bool,
    from: Option<&str>,
    to: Option<&str>,
    json_out: bool,
) -> Result<i32> {
    // Everything is checked before the state is opened: a bad file registers nothing.
    let ctx = local_ctx(home);
    let (flow, from_file) = if looks_like_file(flow_arg) {
        let (flow, text) = validate::read_flow(Path::new(flow_arg))?;
        (flow, Some(text))
    } else {
        (registered(home, flow_arg).await?, None)
    };
    let window = backfill::window(from, to, &flow, chrono::Utc::now())?;
    let check = check_against_source(&flow, from_file.as_deref(), flow_arg, &ctx).await?;
    let deps = open_deps(home)?;
    if from_file.is_some() {
        let stored = deps.flows.put_flow(&flow, deps.clock.now()).await?;
        eprintln!(
            "registered flow '{}' version {}",
            stored.flow.name, stored.version
        );
    }
    let request = RunRequest {
        flow: flow.name.clone(),
        trigger: Some(TriggerType::OnDemand),
        mode: complete.then_some(PullMode::Complete),
        window,
    };
    let engine = Engine::new(deps).context("the state machine definition is not runnable")?;
    let progress = Progress::new(!json_out);
    // Ctrl-C, or SIGTERM from `ferry stop RUN_ID` in another shell: the run ends as Canceled
    // through the failure path (nothing half-written left, lease released).
    let outcome = engine.run_until(request, &progress, interrupted()).await;
    progress.finish();
    match &outcome.record {
        Some(rec) if json_out => out::json(&out::run_json(rec)),
        Some(rec) => {
            print_summary(rec);
            for f in &check.pushed_down {
                outln!(
                    "pushdown   filter `{}` applied by the source: the records it excludes are never transferred, so they are not counted as read or filtered",
                    ferry::connector::check::describe_filter(f)
                );
            }
        }
        None => {}
    }
    if let Some(f) = outcome.failure {
        let msg = outcome
            .record
            .as_ref()
            .and_then(|r| r.error.as_ref())
            .map(|e| format!("{}: {}", e.error, e.message))
            .unwrap_or_else(|| format!("{}: {}", f.error, f.cause));
        if outcome.record.is_none() {
            // No record to print: the failure is the answer.
            return Err(
                CliError::new("Fatal", format!("run {} failed: {msg}", outcome.run_id)).into(),
            );
        }
        eprintln!("run {} failed: {msg}", outcome.run_id);
        return Ok(1);
    }
    Ok(0)
}

/// `flows list|get|put|delete` over a store: the embedded SQLite one or, remotely, DynamoDB
/// (`place` names it in messages).
pub(crate) async fn flows_command(
    flows: &dyn FlowStore,
    runs: &dyn RunStore,
    cmd: FlowsCmd,
    json_out: bool,
    place: &str,
) -> Result<i32> {
    match cmd {
        FlowsCmd::List => {
            let list = flows.list_flows().await?;
            let mut rows = vec![];
            for f in &list {
                let st = runs.get_state(&f.flow.name).await?;
                let trigger = match &f.flow.trigger {
                    ferry::flow::Trigger::OnDemand(_) => "on_demand".to_string(),
                    ferry::flow::Trigger::Scheduled(s) => format!("scheduled {}", s.expression),
                    ferry::flow::Trigger::Event(_) => "event".to_string(),
                };
                rows.push(json!({
                    "name": f.flow.name,
                    "version": f.version,
                    "status": format!("{:?}", f.status),
                    "connector": f.flow.source.connector,
                    "entity": f.flow.source.entity,
                    "trigger": trigger,
                    "mode": f.flow.default_mode(),
                    "watermark": st.watermark,
                    "last_run_id": st.last_run_id,
                    "updated_at": f.updated_at,
                }));
            }
            if json_out {
                out::json(&Value::Array(rows));
                return Ok(0);
            }
            if rows.is_empty() {
                outln!("no flows{place}; register one with `ferry flows put FILE`");
            }
            for r in rows {
                let s = |k: &str| r[k].as_str().unwrap_or("-").to_string();
                outln!(
                    "{:<32} v{:<3} {:<10} {:<10} {:<14} {:<24} watermark {}",
                    s("name"),
                    r["version"],
                    s("status"),
                    s("connector"),
                    s("entity"),
                    s("trigger"),
                    s("watermark")
                );
            }
            Ok(0)
        }
        FlowsCmd::Get { name, version } => match flows.get_flow(&name, version).await? {
            Some(f) => {
                if json_out {
                    out::json(&json!({
                        "name": f.flow.name, "version": f.version, "status": format!("{:?}", f.status),
                        "updated_at": f.updated_at, "flow": f.flow,
                    }));
                } else {
                    outln!(
                        "# version {} (updated {}, {:?})",
                        f.version,
                        f.updated_at.to_rfc3339(),
                        f.status
                    );
                    outln!("{}", f.flow.to_yaml().trim_end());
                }
                Ok(0)
            }
            None => Err(not_found(format!(
                "no flow '{name}'{}{place}",
                version.map(|v| format!(" version {v}")).unwrap_or_default()
            ))),
        },
        FlowsCmd::Put { file } => {
            let (f, _) = validate::read_flow(&file)?;
            let s = flows.put_flow(&f, chrono::Utc::now()).await?;
            if json_out {
                out::json(&json!({ "name": s.flow.name, "version": s.version }));
            } else {
                outln!("flow '{}' is at version {}", s.flow.name, s.version);
            }
            Ok(0)
        }
        FlowsCmd::ImportAppflow { .. } => unreachable!("handled before opening the state"),
        FlowsCmd::Delete { name } => {
            if flows.delete_flow(&name).await? {
                runs.delete_state(&name).await?;
                if json_out {
                    out::json(&json!({ "name": name, "deleted": true }));
                } else {
                    outln!("deleted flow '{name}' (its output and run history are kept)");
                }
                Ok(0)
            } else {
                Err(not_found(format!("no flow '{name}'{place}")))
            }
        }
    }
}

/// `runs list|get` over any store: the embedded SQLite one or, in remote mode, DynamoDB.
/// `place` names the store in a not-found message (e.g. " in table ferry-dev").
pub(crate) async fn runs_command(
    flows: &dyn FlowStore,
    store: &dyn RunStore,
    cmd: RunsCmd,
    place: &str,
    json_out: bool,
) -> Result<i32> {
    match cmd {
        RunsCmd::List { flow, limit } => {
            let mut runs = store.list_runs(&flow, limit).await?;
            if runs.is_empty() && flows.get_flow(&flow, None).await?.is_none() {
                return Err(not_found(format!(
                    "no flow '{flow}'{place} and no runs of it; `ferry flows list` shows the registered flows"
                )));
            }
            runs.sort_by_key(|r| std::cmp::Reverse(r.started_at));
            if json_out {
                out::json(&Value::Array(runs.iter().map(out::run_json).collect()));
                return Ok(0);
            }
            if runs.is_empty() {
                outln!("flow '{flow}' has no runs yet; start one with `ferry run {flow}`");
                return Ok(0);
            }
            outln!(
                "{:<28} {:<12} {:<12} {:<20} {:>9} {:>12} {:>11}",
                "RUN",
                "STATUS",
                "MODE",
                "STARTED (UTC)",
                "DURATION",
                "RECORDS",
                "WRITTEN"
            );
            for r in runs {
                outln!(
                    "{:<28} {:<12} {:<12} {:<20} {:>9} {:>12} {:>11}{}",
                    r.run_id,
                    r.status.as_str(),
                    format!("{:?}", r.mode).to_lowercase(),
                    r.started_at.format("%Y-%m-%d %H:%M:%S"),
                    out::human_duration(out::duration(&r)),
                    out::thousands(r.records_written),
                    HumanBytes(r.bytes_written).to_string(),
                    r.error
                        .map(|e| format!("  {}: {}", e.error, e.message))
                        .unwrap_or_default()
                );
            }
            Ok(0)
        }
        RunsCmd::Get { run_id } => match store.get_run(&run_id).await? {
            Some(r) => {
                out::json(&out::run_json(&r));
                Ok(0)
            }
            None => Err(not_found(format!("no run '{run_id}'{place}"))),
        },
    }
}

fn print_summary(r: &RunRecord) {
    let window = match r.window.start {
        Some(s) => format!("({} .. {}]", s.to_rfc3339(), r.window.end.to_rfc3339()),
        None => format!("everything up to {}", r.window.end.to_rfc3339()),
    };
    outln!("run        {}", r.run_id);
    outln!("flow       {} (version {})", r.flow, r.flow_version);
    outln!(
        "status     {} in {}",
        r.status.as_str(),
        out::human_duration(out::duration(r))
    );
    outln!(
        "mode       {}, window {window}",
        format!("{:?}", r.mode).to_lowercase()
    );
    outln!(
        "records    {} read, {} filtered, {} rejected, {} written",
        out::thousands(r.records_processed),
        out::thousands(r.records_filtered),
        out::thousands(r.records_rejected),
        out::thousands(r.records_written)
    );
    outln!(
        "bytes      {} read, {} written in {} file(s), {} chunk(s)",
        HumanBytes(r.bytes_processed),
        HumanBytes(r.bytes_written),
        r.files_written,
        r.chunks
    );
    if let Some(m) = &r.manifest_key {
        outln!("manifest   {m}");
    }
    match (r.mode, r.watermark_after) {
        (PullMode::Backfill, _) => outln!("watermark  unchanged (a backfill never moves it)"),
        (_, Some(w)) => outln!("watermark  {}", w.to_rfc3339()),
        _ => {}
    }
    for w in &r.warnings {
        outln!("warning    {w}");
    }
}

/// A progress line on stderr: the state from the state machine's transitions, records and
/// records/s from every page fetch-page reads (`ferry::steps::progress`).
struct Progress {
    bar: Option<ProgressBar>,
    records: std::sync::Arc<AtomicU64>,
    started: Instant,
    /// `FERRY_STEP_TIMES=1`: time spent in each state, printed on stderr at the end (the
    /// bench's per-step breakdown, docs/performance.md); `trace`: also each state's start and
    /// end (seconds into the run) as it ends.
    step_times: Option<std::sync::Mutex<StepTimes>>,
}

#[derive(Default)]
struct StepTimes {
    trace: bool,
    entered: std::collections::HashMap<String, Instant>,
    total: std::collections::BTreeMap<String, (Duration, u32)>,
}

impl Progress {
    fn new(show: bool) -> Self {
        let bar = (show && std::io::stderr().is_terminal()).then(|| {
            let b = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}") {
                b.set_style(style);
            }
            b.enable_steady_tick(Duration::from_millis(120));
            b
        });
        let records = std::sync::Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        if let Some(b) = bar.clone() {
            let records = records.clone();
            ferry::steps::progress::listen(move |n| {
                let total = records.fetch_add(n, Ordering::Relaxed) + n;
                b.set_message(progress_message("Fetch Chunk", total, started));
            });
        }
        Progress {
            bar,
            records,
            started,
            step_times: std::env::var_os("FERRY_STEP_TIMES")
                .filter(|v| v != "0")
                .map(|v| {
                    std::sync::Mutex::new(StepTimes {
                        trace: v == "trace",
                        ..Default::default()
                    })
                }),
        }
    }
    fn finish(&self) {
        if let Some(b) = &self.bar {
            ferry::steps::progress::stop_listening();
            b.finish_and_clear();
        }
        if let Some(t) = &self.step_times {
            let t = t.lock().unwrap_or_else(|e| e.into_inner());
            let wall = self.started.elapsed().as_secs_f64();
            for (name, (d, n)) in &t.total {
                eprintln!(
                    "step {name:<16} {:>8.2}s {:>5.1}% of {wall:.2}s wall, {n} invocation(s)",
                    d.as_secs_f64(),
                    100.0 * d.as_secs_f64() / wall.max(1e-9)
                );
            }
        }
    }
    fn message(&self, state: &str) -> String {
        progress_message(state, self.records.load(Ordering::Relaxed), self.started)
    }
}

fn progress_message(state: &str, records: u64, started: Instant) -> String {
    let secs = started.elapsed().as_secs_f64().max(0.001);
    format!(
        "{state} — {} records fetched ({} records/s)",
        out::thousands(records),
        out::thousands((records as f64 / secs) as u64)
    )
}

impl Observer for Progress {
    fn state_entered(&self, name: &str, _input: &serde_json::Value) {
        if let Some(t) = &self.step_times {
            let mut t = t.lock().unwrap_or_else(|e| e.into_inner());
            t.entered.insert(name.to_string(), Instant::now());
        }
        if let Some(b) = &self.bar {
            b.set_message(self.message(name));
        }
    }
    fn state_exited(&self, name: &str, _output: &serde_json::Value) {
        if let Some(t) = &self.step_times {
            let mut t = t.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(at) = t.entered.remove(name) {
                if t.trace {
                    let from = at.duration_since(self.started).as_secs_f64();
                    let to = self.started.elapsed().as_secs_f64();
                    eprintln!("trace {name:<16} {from:>7.3}s {to:>7.3}s");
                }
                let e = t.total.entry(name.to_string()).or_default();
                e.0 += at.elapsed();
                e.1 += 1;
            }
        }
    }
    fn retrying(&self, state: &str, error: &str, attempt: u32, delay: Duration) {
        if let Some(b) = &self.bar {
            b.println(format!(
                "{state}: {error}; retry {attempt} in {:.1}s",
                delay.as_secs_f64()
            ));
        }
    }
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM.
async fn interrupted() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// `ferry stop RUN_ID` on the embedded engine: a run in a live `ferry run` process on this host
/// is asked to stop (SIGTERM: it ends itself as Canceled); a run whose process is gone is ended
/// here, the same way.
async fn stop_local(deps: &ferry::steps::Deps, run_id: &str, _json: bool) -> Result<i32> {
    let Some(rec) = deps.runs.get_run(run_id).await? else {
        return Err(not_found(format!("no run {run_id} in {}; `ferry runs list FLOW` shows the runs (for a deployed run add --remote)", local::ferry_home().display())));
    };
    if !matches!(rec.status, RunStatus::InProgress | RunStatus::CancelStarted) {
        outln!(
            "run {run_id} of flow '{}' already ended: {}",
            rec.flow,
            rec.status.as_str()
        );
        return Ok(0);
    }
    let state = deps.runs.get_state(&rec.flow).await?;
    let holder = state
        .lease
        .as_ref()
        .filter(|l| l.run_id == run_id)
        .and_then(|l| l.holder.clone());
    if let Some(pid) = holder.as_deref().and_then(local::live_local_holder) {
        // SAFETY: sending SIGTERM to the process that holds the run's lease.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGTERM);
        }
        for _ in 0..300 {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            let r = deps.runs.get_run(run_id).await?;
            if r.as_ref().is_some_and(|r| {
                !matches!(r.status, RunStatus::InProgress | RunStatus::CancelStarted)
            }) {
                outln!(
                    "run {run_id} of flow '{}' stopped (process {pid}) and marked Canceled",
                    rec.flow
                );
                return Ok(0);
            }
        }
        return Err(anyhow::anyhow!(
            "asked process {pid} to stop run {run_id}, but it has not ended within 30 s"
        ));
    }
    ferry::steps::finalize::reap(
        deps,
        run_id,
        ferry::steps::finalize::CANCELED,
        "stopped with `ferry stop`",
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let _ = deps.runs.release_lease(&rec.flow, run_id).await?;
    outln!(
        "run {run_id} of flow '{}' stopped and marked Canceled; its lease is released",
        rec.flow
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every argument of every command says what it is for.
    #[test]
    fn every_argument_has_help() {
        fn walk(cmd: &clap::Command, at: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if a.get_help().is_none() && a.get_long_help().is_none() {
                    missing.push(format!("{at} {id}"));
                }
            }
            for s in cmd.get_subcommands() {
                walk(s, &format!("{at} {}", s.get_name()), missing);
            }
        }
        let mut missing = vec![];
        walk(&Cli::command(), "ferry", &mut missing);
        assert!(missing.is_empty(), "arguments without help: {missing:?}");
    }

    #[test]
    fn remote_settings_only_on_commands_with_a_remote_mode() {
        let cmd = Cli::command();
        let has = |name: &str| {
            cmd.find_subcommand(name)
                .unwrap()
                .get_arguments()
                .any(|a| a.get_id() == "table")
        };
        assert!(has("run") && has("flows") && has("runs") && has("stop"));
        assert!(!has("validate") && !has("profiles") && !has("entities"));
        assert!(!cmd.get_arguments().any(|a| a.get_id() == "table"));
    }
}
