//! Request path normalization with Istio's default (mesh `pathNormalization: BASE`): RFC 3986
//! dot-segments removed before routing and forwarding; repeated slashes and `%2F` kept. Without
//! it, `/public/../admin` would slip past a route that guards `/admin`.

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

/// The normalized path, or `None` when `path` is already normal (the common case: no allocation).
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
        }
    }
}
