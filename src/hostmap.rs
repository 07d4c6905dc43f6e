//! Lookup of a name among exact names, `*.suffix` wildcards and `*`, the way Envoy picks both
//! virtual hosts (by Host) and filter chains (by SNI): exact beats the longest wildcard suffix
//! (at any depth), which beats `*`. Case-insensitive; no allocation per lookup.

// foldhash: a per-process seeded hash, several times cheaper than SipHash per lookup.
use foldhash::HashMap;

/// Which kind of entry a name matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostMatch {
    Exact,
    Wildcard,
    /// `*`.
    Any,
}

#[derive(Debug, Clone, Default)]
pub struct HostMap<T> {
    exact: HashMap<Box<str>, T>,
    /// Keyed by the suffix after `*`, leading dot included: `*.a.com` → `.a.com`.
    wildcard: HashMap<Box<str>, T>,
    any: Option<T>,
}

impl<T> HostMap<T> {
    pub fn new() -> Self {
        HostMap {
            exact: HashMap::default(),
            wildcard: HashMap::default(),
            any: None,
        }
    }

    /// Adds `name` (`a.com`, `*.a.com` or `*`, lower-cased by the caller); the first entry for a
    /// name wins, as the first server or virtual host does in Istio: a later one gets back the
    /// entry already there.
    pub fn insert(&mut self, name: &str, value: T) -> Result<(), &T> {
        use std::collections::hash_map::Entry;
        let entry = if name == "*" {
            return match &mut self.any {
                Some(existing) => Err(existing),
                empty => {
                    *empty = Some(value);
                    Ok(())
                }
            };
        } else if let Some(suffix) = name.strip_prefix('*') {
            self.wildcard.entry(suffix.into())
        } else {
            self.exact.entry(name.into())
        };
        match entry {
            Entry::Occupied(existing) => Err(existing.into_mut()),
            Entry::Vacant(slot) => {
                slot.insert(value);
                Ok(())
            }
        }
    }

    /// The entry for `name`: exact, then the longest matching wildcard, then `*`.
    pub fn get(&self, name: &str) -> Option<&T> {
        self.find(name).map(|(v, _)| v)
    }

    /// As [`Self::get`], saying which kind of entry matched.
    pub fn find(&self, name: &str) -> Option<(&T, HostMatch)> {
        let any = || self.any.as_ref().map(|v| (v, HostMatch::Any));
        let mut buf = [0u8; 255];
        let Some(name) = lowercase(name, &mut buf) else {
            return any();
        };
        if let Some(v) = self.exact.get(name) {
            return Some((v, HostMatch::Exact));
        }
        if !self.wildcard.is_empty() {
            // Longest suffix first: `a.b.c.com` tries `.b.c.com`, `.c.com`, `.com`.
            for (i, _) in name.match_indices('.') {
                if let Some(v) = self.wildcard.get(&name[i..]) {
                    return Some((v, HostMatch::Wildcard));
                }
            }
        }
        any()
    }

    /// Every name (`a.com`, `*.a.com`, `*`) with its value, in no particular order; for
    /// explanations and diagnostics.
    pub fn entries(&self) -> impl Iterator<Item = (String, &T)> {
        let exact = self.exact.iter().map(|(k, v)| (k.to_string(), v));
        let wildcard = self.wildcard.iter().map(|(k, v)| (format!("*{k}"), v));
        let any = self.any.iter().map(|v| ("*".to_string(), v));
        exact.chain(wildcard).chain(any)
    }

    /// The entry for a request without a name (a ClientHello without SNI): only `*` serves it.
    pub fn get_nameless(&self) -> Option<&T> {
        self.any.as_ref()
    }
}

/// Lower-cases into `buf` only when needed; `None` for names longer than DNS allows.
fn lowercase<'a>(name: &'a str, buf: &'a mut [u8; 255]) -> Option<&'a str> {
    if !name.bytes().any(|b| b.is_ascii_uppercase()) {
        return Some(name);
    }
    let out = buf.get_mut(..name.len())?;
    out.copy_from_slice(name.as_bytes());
    out.make_ascii_lowercase();
    std::str::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_then_longest_wildcard_then_any() {
        let mut map = HostMap::new();
        for (name, v) in [
            ("*", 0),
            ("*.example.com", 1),
            ("*.b.example.com", 2),
            ("a.b.example.com", 3),
        ] {
            map.insert(name, v).expect("distinct names");
        }
        // The first entry for a name wins; the later one is told which.
        assert_eq!(map.insert("*.example.com", 9), Err(&1));
        assert_eq!(map.insert("*", 9), Err(&0));
        let cases = [
            ("a.b.example.com", Some(3)),
            ("A.B.Example.COM", Some(3)),
            ("x.b.example.com", Some(2)),
            ("x.y.b.example.com", Some(2)),
            ("x.example.com", Some(1)),
            ("example.com", Some(0)),
            ("other.org", Some(0)),
        ];
        for (name, want) in cases {
            assert_eq!(map.get(name).copied(), want, "{name}");
        }
        assert_eq!(map.get_nameless(), Some(&0));
        let mut no_any = HostMap::new();
        no_any.insert("*.example.com", 1).unwrap();
        assert_eq!(
            no_any.get("example.com"),
            None,
            "*.example.com does not cover example.com"
        );
        assert_eq!(no_any.get_nameless(), None);
        assert_eq!(no_any.get(&"X".repeat(300)), None);
    }
}
