//! Names in the docs and in the CLI's hints match the template and the code: stack outputs,
//! run report detail types, and the state-transition count the cost model uses.

use regex::Regex;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::Path;

fn root() -> std::path::PathBuf {
    ferry_tests::stack::repo_root()
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn files_under(dir: &str, ext: &str) -> Vec<(String, String)> {
    let mut out = vec![];
    let mut stack = vec![root().join(dir)];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == ext) {
                let rel = p.strip_prefix(root()).unwrap().display().to_string();
                out.push((rel, std::fs::read_to_string(&p).unwrap()));
            }
        }
    }
    out
}

fn outputs() -> BTreeSet<String> {
    let tpl = ferry_tests::stack::template::parse(&read("template.yaml"));
    tpl["Outputs"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

/// Every "output `X`" (and "stack output `X`") in docs, README and the code's hints names an
/// output the template has.
#[test]
fn every_named_stack_output_exists() {
    let outs = outputs();
    let re = Regex::new(r"outputs? `([A-Za-z0-9]+)`").unwrap();
    let mut sources = files_under("docs", "md");
    sources.push(("README.md".into(), read("README.md")));
    sources.extend(files_under("shared/src", "rs"));
    sources.extend(files_under("cli/src", "rs"));
    let mut problems = vec![];
    let mut seen = 0;
    for (file, text) in &sources {
        for c in re.captures_iter(text) {
            seen += 1;
            if !outs.contains(&c[1]) {
                problems.push(format!(
                    "{file}: output `{}` is not an output of template.yaml ({outs:?})",
                    &c[1]
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(
        seen >= 3,
        "the hints name stack outputs as \"output `Name`\""
    );
    // docs/deploy.md lists every output the CLI reads.
    let deploy = read("docs/deploy.md");
    for o in &outs {
        assert!(
            deploy.contains(&format!("`{o}`")),
            "docs/deploy.md does not list output `{o}`"
        );
    }
}

/// The event detail types the code publishes, and only those, are the ones the docs name.
#[test]
fn run_report_detail_types_match_the_code() {
    let re = Regex::new(r#"detail_type: "(ferry [^"]+)""#).unwrap();
    let code: BTreeSet<String> = files_under("shared/src", "rs")
        .iter()
        .flat_map(|(_, t)| {
            re.captures_iter(t)
                .map(|c| c[1].to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(code.len() >= 3, "{code:?}");
    // Title-case event names, and whatever a "detail-type"/"detail type(s)" mention quotes.
    let named = Regex::new(r#"ferry (?:[A-Z][a-z]+ )+(?:Report|Deactivated)|detail[- ]types?\W{0,4}["`(]+ferry [^"`)]+"#).unwrap();
    let strip = Regex::new(r#"^detail[- ]types?\W{0,4}["`(]+"#).unwrap();
    let mut docs: Vec<(String, String)> = files_under("docs", "md");
    docs.push(("template.yaml".into(), read("template.yaml")));
    let mut found = BTreeSet::new();
    for (file, text) in &docs {
        let flat = text
            .replace(['\n', '#'], " ")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        for m in named.find_iter(&flat) {
            let name = strip.replace(m.as_str(), "").to_string();
            assert!(
                code.contains(&name),
                "{file} names the detail type {name:?}, which the code never sends ({code:?})"
            );
            found.insert(name);
        }
    }
    for c in &code {
        assert!(
            found.contains(c),
            "the docs never name the detail type {c:?}"
        );
    }
}

/// States a successful run of one slice enters for `chunks` chunks (at most one child's 500),
/// walking flow-run.asl.json's happy path, into the "Run Slices" Map's processor: fetch-page
/// answers `has_more` until the last chunk, never `pause`; after the round no slice is left.
fn transitions(asl: &Value, chunks: u32) -> u32 {
    fn walk(machine: &Value, left: &mut u32) -> u32 {
        let states = machine["States"].as_object().unwrap();
        let mut at = machine["StartAt"].as_str().unwrap().to_string();
        let mut n = 0;
        loop {
            n += 1;
            let s = &states[&at];
            if s["Resource"] == "${FetchPageFunctionArn}" {
                *left -= 1;
            }
            match s["Type"].as_str().unwrap() {
                "Map" => {
                    n += walk(&s["ItemProcessor"], left);
                    at = s["Next"].as_str().unwrap().to_string();
                }
                "Choice" => {
                    // A run that commits once (the default): its slices carry no `commit`.
                    let value = |var: &str| match var {
                        "$.page.has_more" => Some(json!(*left > 0)),
                        "$.page.pause" => Some(json!(false)),
                        "$.slices.count" => Some(json!(0)),
                        "$.slice.commit" => None,
                        other => panic!("the walker does not know {other}"),
                    };
                    fn holds(c: &Value, value: &dyn Fn(&str) -> Option<Value>) -> bool {
                        if let Some(all) = c["And"].as_array() {
                            return all.iter().all(|r| holds(r, value));
                        }
                        let v = value(c["Variable"].as_str().unwrap());
                        match (
                            &c["BooleanEquals"],
                            &c["NumericGreaterThan"],
                            &c["IsPresent"],
                        ) {
                            (_, _, Value::Bool(p)) => v.is_some() == *p,
                            (Value::Bool(b), _, _) => v == Some(json!(*b)),
                            (_, Value::Number(x), _) => {
                                v.and_then(|v| v.as_f64()).unwrap() > x.as_f64().unwrap()
                            }
                            _ => panic!("the walker does not know the rule {c}"),
                        }
                    }
                    let hit = s["Choices"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|c| holds(c, &value));
                    at = match hit {
                        Some(c) => c["Next"].as_str().unwrap().to_string(),
                        None => s["Default"].as_str().unwrap().to_string(),
                    };
                }
                "Succeed" => return n,
                _ if s["End"] == true => return n,
                _ => at = s["Next"].as_str().unwrap().to_string(),
            }
        }
    }
    let mut left = chunks;
    walk(asl, &mut left)
}

/// The cost model's "a run is A × chunks + B transitions" matches the state machine.
#[test]
fn the_cost_model_counts_the_state_machines_transitions() {
    let asl: Value = serde_json::from_str(&read("statemachines/flow-run.asl.json")).unwrap();
    let (one, two) = (transitions(&asl, 1), transitions(&asl, 2));
    let per_chunk = two - one;
    let fixed = one - per_chunk;
    let formula = format!("{per_chunk} × chunks + {fixed}");
    let deploy = read("docs/deploy.md");
    assert!(
        deploy.contains(&formula),
        "docs/deploy.md must state a run is {formula} transitions (from flow-run.asl.json)"
    );
    // Any other statement of the count, on a line about transitions, must agree.
    let re = Regex::new(r"(~?\d+ \+ )?\d+ × chunks( \+ \d+)?").unwrap();
    for (file, text) in files_under("docs", "md") {
        for line in text.lines().filter(|l| l.contains("transition")) {
            for m in re.find_iter(line) {
                assert_eq!(m.as_str(), formula, "{file}: {line}");
            }
        }
    }
    assert!(Path::new(&root().join("docs/deploy.md")).exists());
}
