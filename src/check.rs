//! `tollgate check`: load, validate and compile without serving; print every diagnostic.

use std::process::ExitCode;
use std::time::Duration;

use crate::cli::CheckArgs;
use crate::config::{diag, ConfigStore, Diagnostic, Severity};
use crate::snapshot::{compile, Snapshot};

/// Bound on all destination DNS lookups together.
const DNS_CHECK_TIMEOUT: Duration = Duration::from_secs(3);

pub fn run(args: &CheckArgs) -> ExitCode {
    if !args.config.config_dir.is_dir() {
        eprintln!(
            "tollgate check: config dir {} does not exist or is not a directory",
            args.config.config_dir.display()
        );
        return ExitCode::from(2);
    }
    let mut diagnostics = diagnose(args);
    diag::sort(&mut diagnostics);
    for d in &diagnostics {
        println!("{d}");
    }
    let count = |s| diagnostics.iter().filter(|d| d.severity == s).count();
    let (errors, warnings) = (count(Severity::Error), count(Severity::Warning));
    println!("{errors} error(s), {warnings} warning(s)");
    if errors > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Every diagnostic `run` would report, plus destinations whose names do not resolve.
pub fn diagnose(args: &CheckArgs) -> Vec<Diagnostic> {
    let mut store = ConfigStore::new(&args.config.config_dir, &args.config.namespace);
    let snapshot = compile(store.load(), &args.config.options(), &Snapshot::empty(), 1);
    let mut diagnostics = snapshot.diagnostics.clone();
    if !args.no_dns {
        diagnostics.extend(unresolvable_destinations(&snapshot));
    }
    diagnostics
}

fn unresolvable_destinations(snapshot: &Snapshot) -> Vec<Diagnostic> {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return Vec::new();
    };
    runtime.block_on(async {
        let mut lookups = tokio::task::JoinSet::new();
        for cluster in snapshot.clusters.values().filter(|c| c.is_dns()).cloned() {
            lookups.spawn(async move {
                let done = tokio::time::timeout(DNS_CHECK_TIMEOUT, cluster.resolve()).await.is_ok();
                (done && !cluster.current_endpoints().is_empty(), cluster)
            });
        }
        let mut out = Vec::new();
        while let Some(Ok((resolved, cluster))) = lookups.join_next().await {
            let Some(at) = snapshot.cluster_refs.get(cluster.name()).filter(|_| !resolved) else { continue };
            let message = format!(
                "destination {} has no resolvable endpoints (DNS lookup failed); requests to it get 503 no healthy upstream",
                cluster.name()
            );
            out.push(at.with_message(Severity::Warning, message));
        }
        out
    })
}
