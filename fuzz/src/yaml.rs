//! A block-style YAML writer for generated configs (`- name: x` sequences, as kubectl writes).

/// A YAML node. `Plain` strings are written unquoted as they are (so `80`, `true` or `a: b`
/// change type or break the document, as a careless hand would); `Str` is always quoted.
#[derive(Debug, Clone)]
pub enum Node {
    Map(Vec<(String, Node)>),
    Seq(Vec<Node>),
    Str(String),
    Plain(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Null,
}

impl Node {
    pub fn map() -> Self {
        Node::Map(Vec::new())
    }

    /// Adds `key: value` to a map (no-op on other nodes).
    pub fn with(mut self, key: &str, value: Node) -> Self {
        self.put(key, value);
        self
    }

    /// Sets `key` (replacing an earlier value: YAML rejects duplicate keys).
    pub fn put(&mut self, key: &str, value: Node) {
        if let Node::Map(entries) = self {
            match entries.iter_mut().find(|(k, _)| k == key) {
                Some(entry) => entry.1 = value,
                None => entries.push((key.to_string(), value)),
            }
        }
    }

    /// A map of `pairs`, a later duplicate key replacing the earlier.
    pub fn pairs(pairs: Vec<(String, Node)>) -> Self {
        let mut map = Node::map();
        for (k, v) in pairs {
            map.put(&k, v);
        }
        map
    }

    /// `key: value` only when there is a value.
    pub fn put_opt(&mut self, key: &str, value: Option<Node>) {
        if let Some(v) = value {
            self.put(key, v);
        }
    }
}

pub fn str(s: impl Into<String>) -> Node {
    Node::Str(s.into())
}

/// One document (no `---`).
pub fn document(node: &Node) -> String {
    let mut out = String::new();
    match node {
        Node::Map(entries) if !entries.is_empty() => write_map(entries, 0, false, &mut out),
        other => {
            write_scalar_or_empty(other, &mut out);
            out.push('\n');
        }
    }
    out
}

fn write_map(entries: &[(String, Node)], indent: usize, first_inline: bool, out: &mut String) {
    for (i, (key, value)) in entries.iter().enumerate() {
        if !(i == 0 && first_inline) {
            push_indent(indent, out);
        }
        write_key(key, out);
        out.push(':');
        write_value(value, indent, out);
    }
}

/// After `key:` or `-`: the value on the same line, or its block below.
fn write_value(value: &Node, indent: usize, out: &mut String) {
    match value {
        Node::Map(entries) if !entries.is_empty() => {
            out.push('\n');
            write_map(entries, indent + 2, false, out);
        }
        Node::Seq(items) if !items.is_empty() => {
            out.push('\n');
            for item in items {
                push_indent(indent, out);
                out.push('-');
                match item {
                    Node::Map(entries) if !entries.is_empty() => {
                        out.push(' ');
                        write_map(entries, indent + 2, true, out);
                    }
                    other => write_value(other, indent + 2, out),
                }
            }
        }
        other => {
            out.push(' ');
            write_scalar_or_empty(other, out);
            out.push('\n');
        }
    }
}

fn write_scalar_or_empty(node: &Node, out: &mut String) {
    match node {
        Node::Map(_) => out.push_str("{}"),
        Node::Seq(_) => out.push_str("[]"),
        Node::Str(s) => out.push_str(&quoted(s)),
        Node::Plain(s) => out.push_str(&s.replace(['\n', '\r'], " ")),
        Node::Int(n) => out.push_str(&n.to_string()),
        Node::Float(f) => out.push_str(&format!("{f:?}")),
        Node::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Node::Null => out.push_str("null"),
    }
}

fn write_key(key: &str, out: &mut String) {
    let plain = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/'))
        && !key.starts_with(['-', '.']);
    if plain {
        out.push_str(key);
    } else {
        out.push_str(&quoted(key));
    }
}

/// A double-quoted YAML scalar (JSON's escapes are YAML's).
fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

fn push_indent(indent: usize, out: &mut String) {
    out.extend(std::iter::repeat_n(' ', indent));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_kubectl_style_blocks() {
        let doc = Node::map().with("kind", str("Gateway")).with(
            "spec",
            Node::map().with(
                "servers",
                Node::Seq(vec![
                    Node::map()
                        .with("port", Node::map().with("number", Node::Int(80)))
                        .with("hosts", Node::Seq(vec![str("*")])),
                    Node::Seq(vec![]),
                ]),
            ),
        );
        assert_eq!(
            document(&doc),
            "kind: \"Gateway\"\nspec:\n  servers:\n  - port:\n      number: 80\n    hosts:\n    - \"*\"\n  - []\n"
        );
    }
}
