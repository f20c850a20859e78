//! `ferry`: validate and run flows on the embedded engine, inspect flows and runs.

mod import_appflow;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use ferry::flow::Flow;
use ferry::local::{self, asl::Observer, Engine};
use ferry::model::{PullMode, RunRecord, RunStatus, TriggerType, Window};
use ferry::ports::Secret;
use ferry::steps::start_run::RunRequest;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

mod remote;

#[derive(Parser)]
#[command(
    name = "ferry",
    version,
    about = "Move SaaS data into S3 as Parquet, CSV or JSON lines"
)]
struct Cli {
    /// State directory of the embedded engine (SQLite store, staging, secrets, event log).
    #[arg(long, env = "FERRY_HOME", global = true)]
    home: Option<PathBuf>,
    #[command(flatten)]
    remote: remote::RemoteArgs,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Check a flow file; every problem is listed with its field and the fix.
    Validate { file: PathBuf },
    /// Run a flow (a file, registered first, or a registered flow's name) on the embedded engine.
    Run {
        flow: String,
        /// Print the run record as JSON on stdout.
        #[arg(long)]
        json: bool,
        /// Reread everything, whatever the watermark.
        #[arg(long, conflicts_with_all = ["from", "to"])]
        complete: bool,
        /// Backfill from this time (RFC 3339); the watermark does not move.
        #[arg(long, requires = "to")]
        from: Option<String>,
        /// Backfill up to this time (RFC 3339).
        #[arg(long)]
        to: Option<String>,
    },
    /// Stop a run: locally, the `ferry run` process running it ends it as Canceled (or, if that
    /// process is gone, it is ended here); with --remote, StopExecution.
    Stop { run_id: String },
    /// Flow definitions.
    Flows {
        #[command(subcommand)]
        cmd: FlowsCmd,
    },
    /// Run history.
    Runs {
        #[command(subcommand)]
        cmd: RunsCmd,
    },
    /// Connector profiles (credentials) of the embedded engine.
    Profiles {
        #[command(subcommand)]
        cmd: ProfilesCmd,
    },
    /// What a connector offers: entities, or one entity's fields.
    Entities {
        /// A flow file or registered flow whose source to ask.
        flow: String,
        /// Describe this entity's fields instead of listing entities.
        #[arg(long)]
        describe: Option<String>,
    },
}

#[derive(Subcommand)]
pub(crate) enum FlowsCmd {
    /// Registered flows.
    List,
    /// A flow's definition (latest version, or --version).
    Get {
        name: String,
        #[arg(long)]
        version: Option<u32>,
    },
    /// Register a flow file (a changed definition becomes a new version).
    Put { file: PathBuf },
    /// Delete a flow, its versions and its state.
    Delete { name: String },
    /// Translate an AppFlow flow (CreateFlow JSON or an AWS::AppFlow::Flow template) into a
    /// ferry flow; lists what cannot be translated (exit code 2).
    ImportAppflow {
        file: PathBuf,
        /// Write the flow here instead of printing it.
        #[arg(short, long)]
        out: Option<PathBuf>,
        /// Write the flow even if parts could not be translated (noted as comments).
        #[arg(long)]
        partial: bool,
    },
}

#[derive(Subcommand)]
pub(crate) enum RunsCmd {
    /// A flow's runs, newest first.
    List {
        flow: String,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// One run's record.
    Get { run_id: String },
}

#[derive(Subcommand)]
enum ProfilesCmd {
    /// Store a profile's credentials from a JSON file.
    Put {
        name: String,
        #[arg(long)]
        file: PathBuf,
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
        .init();
    let cli = Cli::parse();
    match real_main(cli).await {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}

fn read_flow(path: &Path) -> Result<Flow> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(Flow::parse(&text, &path.display().to_string())?)
}

fn looks_like_file(s: &str) -> bool {
    s.ends_with(".yaml") || s.ends_with(".yml") || s.ends_with(".json") || Path::new(s).is_file()
}

async fn real_main(cli: Cli) -> Result<i32> {
    let home = cli.home.clone().unwrap_or_else(local::ferry_home);
    if let Cmd::Validate { file } = &cli.cmd {
        let flow = read_flow(file)?;
        println!(
            "{}: valid flow '{}' ({} -> {}, {} task(s))",
            file.display(),
            flow.name,
            flow.source.connector,
            flow.destination.location(),
            flow.tasks.len()
        );
        return Ok(0);
    }
    if let Cmd::Flows {
        cmd: FlowsCmd::ImportAppflow { file, out, partial },
    } = &cli.cmd
    {
        return import_appflow::run(file, out.as_deref(), *partial);
    }
    if cli.remote.remote {
        let r = remote::Remote::new(cli.remote.clone()).await;
        return match cli.cmd {
            Cmd::Flows { cmd } => r.flows(cmd).await,
            Cmd::Runs { cmd } => r.runs(cmd).await,
            Cmd::Stop { run_id } => r.stop(&run_id).await,
            Cmd::Run {
                flow,
                complete,
                from,
                to,
                ..
            } => {
                if looks_like_file(&flow) {
                    bail!("with --remote, run a registered flow by name; register the file first with `ferry flows put {flow} --remote`");
                }
                r.run(RunRequest {
                    flow,
                    trigger: Some(TriggerType::OnDemand),
                    mode: complete.then_some(PullMode::Complete),
                    window: backfill_window(from, to)?,
                })
                .await
            }
            _ => bail!("this command has no remote mode; drop --remote (or unset FERRY_REMOTE)"),
        };
    }
    let cwd = std::env::current_dir()?;
    // `s3:` destinations are written with the user's own AWS credentials (default chain).
    let s3: std::sync::Arc<dyn ferry::ports::DestinationResolver> =
        std::sync::Arc::new(ferry::adapters::s3::LazyS3Resolver::default());
    let deps = local::embedded_deps(&home, &cwd, Some(s3))
        .with_context(|| format!("cannot open the ferry state in {}", home.display()))?;
    match cli.cmd {
        Cmd::Validate { .. } => unreachable!(),
        Cmd::Stop { run_id } => stop_local(&deps, &run_id).await,
        Cmd::Run {
            flow,
            json,
            complete,
            from,
            to,
        } => {
            let name = if looks_like_file(&flow) {
                let f = read_flow(Path::new(&flow))?;
                let stored = deps.flows.put_flow(&f, deps.clock.now()).await?;
                eprintln!(
                    "registered flow '{}' version {}",
                    stored.flow.name, stored.version
                );
                stored.flow.name
            } else {
                flow
            };
            let window = backfill_window(from, to)?;
            let request = RunRequest {
                flow: name,
                trigger: Some(TriggerType::OnDemand),
                mode: complete.then_some(PullMode::Complete),
                window,
            };
            let engine =
                Engine::new(deps).context("the state machine definition is not runnable")?;
            let progress = Progress::new(!json);
            // Ctrl-C, or SIGTERM from `ferry stop RUN_ID` in another shell: the run ends as
            // Canceled through the failure path (nothing half-written left, lease released).
            let outcome = engine.run_until(request, &progress, interrupted()).await;
            progress.finish();
            if let Some(rec) = &outcome.record {
                if json {
                    println!("{}", serde_json::to_string_pretty(rec)?);
                } else {
                    print_summary(rec);
                }
            }
            if let Some(f) = outcome.failure {
                let msg = outcome
                    .record
                    .as_ref()
                    .and_then(|r| r.error.as_ref())
                    .map(|e| format!("{}: {}", e.error, e.message))
                    .unwrap_or_else(|| format!("{}: {}", f.error, f.cause));
                eprintln!("run {} failed: {msg}", outcome.run_id);
                return Ok(1);
            }
            Ok(0)
        }
        Cmd::Flows { cmd } => match cmd {
            FlowsCmd::List => {
                let flows = deps.flows.list_flows().await?;
                if flows.is_empty() {
                    println!("no flows; register one with `ferry flows put FILE`");
                }
                for f in flows {
                    let st = deps.runs.get_state(&f.flow.name).await?;
                    println!(
                        "{:<32} v{:<3} {:<10} {:<10} {:<14} watermark {}",
                        f.flow.name,
                        f.version,
                        format!("{:?}", f.status),
                        f.flow.source.connector,
                        f.flow.source.entity,
                        st.watermark
                            .map(|w| w.to_rfc3339())
                            .unwrap_or_else(|| "-".into())
                    );
                }
                Ok(0)
            }
            FlowsCmd::Get { name, version } => match deps.flows.get_flow(&name, version).await? {
                Some(f) => {
                    println!(
                        "# version {} (updated {})",
                        f.version,
                        f.updated_at.to_rfc3339()
                    );
                    print!("{}", f.flow.to_yaml());
                    Ok(0)
                }
                None => bail!(
                    "no flow '{name}'{}",
                    version.map(|v| format!(" version {v}")).unwrap_or_default()
                ),
            },
            FlowsCmd::Put { file } => {
                let f = read_flow(&file)?;
                let s = deps.flows.put_flow(&f, deps.clock.now()).await?;
                println!("flow '{}' is at version {}", s.flow.name, s.version);
                Ok(0)
            }
            FlowsCmd::ImportAppflow { .. } => unreachable!("handled before opening the state"),
            FlowsCmd::Delete { name } => {
                if deps.flows.delete_flow(&name).await? {
                    deps.runs.delete_state(&name).await?;
                    println!("deleted flow '{name}' (its output and run history are kept)");
                    Ok(0)
                } else {
                    bail!("no flow '{name}'")
                }
            }
        },
        Cmd::Runs { cmd } => runs_command(deps.runs.as_ref(), cmd, "").await,
        Cmd::Profiles { cmd } => match cmd {
            ProfilesCmd::Put { name, file } => {
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("cannot read {}", file.display()))?;
                let v: serde_json::Value = serde_json::from_str(&text)
                    .with_context(|| format!("{} is not JSON", file.display()))?;
                deps.secrets.put_secret(&name, &Secret::new(v)).await?;
                println!(
                    "stored profile '{name}' in {}",
                    home.join("secrets.json").display()
                );
                Ok(0)
            }
        },
        Cmd::Entities { flow, describe } => {
            let f = if looks_like_file(&flow) {
                read_flow(Path::new(&flow))?
            } else {
                deps.flows
                    .get_flow(&flow, None)
                    .await?
                    .with_context(|| format!("no flow '{flow}'"))?
                    .flow
            };
            let ctx = ferry::connector::ConnectorContext {
                secrets: deps.secrets.clone(),
            };
            let source = ferry::connector::build(&f.source, &ctx).await?;
            match describe {
                None => {
                    for e in source.list_entities().await? {
                        println!("{:<24} {}", e.name, e.description.unwrap_or_default());
                    }
                }
                Some(entity) => {
                    let d = source.describe(&entity).await?;
                    println!("{}", serde_json::to_string_pretty(&d.fields)?);
                }
            }
            Ok(0)
        }
    }
}

fn backfill_window(from: Option<String>, to: Option<String>) -> Result<Option<Window>> {
    Ok(match (from, to) {
        (Some(f), Some(t)) => Some(Window {
            start: Some(parse_time(&f, "--from")?),
            end: parse_time(&t, "--to")?,
        }),
        _ => None,
    })
}

/// `runs list|get` over any run store: the embedded SQLite one or, in remote mode, DynamoDB.
/// `place` names the store in a not-found message (e.g. " in table ferry-dev").
pub(crate) async fn runs_command(
    store: &dyn ferry::ports::RunStore,
    cmd: RunsCmd,
    place: &str,
) -> Result<i32> {
    match cmd {
        RunsCmd::List { flow, limit, json } => {
            let runs = store.list_runs(&flow, limit).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&runs)?);
                return Ok(0);
            }
            for r in runs {
                println!(
                    "{:<28} {:<12} {} written {:>10} records {:>12} bytes{}",
                    r.run_id,
                    r.status.as_str(),
                    r.started_at.to_rfc3339(),
                    r.records_written,
                    r.bytes_written,
                    r.error
                        .map(|e| format!("  {}: {}", e.error, e.message))
                        .unwrap_or_default()
                );
            }
            Ok(0)
        }
        RunsCmd::Get { run_id } => match store.get_run(&run_id).await? {
            Some(r) => {
                println!("{}", serde_json::to_string_pretty(&r)?);
                Ok(0)
            }
            None => bail!("no run '{run_id}'{place}"),
        },
    }
}

fn parse_time(s: &str, flag: &str) -> Result<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .with_context(|| {
            format!("{flag} '{s}' is not an RFC 3339 time such as 2026-01-01T00:00:00Z")
        })
}

fn print_summary(r: &RunRecord) {
    let window = match r.window.start {
        Some(s) => format!("({} .. {}]", s.to_rfc3339(), r.window.end.to_rfc3339()),
        None => format!("everything up to {}", r.window.end.to_rfc3339()),
    };
    println!("run        {}", r.run_id);
    println!("flow       {} (version {})", r.flow, r.flow_version);
    println!("status     {}", r.status.as_str());
    println!("mode       {:?}, window {window}", r.mode);
    println!(
        "records    {} read, {} filtered, {} rejected, {} written",
        r.records_processed, r.records_filtered, r.records_rejected, r.records_written
    );
    println!(
        "bytes      {} read, {} written in {} file(s), {} chunk(s)",
        r.bytes_processed, r.bytes_written, r.files_written, r.chunks
    );
    if let Some(m) = &r.manifest_key {
        println!("manifest   {m}");
    }
    if let Some(w) = r.watermark_after {
        println!("watermark  {}", w.to_rfc3339());
    }
    for w in &r.warnings {
        println!("warning    {w}");
    }
}

/// A progress bar on stderr fed by the state machine's state transitions.
struct Progress {
    bar: Option<ProgressBar>,
    records: AtomicU64,
}

impl Progress {
    fn new(show: bool) -> Self {
        let bar = show.then(|| {
            let b = ProgressBar::new_spinner();
            b.set_style(ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}").unwrap());
            b.enable_steady_tick(Duration::from_millis(120));
            b
        });
        Progress {
            bar,
            records: AtomicU64::new(0),
        }
    }
    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Observer for Progress {
    fn state_entered(&self, name: &str, _input: &serde_json::Value) {
        if let Some(b) = &self.bar {
            b.set_message(format!(
                "{name} — {} records fetched",
                self.records.load(Ordering::Relaxed)
            ));
        }
    }
    fn state_exited(&self, name: &str, output: &serde_json::Value) {
        if name == "Fetch Chunk" {
            if let Some(n) = output.pointer("/page/records").and_then(|v| v.as_u64()) {
                self.records.fetch_add(n, Ordering::Relaxed);
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
async fn stop_local(deps: &ferry::steps::Deps, run_id: &str) -> Result<i32> {
    let Some(rec) = deps.runs.get_run(run_id).await? else {
        bail!("no run {run_id} in {}; `ferry runs list FLOW` shows the runs (for a deployed run add --remote)", local::ferry_home().display());
    };
    if !matches!(rec.status, RunStatus::InProgress | RunStatus::CancelStarted) {
        println!(
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
                println!(
                    "run {run_id} of flow '{}' stopped (process {pid}) and marked Canceled",
                    rec.flow
                );
                return Ok(0);
            }
        }
        bail!("asked process {pid} to stop run {run_id}, but it has not ended within 30 s");
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
    println!(
        "run {run_id} of flow '{}' stopped and marked Canceled; its lease is released",
        rec.flow
    );
    Ok(0)
}
