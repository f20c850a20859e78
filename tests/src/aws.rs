//! A moto server for AWS adapter tests: one `moto_server` per test process on a free port on
//! 127.0.0.1, started on first use, killed when the process exits. Tests reach it through the
//! SDK's own `AWS_ENDPOINT_URL`, with dummy credentials: the production code path.
//!
//! The binary is `$FERRY_MOTO_SERVER`, else `<workspace>/.venv/bin/moto_server` (created by
//! `scripts/setup-venv.sh`), else `moto_server` on `PATH`.

use ferry::adapters::aws::{self, AwsSettings, Clients};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

struct Moto {
    endpoint: String,
    child: Mutex<Option<Child>>,
}

static MOTO: OnceLock<Moto> = OnceLock::new();

extern "C" fn kill_moto() {
    if let Some(m) = MOTO.get() {
        if let Ok(mut c) = m.child.lock() {
            if let Some(mut child) = c.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

extern "C" {
    fn atexit(cb: extern "C" fn()) -> i32;
}

fn moto_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("FERRY_MOTO_SERVER") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/moto_server");
    if venv.is_file() {
        return venv;
    }
    PathBuf::from("moto_server")
}

fn start() -> Moto {
    // A free port is only free until someone takes it: another test process (nextest runs
    // each test in its own) can bind it between our probe and moto's bind, and then the
    // "listening" check below would find *that* server. So moto's own answer is checked, and
    // a start that lost its port is tried again on another.
    let bin = moto_binary();
    let mut attempt = 0;
    let (endpoint, child) = loop {
        attempt += 1;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port on 127.0.0.1")
            .port();
        let mut child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({e}); run scripts/setup-venv.sh or set FERRY_MOTO_SERVER",
                    bin.display()
                )
            });
        let endpoint = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut ours = false;
        while Instant::now() < deadline {
            if child.try_wait().ok().flatten().is_some() {
                break; // moto exited: its port was taken
            }
            if is_moto(port) {
                ours = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if ours {
            break (endpoint, child);
        }
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            attempt < 5,
            "moto_server did not answer on {endpoint} within 30s ({attempt} ports tried)"
        );
    };
    // The SDK reads these when it loads its config; set before any client exists.
    std::env::set_var("AWS_ENDPOINT_URL", &endpoint);
    std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    std::env::set_var("AWS_REGION", "us-east-1");
    std::env::remove_var("AWS_PROFILE");
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    unsafe {
        atexit(kill_moto);
    }
    Moto {
        endpoint,
        child: Mutex::new(Some(child)),
    }
}

/// Whether the server on `port` is moto: its management API (`/moto-api/data.json`) answers
/// 200, where another server answers 404 or nothing.
fn is_moto(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(
        b"GET /moto-api/data.json HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )
    .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    // "HTTP/1.0 200" or "HTTP/1.1 200".
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
}

/// The shared moto server's endpoint, starting it on first use.
pub fn endpoint() -> &'static str {
    &MOTO.get_or_init(start).endpoint
}

/// A name no other test in this process (or an earlier process on the same server) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        &uuid_like()[..6]
    )
}

fn uuid_like() -> String {
    use rand::Rng;
    let mut r = rand::rng();
    (0..8)
        .map(|_| char::from(b'a' + r.random_range(0..26u8)))
        .collect()
}

/// SDK config pointed at the moto server (through `AWS_ENDPOINT_URL`).
pub async fn sdk_config() -> aws_config::SdkConfig {
    endpoint();
    aws::sdk_config().await
}

/// Fresh resources for one test: a table, a staging bucket, an output bucket, an event bus.
pub struct AwsEnv {
    pub conf: aws_config::SdkConfig,
    pub clients: Clients,
    pub settings: AwsSettings,
    pub output_bucket: String,
}

impl AwsEnv {
    pub async fn new() -> AwsEnv {
        let conf = sdk_config().await;
        let clients = Clients::new(&conf);
        let settings = AwsSettings {
            table: unique("ferry"),
            staging_bucket: unique("staging"),
            event_bus: unique("ferry-bus"),
            secret_prefix: format!("{}/profiles/", unique("ferry")),
            kms_key_id: None,
            stack_name: None,
        };
        let output_bucket = unique("lake");
        ferry::adapters::dynamodb::create_table(&clients.dynamodb, &settings.table)
            .await
            .expect("create table");
        for b in [&settings.staging_bucket, &output_bucket] {
            clients
                .s3
                .create_bucket()
                .bucket(b)
                .send()
                .await
                .expect("create bucket");
        }
        clients
            .events
            .create_event_bus()
            .name(&settings.event_bus)
            .send()
            .await
            .expect("create event bus");
        AwsEnv {
            conf,
            clients,
            settings,
            output_bucket,
        }
    }

    /// The steps' deps over the AWS adapters.
    pub fn deps(&self) -> ferry::steps::Deps {
        aws::aws_deps(&self.clients, &self.settings)
    }
}

/// Every `ferry` event on `bus` lands in a fresh SQS queue (a rule with target, as a user's
/// alerting would subscribe); returns the queue URL.
pub async fn subscribe_events(conf: &aws_config::SdkConfig, bus: &str) -> String {
    let sqs = aws_sdk_sqs::Client::new(conf);
    let events = aws_sdk_eventbridge::Client::new(conf);
    let url = sqs
        .create_queue()
        .queue_name(unique("ferry-events"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    let rule = unique("all-ferry");
    events
        .put_rule()
        .name(&rule)
        .event_bus_name(bus)
        .event_pattern(serde_json::json!({"source": ["ferry"]}).to_string())
        .send()
        .await
        .unwrap();
    events
        .put_targets()
        .rule(&rule)
        .event_bus_name(bus)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("queue")
                .arn(arn)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    url
}
