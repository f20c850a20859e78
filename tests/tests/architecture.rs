//! The house rules of `shared/src` (docs/architecture.md, "Folders"): no import cycle between
//! top-level modules, and no step imports another step. Read from the source itself.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    ferry_tests::stack::repo_root().join("shared/src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file belongs to (`connector`, `steps`, `schema`, ...).
fn module_of(file: &Path) -> String {
    let rel = file.strip_prefix(src()).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy()
        .to_string();
    first.trim_end_matches(".rs").to_string()
}

/// Code without `#[cfg(test)]` modules or `#![cfg(test)]` files (tests may reach anywhere) and
/// comments.
fn production_code(text: &str) -> String {
    // A whole file of tests (`#![cfg(test)]`).
    if text
        .lines()
        .map(str::trim)
        .find(|t| !t.is_empty() && !t.starts_with("//"))
        == Some("#![cfg(test)]")
    {
        return String::new();
    }
    let mut out = String::new();
    let mut skip_depth: Option<usize> = None;
    let mut depth = 0usize;
    let mut pending_cfg_test = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("//") {
            continue;
        }
        if skip_depth.is_none() && t.starts_with("#[cfg(test)]") {
            pending_cfg_test = true;
            continue;
        }
        let opens = line.matches('{').count();
        let closes = line.matches('}').count();
        if pending_cfg_test && opens > 0 {
            skip_depth = Some(depth);
            pending_cfg_test = false;
        }
        depth = depth + opens - closes.min(depth + opens);
        if let Some(d) = skip_depth {
            if depth <= d {
                skip_depth = None;
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// module -> modules it uses (`crate::x`, or `super::x` from a top-level file).
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = vec![];
    rust_files(&src(), &mut files);
    let modules: BTreeSet<String> = files
        .iter()
        .map(|f| module_of(f))
        .filter(|m| m != "lib")
        .collect();
    let re = regex::Regex::new(r"crate::([a-z_]+)").unwrap();
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let m = module_of(f);
        if m == "lib" {
            continue;
        }
        let code = production_code(&std::fs::read_to_string(f).unwrap());
        for c in re.captures_iter(&code) {
            let to = c[1].to_string();
            if to != m && modules.contains(&to) {
                g.entry(m.clone()).or_default().insert(to);
            }
        }
        g.entry(m).or_default();
    }
    g
}

/// Strongly connected components with more than one module (Tarjan).
fn cycles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<String, usize>,
        low: BTreeMap<String, usize>,
        stack: Vec<String>,
        on: BTreeSet<String>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit(t: &mut T, v: &str) {
        t.index.insert(v.into(), t.next);
        t.low.insert(v.into(), t.next);
        t.next += 1;
        t.stack.push(v.into());
        t.on.insert(v.into());
        for w in t.g.get(v).cloned().unwrap_or_default() {
            if !t.index.contains_key(&w) {
                visit(t, &w);
                let lw = t.low[&w];
                let lv = t.low[v];
                t.low.insert(v.into(), lv.min(lw));
            } else if t.on.contains(&w) {
                let iw = t.index[&w];
                let lv = t.low[v];
                t.low.insert(v.into(), lv.min(iw));
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = vec![];
            while let Some(w) = t.stack.pop() {
                t.on.remove(&w);
                let done = w == v;
                comp.push(w);
                if done {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: vec![],
        on: BTreeSet::new(),
        next: 0,
        out: vec![],
    };
    for v in g.keys() {
        if !t.index.contains_key(v) {
            visit(&mut t, v);
        }
    }
    t.out
}

#[test]
fn no_import_cycle_between_top_level_modules() {
    let g = graph();
    let found = cycles(&g);
    let detail: Vec<String> = found
        .iter()
        .map(|c| {
            let edges: Vec<String> = c
                .iter()
                .flat_map(|a| {
                    g[a].iter()
                        .filter(|b| c.contains(b))
                        .map(move |b| format!("{a} -> {b}"))
                })
                .collect();
            format!("{c:?}: {}", edges.join(", "))
        })
        .collect();
    assert!(
        found.is_empty(),
        "import cycles between top-level modules of shared/src:\n{}",
        detail.join("\n")
    );
}

#[test]
fn no_step_imports_another_step() {
    let steps = [
        "start_run",
        "fetch_page",
        "transform_batch",
        "write_s3",
        "finalize",
    ];
    let mut problems = vec![];
    for s in steps {
        let path = src().join("steps").join(format!("{s}.rs"));
        let code = production_code(&std::fs::read_to_string(&path).unwrap());
        for other in steps.iter().filter(|o| **o != s) {
            for pat in [format!("super::{other}"), format!("steps::{other}")] {
                if code.contains(&pat) {
                    problems.push(format!("steps/{s}.rs uses {pat}"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn the_checker_finds_a_cycle() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("c".into());
    g.entry("c".into()).or_default().insert("a".into());
    g.entry("d".into()).or_default().insert("a".into());
    assert_eq!(
        cycles(&g),
        vec![vec!["a".to_string(), "b".into(), "c".into()]]
    );
}

/// `cargo tree` of one package as its own build resolves it (resolver 2 unifies features only
/// across the packages selected): one `name features` line per crate.
fn tree(package: &str, features: &[&str]) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.current_dir(ferry_tests::stack::repo_root()).args([
        "tree",
        "--offline",
        "-p",
        package,
        "-e",
        "normal",
        "--prefix",
        "none",
        "-f",
        "{p} [{f}]",
    ]);
    for f in features {
        cmd.args(["--features", f]);
    }
    let out = cmd.output().expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree -p {package}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn crate_line<'a>(lines: &'a [String], name: &str) -> Option<&'a String> {
    lines.iter().find(|l| l.starts_with(&format!("{name} v")))
}

/// docs/architecture.md, "Features": the Lambdas link neither SQLite nor the embedded engine
/// (the `local` feature holds `ferry::local`, the ASL interpreter, and rusqlite).
#[test]
fn lambdas_link_no_sqlite_and_no_embedded_engine() {
    for f in [
        "start-run",
        "fetch-page",
        "transform-batch",
        "write-s3",
        "finalize",
    ] {
        let lines = tree(f, &[]);
        assert!(
            crate_line(&lines, "rusqlite").is_none()
                && crate_line(&lines, "libsqlite3-sys").is_none(),
            "{f} links SQLite:\n{}",
            lines.join("\n")
        );
        let ferry = crate_line(&lines, "ferry").expect("the Lambda depends on ferry");
        assert!(
            ferry.contains("aws") && !ferry.contains("local"),
            "{f} takes ferry with features {ferry}; it must be `aws` only"
        );
        assert!(
            crate_line(&lines, "lambda_runtime").is_some(),
            "{f}: {ferry}"
        );
    }
}

/// The quickstart's build (the CLI without `remote`) compiles no AWS SDK; with `remote` it does.
#[test]
fn quickstart_cli_builds_without_the_aws_sdk() {
    let lines = tree("ferry-cli", &[]);
    let aws: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("aws-") || l.starts_with("lambda_runtime "))
        .collect();
    assert!(aws.is_empty(), "the default CLI build compiles {aws:?}");
    assert!(crate_line(&lines, "rusqlite").is_some());
    let remote = tree("ferry-cli", &["remote"]);
    assert!(crate_line(&remote, "aws-sdk-dynamodb").is_some());
}
