//! `ferry validate FILE`: every problem of a flow file in one pass, each with its line, then
//! (unless `--offline`) the checks only the source can make.

use crate::out::{CliError, Problem};
use ferry::connector::check::SourceCheck;
use ferry::connector::ConnectorContext;
use ferry::flow::{Flow, FlowError};
use saphyr_parser::{Event, Parser};
use std::collections::HashMap;
use std::path::Path;

/// Line (1-based) and column (1-based) of every path written in a YAML or JSON document: a
/// member's position is its key's.
pub fn positions(text: &str) -> HashMap<String, (usize, usize)> {
    enum Frame {
        Map { path: String, key: Option<String> },
        Seq { path: String, index: usize },
    }
    fn join(path: &str, key: &str) -> String {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    }
    /// The path of the value about to be read; `None` when it is a mapping key.
    fn next_path(stack: &[Frame]) -> Option<String> {
        match stack.last() {
            None => Some(String::new()),
            Some(Frame::Map { key: None, .. }) => None,
            Some(Frame::Map { path, key: Some(k) }) => Some(join(path, k)),
            Some(Frame::Seq { path, index }) => Some(format!("{path}[{index}]")),
        }
    }
    /// A value is complete: the parent moves on.
    fn advance(stack: &mut [Frame]) {
        match stack.last_mut() {
            Some(Frame::Map { key, .. }) => *key = None,
            Some(Frame::Seq { index, .. }) => *index += 1,
            None => {}
        }
    }
    let mut out = HashMap::new();
    let mut stack: Vec<Frame> = vec![];
    for ev in Parser::new_from_str(text) {
        let Ok((ev, span)) = ev else { break };
        let at = (span.start.line(), span.start.col() + 1);
        match ev {
            Event::Scalar(v, ..) => match stack.last_mut() {
                Some(Frame::Map { path, key }) if key.is_none() => {
                    out.entry(join(path, &v)).or_insert(at);
                    *key = Some(v.to_string());
                }
                _ => {
                    if let Some(p) = next_path(&stack) {
                        out.entry(p).or_insert(at);
                    }
                    advance(&mut stack);
                }
            },
            Event::Alias(_) => advance(&mut stack),
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                // A complex mapping key gets a path no error can name.
                let path = next_path(&stack).unwrap_or_else(|| "?".into());
                out.entry(path.clone()).or_insert(at);
                stack.push(if matches!(ev, Event::MappingStart(..)) {
                    Frame::Map { path, key: None }
                } else {
                    Frame::Seq { path, index: 0 }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
                advance(&mut stack);
            }
            _ => {}
        }
    }
    out
}

/// The position of `path`, or of its nearest ancestor written in the file.
fn position_of(map: &HashMap<String, (usize, usize)>, path: &str) -> Option<(usize, usize)> {
    let mut p = path.to_string();
    loop {
        if let Some(x) = map.get(&p) {
            return Some(*x);
        }
        let cut = p.rfind(['.', '['])?;
        p.truncate(cut);
    }
}

/// `line 3 column 9` in a parser's message.
fn syntax_position(msg: &str) -> Option<(usize, usize)> {
    let rest = &msg[msg.find("line ")? + 5..];
    let line: usize = rest
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    let col = rest.find("column ").and_then(|i| {
        rest[i + 7..]
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    });
    Some((line, col.unwrap_or(1)))
}

/// A flow file's text, parsed and validated (without the source), or every problem in it.
pub fn parse_flow(text: &str, origin: &str) -> Result<Flow, CliError> {
    match Flow::parse(text, origin) {
        Ok(f) => Ok(f),
        Err(FlowError::Syntax {
            format, message, ..
        }) => Err(CliError::invalid_flow(
            format!("{origin}: not valid {format}"),
            vec![Problem {
                path: String::new(),
                message: message.clone(),
                line: syntax_position(&message).map(|p| p.0),
                column: syntax_position(&message).map(|p| p.1),
            }],
        )),
        Err(FlowError::Invalid { errors, .. }) => {
            let map = positions(text);
            let mut problems: Vec<Problem> = errors
                .iter()
                .map(|e| Problem::new(e, position_of(&map, &e.path)))
                .collect();
            problems.sort_by_key(|p| (p.line.unwrap_or(usize::MAX), p.column));
            Err(CliError::invalid_flow(
                format!("{origin}: invalid flow, {} problem(s)", problems.len()),
                problems,
            ))
        }
    }
}

/// Read and parse a flow file (no source checks).
pub fn read_flow(path: &Path) -> anyhow::Result<(Flow, String)> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        CliError::new(
            "InvalidArgument",
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    Ok((parse_flow(&text, &path.display().to_string())?, text))
}

/// Check a parsed flow against its source; the problems carry the file's positions.
pub async fn source_problems(
    flow: &Flow,
    text: Option<&str>,
    ctx: &ConnectorContext,
) -> (Vec<Problem>, SourceCheck) {
    let check = ferry::connector::check::check_flow(flow, ctx).await;
    let map = text.map(positions).unwrap_or_default();
    let problems = check
        .errors
        .iter()
        .map(|e| Problem::new(e, position_of(&map, &e.path)))
        .collect();
    (problems, check)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_of_paths() {
        let text = "name: x\nsource:\n  connector: sample\n  chunk: { records: big }\ntasks:\n  - map_all: {}\n  - filter:\n      field: a\n";
        let m = positions(text);
        assert_eq!(m["name"], (1, 1));
        assert_eq!(m["source.connector"], (3, 3));
        assert_eq!(m["source.chunk.records"], (4, 12));
        assert_eq!(m["tasks[1].filter.field"], (8, 7));
        assert_eq!(position_of(&m, "tasks[1].filter.op"), Some((7, 5)));
        let j = positions("{\"name\": \"x\",\n \"source\": {\"entity\": 1}}");
        assert_eq!(j["source.entity"], (2, 13));
    }

    #[test]
    fn twelve_mistakes_twelve_problems_with_lines() {
        let text = include_str!("../tests/fixtures/twelve-mistakes.yaml");
        let e = parse_flow(text, "twelve-mistakes.yaml").unwrap_err();
        assert_eq!(e.problems.len(), 12, "{e}");
        assert!(e.problems.iter().all(|p| p.line.is_some()), "{e}");
    }
}
