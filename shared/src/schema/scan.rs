//! A response page decoded by walking its bytes once against the run's schema, straight into
//! Arrow builders: no tape, no intermediate values.
//!
//! arrow-json's decoder first copies every token of a page into a tape, then each column walks
//! the tape; on the bench's pages that was ~40 % of a run's CPU. The crates that parse JSON
//! faster in general (serde_json and sonic-rs driven through a `DeserializeSeed` into the same
//! builders, simd-json's tape walked into them) measured 10–25 % faster than arrow-json on the
//! bench's page, not more (docs/performance.md); knowing the schema is what makes the difference:
//! a record's keys usually come in the schema's order, so a key is one comparison, and a value
//! goes straight to its column.
//!
//! The scanner is deliberately narrow. It accepts strict JSON only, the column types it knows
//! (64-bit integers, doubles, booleans, text — any JSON value, containers as their compact JSON
//! text —, UTC-microsecond timestamps, dates, 128-bit decimals, and structs and lists of these)
//! and the values whose Arrow value is unambiguous (an integer in an integer column, a string in
//! a timestamp column, an object in a struct column, ...). Anything else — a string in a number
//! column, a date arrow cannot parse, a duplicated key, a number that does not fit, nesting
//! deeper than 64 — makes it give the page back (`None`), and the page is decoded by arrow-json
//! exactly as before, errors and all. So for a page it accepts, it must produce what arrow-json
//! produces; the differential tests below hold it to that, value by value.

use super::Node;
use arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Decimal128Builder, Float64Builder, Int64Builder,
    NullBufferBuilder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// What a scan found: the records, and each paging field's raw JSON text (`None`: absent).
pub(super) struct Scanned<'a> {
    pub batch: RecordBatch,
    pub meta: Vec<Option<&'a [u8]>>,
    /// The record keys the schema does not have, each once.
    pub unknown: Vec<String>,
}

#[derive(Debug, Clone)]
enum Kind {
    Int,
    Float,
    Bool,
    Text,
    /// UTC-microsecond timestamps (whatever the column's time zone: a string's own offset
    /// decides the instant; the zone is only used when the string has none).
    Micros(arrow::array::timezone::Tz),
    /// Days since the epoch, from `YYYY-MM-DD` (or any form arrow's date parser reads).
    Date,
    /// Decimals of this precision and scale, from strings or numbers.
    Decimal(u8, i8),
    /// An object, read into these fields.
    Struct(Arc<Members>),
    /// An array of values of this kind.
    List(Box<Kind>),
}

impl Kind {
    /// `None` for a type the scanner does not decode. Nested fields must be nullable (a member
    /// may always be missing).
    fn of(t: &DataType) -> Option<Kind> {
        Some(match t {
            DataType::Int64 => Kind::Int,
            DataType::Float64 => Kind::Float,
            DataType::Boolean => Kind::Bool,
            DataType::Utf8 => Kind::Text,
            DataType::Date32 => Kind::Date,
            DataType::Decimal128(p, s) => Kind::Decimal(*p, *s),
            DataType::Timestamp(TimeUnit::Microsecond, zone) => {
                Kind::Micros(zone.as_deref().unwrap_or("+00:00").parse().ok()?)
            }
            DataType::Struct(fields) => Kind::Struct(Arc::new(Members::new(fields, true)?)),
            DataType::List(item) if item.is_nullable() && item.metadata().is_empty() => {
                Kind::List(Box::new(Kind::of(item.data_type())?))
            }
            _ => return None,
        })
    }
}

/// The members of an object the schema knows: the records' own fields, or a struct column's.
#[derive(Debug)]
struct Members {
    kinds: Vec<Kind>,
    /// Each name as it appears in JSON when written without escapes (`"id"`), to match a key
    /// without reading it as a string; `None` for a name that would need escaping.
    quoted: Vec<Option<Vec<u8>>>,
    index: HashMap<String, usize>,
    fields: arrow::datatypes::Fields,
}

impl Members {
    fn new(fields: &arrow::datatypes::Fields, nested: bool) -> Option<Members> {
        let mut kinds = vec![];
        for f in fields {
            if !f.metadata().is_empty() || (nested && !f.is_nullable()) {
                return None;
            }
            kinds.push(Kind::of(f.data_type())?);
        }
        Some(Members {
            kinds,
            quoted: fields
                .iter()
                .map(|f| {
                    (!needs_escape(f.name())).then(|| format!("\"{}\"", f.name()).into_bytes())
                })
                .collect(),
            index: fields
                .iter()
                .enumerate()
                .map(|(i, f)| (f.name().clone(), i))
                .collect(),
            fields: fields.clone(),
        })
    }
}

/// The plan for one page shape: built once per entity, used for every page.
#[derive(Debug)]
pub(super) struct Scanner {
    root: Node,
    schema: SchemaRef,
    record: Arc<Members>,
    metas: usize,
    /// Each column's value bytes on the previous page (room reserved up front).
    sizes: Mutex<(usize, Vec<usize>)>,
}

impl Scanner {
    /// `root`: where the records and the `metas` paging fields are (the page shape's tree).
    /// `None` when a column's type is not one the scanner decodes (the page shape then uses
    /// arrow-json alone).
    pub(super) fn new(root: Node, metas: usize, schema: SchemaRef) -> Option<Self> {
        let record = Arc::new(Members::new(schema.fields(), false)?);
        Some(Scanner {
            root,
            record,
            metas,
            sizes: Mutex::new((0, vec![0; schema.fields().len()])),
            schema,
        })
    }

    /// Decode one page; `None` gives it back to arrow-json.
    pub(super) fn scan<'a>(&self, text: &'a str) -> Option<Scanned<'a>> {
        let body = text.as_bytes();
        let (rows, bytes) = self.sizes.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut p = Page {
            s: Cursor {
                b: body,
                text,
                at: 0,
                scratch: String::new(),
            },
            records: Object::of(self.record.clone(), rows, &bytes),
            meta: vec![None; self.metas],
            unknown: Default::default(),
            json: String::new(),
        };
        p.s.ws();
        let open = match self.root {
            Node::Records => b'[',
            _ => b'{',
        };
        if p.s.peek()? != open {
            return None;
        }
        p.step(&self.root, 0)?;
        p.s.ws();
        if p.s.at != body.len() {
            return None;
        }
        let rows = p.records.rows as usize;
        let sizes: Vec<usize> = p.records.cols.iter().map(Col::bytes).collect();
        let columns = p
            .records
            .cols
            .into_iter()
            .zip(self.schema.fields())
            .map(|(c, f)| c.finish(f.data_type()))
            .collect::<Option<Vec<ArrayRef>>>()?;
        *self.sizes.lock().unwrap_or_else(|e| e.into_inner()) = (rows, sizes);
        let batch = RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(rows)),
        )
        .ok()?;
        Some(Scanned {
            batch,
            meta: p.meta,
            unknown: p.unknown.into_iter().collect(),
        })
    }
}

/// The builders of an object's members, row by row.
struct Object {
    members: Arc<Members>,
    cols: Vec<Col>,
    /// For each column, the last row (1-based) that set it.
    seen: Vec<u32>,
    rows: u32,
}

impl Object {
    fn of(members: Arc<Members>, rows: usize, bytes: &[usize]) -> Object {
        Object {
            cols: members
                .kinds
                .iter()
                .enumerate()
                .map(|(i, k)| Col::new(k, rows, bytes.get(i).copied().unwrap_or(0)))
                .collect(),
            seen: vec![0; members.kinds.len()],
            rows: 0,
            members,
        }
    }

    /// A row of nulls (a null or missing object).
    fn null(&mut self) {
        for c in &mut self.cols {
            c.null();
        }
    }
}

enum Col {
    Int(Int64Builder),
    Float(Float64Builder),
    Bool(BooleanBuilder),
    Text(StringBuilder),
    Micros(TimestampMicrosecondBuilder, arrow::array::timezone::Tz),
    Date(Date32Builder),
    Decimal(Decimal128Builder, u8, i8),
    Struct(Box<Object>, NullBufferBuilder),
    List(Box<Col>, Vec<i32>, NullBufferBuilder),
}

impl Col {
    fn new(kind: &Kind, rows: usize, bytes: usize) -> Col {
        let rows = rows.max(16);
        match kind {
            Kind::Int => Col::Int(Int64Builder::with_capacity(rows)),
            Kind::Float => Col::Float(Float64Builder::with_capacity(rows)),
            Kind::Bool => Col::Bool(BooleanBuilder::with_capacity(rows)),
            Kind::Text => Col::Text(StringBuilder::with_capacity(rows, bytes.max(1024))),
            Kind::Micros(tz) => Col::Micros(TimestampMicrosecondBuilder::with_capacity(rows), *tz),
            Kind::Date => Col::Date(Date32Builder::with_capacity(rows)),
            Kind::Decimal(p, s) => Col::Decimal(Decimal128Builder::with_capacity(rows), *p, *s),
            Kind::Struct(m) => Col::Struct(
                Box::new(Object::of(m.clone(), 16, &[])),
                NullBufferBuilder::new(rows),
            ),
            Kind::List(item) => Col::List(
                Box::new(Col::new(item, 16, 0)),
                vec![0],
                NullBufferBuilder::new(rows),
            ),
        }
    }

    fn null(&mut self) {
        match self {
            Col::Int(b) => b.append_null(),
            Col::Float(b) => b.append_null(),
            Col::Bool(b) => b.append_null(),
            Col::Text(b) => b.append_null(),
            Col::Micros(b, _) => b.append_null(),
            Col::Date(b) => b.append_null(),
            Col::Decimal(b, ..) => b.append_null(),
            Col::Struct(o, nulls) => {
                o.null();
                nulls.append_null();
            }
            Col::List(_, offsets, nulls) => {
                offsets.push(*offsets.last().unwrap_or(&0));
                nulls.append_null();
            }
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Col::Text(b) => b.values_slice().len(),
            _ => 0,
        }
    }

    fn finish(self, t: &DataType) -> Option<ArrayRef> {
        Some(match self {
            Col::Int(mut b) => Arc::new(b.finish()),
            Col::Float(mut b) => Arc::new(b.finish()),
            Col::Bool(mut b) => Arc::new(b.finish()),
            Col::Text(mut b) => Arc::new(b.finish()),
            Col::Micros(b, _) => Arc::new(b.with_data_type(t.clone()).finish()),
            Col::Date(mut b) => Arc::new(b.finish()),
            Col::Decimal(b, ..) => Arc::new(b.with_data_type(t.clone()).finish()),
            Col::Struct(o, mut nulls) => {
                let children = o
                    .cols
                    .into_iter()
                    .zip(o.members.fields.iter())
                    .map(|(c, f)| c.finish(f.data_type()))
                    .collect::<Option<Vec<_>>>()?;
                Arc::new(
                    arrow::array::StructArray::try_new(
                        o.members.fields.clone(),
                        children,
                        nulls.finish(),
                    )
                    .ok()?,
                )
            }
            Col::List(item, offsets, mut nulls) => {
                let DataType::List(field) = t else {
                    return None;
                };
                let values = item.finish(field.data_type())?;
                Arc::new(
                    arrow::array::ListArray::try_new(
                        field.clone(),
                        arrow::buffer::OffsetBuffer::new(offsets.into()),
                        values,
                        nulls.finish(),
                    )
                    .ok()?,
                )
            }
        })
    }
}

/// A string just read: in the body, or unescaped into the scratch buffer.
#[derive(Clone, Copy)]
enum Str {
    Body(usize, usize),
    Scratch,
}

struct Cursor<'a> {
    b: &'a [u8],
    /// The same bytes, known to be UTF-8.
    text: &'a str,
    at: usize,
    scratch: String,
}

impl<'a> Cursor<'a> {
    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.b.get(self.at) {
            self.at += 1;
        }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.at).copied()
    }

    /// Skip whitespace, then expect `c`.
    #[inline]
    fn eat(&mut self, c: u8) -> Option<()> {
        self.ws();
        (self.peek()? == c).then(|| self.at += 1)
    }

    fn get(&self, s: Str) -> &str {
        match s {
            // Both ends are at ASCII quotes of a UTF-8 body: character boundaries.
            Str::Body(a, b) => &self.text[a..b],
            Str::Scratch => &self.scratch,
        }
    }

    /// A string, at its opening quote. Control characters are let through, as arrow-json does.
    fn string(&mut self) -> Option<Str> {
        if self.peek()? != b'"' {
            return None;
        }
        let start = self.at + 1;
        let n = memchr::memchr2(b'"', b'\\', &self.b[start..])?;
        if self.b[start + n] == b'"' {
            self.at = start + n + 1;
            return Some(Str::Body(start, start + n));
        }
        self.scratch.clear();
        let mut at = start;
        loop {
            let n = memchr::memchr2(b'"', b'\\', &self.b[at..])?;
            self.scratch.push_str(&self.text[at..at + n]);
            at += n;
            if self.b[at] == b'"' {
                self.at = at + 1;
                return Some(Str::Scratch);
            }
            at += 1;
            let c = match *self.b.get(at)? {
                b'"' => '"',
                b'\\' => '\\',
                b'/' => '/',
                b'b' => '\u{8}',
                b'f' => '\u{c}',
                b'n' => '\n',
                b'r' => '\r',
                b't' => '\t',
                b'u' => {
                    let high = hex4(self.b.get(at + 1..at + 5)?)?;
                    at += 4;
                    match high {
                        0xD800..=0xDBFF => {
                            if self.b.get(at + 1..at + 3)? != b"\\u" {
                                return None;
                            }
                            let low = hex4(self.b.get(at + 3..at + 7)?)?;
                            if !(0xDC00..=0xDFFF).contains(&low) {
                                return None;
                            }
                            at += 6;
                            char::from_u32(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))?
                        }
                        0xDC00..=0xDFFF => return None,
                        c => char::from_u32(c)?,
                    }
                }
                _ => return None,
            };
            self.scratch.push(c);
            at += 1;
        }
    }

    /// A number by JSON's grammar; its text, and whether it is a plain integer.
    fn number(&mut self) -> Option<(&'a [u8], bool)> {
        let b = self.b;
        let start = self.at;
        let mut i = start;
        let digits = |i: &mut usize| {
            let from = *i;
            while b.get(*i).is_some_and(u8::is_ascii_digit) {
                *i += 1;
            }
            *i - from
        };
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i)? {
            b'0' => i += 1,
            b'1'..=b'9' => {
                digits(&mut i);
            }
            _ => return None,
        }
        let mut int = true;
        if b.get(i) == Some(&b'.') {
            i += 1;
            int = false;
            if digits(&mut i) == 0 {
                return None;
            }
        }
        if let Some(b'e' | b'E') = b.get(i) {
            i += 1;
            int = false;
            if let Some(b'+' | b'-') = b.get(i) {
                i += 1;
            }
            if digits(&mut i) == 0 {
                return None;
            }
        }
        // A number runs into its delimiter: `1x` or `01` is not JSON.
        if let Some(c) = b.get(i) {
            if c.is_ascii_alphanumeric() || *c == b'.' || *c == b'-' || *c == b'+' {
                return None;
            }
        }
        self.at = i;
        Some((&b[start..i], int))
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if self.b.get(self.at..self.at + word.len())? != word {
            return None;
        }
        self.at += word.len();
        if self.peek().is_some_and(|c| c.is_ascii_alphanumeric()) {
            return None;
        }
        Some(())
    }

    /// Skip any value, checking it is JSON.
    fn skip(&mut self, depth: u32) -> Option<()> {
        self.walk(None, depth)
    }

    /// Copy any value to `out` as compact JSON, strings escaped as serde_json escapes them: what
    /// `schema::write_json` makes of arrow-json's tape (numbers as written).
    fn compact(&mut self, out: &mut String, depth: u32) -> Option<()> {
        self.walk(Some(out), depth)
    }

    /// Read any value, checking it is JSON; with `out`, copy it there as compact JSON.
    fn walk(&mut self, mut out: Option<&mut String>, depth: u32) -> Option<()> {
        if depth > 64 {
            return None;
        }
        self.ws();
        match self.peek()? {
            b'"' => {
                let v = self.string()?;
                if let Some(out) = out {
                    quote(self.get(v), out);
                }
            }
            c @ (b'{' | b'[') => {
                let close = if c == b'{' { b'}' } else { b']' };
                let mut more = self.open(c, close)?;
                push(&mut out, c as char);
                let mut first = true;
                while more {
                    if !std::mem::take(&mut first) {
                        push(&mut out, ',');
                    }
                    self.ws();
                    if c == b'{' {
                        let k = self.string()?;
                        if let Some(out) = out.as_deref_mut() {
                            quote(self.get(k), out);
                        }
                        self.eat(b':')?;
                        push(&mut out, ':');
                    }
                    self.walk(out.as_deref_mut(), depth + 1)?;
                    more = self.next(close)?;
                }
                push(&mut out, close as char);
            }
            c => {
                let text = match c {
                    b't' => self.literal(b"true").map(|_| "true")?,
                    b'f' => self.literal(b"false").map(|_| "false")?,
                    b'n' => self.literal(b"null").map(|_| "null")?,
                    // Both ends of a number are ASCII: a character boundary.
                    _ => {
                        let from = self.at;
                        self.number()?;
                        &self.text[from..self.at]
                    }
                };
                if let Some(out) = out {
                    out.push_str(text);
                }
            }
        }
        Some(())
    }

    /// At `open` (an object's or array's): whether a member or element follows (false: the
    /// `close` came right after, and was read).
    #[inline]
    fn open(&mut self, open: u8, close: u8) -> Option<bool> {
        if self.peek()? != open {
            return None;
        }
        self.at += 1;
        self.ws();
        if self.peek()? == close {
            self.at += 1;
            return Some(false);
        }
        Some(true)
    }

    /// After a member or element: a `,` (true: another follows) or the `close` (false).
    #[inline]
    fn next(&mut self, close: u8) -> Option<bool> {
        self.ws();
        let c = self.peek()?;
        self.at += 1;
        match c {
            b',' => Some(true),
            c if c == close => Some(false),
            _ => None,
        }
    }
}

/// `hay` starts with `needle` (compared eight bytes at a time: names are short, and a call to
/// `memcmp` per key cost more than the comparison).
#[inline(always)]
fn starts_with(hay: &[u8], needle: &[u8]) -> bool {
    if hay.len() < needle.len() {
        return false;
    }
    let (mut a, mut b) = (&hay[..needle.len()], needle);
    while a.len() >= 8 {
        let word = |s: &[u8]| u64::from_ne_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]);
        if word(a) != word(b) {
            return false;
        }
        (a, b) = (&a[8..], &b[8..]);
    }
    a.iter().zip(b).all(|(x, y)| x == y)
}

fn push(out: &mut Option<&mut String>, c: char) {
    if let Some(out) = out {
        out.push(c);
    }
}

/// Whether `s` needs escaping to be written as a JSON string.
fn needs_escape(s: &str) -> bool {
    s.bytes().any(|c| c == b'"' || c == b'\\' || c < 0x20)
}

/// `s` as a JSON string, escaped by serde_json (as `schema::write_json` does); a string with
/// nothing to escape is copied as it is.
fn quote(s: &str, out: &mut String) {
    if needs_escape(s) {
        out.push_str(&serde_json::to_string(s).unwrap_or_default());
    } else {
        out.push('"');
        out.push_str(s);
        out.push('"');
    }
}

fn hex4(h: &[u8]) -> Option<u32> {
    h.iter()
        .try_fold(0u32, |acc, c| Some(acc << 4 | (*c as char).to_digit(16)?))
}

struct Page<'a> {
    s: Cursor<'a>,
    records: Object,
    meta: Vec<Option<&'a [u8]>>,
    /// Record keys the schema does not have.
    unknown: std::collections::HashSet<String>,
    /// Room for a value's compact JSON text.
    json: String,
}

impl<'a> Page<'a> {
    fn step(&mut self, step: &Node, depth: u32) -> Option<()> {
        if depth > 64 {
            return None;
        }
        self.s.ws();
        // A null object or records array holds nothing, as arrow-json reads it.
        if self.s.peek()? == b'n' {
            return self.s.literal(b"null");
        }
        match step {
            Node::Meta(i) => {
                let from = self.s.at;
                self.s.skip(depth)?;
                self.meta[*i] = Some(&self.s.b[from..self.s.at]);
            }
            Node::Records => {
                let mut more = self.s.open(b'[', b']')?;
                while more {
                    self.s.ws();
                    object(
                        &mut self.s,
                        &mut self.records,
                        Some(&mut self.unknown),
                        &mut self.json,
                        depth + 1,
                    )?;
                    more = self.s.next(b']')?;
                }
            }
            Node::Struct(children) => {
                let mut done = vec![false; children.len()];
                let mut more = self.s.open(b'{', b'}')?;
                while more {
                    self.s.ws();
                    let key = self.s.string()?;
                    self.s.eat(b':')?;
                    let key = self.s.get(key);
                    match children.iter().position(|(k, _)| k == key) {
                        None => self.s.skip(depth + 1)?,
                        Some(i) => {
                            if std::mem::replace(&mut done[i], true) {
                                return None;
                            }
                            self.step(&children[i].1, depth + 1)?;
                        }
                    }
                    more = self.s.next(b'}')?;
                }
            }
        }
        Some(())
    }
}

/// One object, at its `{`, as a row of `o`: each known member to its column, the others skipped
/// (their keys noted in `unknown` when given), the columns it lacks null.
fn object(
    s: &mut Cursor,
    o: &mut Object,
    mut unknown: Option<&mut std::collections::HashSet<String>>,
    json: &mut String,
    depth: u32,
) -> Option<()> {
    if depth > 64 {
        return None;
    }
    let Object {
        members,
        cols,
        seen,
        rows,
    } = o;
    *rows += 1;
    let row = *rows;
    let mut expect = 0;
    let mut more = s.open(b'{', b'}')?;
    while more {
        s.ws();
        // Keys usually come in the schema's order: try the next column's name as written.
        let col = match members.quoted.get(expect) {
            Some(Some(q)) if starts_with(&s.b[s.at..], q) => {
                s.at += q.len();
                s.eat(b':')?;
                Some(expect)
            }
            _ => {
                let key = s.string()?;
                s.eat(b':')?;
                let name = s.get(key);
                let col = members.index.get(name).copied();
                if let (None, Some(u)) = (col, unknown.as_mut()) {
                    if !u.contains(name) {
                        u.insert(name.to_string());
                    }
                }
                col
            }
        };
        s.ws();
        match col {
            None => s.skip(depth + 1)?,
            Some(c) => {
                if std::mem::replace(&mut seen[c], row) == row {
                    return None;
                }
                value(s, &mut cols[c], json, depth + 1)?;
                expect = c + 1;
            }
        }
        more = s.next(b'}')?;
    }
    for (c, seen) in seen.iter().enumerate() {
        if *seen != row {
            cols[c].null();
        }
    }
    Some(())
}

/// A value into column `col`.
#[inline]
fn value(s: &mut Cursor, col: &mut Col, json: &mut String, depth: u32) -> Option<()> {
    let first = s.peek()?;
    if first == b'n' {
        s.literal(b"null")?;
        col.null();
        return Some(());
    }
    match col {
        Col::Text(b) => match first {
            b'"' => {
                let v = s.string()?;
                b.append_value(s.get(v));
            }
            // Any other value as its compact JSON text, as `schema::write_json` writes it
            // (arrow-json's tape keeps a number's text as written).
            _ => {
                json.clear();
                s.compact(json, depth)?;
                b.append_value(&*json);
            }
        },
        Col::Int(b) => {
            let (n, int) = s.number()?;
            if !int {
                return None;
            }
            b.append_value(lexical_core::parse::<i64>(n).ok()?);
        }
        Col::Float(b) => {
            let (n, _) = s.number()?;
            b.append_value(lexical_core::parse::<f64>(n).ok()?);
        }
        Col::Bool(b) => match first {
            b't' => {
                s.literal(b"true")?;
                b.append_value(true);
            }
            b'f' => {
                s.literal(b"false")?;
                b.append_value(false);
            }
            _ => return None,
        },
        Col::Micros(b, tz) => {
            if first == b'"' {
                let v = s.string()?;
                let v = s.get(v);
                let us = match utc_micros(v) {
                    Some(us) => us,
                    None => arrow::compute::kernels::cast_utils::string_to_datetime(tz, v)
                        .ok()?
                        .timestamp_micros(),
                };
                b.append_value(us);
            } else {
                // A number is taken as microseconds, as arrow-json does.
                let (n, int) = s.number()?;
                if !int {
                    return None;
                }
                b.append_value(lexical_core::parse::<i64>(n).ok()?);
            }
        }
        Col::Date(b) => {
            use arrow::compute::kernels::cast_utils::Parser;
            if first == b'"' {
                let v = s.string()?;
                b.append_value(arrow::datatypes::Date32Type::parse(s.get(v))?);
            } else {
                let (n, int) = s.number()?;
                if !int {
                    return None;
                }
                b.append_value(lexical_core::parse::<i32>(n).ok()?);
            }
        }
        Col::Decimal(b, p, sc) => {
            use arrow::compute::kernels::cast_utils::parse_decimal;
            let v = if first == b'"' {
                let v = s.string()?;
                parse_decimal::<arrow::datatypes::Decimal128Type>(s.get(v), *p, *sc)
            } else {
                let (n, _) = s.number()?;
                parse_decimal::<arrow::datatypes::Decimal128Type>(
                    std::str::from_utf8(n).ok()?,
                    *p,
                    *sc,
                )
            };
            b.append_value(v.ok()?);
        }
        Col::Struct(o, nulls) => {
            if first != b'{' {
                return None;
            }
            object(s, o, None, json, depth)?;
            nulls.append_non_null();
        }
        Col::List(item, offsets, nulls) => {
            if depth > 64 {
                return None;
            }
            let mut n = 0;
            let mut more = s.open(b'[', b']')?;
            while more {
                s.ws();
                value(s, item, json, depth + 1)?;
                n += 1;
                more = s.next(b']')?;
            }
            offsets.push(offsets.last()? + n);
            nulls.append_non_null();
        }
    }
    Some(())
}

/// Microseconds since the epoch of `YYYY-MM-DDTHH:MM:SS[.f{1,9}]` followed by `Z` or `±HH:MM`,
/// the forms most APIs send; `None` for any other form (and for an impossible date, time or
/// offset), which goes to arrow's parser.
pub(crate) fn utc_micros(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let d = |i: usize| -> Option<i64> {
        let c = b[i].wrapping_sub(b'0');
        (c < 10).then_some(c as i64)
    };
    let two = |i: usize| Some(d(i)? * 10 + d(i + 1)?);
    // Where the seconds' fraction ends, and the offset east of UTC in seconds.
    let (end, offset) = match b[b.len() - 1] {
        b'Z' => (b.len() - 1, 0),
        _ if b.len() >= 25 && b[b.len() - 3] == b':' => {
            let at = b.len() - 6;
            let (oh, om) = (two(at + 1)?, two(at + 4)?);
            if oh > 23 || om > 59 {
                return None;
            }
            match b[at] {
                b'+' => (at, oh * 3600 + om * 60),
                b'-' => (at, -(oh * 3600 + om * 60)),
                _ => return None,
            }
        }
        _ => return None,
    };
    let y = two(0)? * 100 + two(2)?;
    let (m, day, h, mi, sec) = (two(5)?, two(8)?, two(11)?, two(14)?, two(17)?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&m)
        || day < 1
        || day > month_days[m as usize - 1]
        || h > 23
        || mi > 59
        || sec > 59
    {
        return None;
    }
    let mut nanos = 0;
    let frac = &b[19..end];
    if !frac.is_empty() {
        if frac[0] != b'.' || !(2..=10).contains(&frac.len()) {
            return None;
        }
        let mut scale = 100_000_000;
        for i in 20..end {
            nanos += d(i)? * scale;
            scale /= 10;
        }
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + (153 * m + 2) / 5 + day - 1;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3_600 + mi * 60 + sec - offset) * 1_000_000 + nanos / 1_000)
}

#[cfg(test)]
mod tests {
    use super::super::PageShape;
    use super::*;
    use arrow::datatypes::{Field, Schema};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn schema() -> SchemaRef {
        let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("amount", DataType::Float64, true),
            Field::new("active", DataType::Boolean, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("updated_at", ts, true),
            Field::new("note", DataType::Utf8, true),
            Field::new("day", DataType::Date32, true),
            Field::new("price", DataType::Decimal128(20, 3), true),
            Field::new_struct("owner", owner(), true),
            Field::new_list("labels", Field::new_struct("item", owner(), true), true),
            Field::new_list("tags", Field::new("item", DataType::Utf8, true), true),
        ]))
    }

    fn owner() -> Vec<Field> {
        vec![
            Field::new("id", DataType::Int64, true),
            Field::new("login", DataType::Utf8, true),
        ]
    }

    fn shapes(records: &[&str], meta: &[&[&str]]) -> (PageShape, PageShape) {
        let own = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let shape = PageShape::new(
            own(records),
            meta.iter().map(|m| own(m)).collect(),
            schema(),
        )
        .unwrap();
        assert!(
            shape.scans(),
            "every column here is one the scanner decodes"
        );
        (shape.clone(), shape.without_scanner())
    }

    fn pick<'a>(rng: &mut StdRng, xs: &[&'a str]) -> &'a str {
        xs[rng.random_range(0..xs.len())]
    }

    fn ws(rng: &mut StdRng) -> &'static str {
        if rng.random_bool(0.8) {
            ""
        } else {
            pick(rng, &[" ", "\n", "\t", " \r\n  "])
        }
    }

    /// A JSON string literal with escapes, multi-byte characters and raw control characters.
    fn string(rng: &mut StdRng) -> String {
        let mut s = String::from("\"");
        for _ in 0..rng.random_range(0..12) {
            s.push_str(pick(
                rng,
                &[
                    "a",
                    "Zz",
                    " ",
                    "é",
                    "日本",
                    "🚀",
                    "\\\"",
                    "\\\\",
                    "\\/",
                    "\\n",
                    "\\t",
                    "\\b",
                    "\\f",
                    "\\r",
                    "\\u00e9",
                    "\\u65E5",
                    "\\ud83d\\ude80",
                    "\\u0000",
                    "\u{1}",
                    "'",
                    "{",
                    "]",
                    ",",
                ],
            ));
        }
        s.push('"');
        s
    }

    fn number(rng: &mut StdRng) -> String {
        match rng.random_range(0..8) {
            0 => rng.random::<i64>().to_string(),
            1 => rng.random_range(-1000..1000).to_string(),
            2 => format!("{}", rng.random::<f64>() * 1e6 - 5e5),
            3 => format!("{:e}", rng.random::<f64>() * 1e-3),
            4 => pick(
                rng,
                &[
                    "0",
                    "-0",
                    "1E3",
                    "2.5e-3",
                    "-0.0",
                    "1e+2",
                    "0.1",
                    "9007199254740993",
                ],
            )
            .into(),
            5 => format!(
                "{}.{:03}",
                rng.random_range(0..100000),
                rng.random_range(0..1000)
            ),
            6 => "123456789012345678901234567890".into(),
            _ => format!("{}", rng.random::<f32>()),
        }
    }

    fn timestamp(rng: &mut StdRng) -> String {
        let (y, m, d) = (
            rng.random_range(1..10000),
            rng.random_range(1..13),
            rng.random_range(1..29),
        );
        let (h, mi, s) = (
            rng.random_range(0..24),
            rng.random_range(0..60),
            rng.random_range(0..60),
        );
        let frac = match rng.random_range(0..4) {
            0 => String::new(),
            1 => format!(".{}", rng.random_range(0..10)),
            2 => format!(".{:06}", rng.random_range(0..1_000_000)),
            _ => format!(".{:09}", rng.random_range(0..1_000_000_000)),
        };
        let zone = pick(rng, &["Z", "Z", "Z", "+02:00", "-05:30", ""]);
        let sep = pick(rng, &["T", "T", "T", " "]);
        format!("\"{y:04}-{m:02}-{d:02}{sep}{h:02}:{mi:02}:{s:02}{frac}{zone}\"")
    }

    /// Any JSON value, nested, for members the schema does not know.
    fn any(rng: &mut StdRng, depth: u32) -> String {
        match rng.random_range(0..if depth > 2 { 4 } else { 6 }) {
            0 => string(rng),
            1 => number(rng),
            2 => pick(rng, &["true", "false", "null"]).into(),
            3 => timestamp(rng),
            4 => format!(
                "[{}]",
                (0..rng.random_range(0..3))
                    .map(|_| any(rng, depth + 1))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            _ => format!(
                "{{{}}}",
                (0..rng.random_range(0..3))
                    .map(|i| format!("\"k{i}\":{}{}", ws(rng), any(rng, depth + 1)))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        }
    }

    /// A value for column `name`: one the scanner takes, or (when `odd`) one of the kinds it
    /// gives back to arrow-json.
    fn value(rng: &mut StdRng, name: &str, odd: bool) -> String {
        if rng.random_bool(0.1) {
            return "null".into();
        }
        if odd && rng.random_bool(0.2) {
            return any(rng, 0);
        }
        match name {
            "id" => match rng.random_range(0..3) {
                0 => rng.random::<i64>().to_string(),
                _ => rng.random_range(-100_000..100_000).to_string(),
            },
            "amount" => number(rng),
            "active" => pick(rng, &["true", "false"]).into(),
            "updated_at" => timestamp(rng),
            "day" => match rng.random_range(0..3) {
                0 => rng.random_range(-100_000..100_000).to_string(),
                _ => format!(
                    "\"{:04}-{:02}-{:02}\"",
                    rng.random_range(1..10000),
                    rng.random_range(1..13),
                    rng.random_range(1..29)
                ),
            },
            "price" => match rng.random_range(0..4) {
                0 => format!(
                    "\"{}.{:02}\"",
                    rng.random_range(-99999..99999),
                    rng.random_range(0..100)
                ),
                1 => format!(
                    "{}.{:03}",
                    rng.random_range(0..99999),
                    rng.random_range(0..1000)
                ),
                2 => rng.random_range(-1000..1000).to_string(),
                _ => pick(
                    rng,
                    &["\"0\"", "0.5", "\"-0.001\"", "12", "1e2", "\"1.5e1\""],
                )
                .into(),
            },
            "owner" => owner_value(rng, odd),
            "labels" => format!(
                "[{}]",
                (0..rng.random_range(0..4))
                    .map(|_| match rng.random_range(0..5) {
                        0 => "null".to_string(),
                        _ => owner_value(rng, odd),
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            "tags" => format!(
                "[{}{}]",
                ws(rng),
                (0..rng.random_range(0..4))
                    .map(|_| match rng.random_range(0..5) {
                        0 => "null".to_string(),
                        1 => number(rng),
                        _ => string(rng),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            _ => match rng.random_range(0..7) {
                0 => number(rng),
                1 => pick(rng, &["true", "false"]).into(),
                // Objects and arrays in a text column: their compact JSON text.
                2 => any(rng, 0),
                _ => string(rng),
            },
        }
    }

    /// An object for a struct column: known members in any order, missing or null, unknown ones.
    fn owner_value(rng: &mut StdRng, odd: bool) -> String {
        let mut members = vec![];
        if rng.random_bool(0.8) {
            members.push(format!("\"id\":{}", value(rng, "id", odd)));
        }
        if rng.random_bool(0.8) {
            members.push(format!("\"login\":{}", value(rng, "name", odd)));
        }
        if rng.random_bool(0.3) {
            members.push(format!("\"site_admin\":{}", any(rng, 1)));
        }
        if rng.random_bool(0.3) {
            members.reverse();
        }
        format!("{{{}}}", members.join(","))
    }

    fn record(rng: &mut StdRng, odd: bool) -> String {
        let mut names = vec![
            "id",
            "amount",
            "active",
            "name",
            "updated_at",
            "note",
            "day",
            "price",
            "owner",
            "labels",
            "tags",
        ];
        if rng.random_bool(0.2) {
            names.reverse();
        }
        let mut members = vec![];
        for n in names {
            if rng.random_bool(0.9) {
                let (a, b) = (ws(rng), ws(rng));
                members.push(format!("\"{n}\"{a}:{b}{}", value(rng, n, odd)));
            }
        }
        if rng.random_bool(0.3) {
            let at = rng.random_range(0..=members.len());
            members.insert(at, format!("\"extra\":{}", any(rng, 0)));
        }
        if odd && rng.random_bool(0.05) {
            members.push(format!("\"id\":{}", rng.random_range(0..9)));
        }
        format!(
            "{{{}{}{}}}",
            ws(rng),
            members.join(&format!(",{}", ws(rng))),
            ws(rng)
        )
    }

    fn page(rng: &mut StdRng, odd: bool) -> String {
        let records = (0..rng.random_range(0..20))
            .map(|_| record(rng, odd))
            .collect::<Vec<_>>()
            .join(&format!(",{}", ws(rng)));
        let cursor = match rng.random_range(0..4) {
            0 => "null".to_string(),
            1 => number(rng),
            2 => any(rng, 0),
            _ => string(rng),
        };
        let mut members = vec![
            format!("\"data\":{}[{records}]", ws(rng)),
            format!("\"paging\":{{\"next\":{{\"after\":{cursor}}},\"x\":[1,{{}}]}}"),
            format!("\"total\":{}", rng.random_range(0..1000)),
        ];
        if rng.random_bool(0.3) {
            members.push(format!("\"more\":{}", any(rng, 0)));
        }
        if rng.random_bool(0.5) {
            members.reverse();
        }
        format!("{}{{{}}}{}", ws(rng), members.join(","), ws(rng))
    }

    /// The scanner and arrow-json agree on every page, value by value: pages the scanner takes
    /// (it must take every strictly valid page of values it knows) and pages it gives back.
    #[test]
    fn pages_decode_exactly_as_arrow_json_decodes_them() {
        let (fast, slow) = shapes(&["data"], &[&["paging", "next", "after"], &["total"]]);
        let mut rng = StdRng::seed_from_u64(17);
        let (mut taken, mut given_back) = (0, 0);
        for i in 0..3000 {
            let odd = i % 3 == 0;
            let body = page(&mut rng, odd);
            let scanned = fast.scanner.as_ref().unwrap().scan(&body).is_some();
            let (a, b) = (fast.decode(&body), slow.decode(&body));
            match (a, b) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(a.batch, b.batch, "page {i}: {body}");
                    assert_eq!(a.meta, b.meta, "page {i}: {body}");
                }
                (Err(_), Err(_)) => assert!(!scanned, "page {i}: arrow-json rejects {body}"),
                (a, b) => panic!("page {i}: {:?} against {:?}: {body}", a.err(), b.err()),
            }
            if !odd {
                assert!(scanned, "page {i}: a plain page was given back: {body}");
            }
            if scanned {
                taken += 1
            } else {
                given_back += 1
            }
        }
        assert!(
            given_back > 100,
            "odd pages exercise the fallback: {given_back}"
        );
        assert!(taken > 2000, "{taken}");
    }

    #[test]
    fn records_at_the_top_and_deeper_down() {
        let mut rng = StdRng::seed_from_u64(3);
        let (fast, slow) = shapes(&[], &[]);
        for _ in 0..300 {
            let body = format!(
                "[{}]",
                (0..rng.random_range(0..10))
                    .map(|_| record(&mut rng, false))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            assert!(
                fast.scanner.as_ref().unwrap().scan(&body).is_some(),
                "{body}"
            );
            assert_eq!(
                fast.decode(&body).unwrap().batch,
                slow.decode(&body).unwrap().batch
            );
        }
        let (fast, slow) = shapes(&["response", "items"], &[&["response", "next"]]);
        for body in [
            r#"{"response":{"items":[{"id":1}],"next":"c2"}}"#,
            r#"{"response":{"next":{"a":[1]},"items":[]}}"#,
            r#"{"response":null}"#,
            r#"{"response":{"items":null,"next":null}}"#,
            r#"{}"#,
            r#"{"other":[{"id":1}]}"#,
        ] {
            assert!(
                fast.scanner.as_ref().unwrap().scan(&body).is_some(),
                "{body}"
            );
            let (a, b) = (fast.decode(&body).unwrap(), slow.decode(&body).unwrap());
            assert_eq!((a.batch, a.meta), (b.batch, b.meta), "{body}");
        }
    }

    /// What the scanner does not take goes to arrow-json, which decides (the same answer as
    /// before the scanner, errors included).
    #[test]
    fn what_the_scanner_does_not_take_is_given_back() {
        let (fast, slow) = shapes(&["data"], &[&["next"]]);
        for body in [
            r#"{"data":[{"id":"12"}]}"#,
            r#"{"data":[{"id":1.0}]}"#,
            r#"{"data":[{"id":1e2}]}"#,
            r#"{"data":[{"id":9223372036854775808}]}"#,
            r#"{"data":[{"id":1,"id":2}]}"#,
            r#"{"data":[{"day":"2024-02-30"}]}"#,
            r#"{"data":[{"day":1.5}]}"#,
            r#"{"data":[{"price":"12.5x"}]}"#,
            r#"{"data":[{"price":"123456789012345678901234"}]}"#,
            r#"{"data":[{"price":true}]}"#,
            r#"{"data":[{"note":{"a":01}}]}"#,
            r#"{"data":[{"owner":"x"}]}"#,
            r#"{"data":[{"owner":{"id":"1"}}]}"#,
            r#"{"data":[{"owner":{"id":1,"id":2}}]}"#,
            r#"{"data":[{"labels":{}}]}"#,
            r#"{"data":[{"tags":"x"}]}"#,
            r#"{"data":[{"active":1}]}"#,
            r#"{"data":[{"updated_at":1.5}]}"#,
            r#"{"data":[{"updated_at":"yesterday"}]}"#,
            r#"{"data":[{"name":"\ud800"}]}"#,
            r#"{"data":[{"name":"\x"}]}"#,
            r#"{"data":[{"id":01}]}"#,
            r#"{"data":[{"id":1,}]}"#,
            r#"{"data":[null]}"#,
            r#"{"data":[1]}"#,
            r#"{"data":[{"id":1}],"data":[]}"#,
            r#"{"data":{"id":1}}"#,
            r#"{"data":[{"id":1}]} {"data":[]}"#,
            r#"{"data":[{"id":1}]"#,
            r#"[{"id":1}]"#,
            r#"{"data":[{"id":1}],"next":tru}"#,
        ] {
            assert!(
                fast.scanner.as_ref().unwrap().scan(&body).is_none(),
                "{body}"
            );
            match (fast.decode(&body), slow.decode(&body)) {
                (Ok(a), Ok(b)) => assert_eq!((a.batch, a.meta), (b.batch, b.meta), "{body}"),
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
                (a, b) => panic!("{body}: {:?} against {:?}", a.err(), b.err()),
            }
        }
    }

    #[test]
    fn utc_timestamps_read_as_arrow_reads_them() {
        let utc: arrow::array::timezone::Tz = "+00:00".parse().unwrap();
        let arrow = |s: &str| {
            arrow::compute::kernels::cast_utils::string_to_datetime(&utc, s)
                .unwrap()
                .timestamp_micros()
        };
        let mut rng = StdRng::seed_from_u64(9);
        for _ in 0..20_000 {
            let t = timestamp(&mut rng);
            let t = t.trim_matches('"');
            let zoned = t.ends_with('Z') || matches!(t.as_bytes()[t.len() - 6], b'+' | b'-');
            if zoned && t.as_bytes()[10] == b'T' {
                assert_eq!(utc_micros(t), Some(arrow(t)), "{t}");
            } else {
                assert_eq!(utc_micros(t), None, "{t}");
            }
        }
        for t in [
            "2024-01-01T00:00:00+23:59",
            "2024-01-01T00:00:00-23:59",
            "2024-03-01T00:30:00+01:00",
            "1970-01-01T00:00:00.5-00:30",
            "2024-02-29T23:59:59.999999999Z",
            "2000-02-29T00:00:00Z",
            "1970-01-01T00:00:00Z",
            "1969-12-31T23:59:59.9999995Z",
            "0001-01-01T00:00:00Z",
        ] {
            assert_eq!(utc_micros(t), Some(arrow(t)), "{t}");
        }
        for t in [
            "2023-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2024-04-31T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T23:60:00Z",
            "2024-01-01T23:59:60Z",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T00:00:00.1234567890Z",
            "2024-13-01T00:00:00Z",
            "2024-00-01T00:00:00Z",
            "2024-01-00T00:00:00Z",
            "2024-01-01t00:00:00Z",
            "2024-01-01T00:00:00z",
            "2024-01-01T00:00:00+24:00",
            "2024-01-01T00:00:00+01:60",
            "2024-01-01T00:00:00*01:00",
            "2024-01-01T00:00:00+0100",
            "2024-01-01T00:00:00+01",
        ] {
            assert_eq!(utc_micros(t), None, "{t}");
        }
    }
}
