//! Envoy's response flags (reference §5.4): why a request or stream ended as it did, shown in
//! access logs and in Istio's `response_flags` label.

use std::fmt;

/// A set of response flags; prints comma-joined in Envoy's order, or `-` when empty.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Flags(u16);

impl Flags {
    pub const NONE: Flags = Flags(0);
    pub const NO_HEALTHY_UPSTREAM: Flags = Flags(1 << 0);
    pub const UPSTREAM_TIMEOUT: Flags = Flags(1 << 1);
    pub const UPSTREAM_CONNECTION_FAILURE: Flags = Flags(1 << 2);
    pub const UPSTREAM_CONNECTION_TERMINATION: Flags = Flags(1 << 3);
    pub const UPSTREAM_OVERFLOW: Flags = Flags(1 << 4);
    pub const NO_ROUTE: Flags = Flags(1 << 5);
    pub const DELAY_INJECTED: Flags = Flags(1 << 6);
    pub const FAULT_INJECTED: Flags = Flags(1 << 7);
    pub const DOWNSTREAM_TERMINATION: Flags = Flags(1 << 8);
    pub const RETRY_LIMIT_EXCEEDED: Flags = Flags(1 << 9);
    pub const STREAM_IDLE_TIMEOUT: Flags = Flags(1 << 10);
    pub const DOWNSTREAM_PROTOCOL_ERROR: Flags = Flags(1 << 11);
    pub const UPSTREAM_PROTOCOL_ERROR: Flags = Flags(1 << 12);
    pub const NO_CLUSTER: Flags = Flags(1 << 13);

    /// Envoy's order (`ResponseFlagUtils::ALL_RESPONSE_STRINGS_FLAGS`), so `UF,URX` reads as Envoy writes it.
    const NAMES: [(Flags, &'static str); 14] = [
        (Flags::NO_HEALTHY_UPSTREAM, "UH"),
        (Flags::UPSTREAM_TIMEOUT, "UT"),
        (Flags::UPSTREAM_CONNECTION_FAILURE, "UF"),
        (Flags::UPSTREAM_CONNECTION_TERMINATION, "UC"),
        (Flags::UPSTREAM_OVERFLOW, "UO"),
        (Flags::NO_ROUTE, "NR"),
        (Flags::DELAY_INJECTED, "DI"),
        (Flags::FAULT_INJECTED, "FI"),
        (Flags::DOWNSTREAM_TERMINATION, "DC"),
        (Flags::RETRY_LIMIT_EXCEEDED, "URX"),
        (Flags::STREAM_IDLE_TIMEOUT, "SI"),
        (Flags::DOWNSTREAM_PROTOCOL_ERROR, "DPE"),
        (Flags::UPSTREAM_PROTOCOL_ERROR, "UPE"),
        (Flags::NO_CLUSTER, "NC"),
    ];

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn insert(&mut self, other: Flags) {
        self.0 |= other.0;
    }

    /// The names of the flags in the set, in Envoy's order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Self::NAMES
            .into_iter()
            .filter(move |(flag, _)| self.contains(*flag))
            .map(|(_, name)| name)
    }

    /// The single flag named `name` (`UF`), if Envoy has it and tollgate sets it.
    pub fn named(name: &str) -> Option<Flags> {
        Self::NAMES
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(f, _)| *f)
    }
}

impl std::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }
}

impl fmt::Display for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("-");
        }
        for (i, name) in self.names().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(name)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_in_envoy_order() {
        assert_eq!(Flags::NONE.to_string(), "-");
        let f = Flags::RETRY_LIMIT_EXCEEDED | Flags::UPSTREAM_CONNECTION_FAILURE;
        assert_eq!(f.to_string(), "UF,URX");
        let f = Flags::RETRY_LIMIT_EXCEEDED | Flags::UPSTREAM_TIMEOUT;
        assert_eq!(f.to_string(), "UT,URX");
        assert_eq!(Flags::named("NR"), Some(Flags::NO_ROUTE));
        assert!(f.contains(Flags::UPSTREAM_TIMEOUT));
        assert!(!f.contains(Flags::NO_ROUTE));
    }
}
