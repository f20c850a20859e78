//! A value near the end of a JSON page, read backwards: APIs put the next page's cursor after
//! the records (`{"data":[…],"next_cursor":"…"}`, Slack's `response_metadata`, HubSpot's
//! `paging`), so the cursor can be known from the last bytes of a page before its records are
//! decoded, and the next page asked for while they are ([`super::source`]'s read-ahead).
//!
//! Only the trailing members of the top-level object are read, up to the first array (the
//! records) or anything else that cannot be read backwards cheaply. A value found this way is
//! a guess as good as the page is valid JSON: the read-ahead request it makes is used only if
//! it is exactly the request the decoded page's cursor makes.

use serde_json::Value;

/// The scalar at `path` (field names from the root) among the trailing members of the
/// top-level object of `body`, if it is there.
pub(super) fn tail_value(body: &[u8], path: &[String]) -> Option<Value> {
    if path.is_empty() {
        return None;
    }
    let mut b = Back { b: body, i: body.len() };
    b.ws();
    if !b.eat(b'}') {
        return None;
    }
    let mut leaves = vec![];
    // A scan stopped part-way still found the members after where it stopped.
    let _ = b.object(&mut leaves);
    leaves
        .into_iter()
        .find(|(p, _)| p.iter().rev().eq(path.iter()))
        .and_then(|(_, (from, to))| serde_json::from_slice(&body[from..to]).ok())
}

/// A leaf found: its key path (innermost first) and its value's byte range.
type Leaf = (Vec<String>, (usize, usize));

struct Back<'a> {
    b: &'a [u8],
    /// Everything from here on has been read.
    i: usize,
}

/// Why a backwards read stopped: at an array or something it does not read.
struct Stop;

impl Back<'_> {
    fn ws(&mut self) {
        while self.i > 0 && matches!(self.b[self.i - 1], b' ' | b'\n' | b'\r' | b'\t') {
            self.i -= 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.i.checked_sub(1).map(|j| self.b[j])
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i -= 1;
            true
        } else {
            false
        }
    }

    /// A string ending here: its range, quotes included.
    fn string(&mut self) -> Result<(usize, usize), Stop> {
        let end = self.i;
        if !self.eat(b'"') {
            return Err(Stop);
        }
        loop {
            let q = memchr::memrchr(b'"', &self.b[..self.i]).ok_or(Stop)?;
            let mut k = q;
            while k > 0 && self.b[k - 1] == b'\\' {
                k -= 1;
            }
            self.i = q;
            // Escaped by an odd number of backslashes: part of the string.
            if (q - k) % 2 == 0 {
                return Ok((q, end));
            }
        }
    }

    /// The members of an object whose closing `}` was just read, last first, up to its `{`;
    /// scalar leaves go to `leaves` with their key paths (innermost first).
    fn object(&mut self, leaves: &mut Vec<Leaf>) -> Result<(), Stop> {
        self.ws();
        if self.eat(b'{') {
            return Ok(());
        }
        loop {
            self.ws();
            let mut found = vec![];
            match self.peek().ok_or(Stop)? {
                b'"' => found.push((vec![], self.string()?)),
                b'}' => {
                    self.i -= 1;
                    self.object(&mut found)?;
                }
                b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z' | b'.' | b'+' | b'-' => {
                    let end = self.i;
                    while self.peek().is_some_and(|c| {
                        c.is_ascii_alphanumeric() || matches!(c, b'.' | b'+' | b'-')
                    }) {
                        self.i -= 1;
                    }
                    found.push((vec![], (self.i, end)));
                }
                _ => return Err(Stop),
            }
            self.ws();
            if !self.eat(b':') {
                return Err(Stop);
            }
            self.ws();
            let (from, to) = self.string()?;
            let key: String = serde_json::from_slice(&self.b[from..to]).map_err(|_| Stop)?;
            for (mut p, r) in found {
                p.push(key.clone());
                leaves.push((p, r));
            }
            self.ws();
            if self.eat(b',') {
                continue;
            }
            return if self.eat(b'{') { Ok(()) } else { Err(Stop) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(body: &str, path: &[&str]) -> Option<Value> {
        let path: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        tail_value(body.as_bytes(), &path)
    }

    #[test]
    fn a_cursor_after_the_records_is_read_from_the_end() {
        let page = r#"{"data":[{"id":1,"next_cursor":"inner"}],"next_cursor":"abc=","total":5}"#;
        assert_eq!(at(page, &["next_cursor"]), Some(json!("abc=")));
        assert_eq!(at(page, &["total"]), Some(json!(5)));
        // Slack: nested after the records; whitespace anywhere.
        let slack = "{ \"ok\": true, \"members\": [ {\"id\": \"U1\"} ],\n \"response_metadata\" : { \"next_cursor\" : \"dXNlcjpVMEc5V0ZYTlo=\" } }\n";
        assert_eq!(
            at(slack, &["response_metadata", "next_cursor"]),
            Some(json!("dXNlcjpVMEc5V0ZYTlo="))
        );
        // HubSpot: two levels down.
        let hubspot = r#"{"results":[],"paging":{"next":{"after":"NTI1Cg%3D%3D","link":"?after=NTI1Cg%3D%3D"}}}"#;
        assert_eq!(
            at(hubspot, &["paging", "next", "after"]),
            Some(json!("NTI1Cg%3D%3D"))
        );
        assert_eq!(at(r#"{"data":[],"next":null}"#, &["next"]), Some(json!(null)));
    }

    #[test]
    fn escaped_quotes_and_backslashes_are_read_as_json_reads_them() {
        let page = r#"{"data":[],"next_cursor":"a\"b\\","x":"\\\"}"}"#;
        assert_eq!(at(page, &["next_cursor"]), Some(json!("a\"b\\")));
        assert_eq!(at(page, &["x"]), Some(json!("\\\"}")));
    }

    #[test]
    fn a_cursor_before_the_records_or_inside_them_is_not_guessed() {
        // Before the records: the scan stops at the array.
        assert_eq!(at(r#"{"next_cursor":"abc","data":[{"id":1}]}"#, &["next_cursor"]), None);
        // A record's field of the same name is not the page's.
        assert_eq!(at(r#"{"data":[{"next_cursor":"no"}]}"#, &["next_cursor"]), None);
        // Nested under a key the path does not name.
        assert_eq!(at(r#"{"data":[],"meta":{"next_cursor":"no"}}"#, &["next_cursor"]), None);
        // Not an object, truncated, empty.
        assert_eq!(at(r#"["next_cursor"]"#, &["next_cursor"]), None);
        assert_eq!(at(r#"{"data":[],"next_cursor":"ab"#, &["next_cursor"]), None);
        assert_eq!(at("", &["next_cursor"]), None);
        assert_eq!(at("{}", &["next_cursor"]), None);
    }
}
