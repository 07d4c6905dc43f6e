//! Line index for YAML config files.
//!
//! `serde_yaml` reports lines only for syntax errors, so semantic errors found after
//! deserializing would otherwise have no location. This module walks yaml-rust2's
//! marked event stream once per file and records the 1-based line of every node by
//! its `serde_path_to_error` path, e.g. `spec.servers[0].port.number`.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Nodes nested deeper than this are not indexed: `serde_yaml` refuses to deserialize
/// them anyway (its recursion limit is 128), and a cap keeps path memory bounded.
const MAX_DEPTH: usize = 128;

/// Paths longer than this are not indexed, so a file of huge keys cannot make the
/// index quadratic in memory. Lookups then fall back to the nearest indexed ancestor.
const MAX_PATH_LEN: usize = 1024;

/// Line numbers of one YAML document's nodes, keyed by field path.
#[derive(Debug, Clone, Default)]
pub struct DocLines {
    /// Line of the document's first node; 0 until one is seen.
    start: u32,
    lines: HashMap<Box<str>, u32>,
}

impl DocLines {
    /// 1-based line where the document starts (its first node, not the `---` marker if a node follows on a later line).
    #[must_use]
    pub fn start_line(&self) -> u32 {
        self.start.max(1)
    }

    /// The line of `path`, else of its nearest ancestor path that has one, else `start_line()`.
    /// Path syntax is serde_path_to_error's Display format: mapping keys joined by `.`, sequence indexes as `[i]`
    /// with no dot before them: `spec.servers[0].port.number`, `spec.http[1].match[0].headers.end-user.exact`.
    /// A path of "" or "." means the document itself.
    #[must_use]
    pub fn line_of(&self, path: &str) -> u32 {
        let mut path = path;
        loop {
            if path.is_empty() || path == "." {
                return self.start_line();
            }
            if let Some(&line) = self.lines.get(path) {
                return line;
            }
            path = parent_path(path);
        }
    }
}

/// Drops the last path segment. Cutting at the last `.` or `[` may also cut inside a
/// key that contains one; that prefix is simply not found and the walk goes on up.
fn parent_path(path: &str) -> &str {
    path.rfind(['.', '[']).map_or("", |i| &path[..i])
}

/// Index every document of `text`, in the same order and count as `serde_yaml::Deserializer::from_str(text)` yields documents
/// (verify this agreement with tests, including: a file starting with `---`, a file ending with `---` (possibly an empty trailing
/// document), comment-only tails, a file with no final newline, a single document without `---`, an empty file).
/// Never panics on any input. On a YAML syntax error, return the documents indexed so far (the caller reports serde_yaml's error).
///
/// "So far" includes the document the error is in, indexed up to the error.
#[must_use]
pub fn index_documents(text: &str) -> Vec<DocLines> {
    // libyaml (behind serde_yaml) skips a byte order mark; yaml-rust2 would read it as
    // part of the first key.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut indexer = Indexer::new(text);
    let mut parser = Parser::new_from_str(text);
    // Pull events one by one rather than `Parser::load`, which recurses per nesting
    // level (a stack overflow on deep input) and asserts on the event order.
    loop {
        match parser.next_token() {
            Ok((Event::StreamEnd, _)) => return indexer.finish(true),
            Ok((event, mark)) => indexer.on_event(event, mark),
            Err(_) => return indexer.finish(false),
        }
        if let Some(offset) = indexer.restart.take() {
            parser = Parser::new_from_str(text.get(offset..).unwrap_or_default());
        }
    }
}

/// The parts of a node event that matter for indexing.
#[derive(Clone, Copy)]
enum Node<'e> {
    Scalar(&'e str),
    Alias,
    Map,
    Seq,
}

/// One open collection of the document being walked.
enum Frame {
    /// `base` is the length of the mapping's own path in `Indexer::path`.
    Map { base: usize, slot: Slot },
    /// `next` is the index the next item gets.
    Seq { base: usize, next: usize },
    /// A collection whose nodes are not indexed (complex key, too deep, path too long).
    Skip,
}

/// What the next node of a mapping is.
enum Slot {
    Key,
    /// A value; `Some(len)`: its path is `path[..len]`, `None`: not indexed.
    Value(Option<usize>),
}

struct Indexer<'t> {
    /// Each source line's byte offset and text (without its line break).
    source: Vec<(usize, &'t str)>,
    docs: Vec<DocLines>,
    doc: Option<DocLines>,
    /// Path of the node last entered; truncated back to a frame's base as the walk goes on.
    path: String,
    stack: Vec<Frame>,
    /// Source lines before the text the current parser reads.
    line_offset: usize,
    /// Marker of the current document's start event.
    doc_mark: Option<Marker>,
    /// First source line a root block scalar of the current document may have
    /// swallowed a `---` on, see `check_swallowed_marker`.
    root_block: Option<usize>,
    /// Byte offset to restart parsing at, see `check_swallowed_marker`.
    restart: Option<usize>,
}

impl<'t> Indexer<'t> {
    fn new(text: &'t str) -> Self {
        Indexer {
            source: split_lines(text),
            docs: Vec::new(),
            doc: None,
            path: String::new(),
            stack: Vec::new(),
            line_offset: 0,
            doc_mark: None,
            root_block: None,
            restart: None,
        }
    }

    fn finish(mut self, complete: bool) -> Vec<DocLines> {
        self.end_document();
        // serde_yaml yields one null document for a stream without any.
        if complete && self.docs.is_empty() {
            self.docs.push(DocLines::default());
        }
        self.docs
    }

    fn start_document(&mut self, mark: Marker) {
        self.end_document();
        self.doc = Some(DocLines::default());
        self.stack.clear();
        self.doc_mark = Some(mark);
        self.root_block = None;
    }

    fn end_document(&mut self) {
        if let Some(mut doc) = self.doc.take() {
            doc.lines.shrink_to_fit();
            self.docs.push(doc);
        }
    }

    /// yaml-rust2 0.10 reads a `---` line as content of a root block scalar whose
    /// content starts at column 0 (`--- |`), where libyaml ends the document. On finding
    /// one, restart parsing at that line so the documents after it are not lost.
    fn check_swallowed_marker(&mut self, end_line: usize) {
        let Some(first) = self.root_block.take() else {
            return;
        };
        let Some(line) =
            (first..end_line).find(|&n| self.source_line(n).is_some_and(is_document_start))
        else {
            return;
        };
        // Only ever move forward, so the parse always terminates.
        if let Some(&(offset, _)) = self
            .source
            .get(line - 1)
            .filter(|_| line - 1 > self.line_offset)
        {
            self.restart = Some(offset);
            self.line_offset = line - 1;
        }
    }

    /// Notes a root block scalar at `mark`: the first line it may have swallowed a
    /// `---` on is where it starts, but past the document's own `---` if it has one.
    /// yaml-rust2 marks an implicit document's start at its first node.
    fn note_root_block(&mut self, mark: Marker) {
        let line = self.line(mark);
        self.root_block = match self.doc_mark {
            Some(start) if start != mark => Some(line.max(self.line(start).saturating_add(1))),
            _ => Some(line),
        };
    }

    fn on_node(&mut self, node: Node<'_>, line: u32) {
        let Some(doc) = self.doc.as_mut() else {
            return;
        };
        if doc.start == 0 {
            doc.start = line;
        }
        let own_path = self.enter(node, line);
        if matches!(node, Node::Map | Node::Seq) {
            self.open(node, own_path);
        }
    }

    fn on_scalar(&mut self, value: &str, style: TScalarStyle, mark: Marker) {
        let line = match style {
            // Plain scalars cannot be empty in the text, so this is an implicit null.
            TScalarStyle::Plain if value.is_empty() => self.implicit_null_line(mark),
            TScalarStyle::Literal | TScalarStyle::Folded => {
                if self.stack.is_empty() {
                    self.note_root_block(mark);
                }
                self.block_scalar_line(mark, value)
            }
            _ => self.line(mark),
        };
        self.on_node(Node::Scalar(value), to_line(line));
    }

    /// Places a node in its parent, records its line, and returns the length of its
    /// path in `self.path`, or `None` if the node is not indexed.
    fn enter(&mut self, node: Node<'_>, line: u32) -> Option<usize> {
        let path = &mut self.path;
        let Some(frame) = self.stack.last_mut() else {
            path.clear();
            return Some(0);
        };
        let (base, segment) = match frame {
            Frame::Skip => return None,
            Frame::Seq { base, next } => {
                *next += 1;
                (*base, Segment::Index(*next - 1))
            }
            Frame::Map { base, slot } => match std::mem::replace(slot, Slot::Key) {
                Slot::Value(len) => {
                    if let Some(len) = len {
                        path.truncate(len);
                    }
                    return len;
                }
                Slot::Key => {
                    // Until the key proves indexable, its value is not.
                    *slot = Slot::Value(None);
                    let Node::Scalar(key) = node else {
                        return None;
                    };
                    (*base, Segment::Key(key))
                }
            },
        };
        let len = push_segment(path, base, &segment)?;
        if let Some(Frame::Map { slot, .. }) = self.stack.last_mut() {
            *slot = Slot::Value(Some(len));
        }
        if let Some(doc) = self.doc.as_mut() {
            doc.lines.entry(path.as_str().into()).or_insert(line);
        }
        Some(len)
    }

    /// Pushes the frame for a collection whose own path has length `own_path`.
    fn open(&mut self, node: Node<'_>, own_path: Option<usize>) {
        let frame = match own_path {
            Some(base) if self.stack.len() < MAX_DEPTH => match node {
                Node::Map => Frame::Map {
                    base,
                    slot: Slot::Key,
                },
                _ => Frame::Seq { base, next: 0 },
            },
            _ => Frame::Skip,
        };
        self.stack.push(frame);
    }

    /// The source line of `mark`.
    fn line(&self, mark: Marker) -> usize {
        mark.line().saturating_add(self.line_offset)
    }

    /// An implicit null (`- ` or `---` with nothing after) is marked at the next
    /// token, possibly lines later and past that token's own `- `. The null really sits
    /// on the line of the indicator before it: the last line before the mark that is
    /// not blank or comment-only, unless the mark's line has content before the mark.
    fn implicit_null_line(&self, mark: Marker) -> usize {
        let line = self.line(mark);
        let only_indicators = self.source_line(line).is_none_or(|text| {
            text.chars()
                .take(mark.col())
                .all(|c| c.is_whitespace() || matches!(c, '-' | '?' | ':'))
        });
        if !only_indicators {
            return line;
        }
        (1..line)
            .rev()
            .find(|&n| self.source_line(n).is_some_and(has_content))
            .unwrap_or(line)
    }

    /// A block scalar is marked at its first content line or, without content, at the
    /// next token or (at the end of input) at its own `|`/`>`. It starts on the line of
    /// that header, and only blank lines can separate the header from the mark.
    fn block_scalar_line(&self, mark: Marker, value: &str) -> usize {
        let line = self.line(mark);
        let at_header = value.bytes().all(|b| b == b'\n')
            && self
                .source_line(line)
                .and_then(|text| text.chars().nth(mark.col()))
                .is_some_and(|c| matches!(c, '|' | '>'));
        if at_header {
            return line;
        }
        (1..line)
            .rev()
            .find(|&n| {
                self.source_line(n)
                    .is_some_and(|text| !text.trim().is_empty())
            })
            .unwrap_or(line)
    }

    fn source_line(&self, line: usize) -> Option<&'t str> {
        let index = line.checked_sub(1)?;
        self.source.get(index).map(|&(_, text)| text)
    }
}

impl MarkedEventReceiver for Indexer<'_> {
    fn on_event(&mut self, event: Event, mark: Marker) {
        match event {
            Event::DocumentStart => self.start_document(mark),
            Event::DocumentEnd => {
                // Lines before `end` were read at least in part; a mark past column 0
                // means its own line was too.
                let end = self.line(mark).saturating_add(usize::from(mark.col() > 0));
                self.check_swallowed_marker(end);
                self.end_document();
            }
            Event::Scalar(ref value, style, ..) => self.on_scalar(value, style, mark),
            Event::Alias(_) => self.on_node(Node::Alias, to_line(self.line(mark))),
            Event::MappingStart(..) => self.on_node(Node::Map, to_line(self.line(mark))),
            Event::SequenceStart(..) => self.on_node(Node::Seq, to_line(self.line(mark))),
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd => {}
        }
    }
}

/// Splits at `\r\n`, `\r` or `\n`, the line breaks yaml-rust2 counts lines by.
fn split_lines(text: &str) -> Vec<(usize, &str)> {
    let bytes = text.as_bytes();
    let mut lines = Vec::new();
    let (mut start, mut i) = (0, 0);
    while let Some(&byte) = bytes.get(i) {
        i += 1;
        if byte == b'\r' || byte == b'\n' {
            lines.push((start, text.get(start..i - 1).unwrap_or_default()));
            if byte == b'\r' && bytes.get(i) == Some(&b'\n') {
                i += 1;
            }
            start = i;
        }
    }
    lines.push((start, text.get(start..).unwrap_or_default()));
    lines
}

/// A `---` line, which starts a document wherever it appears.
fn is_document_start(line: &str) -> bool {
    line.strip_prefix("---")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
}

/// One step of a path.
enum Segment<'k> {
    Key(&'k str),
    Index(usize),
}

/// Sets `path` to the child `segment` of `path[..base]` in `serde_path_to_error`'s
/// format, returning the new length, or `None` if that path is too long to index.
fn push_segment(path: &mut String, base: usize, segment: &Segment<'_>) -> Option<usize> {
    use std::fmt::Write;
    path.truncate(base);
    match segment {
        Segment::Key(key) => {
            if base > 0 {
                path.push('.');
            }
            path.push_str(key);
        }
        Segment::Index(i) => {
            // Writing to a String cannot fail.
            let _ = write!(path, "[{i}]");
        }
    }
    (path.len() <= MAX_PATH_LEN).then_some(path.len())
}

fn has_content(line: &str) -> bool {
    let line = line.trim_start();
    !line.is_empty() && !line.starts_with('#')
}

/// yaml-rust2 markers are already 1-based; clamp so a line is never 0 or wraps.
fn to_line(line: usize) -> u32 {
    u32::try_from(line).unwrap_or(u32::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    /// Asserts `line_of` for each `(path, line)` of document `doc` of `text`.
    fn check(text: &str, doc: usize, cases: &[(&str, u32)]) {
        let docs = index_documents(text);
        let lines = &docs[doc];
        for &(path, line) in cases {
            assert_eq!(lines.line_of(path), line, "path {path:?} in {text:?}");
        }
    }

    /// Documents serde_yaml yields, or `None` on a syntax error.
    fn serde_doc_count(text: &str) -> Option<usize> {
        let mut count = 0;
        for doc in serde_yaml::Deserializer::from_str(text) {
            // serde_yaml repeats a syntax error forever, so stop at the first.
            serde::de::IgnoredAny::deserialize(doc).ok()?;
            count += 1;
        }
        Some(count)
    }

    fn yaml_rust2_accepts(text: &str) -> bool {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut parser = Parser::new_from_str(text);
        loop {
            match parser.next_token() {
                Ok((Event::StreamEnd, _)) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    }

    const GATEWAY: &str = "\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: gw
spec:
  selector: {istio: ingress}
  servers:
  - port: {number: 80, name: http}
    hosts: [a, b]
  - port:
      number: 443
      name: https
    hosts:
    - \"*.example.com\"
    tls:
      mode: SIMPLE
";

    #[test]
    fn nested_maps_and_lists() {
        check(
            GATEWAY,
            0,
            &[
                ("apiVersion", 1),
                ("kind", 2),
                ("metadata", 3),
                ("metadata.name", 4),
                ("spec", 5),
                ("spec.servers", 7),
                ("spec.servers[0]", 8),
                ("spec.servers[1]", 10),
                ("spec.servers[1].port", 10),
                ("spec.servers[1].port.number", 11),
                ("spec.servers[1].port.name", 12),
                ("spec.servers[1].hosts", 13),
                ("spec.servers[1].hosts[0]", 14),
                ("spec.servers[1].tls.mode", 16),
            ],
        );
    }

    #[test]
    fn flow_style() {
        check(
            GATEWAY,
            0,
            &[
                ("spec.selector", 6),
                ("spec.selector.istio", 6),
                ("spec.servers[0].port", 8),
                ("spec.servers[0].port.number", 8),
                ("spec.servers[0].port.name", 8),
                ("spec.servers[0].hosts", 9),
                ("spec.servers[0].hosts[1]", 9),
            ],
        );
        let multiline = "\
port: {number: 80,
  name: http}
hosts: [a,
  b]
list: [{k: 1}, {k: 2}]
";
        check(
            multiline,
            0,
            &[
                ("port.number", 1),
                ("port.name", 2),
                ("hosts[0]", 3),
                ("hosts[1]", 4),
                ("list[1].k", 5),
            ],
        );
    }

    #[test]
    fn quoted_keys_and_block_scalars() {
        let text = "\
\"quoted key\": 1
'single': 2
\"a.b\": 3
script: |
  line one

  line two
folded: >-
  text
after: 4
? explicit
: 5
headers:
  end-user:
    exact: jason
items:
- |
  first
-

  >
  second
- last
";
        check(
            text,
            0,
            &[
                ("quoted key", 1),
                ("single", 2),
                ("a.b", 3),
                ("a.b.c", 3),
                ("script", 4),
                ("folded", 8),
                ("after", 10),
                ("explicit", 11),
                ("headers.end-user.exact", 15),
                ("items[0]", 17),
                ("items[1]", 21),
                ("items[2]", 23),
            ],
        );
    }

    #[test]
    fn implicit_nulls_in_sequences() {
        let text = "\
hosts:
-
- a
-
  # note
- - x
  -
  - y
empty:
last: 1
tail:
- !!null
-";
        check(
            text,
            0,
            &[
                ("hosts[0]", 2),
                ("hosts[1]", 3),
                ("hosts[2]", 4),
                ("hosts[3]", 6),
                ("hosts[3][0]", 6),
                ("hosts[3][1]", 7),
                ("hosts[3][2]", 8),
                ("empty", 9),
                ("last", 10),
                ("tail[0]", 12),
                ("tail[1]", 13),
            ],
        );
    }

    #[test]
    fn anchors_aliases_and_complex_keys() {
        let text = "\
defaults: &d
  timeout: 5s
routes:
- *d
- name: x
  retry: *d
? [complex, key]
: {ignored: 1}
after: 2
*d : aliased key
last: 3
";
        check(
            text,
            0,
            &[
                ("defaults.timeout", 2),
                ("routes[0]", 4),
                ("routes[1].name", 5),
                ("routes[1].retry", 6),
                ("routes[1].retry.timeout", 6),
                ("after", 9),
                ("last", 11),
            ],
        );
        let docs = index_documents(text);
        assert!(!docs[0].lines.contains_key("ignored"));
    }

    #[test]
    fn line_of_falls_back_to_ancestors() {
        check(
            GATEWAY,
            0,
            &[
                ("", 1),
                (".", 1),
                ("unknown", 1),
                ("spec.?", 5),
                ("spec.servers[7]", 7),
                ("spec.servers[7].port.number", 7),
                ("spec.servers[1].tls.credentialName", 15),
                ("spec.servers[1].port.number.deeper[3]", 11),
            ],
        );
        let root_seq = "\n- name: a\n- name: b\n  port: 1\n";
        check(
            root_seq,
            0,
            &[("[1].port", 4), ("[1].nope", 3), ("[9]", 2), ("", 2)],
        );
        assert_eq!(DocLines::default().line_of("a.b"), 1);
    }

    #[test]
    fn documents_match_serde_yaml() {
        // (text, start line of each document)
        let cases: &[(&str, &[u32])] = &[
            ("", &[1]),
            ("\n\n", &[1]),
            ("# only a comment\n# another\n", &[1]),
            ("a: 1", &[1]),
            ("a: 1\n", &[1]),
            ("\n\na: 1\n", &[3]),
            ("---\na: 1\n", &[2]),
            ("--- # c\n\na: 1\n", &[3]),
            ("--- a\n", &[1]),
            ("---\n", &[1]),
            ("---", &[1]),
            ("a: 1\n---\n", &[1, 2]),
            ("a: 1\n---", &[1, 2]),
            ("a: 1\n---\n# tail\n", &[1, 2]),
            ("a: 1\n---\nb: 2\n---\n\n# tail\n\n", &[1, 3, 4]),
            ("a: 1\n...\n", &[1]),
            ("a: 1\n...\n# tail\n", &[1]),
            ("a: 1\n...\n---\nb: 2\n", &[1, 4]),
            ("---\n---\n", &[1, 2]),
            ("---\n---\n---", &[1, 2, 3]),
            ("- a\n---\n- b\n...\n", &[1, 3]),
            ("%YAML 1.1\n---\na: 1\n", &[3]),
            ("a: 1\n---\n\n\nb: 2", &[1, 5]),
            ("a: 1\r\n---\r\nb: 2\r\n", &[1, 3]),
            ("\u{feff}a: 1\n---\nb: 2\n", &[1, 3]),
            ("--- |\n  text\n---\nb: 1\n", &[1, 4]),
            // yaml-rust2 reads these `---` lines as block scalar content.
            ("--- |\n--- x\n", &[1, 2]),
            ("|\n---\n", &[1, 2]),
            ("--- >-\n---\n---\n", &[1, 2, 3]),
            ("a: 1\n--- |", &[1, 2]),
        ];
        for &(text, starts) in cases {
            let docs = index_documents(text);
            let got: Vec<u32> = docs.iter().map(DocLines::start_line).collect();
            assert_eq!(got, starts, "start lines of {text:?}");
            assert_eq!(serde_doc_count(text), Some(docs.len()), "count of {text:?}");
        }
    }

    #[test]
    fn multi_document_paths() {
        let text = "---\na: 1\n---\n# c\nb:\n  c: 2\n...\n---\n- x\n";
        check(text, 0, &[("a", 2)]);
        check(text, 1, &[("", 5), ("b.c", 6), ("b.d", 5)]);
        check(text, 2, &[("[0]", 9)]);
        let crlf = "a: 1\r\nb:\r\n  - x\r\n---\r\nc: 2\r\n";
        check(crlf, 0, &[("b[0]", 3)]);
        check(crlf, 1, &[("c", 5)]);
        let swallowed = "--- |\n--- \nx: 1\n---\ny: 2\n";
        check(swallowed, 1, &[("x", 3)]);
        check(swallowed, 2, &[("y", 5)]);
    }

    #[test]
    fn syntax_error_keeps_documents_so_far() {
        let docs = index_documents("a: 1\n---\nb: 2\nc: [\n");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].line_of("b"), 3);
        assert!(index_documents("[").len() <= 1);
        assert!(index_documents("\"unterminated").len() <= 1);
    }

    #[test]
    fn deep_nesting_is_capped() {
        // Under yaml-rust2's flow nesting limit of 255, over `MAX_DEPTH`.
        let depth = 200;
        let text = format!("{}1{}", "{a: ".repeat(depth), "}".repeat(depth));
        let docs = index_documents(&text);
        let deep = vec!["a"; depth].join(".");
        assert_eq!(docs[0].line_of(&deep), 1);
        assert!(docs[0].lines.len() <= MAX_DEPTH);
        // Implicit keys are limited to 1024 characters, so nest long ones.
        let key = "k".repeat(300);
        let text = format!("{key}:\n  {key}:\n    {key}:\n      {key}:\n        child: 1\nok: 6\n");
        let docs = index_documents(&text);
        let too_long = format!("{key}.{key}.{key}.{key}");
        assert_eq!(docs[0].line_of(&format!("{too_long}.child")), 3);
        assert_eq!(docs[0].line_of("ok"), 6);
        assert_eq!(docs[0].lines.len(), 4);
        let text = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(index_documents(&text).len() <= 1);
    }

    /// Deterministic xorshift64, so failures reproduce.
    struct XorShift(u64);

    impl XorShift {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }

        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[self.below(items.len())]
        }
    }

    #[test]
    fn random_and_truncated_inputs_do_not_panic() {
        const PIECES: &[&str] = &[
            "---",
            "...",
            "\n",
            "\n",
            "  ",
            " ",
            "- ",
            "-",
            "a",
            "b: ",
            ":",
            "? ",
            "{",
            "}",
            "[",
            "]",
            ",",
            "\"",
            "'",
            "#c",
            "&x ",
            "*x",
            "!t ",
            "|",
            ">",
            "\t",
            "\r\n",
            "\r",
            "é",
            "\\",
            "%YAML 1.1\n",
            "key: value\n",
            "  nested: 1\n",
            "\u{feff}",
            "<<: *x\n",
        ];
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..400 {
            let text: String = (0..rng.below(40)).map(|_| rng.pick(PIECES)).collect();
            let docs = index_documents(&text);
            for doc in &docs {
                assert!(doc.start_line() >= 1);
                assert!(doc.line_of("a.b[0]") >= 1);
            }
        }
        let sample = format!("{GATEWAY}---\nlist:\n- |\n  x\n- [a, {{b: c}}]\n");
        for (end, _) in sample.char_indices() {
            let _ = index_documents(&sample[..end]);
        }
    }

    #[test]
    fn random_multi_document_files_agree_with_serde_yaml() {
        const LINES: &[&str] = &[
            "---",
            "--- ",
            "...",
            "",
            "# c",
            "a: 1",
            "b:",
            "  c: 2",
            "- x",
            "-",
            "  - y",
            "--- # c",
            "--- x",
            "... # c",
            "x",
            "--- |",
            "  text",
            "--- >-",
            "  # c",
            "d: [1,",
            "  2]",
            "e: {f: 1}",
        ];
        let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
        let mut compared = 0;
        for _ in 0..400 {
            let mut text: Vec<&str> = (0..rng.below(12)).map(|_| rng.pick(LINES)).collect();
            if rng.below(2) == 0 {
                text.push("");
            }
            let text = text.join("\n");
            let Some(count) = serde_doc_count(&text) else {
                continue;
            };
            if yaml_rust2_accepts(&text) {
                assert_eq!(index_documents(&text).len(), count, "{text:?}");
                compared += 1;
            }
        }
        assert!(compared > 50, "only {compared} inputs were valid YAML");
    }
}
