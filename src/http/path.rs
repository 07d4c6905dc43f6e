//! Request path normalization, as Istio's mesh `pathNormalization` options configure Envoy, before
//! routing and forwarding. The default, BASE, removes RFC 3986 dot-segments and keeps repeated
//! slashes and `%2F`: without it, `/public/../admin` would slip past a route that guards `/admin`.

/// Istio's `meshConfig.pathNormalization.normalization` values (`--path-normalization`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PathNormalization {
    /// The path is routed and forwarded as received.
    None,
    /// RFC 3986 dot-segment removal (Envoy's `normalize_path`); `%2e` counts as a dot.
    #[default]
    Base,
    /// BASE, then runs of slashes merged into one (Envoy's `merge_slashes`).
    MergeSlashes,
    /// `%2F` and `%5C` (any case) decoded to `/` and `\` first (Envoy's
    /// `path_with_escaped_slashes_action: UNESCAPE_AND_FORWARD`), then MERGE_SLASHES.
    DecodeAndMergeSlashes,
}

impl PathNormalization {
    /// The command-line spelling (`base`, `merge-slashes`, ...).
    pub fn parse(value: &str) -> Option<Self> {
        match value.to_ascii_lowercase().replace('_', "-").as_str() {
            "none" => Some(PathNormalization::None),
            "base" => Some(PathNormalization::Base),
            "merge-slashes" => Some(PathNormalization::MergeSlashes),
            "decode-and-merge-slashes" => Some(PathNormalization::DecodeAndMergeSlashes),
            _ => None,
        }
    }

    /// The normalized path, or `None` when `path` is already normal under this mode (the common
    /// case: no allocation). Only origin-form paths (starting with `/`) are touched.
    pub fn apply(self, path: &str) -> Option<String> {
        if self == PathNormalization::None || !path.starts_with('/') {
            return None;
        }
        let decoded = match self {
            PathNormalization::DecodeAndMergeSlashes => decode_slashes(path),
            _ => None,
        };
        let path = decoded.as_deref().unwrap_or(path);
        let dotless = normalize(path);
        let path = dotless.as_deref().unwrap_or(path);
        let merged = match self {
            PathNormalization::MergeSlashes | PathNormalization::DecodeAndMergeSlashes => {
                merge_slashes(path)
            }
            _ => None,
        };
        merged.or(dotless).or(decoded)
    }
}

/// `path` with every `%2F`/`%2f` as `/` and `%5C`/`%5c` as `\`; `None` when it has none.
fn decode_slashes(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let escaped = |i: usize| match bytes.get(i + 1..i + 3) {
        Some([b'2', b'f' | b'F']) => Some('/'),
        Some([b'5', b'c' | b'C']) => Some('\\'),
        _ => None,
    };
    let first = memchr::memchr_iter(b'%', bytes).find(|&i| escaped(i).is_some())?;
    let mut out = String::with_capacity(path.len());
    out.push_str(&path[..first]);
    let mut i = first;
    while i < bytes.len() {
        match (bytes[i], escaped(i)) {
            (b'%', Some(c)) => {
                out.push(c);
                i += 3;
            }
            _ => {
                let next = memchr::memchr(b'%', &bytes[i + 1..]).map_or(bytes.len(), |n| i + 1 + n);
                out.push_str(&path[i..next]);
                i = next;
            }
        }
    }
    Some(out)
}

/// `path` with each run of slashes as one slash; `None` when it has no run.
fn merge_slashes(path: &str) -> Option<String> {
    memchr::memmem::find(path.as_bytes(), b"//")?;
    let mut out = String::with_capacity(path.len());
    let mut last = '\0';
    for c in path.chars() {
        if !(c == '/' && last == '/') {
            out.push(c);
        }
        last = c;
    }
    Some(out)
}

/// Replaces the path of `uri`, keeping its query (and scheme and authority).
pub fn set_path(uri: &mut http::Uri, path: &str) {
    let path_and_query = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = path_and_query.parse().ok();
    if let Ok(new) = http::Uri::from_parts(parts) {
        *uri = new;
    }
}

/// Replaces the authority of `uri` when it has one (HTTP/2, absolute form); Host is the
/// caller's to set.
pub fn set_uri_authority(uri: &mut http::Uri, authority: &http::HeaderValue) {
    if uri.authority().is_none() {
        return;
    }
    let mut parts = uri.clone().into_parts();
    parts.authority = authority.to_str().ok().and_then(|a| a.parse().ok());
    if let Ok(new) = http::Uri::from_parts(parts) {
        *uri = new;
    }
}

/// BASE: the dot-segment-free path, or `None` when `path` has no dot-segment (the common case:
/// no allocation).
pub fn normalize(path: &str) -> Option<String> {
    if !path.starts_with('/') || !has_dot_segment(path) {
        return None;
    }
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path[1..].split('/').collect();
    let last = segments.len() - 1;
    for (i, segment) in segments.iter().enumerate() {
        match dots(segment) {
            1 if i == last => out.push(""),
            1 => {}
            2 => {
                out.pop();
                if i == last {
                    out.push("");
                }
            }
            _ => out.push(segment),
        }
    }
    let normalized = format!("/{}", out.join("/"));
    (normalized != path).then_some(normalized)
}

/// A quick scan (memchr-fast) for anything that could start a dot-segment; exact check after.
fn has_dot_segment(path: &str) -> bool {
    let maybe = path.contains("/.") || path.contains("/%2e") || path.contains("/%2E");
    maybe && path.split('/').any(|s| dots(s) > 0)
}

/// 1 for a `.` segment, 2 for `..`, 0 otherwise; `%2e` counts as a dot, as browsers and Envoy treat it.
fn dots(segment: &str) -> u8 {
    match segment.len() {
        1 if segment == "." => 1,
        2 if segment == ".." => 2,
        3 if segment.eq_ignore_ascii_case("%2e") => 1,
        4 if segment.eq_ignore_ascii_case(".%2e") || segment.eq_ignore_ascii_case("%2e.") => 2,
        6 if segment.eq_ignore_ascii_case("%2e%2e") => 2,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_dot_segments_only() {
        let cases = [
            ("/a/b/c", None),
            ("/a/./b", Some("/a/b")),
            ("/a/b/../c", Some("/a/c")),
            ("/public/../admin", Some("/admin")),
            ("/../../etc/passwd", Some("/etc/passwd")),
            ("/a/.", Some("/a/")),
            ("/a/..", Some("/")),
            ("/a/%2e%2E/b", Some("/b")),
            ("/a/.%2e/b", Some("/b")),
            ("/a//b/../c", Some("/a//c")),
            ("/a%2Fb/../c", Some("/c")),
            ("/a/.hidden/..b", None),
            ("/..", Some("/")),
            ("/", None),
            ("*", None),
        ];
        for (input, want) in cases {
            assert_eq!(normalize(input).as_deref(), want, "{input}");
            assert_eq!(
                PathNormalization::Base.apply(input).as_deref(),
                want,
                "{input}"
            );
        }
    }

    /// Each input under NONE, BASE, MERGE_SLASHES and DECODE_AND_MERGE_SLASHES; `None` means
    /// "unchanged" (and no allocation).
    #[test]
    fn each_mode() {
        type Row = (&'static str, [Option<&'static str>; 4]);
        let rows: [Row; 14] = [
            ("/a/b", [None, None, None, None]),
            ("/a/b/", [None, None, None, None]),
            ("//admin/../x", [None, Some("//x"), Some("/x"), Some("/x")]),
            ("//admin", [None, None, Some("/admin"), Some("/admin")]),
            (
                "/public/%2e%2e/admin",
                [None, Some("/admin"), Some("/admin"), Some("/admin")],
            ),
            ("/a///b//", [None, None, Some("/a/b/"), Some("/a/b/")]),
            // Envoy's order: dot-segments first (the empty segment is one), then slashes merged.
            ("/a//../b", [None, Some("/a/b"), Some("/a/b"), Some("/a/b")]),
            ("/a%2Fb", [None, None, None, Some("/a/b")]),
            ("/a%2f%2F/b", [None, None, None, Some("/a/b")]),
            ("/public%2F..%2Fadmin", [None, None, None, Some("/admin")]),
            ("/a%5Cb%5c", [None, None, None, Some("/a\\b\\")]),
            // Other escapes, and a `%` that escapes nothing, are kept.
            ("/a%2Eb/%25/%2", [None, None, None, None]),
            ("/%%2F%2", [None, None, None, Some("/%/%2")]),
            ("*", [None, None, None, None]),
        ];
        let modes = [
            PathNormalization::None,
            PathNormalization::Base,
            PathNormalization::MergeSlashes,
            PathNormalization::DecodeAndMergeSlashes,
        ];
        for (input, wants) in rows {
            for (mode, want) in modes.iter().zip(wants) {
                assert_eq!(mode.apply(input).as_deref(), want, "{input} under {mode:?}");
            }
        }
    }

    #[test]
    fn parses_flag_values() {
        assert_eq!(PathNormalization::default(), PathNormalization::Base);
        assert_eq!(
            PathNormalization::parse("merge-slashes"),
            Some(PathNormalization::MergeSlashes)
        );
        assert_eq!(
            PathNormalization::parse("DECODE_AND_MERGE_SLASHES"),
            Some(PathNormalization::DecodeAndMergeSlashes)
        );
        assert_eq!(
            PathNormalization::parse("NONE"),
            Some(PathNormalization::None)
        );
        assert_eq!(
            PathNormalization::parse("base"),
            Some(PathNormalization::Base)
        );
        assert_eq!(PathNormalization::parse("merge"), None);
    }
}
