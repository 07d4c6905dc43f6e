//! Load balancing. Istio's default is LEAST_REQUEST: Envoy's power of two choices, where each
//! choice is drawn in proportion to endpoint weight.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::cluster::Endpoint;

/// A cluster's balancer, from its DestinationRule's `loadBalancer` (reference §3.4).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub enum LbPolicy {
    /// Istio's default (and `LEAST_CONN`, `UNSPECIFIED`; `PASSTHROUGH` means nothing at an ingress).
    #[default]
    LeastRequest,
    RoundRobin,
    Random,
    /// `consistentHash`: a ring of endpoint points; a request's key picks the next point.
    ConsistentHash(HashOn),
}

/// What a consistent-hash key is made of.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub enum HashOn {
    /// A request header (lower-cased name).
    Header(String),
    Cookie(CookieHash),
    SourceIp,
    QueryParameter(String),
}

/// `consistentHash.httpCookie`: with a `ttl`, a request without the cookie gets one generated,
/// set on its response, as Envoy does; without, such a request is balanced at random.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct CookieHash {
    pub name: String,
    pub path: Option<String>,
    /// Zero makes a session cookie.
    pub ttl: Option<std::time::Duration>,
}

/// Points per unit of weight: fixed, so that adding or removing an endpoint moves only the keys
/// it owns (a ring sized by endpoint count, as Envoy's, also reshuffles keys among the others).
const POINTS_PER_WEIGHT: u64 = 256;
/// Bound on one endpoint's points, whatever the weight ratio.
const MAX_POINTS: u64 = 8192;

/// A hash ring over endpoints: each endpoint owns points in proportion to its weight.
#[derive(Debug, Default)]
pub struct Ring {
    points: Vec<(u64, Arc<Endpoint>)>,
}

impl Ring {
    pub fn new(endpoints: &[Arc<Endpoint>]) -> Self {
        let lightest = endpoints
            .iter()
            .map(|e| u64::from(e.weight))
            .min()
            .unwrap_or(1)
            .max(1);
        let mut points = Vec::new();
        for e in endpoints {
            let share = (POINTS_PER_WEIGHT * u64::from(e.weight) / lightest).clamp(1, MAX_POINTS);
            for i in 0..share {
                points.push((stable_hash(&(e.addr, i)), e.clone()));
            }
        }
        points.sort_by_key(|(h, _)| *h);
        Ring { points }
    }

    /// The endpoint owning the first point at or after `key`.
    pub fn get(&self, key: u64) -> Option<Arc<Endpoint>> {
        if self.points.is_empty() {
            return None;
        }
        let i = self.points.partition_point(|(h, _)| *h < key) % self.points.len();
        Some(self.points[i].1.clone())
    }
}

/// A hash that is the same for the same input for the life of the process (SipHash, fixed keys).
pub fn stable_hash(value: &impl Hash) -> u64 {
    #[allow(deprecated)]
    let mut h = std::hash::SipHasher::new();
    value.hash(&mut h);
    h.finish()
}

/// Round robin over equal weights; weighted random when weights differ.
pub fn round_robin(endpoints: &[Arc<Endpoint>], cursor: &AtomicUsize) -> Option<Arc<Endpoint>> {
    if endpoints.is_empty() {
        return None;
    }
    let first = endpoints[0].weight;
    let i = if endpoints.iter().all(|e| e.weight == first) {
        cursor.fetch_add(1, Ordering::Relaxed) % endpoints.len()
    } else {
        weighted_index(endpoints, endpoints.len())
    };
    Some(endpoints[i].clone())
}

pub fn random(endpoints: &[Arc<Endpoint>]) -> Option<Arc<Endpoint>> {
    match endpoints.len() {
        0 => None,
        n => Some(endpoints[weighted_index(endpoints, n)].clone()),
    }
}

/// Picks the less loaded of two random endpoints (distinct when there are at least two).
pub fn least_request(endpoints: &[Arc<Endpoint>]) -> Option<Arc<Endpoint>> {
    match endpoints.len() {
        0 => None,
        1 => Some(endpoints[0].clone()),
        n => {
            let a = weighted_index(endpoints, n);
            let mut b = weighted_index(endpoints, n);
            if a == b {
                b = (a + 1 + fastrand::usize(..n - 1)) % n;
            }
            let (ea, eb) = (&endpoints[a], &endpoints[b]);
            Some(if eb.active_requests() < ea.active_requests() {
                eb.clone()
            } else {
                ea.clone()
            })
        }
    }
}

fn weighted_index(endpoints: &[Arc<Endpoint>], n: usize) -> usize {
    let first = endpoints[0].weight;
    if endpoints.iter().all(|e| e.weight == first) {
        return fastrand::usize(..n);
    }
    let total: u64 = endpoints.iter().map(|e| u64::from(e.weight)).sum();
    let mut point = fastrand::u64(..total.max(1));
    for (i, e) in endpoints.iter().enumerate() {
        if point < u64::from(e.weight) {
            return i;
        }
        point -= u64::from(e.weight);
    }
    n - 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::ActiveRequest;

    #[test]
    fn round_robin_cycles_and_random_covers() {
        let list = endpoints(&[1, 1, 1]);
        let cursor = AtomicUsize::new(0);
        let picked: Vec<_> = (0..6)
            .map(|_| round_robin(&list, &cursor).unwrap().addr.port())
            .collect();
        assert_eq!(picked, [1000, 1001, 1002, 1000, 1001, 1002]);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            seen.insert(random(&list).unwrap().addr.port());
        }
        assert_eq!(seen.len(), 3);
    }

    #[test]
    fn a_ring_keeps_keys_on_one_endpoint_and_spreads_them() {
        let list = endpoints(&[1, 1, 1]);
        let ring = Ring::new(&list);
        let mut counts = std::collections::HashMap::new();
        for user in 0..3000u32 {
            let key = stable_hash(&format!("user-{user}"));
            let first = ring.get(key).unwrap().addr;
            assert_eq!(
                ring.get(key).unwrap().addr,
                first,
                "same key, same endpoint"
            );
            *counts.entry(first).or_insert(0) += 1;
        }
        assert_eq!(counts.len(), 3);
        assert!(counts.values().all(|&c| c > 600), "{counts:?}");
        // Removing one endpoint moves only the keys it owned.
        let smaller = Ring::new(&list[..2]);
        let moved = (0..3000u32)
            .map(|u| stable_hash(&format!("user-{u}")))
            .filter(|k| {
                let before = ring.get(*k).unwrap().addr;
                before != list[2].addr && smaller.get(*k).unwrap().addr != before
            })
            .count();
        assert_eq!(moved, 0);
    }

    fn endpoints(weights: &[u32]) -> Vec<Arc<Endpoint>> {
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| {
                Arc::new(Endpoint::new(
                    format!("127.0.0.1:{}", 1000 + i).parse().unwrap(),
                    *w,
                ))
            })
            .collect()
    }

    #[test]
    fn avoids_the_busy_endpoint() {
        let eps = endpoints(&[1, 1]);
        let _busy: Vec<_> = (0..5)
            .map(|_| ActiveRequest::start(eps[0].clone()))
            .collect();
        for _ in 0..100 {
            assert_eq!(least_request(&eps).unwrap().addr, eps[1].addr);
        }
    }

    #[test]
    fn spreads_over_idle_endpoints() {
        let eps = endpoints(&[1, 1, 1]);
        let mut seen = [0; 3];
        for _ in 0..300 {
            let e = least_request(&eps).unwrap();
            seen[eps.iter().position(|x| x.addr == e.addr).unwrap()] += 1;
        }
        assert!(seen.iter().all(|c| *c > 30), "{seen:?}");
    }
}
