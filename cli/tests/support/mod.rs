//! Running the `ferry` binary from async tests (whose runtime serves the mock SaaS servers).

use std::path::Path;
use std::process::Output;

/// `ferry ARGS` in `dir` with `FERRY_HOME=dir/.ferry`, on the embedded engine, logging at
/// `log` (`FERRY_LOG`; none: the default). The blocking wait runs off the runtime's workers,
/// which serve the mock servers meanwhile.
pub async fn ferry_logging(dir: &Path, args: &[&str], log: Option<&str>) -> Output {
    let (dir, args, log): (std::path::PathBuf, Vec<String>, Option<String>) = (
        dir.to_path_buf(),
        args.iter().map(|s| s.to_string()).collect(),
        log.map(str::to_string),
    );
    tokio::task::spawn_blocking(move || {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"));
        c.args(&args)
            .current_dir(&dir)
            .env("FERRY_HOME", dir.join(".ferry"))
            .env_remove("FERRY_REMOTE");
        match log {
            Some(l) => c.env("FERRY_LOG", l),
            None => c.env_remove("FERRY_LOG"),
        };
        c.output().unwrap()
    })
    .await
    .unwrap()
}

/// stdout then stderr.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
