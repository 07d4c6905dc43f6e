//! `/stats`: Envoy's plain `name: value` lines, derived from the Prometheus render (labels folded
//! into the name as `name{k="v"}`), histograms as count, sum and quantiles; `?filter=<regex>`,
//! `?usedonly`, `?format=json`.

use std::collections::HashMap;
use std::fmt::Write;

use http::StatusCode;
use serde_json::json;

use super::{json, text, AdminContext, AdminResponse, Query};

/// Quantiles estimated from bucketed histograms.
const QUANTILES: [f64; 3] = [0.5, 0.9, 0.99];

#[derive(Debug, Clone, PartialEq)]
struct Stat {
    name: String,
    value: Value,
}

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Number(f64),
    Histogram(Histogram),
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Histogram {
    count: f64,
    sum: f64,
    /// (quantile, value), as a summary gives them or estimated from buckets.
    quantiles: Vec<(f64, f64)>,
    /// (upper bound, cumulative count).
    buckets: Vec<(f64, f64)>,
}

pub(super) fn stats(ctx: &AdminContext, query: &Query) -> AdminResponse {
    let filter = match query.get("filter").map(regex::Regex::new).transpose() {
        Ok(f) => f,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("bad filter regex: {e}\n")),
    };
    let used_only = query.has("usedonly");
    let stats: Vec<Stat> = parse(&ctx.prometheus.render())
        .into_iter()
        .filter(|s| filter.as_ref().is_none_or(|re| re.is_match(&s.name)))
        .filter(|s| !used_only || s.used())
        .collect();
    if query.wants_json() {
        let list: Vec<_> = stats.iter().map(Stat::to_json).collect();
        return json(StatusCode::OK, &json!({ "stats": list }));
    }
    let mut body = String::new();
    for stat in &stats {
        stat.write_text(&mut body);
    }
    text(StatusCode::OK, body)
}

impl Stat {
    fn used(&self) -> bool {
        match &self.value {
            Value::Number(v) => *v != 0.0,
            Value::Histogram(h) => h.count != 0.0,
        }
    }

    fn write_text(&self, out: &mut String) {
        let _ = match &self.value {
            Value::Number(v) => writeln!(out, "{}: {v}", self.name),
            Value::Histogram(h) => {
                let _ = write!(out, "{}: count={} sum={}", self.name, h.count, h.sum);
                for (q, v) in h.quantiles() {
                    let _ = write!(out, " {}={v}", percentile_name(q));
                }
                writeln!(out)
            }
        };
    }

    fn to_json(&self) -> serde_json::Value {
        match &self.value {
            Value::Number(v) => json!({ "name": self.name, "value": v }),
            Value::Histogram(h) => {
                let quantiles: serde_json::Map<_, _> = h
                    .quantiles()
                    .into_iter()
                    .map(|(q, v)| (percentile_name(q), json!(v)))
                    .collect();
                json!({ "name": self.name, "histogram": {
                    "count": h.count, "sum": h.sum, "quantiles": quantiles,
                }})
            }
        }
    }
}

impl Histogram {
    /// A summary's own quantiles, else estimates from the buckets: the upper bound of the first
    /// bucket holding the quantile (none while empty).
    fn quantiles(&self) -> Vec<(f64, f64)> {
        if !self.quantiles.is_empty() || self.count == 0.0 {
            return self.quantiles.clone();
        }
        QUANTILES
            .iter()
            .filter_map(|q| {
                let rank = q * self.count;
                let bucket = self
                    .buckets
                    .iter()
                    .find(|(_, cumulative)| *cumulative >= rank);
                bucket.map(|(le, _)| (*q, *le))
            })
            .collect()
    }
}

/// `0.5` → `P50`, `0.999` → `P99.9`.
fn percentile_name(q: f64) -> String {
    let p = (q * 1000.0).round() / 10.0;
    format!("P{p}")
}

/// Reads the Prometheus text exposition: counters and gauges as numbers; a histogram's
/// `_bucket`/`_sum`/`_count` series and a summary's quantile series folded into one stat each.
fn parse(render: &str) -> Vec<Stat> {
    let mut types: HashMap<&str, &str> = HashMap::new();
    let mut stats: Vec<Stat> = Vec::new();
    let mut histograms: HashMap<String, usize> = HashMap::new();
    for line in render.lines() {
        if let Some((name, kind)) = line.strip_prefix("# TYPE ").and_then(|r| r.split_once(' ')) {
            types.insert(name, kind.trim());
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let Some((series, value)) = line.trim_end().rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (metric, labels) = split_series(series);
        let Some((base, part)) = histogram_part(metric, &types) else {
            let name = series_name(metric, &labels);
            stats.push(Stat {
                name,
                value: Value::Number(value),
            });
            continue;
        };
        let bound = labels
            .iter()
            .find(|(k, _)| *k == part.label())
            .map(|(_, v)| *v);
        let rest: Vec<_> = labels
            .into_iter()
            .filter(|(k, _)| *k != part.label())
            .collect();
        let name = series_name(base, &rest);
        let index = *histograms.entry(name.clone()).or_insert_with(|| {
            stats.push(Stat {
                name,
                value: Value::Histogram(Histogram::default()),
            });
            stats.len() - 1
        });
        if let Some(Value::Histogram(h)) = stats.get_mut(index).map(|s| &mut s.value) {
            part.record(h, bound, value);
        }
    }
    stats
}

#[derive(Debug, Clone, Copy)]
enum Part {
    Quantile,
    Bucket,
    Sum,
    Count,
}

impl Part {
    /// The label that tells the series of one histogram apart.
    fn label(self) -> &'static str {
        match self {
            Part::Quantile => "quantile",
            Part::Bucket => "le",
            Part::Sum | Part::Count => "",
        }
    }

    fn record(self, h: &mut Histogram, bound: Option<&str>, value: f64) {
        let bound = bound.and_then(|b| b.parse::<f64>().ok());
        match (self, bound) {
            (Part::Quantile, Some(q)) => h.quantiles.push((q, value)),
            (Part::Bucket, Some(le)) => h.buckets.push((le, value)),
            (Part::Sum, _) => h.sum = value,
            (Part::Count, _) => h.count = value,
            _ => {}
        }
    }
}

/// Which histogram or summary a series belongs to, and which part of it it is.
fn histogram_part<'a>(metric: &'a str, types: &HashMap<&str, &str>) -> Option<(&'a str, Part)> {
    if types.get(metric) == Some(&"summary") {
        return Some((metric, Part::Quantile));
    }
    [
        ("_bucket", Part::Bucket),
        ("_sum", Part::Sum),
        ("_count", Part::Count),
    ]
    .into_iter()
    .find_map(|(suffix, part)| {
        let base = metric.strip_suffix(suffix)?;
        matches!(types.get(base), Some(&"histogram" | &"summary")).then_some((base, part))
    })
}

/// `name{k="v",...}` → the name and its labels (values as written, escapes kept).
fn split_series(series: &str) -> (&str, Vec<(&str, &str)>) {
    let Some((name, rest)) = series.split_once('{') else {
        return (series, Vec::new());
    };
    let inner = rest.strip_suffix('}').unwrap_or(rest);
    (name, labels(inner))
}

fn labels(mut rest: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    loop {
        rest = rest.trim_start_matches([',', ' ']);
        let Some((key, after)) = rest.split_once("=\"") else {
            return out;
        };
        let mut escaped = false;
        let end = after.char_indices().find_map(|(i, c)| match (escaped, c) {
            (true, _) => {
                escaped = false;
                None
            }
            (false, '\\') => {
                escaped = true;
                None
            }
            (false, '"') => Some(i),
            _ => None,
        });
        let Some(end) = end else {
            return out;
        };
        out.push((key.trim(), &after[..end]));
        rest = &after[end + 1..];
    }
}

fn series_name(metric: &str, labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return metric.to_string();
    }
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{metric}{{{}}}", inner.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RENDER: &str = r#"# HELP tollgate_http_requests_total HTTP requests
# TYPE tollgate_http_requests_total counter
tollgate_http_requests_total{code_class="2xx"} 3
tollgate_http_requests_total{code_class="5xx"} 0

# TYPE tollgate_config_generation gauge
tollgate_config_generation 1
# TYPE tollgate_tcp_connection_duration_seconds histogram
tollgate_tcp_connection_duration_seconds_bucket{destination="a,\"b\"",le="0.1"} 1
tollgate_tcp_connection_duration_seconds_bucket{destination="a,\"b\"",le="1"} 3
tollgate_tcp_connection_duration_seconds_bucket{destination="a,\"b\"",le="+Inf"} 4
tollgate_tcp_connection_duration_seconds_sum{destination="a,\"b\""} 7.5
tollgate_tcp_connection_duration_seconds_count{destination="a,\"b\""} 4
# TYPE lat summary
lat{quantile="0.5"} 2
lat{quantile="0.99"} 9
lat_sum 20
lat_count 5
"#;

    fn text_of(stats: &[Stat]) -> String {
        let mut out = String::new();
        stats.iter().for_each(|s| s.write_text(&mut out));
        out
    }

    #[test]
    fn counters_gauges_histograms_and_summaries_become_envoy_lines() {
        let stats = parse(RENDER);
        assert_eq!(
            text_of(&stats),
            "tollgate_http_requests_total{code_class=\"2xx\"}: 3\n\
             tollgate_http_requests_total{code_class=\"5xx\"}: 0\n\
             tollgate_config_generation: 1\n\
             tollgate_tcp_connection_duration_seconds{destination=\"a,\\\"b\\\"\"}: count=4 sum=7.5 P50=1 P90=inf P99=inf\n\
             lat: count=5 sum=20 P50=2 P99=9\n"
        );
        assert_eq!(stats.iter().filter(|s| s.used()).count(), 4);
    }

    #[test]
    fn json_has_names_and_values() {
        let stats = parse(RENDER);
        assert_eq!(
            stats[0].to_json(),
            json!({"name": "tollgate_http_requests_total{code_class=\"2xx\"}", "value": 3.0})
        );
        assert_eq!(
            stats[4].to_json()["histogram"]["quantiles"]["P99"],
            json!(9.0)
        );
    }
}
