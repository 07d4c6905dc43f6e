//! The only writer of the live snapshot: loads, compiles, swaps, then reconciles listeners.
//! File-system events are debounced so a burst of writes becomes one reload.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::config::ConfigStore;
use crate::listener::Listeners;
use crate::snapshot::{compile, Options, Snapshot};
use crate::state::Shared;

/// Quiet time that ends a burst of file events.
const DEBOUNCE_QUIET: Duration = Duration::from_millis(40);
/// Longest a burst can delay a reload.
const DEBOUNCE_MAX: Duration = Duration::from_millis(300);

pub struct Reloader {
    store: ConfigStore,
    opts: Options,
    shared: Arc<Shared>,
    listeners: Arc<Listeners>,
    /// Diagnostics already reported, so each is logged and counted once.
    reported: HashSet<String>,
}

impl Reloader {
    pub fn new(
        store: ConfigStore,
        opts: Options,
        shared: Arc<Shared>,
        listeners: Arc<Listeners>,
    ) -> Self {
        Reloader {
            store,
            opts,
            shared,
            listeners,
            reported: HashSet::new(),
        }
    }

    /// Builds and publishes the next generation; returns it.
    pub fn reload(&mut self) -> Arc<Snapshot> {
        let started = std::time::Instant::now();
        let previous = self.shared.snapshot.load_full();
        let load = self.store.load();
        let snapshot = Arc::new(compile(
            load,
            &self.opts,
            &previous,
            previous.generation + 1,
        ));
        self.shared.snapshot.store(snapshot.clone());
        crate::telemetry::access_log::set_enabled(snapshot.access_logging.enabled);
        self.listeners.reconcile(&snapshot);
        let elapsed = started.elapsed();
        crate::snapshot::retire(previous);
        let new_errors = self.report(&snapshot);
        crate::metrics::record_reload(snapshot.generation, new_errors, snapshot.error_count());
        record_certificate_expiries(&snapshot);
        tracing::info!(
            generation = snapshot.generation,
            resources = snapshot.resources.len(),
            errors = snapshot.error_count(),
            elapsed_ms = elapsed.as_secs_f64() * 1e3,
            "configuration applied"
        );
        snapshot
    }

    /// Logs diagnostics not seen before; returns how many new errors there were.
    fn report(&mut self, snapshot: &Snapshot) -> usize {
        let mut current = HashSet::new();
        let mut new_errors = 0;
        for d in &snapshot.diagnostics {
            let line = d.to_string();
            if !self.reported.contains(&line) {
                match d.severity {
                    crate::config::Severity::Error => {
                        new_errors += 1;
                        tracing::error!("{line}")
                    }
                    crate::config::Severity::Warning => tracing::warn!("{line}"),
                    crate::config::Severity::Info => tracing::info!("{line}"),
                }
            }
            current.insert(line);
        }
        self.reported = current;
        new_errors
    }

    /// Reloads whenever files change under `dirs`, until the process ends.
    pub async fn watch(self, dirs: Vec<PathBuf>) {
        let (tx, mut rx) = mpsc::channel::<()>(1);
        let mut watcher = match notify::recommended_watcher(
            move |event: notify::Result<notify::Event>| {
                if event.is_ok_and(|e| !e.kind.is_access()) {
                    // A full channel already holds a pending reload.
                    let _ = tx.try_send(());
                }
            },
        ) {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(error = %e, "cannot watch configuration; changes need a restart");
                return;
            }
        };
        for dir in dirs.iter().filter(|d| d.exists()) {
            if let Err(e) = watcher.watch(dir, RecursiveMode::Recursive) {
                tracing::error!(dir = %dir.display(), error = %e, "cannot watch directory");
            }
        }
        let mut reloader = self;
        while rx.recv().await.is_some() {
            debounce(&mut rx).await;
            // Compiling a large configuration takes milliseconds: keep it off the traffic threads.
            reloader = match tokio::task::spawn_blocking(move || {
                reloader.reload();
                reloader
            })
            .await
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "configuration reload panicked; watching stopped");
                    return;
                }
            };
        }
    }
}

/// Sets the expiry gauge of every credential in force (a credential used by several servers
/// is set once per server; the values agree).
fn record_certificate_expiries(snapshot: &Snapshot) {
    for credential in snapshot.credentials.values().flatten() {
        crate::metrics::record_certificate_expiry(&credential.name, credential.not_after);
    }
}

async fn debounce(rx: &mut mpsc::Receiver<()>) {
    let deadline = tokio::time::Instant::now() + DEBOUNCE_MAX;
    loop {
        let quiet = tokio::time::Instant::now() + DEBOUNCE_QUIET;
        match tokio::time::timeout_at(quiet.min(deadline), rx.recv()).await {
            Ok(Some(())) if tokio::time::Instant::now() < deadline => continue,
            _ => return,
        }
    }
}
