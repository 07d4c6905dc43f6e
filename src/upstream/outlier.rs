//! Outlier detection (DestinationRule `outlierDetection`, reference §3.6), as Envoy's detector
//! with Istio's settings: consecutive 5xx and consecutive gateway errors eject an endpoint at
//! once; a sweep every `interval` brings back endpoints whose ejection time is over. An endpoint
//! is ejected for `baseEjectionTime` × the times it was ejected (capped at 300 s), and that
//! multiplier falls back by one for every `baseEjectionTime` it stays healthy.
//!
//! The hot path is two relaxed atomics per response on the endpoint; ejection decisions take
//! the cluster's detector lock, which only a threshold crossing or a sweep does.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Envoy's `max_ejection_time` default.
const MAX_EJECTION_TIME: Duration = Duration::from_secs(300);

/// The detector's settings, with Istio's defaults for a present block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct OutlierSpec {
    /// 0 disables.
    pub consecutive_5xx: u32,
    /// 0 disables (Istio's default: not enforced unless set).
    pub consecutive_gateway: u32,
    pub interval: Duration,
    pub base_ejection_time: Duration,
    pub max_ejection_percent: u32,
    /// Istio's panic threshold: below this share of healthy endpoints, balance over all of them.
    pub min_health_percent: u32,
}

impl Default for OutlierSpec {
    fn default() -> Self {
        OutlierSpec {
            consecutive_5xx: 5,
            consecutive_gateway: 0,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_percent: 10,
            min_health_percent: 0,
        }
    }
}

/// What an exchange with an endpoint came to, for the detector. Failures before a response
/// count as the status Envoy maps them to when local and upstream errors are not split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observation {
    Status(u16),
    /// Connect or TLS handshake failure, or a reset before response headers: 503.
    ConnectFailure,
    /// No response within the route's or the try's timeout: 504.
    Timeout,
}

impl Observation {
    fn status(self) -> u16 {
        match self {
            Observation::Status(code) => code,
            Observation::ConnectFailure => 503,
            Observation::Timeout => 504,
        }
    }
}

/// An endpoint's consecutive-error counters (lock-free) and ejection record (locked rarely).
#[derive(Debug, Default)]
pub struct EndpointHealth {
    consecutive_5xx: AtomicU32,
    consecutive_gateway: AtomicU32,
    ejection: Mutex<Ejection>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Ejection {
    /// When the current ejection began; `None` while the endpoint serves.
    since: Option<Instant>,
    /// Multiplier of the base ejection time: grows with each ejection, decays while healthy.
    backoff: u32,
    last_return: Option<Instant>,
    /// Ejections so far (admin output).
    count: u64,
}

/// An endpoint's ejection state as the admin API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct EjectionStatus {
    pub ejected: bool,
    pub ejections: u64,
    /// Until the next sweep after this, the endpoint stays out; 0 once its time is over.
    pub remaining_ms: Option<u64>,
}

impl EndpointHealth {
    pub fn is_ejected(&self) -> bool {
        self.ejection.lock().is_ok_and(|e| e.since.is_some())
    }

    /// Whether it is ejected, how often it was, and how long it stays out under `spec`.
    pub fn status(&self, spec: Option<&OutlierSpec>) -> EjectionStatus {
        let Ok(e) = self.ejection.lock() else {
            return EjectionStatus {
                ejected: false,
                ejections: 0,
                remaining_ms: None,
            };
        };
        let remaining = match (e.since, spec) {
            (Some(since), Some(spec)) => {
                let total = ejection_time(spec.base_ejection_time, e.backoff);
                Some(total.saturating_sub(since.elapsed()).as_millis() as u64)
            }
            _ => None,
        };
        EjectionStatus {
            ejected: e.since.is_some(),
            ejections: e.count,
            remaining_ms: remaining,
        }
    }

    /// Counts `seen`; true when it crosses a threshold of `spec` (the caller decides ejection).
    pub fn observe(&self, seen: Observation, spec: &OutlierSpec) -> bool {
        let status = seen.status();
        if !(500..600).contains(&status) {
            reset(&self.consecutive_5xx);
            reset(&self.consecutive_gateway);
            return false;
        }
        let fives = self.consecutive_5xx.fetch_add(1, Ordering::Relaxed) + 1;
        let mut crossed = spec.consecutive_5xx > 0 && fives >= spec.consecutive_5xx;
        if matches!(status, 502..=504) {
            let gateway = self.consecutive_gateway.fetch_add(1, Ordering::Relaxed) + 1;
            crossed |= spec.consecutive_gateway > 0 && gateway >= spec.consecutive_gateway;
        } else {
            reset(&self.consecutive_gateway);
        }
        crossed
    }

    /// Ejects now unless already ejected; returns whether it did.
    fn eject(&self, now: Instant, spec: &OutlierSpec) -> bool {
        let Ok(mut e) = self.ejection.lock() else {
            return false;
        };
        if e.since.is_some() {
            return false;
        }
        e.since = Some(now);
        e.count += 1;
        let cap = (MAX_EJECTION_TIME.as_millis() / spec.base_ejection_time.as_millis().max(1))
            .max(1) as u32;
        e.backoff = (e.backoff + 1).min(cap);
        reset(&self.consecutive_5xx);
        reset(&self.consecutive_gateway);
        true
    }

    /// At a sweep: brings the endpoint back when its time is over, or lets a healthy
    /// endpoint's multiplier decay. Returns whether it came back.
    fn sweep(&self, now: Instant, spec: &OutlierSpec) -> bool {
        let Ok(mut e) = self.ejection.lock() else {
            return false;
        };
        let base = spec.base_ejection_time;
        match e.since {
            Some(since) if now.duration_since(since) >= ejection_time(base, e.backoff) => {
                e.since = None;
                e.last_return = Some(now);
                true
            }
            Some(_) => false,
            None => {
                if e.backoff > 0 && e.last_return.is_some_and(|t| now.duration_since(t) >= base) {
                    e.backoff -= 1;
                    e.last_return = Some(now);
                }
                false
            }
        }
    }
}

fn ejection_time(base: Duration, backoff: u32) -> Duration {
    (base * backoff.max(1)).min(MAX_EJECTION_TIME.max(base))
}

/// Stores 0 only when needed, so a healthy endpoint's counters stay in shared cache lines.
fn reset(counter: &AtomicU32) {
    if counter.load(Ordering::Relaxed) != 0 {
        counter.store(0, Ordering::Relaxed);
    }
}

/// A cluster's detector. Its lock serialises ejection decisions, so the budget check and the
/// cluster's list of serving endpoints stay consistent; whether a sweep is due is one atomic load.
#[derive(Debug)]
pub struct Detector {
    pub spec: OutlierSpec,
    epoch: Instant,
    /// Milliseconds since `epoch` when the next sweep is due.
    next_sweep: AtomicU64,
    deciding: Mutex<()>,
}

impl Detector {
    pub fn new(spec: OutlierSpec) -> Self {
        Detector {
            spec,
            epoch: Instant::now(),
            next_sweep: AtomicU64::new(spec.interval.as_millis() as u64),
            deciding: Mutex::new(()),
        }
    }

    /// Runs `decide` under the detector's lock.
    pub fn locked<R>(&self, decide: impl FnOnce() -> R) -> R {
        let _guard = self.deciding.lock();
        decide()
    }

    /// Runs a sweep if one is due (and no other thread is deciding): each of `endpoints` is
    /// looked at, then `changed` runs, still under the lock, if one came back.
    pub fn sweep_if_due<'a>(
        &self,
        endpoints: impl Iterator<Item = &'a EndpointHealth>,
        changed: impl FnOnce(),
    ) {
        let now = Instant::now();
        let elapsed = now.duration_since(self.epoch).as_millis() as u64;
        if elapsed < self.next_sweep.load(Ordering::Relaxed) {
            return;
        }
        let Ok(_guard) = self.deciding.try_lock() else {
            return;
        };
        self.next_sweep.store(
            elapsed + self.spec.interval.as_millis() as u64,
            Ordering::Relaxed,
        );
        let mut returned = false;
        for health in endpoints {
            returned |= health.sweep(now, &self.spec);
        }
        if returned {
            changed();
        }
    }

    /// Whether one more endpoint may be ejected with `ejected` of `total` already out, by
    /// Envoy's rule: the share after ejecting must stay within `maxEjectionPercent`.
    pub fn may_eject(&self, ejected: usize, total: usize) -> bool {
        total > 0 && (ejected + 1) * 100 <= self.spec.max_ejection_percent as usize * total
    }

    /// Ejects `health` if the ejection budget allows; true when it did.
    pub fn try_eject(&self, health: &EndpointHealth, ejected: usize, total: usize) -> bool {
        self.may_eject(ejected, total) && health.eject(Instant::now(), &self.spec)
    }

    /// Whether the share of healthy endpoints is under the panic threshold, where Envoy
    /// balances over all endpoints, ejected or not.
    pub fn panics(&self, healthy: usize, total: usize) -> bool {
        healthy * 100 < self.spec.min_health_percent as usize * total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> OutlierSpec {
        OutlierSpec {
            consecutive_5xx: 3,
            consecutive_gateway: 2,
            interval: Duration::from_millis(10),
            base_ejection_time: Duration::from_secs(1),
            max_ejection_percent: 100,
            min_health_percent: 0,
        }
    }

    #[test]
    fn consecutive_errors_cross_the_threshold_and_successes_reset() {
        let h = EndpointHealth::default();
        let s = spec();
        assert!(!h.observe(Observation::Status(500), &s));
        assert!(!h.observe(Observation::Status(500), &s));
        assert!(!h.observe(Observation::Status(200), &s), "a success resets");
        assert!(!h.observe(Observation::Status(500), &s));
        assert!(!h.observe(Observation::Status(500), &s));
        assert!(
            h.observe(Observation::Status(500), &s),
            "third 5xx in a row"
        );
    }

    #[test]
    fn gateway_errors_have_their_own_threshold() {
        let h = EndpointHealth::default();
        let s = spec();
        assert!(!h.observe(Observation::ConnectFailure, &s));
        assert!(
            h.observe(Observation::Timeout, &s),
            "503 then 504: two gateway errors"
        );
        let h = EndpointHealth::default();
        assert!(!h.observe(Observation::Status(502), &s));
        assert!(
            !h.observe(Observation::Status(500), &s),
            "500 breaks the gateway run"
        );
        assert!(
            h.observe(Observation::Status(502), &s),
            "but counts as the third 5xx"
        );
    }

    #[test]
    fn ejection_time_grows_with_each_ejection_and_is_capped() {
        let s = spec();
        let h = EndpointHealth::default();
        let t0 = Instant::now();
        assert!(h.eject(t0, &s));
        assert!(!h.eject(t0, &s), "already ejected");
        assert!(!h.sweep(t0 + Duration::from_millis(999), &s));
        assert!(
            h.sweep(t0 + Duration::from_secs(1), &s),
            "back after 1 × base"
        );
        let t1 = t0 + Duration::from_secs(1);
        assert!(h.eject(t1, &s));
        assert!(!h.sweep(t1 + Duration::from_millis(1999), &s));
        assert!(
            h.sweep(t1 + Duration::from_secs(2), &s),
            "back after 2 × base"
        );
        assert_eq!(ejection_time(s.base_ejection_time, 1000), MAX_EJECTION_TIME);
    }

    #[test]
    fn a_healthy_endpoint_s_multiplier_decays() {
        let s = spec();
        let h = EndpointHealth::default();
        let t0 = Instant::now();
        h.eject(t0, &s);
        let back = t0 + Duration::from_secs(1);
        assert!(h.sweep(back, &s));
        h.eject(back, &s);
        let back = back + Duration::from_secs(2);
        assert!(h.sweep(back, &s));
        assert_eq!(h.ejection.lock().unwrap().backoff, 2);
        h.sweep(back + Duration::from_secs(1), &s);
        assert_eq!(
            h.ejection.lock().unwrap().backoff,
            1,
            "one base time healthy"
        );
    }

    #[test]
    fn ejection_budget_follows_envoy_s_rule() {
        let mut s = spec();
        s.max_ejection_percent = 10;
        let d = Detector::new(s);
        assert!(!d.may_eject(0, 3), "10% of 3 endpoints is less than one");
        assert!(d.may_eject(0, 10));
        assert!(!d.may_eject(1, 10));
        s.max_ejection_percent = 100;
        let d = Detector::new(s);
        assert!(d.may_eject(2, 3));
        assert!(!d.may_eject(3, 3));
    }

    #[test]
    fn panic_threshold() {
        let mut s = spec();
        assert!(!Detector::new(s).panics(0, 3), "0 disables panic mode");
        s.min_health_percent = 50;
        assert!(Detector::new(s).panics(1, 3));
        assert!(!Detector::new(s).panics(2, 3));
    }
}
