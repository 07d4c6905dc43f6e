//! `tollgate explain`: load and compile the config as `tollgate check` does (no sockets, no DNS),
//! then explain one request given as a URL with curl-like flags.

use std::process::ExitCode;

use http::header::HOST;
use http::{Method, Uri};

use super::debug::parse_header;
use super::{explain, Query};
use crate::cli::ExplainArgs;
use crate::config::{diag, ConfigStore};
use crate::snapshot::{compile, Snapshot};

/// Exit 0 when the request would be routed, 2 for an error answer, 1 when there is nothing to
/// explain (no config dir, a bad URL or header).
pub fn run(args: &ExplainArgs) -> ExitCode {
    let query = match query(args) {
        Ok(query) => query,
        Err(e) => {
            eprintln!("tollgate explain: {e}");
            return ExitCode::from(1);
        }
    };
    let config = &args.config;
    if !config.config_dir.is_dir() {
        eprintln!(
            "tollgate explain: config dir {} does not exist or is not a directory",
            config.config_dir.display()
        );
        return ExitCode::from(1);
    }
    let mut store = ConfigStore::new(&config.config_dir, &config.namespace);
    let snapshot = compile(store.load(), &config.options(), &Snapshot::empty(), 1);
    report_errors(&snapshot);
    let explanation = explain(&snapshot, &query);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&explanation).unwrap_or_default()
        );
    } else {
        print!("{explanation}");
    }
    if explanation.outcome.routed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}

/// Config errors, briefly: the explanation is of what loaded, and `check` has the details.
fn report_errors(snapshot: &Snapshot) {
    let mut errors: Vec<_> = snapshot
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .cloned()
        .collect();
    if errors.is_empty() {
        return;
    }
    diag::sort(&mut errors);
    eprintln!(
        "tollgate explain: {} config error(s); the explanation is of what loaded (tollgate check has them all):",
        errors.len()
    );
    for e in errors.iter().take(3) {
        eprintln!("  {e}");
    }
}

/// The request as curl would send it: Host from the URL (its port when not the scheme's
/// default) unless `-H 'Host: ...'` is given; SNI from the URL's host.
fn query(args: &ExplainArgs) -> Result<Query, String> {
    let uri: Uri = args
        .url
        .parse()
        .map_err(|e| format!("URL {:?}: {e}", args.url))?;
    let scheme = uri.scheme_str().unwrap_or("http").to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(format!("URL {:?}: scheme must be http or https", args.url));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| format!("URL {:?} has no host", args.url))?;
    let default_port = if scheme == "https" { 443 } else { 80 };
    let host_header = match authority.port_u16() {
        Some(p) if p != default_port => authority.as_str().to_string(),
        _ => authority.host().to_string(),
    };
    let mut query = Query::get(
        &host_header,
        uri.path_and_query().map_or("/", |p| p.as_str()),
    );
    query.port = args.port.or(authority.port_u16());
    query.scheme = Some(scheme);
    // Like curl: the SNI is the URL's host, none for an IP literal ("" says none).
    let host = authority.host();
    let url_sni = if is_ip(host) { "" } else { host };
    query.sni = Some(args.sni.clone().unwrap_or_else(|| url_sni.to_string()));
    query.method = Method::from_bytes(args.method.as_bytes())
        .map_err(|_| format!("method {:?} is not a method", args.method))?;
    for h in &args.headers {
        let (name, value) = parse_header(h)?;
        query.headers.append(name, value);
    }
    if let Some(host) = query.headers.remove(HOST) {
        query.authority = host
            .to_str()
            .map_err(|_| "the Host header is not text".to_string())?
            .to_string();
    }
    Ok(query)
}

fn is_ip(host: &str) -> bool {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
        .is_ok()
}
