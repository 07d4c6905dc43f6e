//! The human form of an explanation: the request, numbered steps, then the outcome.

use std::fmt;

use super::{DestinationInfo, Explanation, RouteCheck};

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.request;
        write!(f, "{} {}://{}{}", r.method, r.scheme, r.authority, r.path)?;
        if let Some(sni) = &r.sni {
            write!(f, " (SNI {sni})")?;
        }
        writeln!(f)?;
        if let Some(normalized) = &r.normalized_path {
            writeln!(f, "   path normalized to {normalized}")?;
        }
        let steps = self.steps();
        for (i, step) in steps.iter().enumerate() {
            writeln!(f, "{}. {step}", i + 1)?;
        }
        if let Some(c) = &self.closest_route {
            writeln!(f, "   closest route: {} ({})", c.name, c.failed.join("; "))?;
        }
        writeln!(f, "=> {}", self.outcome.message)
    }
}

impl Explanation {
    /// One line per step taken, in order.
    fn steps(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(l) = &self.listener {
            out.push(format!(
                "listener: gateway port {} (bind {}, {:?}) of {} ({})",
                l.port,
                l.bind,
                l.class,
                l.gateways.join(", "),
                l.chosen
            ));
        }
        if let Some(t) = &self.tls {
            let sni = t.sni.as_deref().unwrap_or("(none)");
            out.push(match (&t.server, &t.matched_by) {
                (Some(server), Some(why)) => format!(
                    "TLS server: SNI {sni} → {server} ({why}), {}",
                    t.mode.unwrap_or("-")
                ),
                _ => format!("TLS server: SNI {sni} matches no server"),
            });
        }
        if let Some(table) = &self.route_table {
            out.push(match &self.virtual_host {
                Some(v) => format!(
                    "route table {}: virtual host {} ({}){}",
                    table.name,
                    v.domain,
                    v.matched_by,
                    if v.https_redirect {
                        ", httpsRedirect"
                    } else {
                        ""
                    }
                ),
                None => format!(
                    "route table {}: no virtual host for Host {} (domains: {})",
                    table.name,
                    self.request.authority,
                    table.domains.join(", ")
                ),
            });
        }
        out.extend(self.routes.iter().map(route_line));
        if let Some(name) = &self.stream_route {
            out.push(format!("stream route {name}"));
        }
        out.extend(self.destinations.iter().map(destination_line));
        out
    }
}

fn route_line(r: &RouteCheck) -> String {
    if r.matched {
        format!("route #{} {}: matched", r.index, r.name)
    } else {
        let why = r.failed.first().map_or("", String::as_str);
        format!("route #{} {}: no match: {why}", r.index, r.name)
    }
}

fn destination_line(d: &DestinationInfo) -> String {
    let endpoints: Vec<String> = d
        .endpoints
        .iter()
        .map(|e| {
            let state = if e.healthy { "healthy" } else { "ejected" };
            format!("{} w{} {state}", e.address, e.weight)
        })
        .collect();
    let endpoints = match (endpoints.is_empty(), d.source) {
        (true, "dns") => "endpoints resolved by DNS at the first request".to_string(),
        (true, _) => "no endpoints".to_string(),
        (false, _) => format!("endpoints {}", endpoints.join(", ")),
    };
    let problem = d
        .problem
        .as_deref()
        .map(|p| format!(" — {p}"))
        .unwrap_or_default();
    format!(
        "destination {} ({:.0}%): {endpoints}{problem}",
        d.cluster, d.percent
    )
}
