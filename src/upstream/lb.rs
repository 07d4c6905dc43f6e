//! Load balancing. Istio's default is LEAST_REQUEST: Envoy's power of two choices, where each
//! choice is drawn in proportion to endpoint weight.

use std::sync::Arc;

use super::cluster::Endpoint;

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
