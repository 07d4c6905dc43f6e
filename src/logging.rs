//! Log levels that can change while the process runs (admin `/logging`, like Envoy's). The
//! `EnvFilter` sits in a reload layer; its handle and the directives it was built from live here.
//! `RUST_LOG` sets the initial directives.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

/// Envoy's logger names and the tollgate module targets each covers.
pub const LOGGERS: &[(&str, &[&str])] = &[
    ("admin", &["tollgate::admin"]),
    (
        "config",
        &["tollgate::config", "tollgate::reload", "tollgate::snapshot"],
    ),
    ("connection", &["tollgate::listener", "tollgate::l4"]),
    ("http", &["tollgate::http"]),
    ("main", &["tollgate::app", "tollgate::logging"]),
    ("router", &["tollgate::route"]),
    ("tls", &["tollgate::tls"]),
    ("upstream", &["tollgate::upstream"]),
];

/// Levels as Envoy names them, with the `tracing` level each means.
const LEVELS: &[(&str, &str)] = &[
    ("trace", "trace"),
    ("debug", "debug"),
    ("info", "info"),
    ("warning", "warn"),
    ("warn", "warn"),
    ("error", "error"),
    ("critical", "error"),
    ("off", "off"),
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoggingError {
    #[error("unknown level {0:?}; levels: trace, debug, info, warning, error, critical, off")]
    Level(String),
    #[error(
        "unknown logger {0:?}; loggers: {1}, or a module target such as tollgate::http::forward"
    )]
    Logger(String, String),
    #[error("live log levels are not available (logging was not initialised by tollgate)")]
    NotInitialised,
    #[error("cannot apply the log filter: {0}")]
    Apply(String),
}

/// The directives in force: target (`""` for the default) → level, plus directives with span or
/// field filters from `RUST_LOG`, kept as written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Directives {
    levels: BTreeMap<String, String>,
    complex: Vec<String>,
}

impl Directives {
    fn parse(spec: &str) -> Self {
        let mut d = Directives::default();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if part.contains('[') {
                d.complex.push(part.to_string());
                continue;
            }
            match part.split_once('=') {
                Some((target, level)) => d.levels.insert(target.into(), level.to_lowercase()),
                None if LEVELS.iter().any(|(_, l)| part.eq_ignore_ascii_case(l)) => {
                    d.levels.insert(String::new(), part.to_lowercase())
                }
                // A bare target means "everything" for it, as EnvFilter reads it.
                None => d.levels.insert(part.into(), "trace".into()),
            };
        }
        d
    }

    fn render(&self) -> String {
        let levels = self.levels.iter().map(|(t, l)| match t.as_str() {
            "" => l.clone(),
            _ => format!("{t}={l}"),
        });
        levels
            .chain(self.complex.iter().cloned())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The level `target` logs at: its most specific directive, else the default (EnvFilter's
    /// default without one is `error`).
    fn level_of(&self, target: &str) -> &str {
        self.levels
            .iter()
            .filter(|(t, _)| {
                t.is_empty()
                    || target == t.as_str()
                    || target
                        .strip_prefix(t.as_str())
                        .is_some_and(|r| r.starts_with("::"))
            })
            .max_by_key(|(t, _)| t.len())
            .map_or("error", |(_, l)| l.as_str())
    }
}

struct Live {
    handle: reload::Handle<EnvFilter, Registry>,
    directives: Mutex<Directives>,
}

static LIVE: OnceLock<Live> = OnceLock::new();

/// Logs to stderr; `RUST_LOG` sets the initial levels (default `info`).
pub fn init() {
    let spec = std::env::var("RUST_LOG").unwrap_or_default();
    let (filter, directives) = match EnvFilter::try_new(&spec) {
        Ok(filter) if !spec.trim().is_empty() => (filter, Directives::parse(&spec)),
        _ => (EnvFilter::new("info"), Directives::parse("info")),
    };
    let (layer, handle) = reload::Layer::new(filter);
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if tracing_subscriber::registry()
        .with(layer)
        .with(fmt)
        .try_init()
        .is_ok()
    {
        let directives = Mutex::new(directives);
        let _ = LIVE.set(Live { handle, directives });
    }
}

/// Every Envoy logger with its level, then targets set outside them, in order.
pub fn levels() -> Result<Vec<(String, String)>, LoggingError> {
    let live = LIVE.get().ok_or(LoggingError::NotInitialised)?;
    let d = live
        .directives
        .lock()
        .map_err(|_| LoggingError::NotInitialised)?;
    Ok(listing(&d))
}

fn listing(d: &Directives) -> Vec<(String, String)> {
    let named = LOGGERS
        .iter()
        .map(|(name, targets)| (name.to_string(), envoy_level(d.level_of(targets[0]))));
    let covered = |t: &str| LOGGERS.iter().any(|(_, ts)| ts.contains(&t));
    let raw = d
        .levels
        .iter()
        .filter(|(t, _)| !t.is_empty() && !covered(t))
        .map(|(t, l)| (t.clone(), envoy_level(l)));
    named.chain(raw).collect()
}

fn envoy_level(level: &str) -> String {
    match level {
        "warn" => "warning".into(),
        other => other.into(),
    }
}

/// A change asked for: `level` for every logger, or a logger (Envoy name or module target).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    All(String),
    One(String, String),
}

/// Applies `changes` in order, all or nothing: a bad level or logger changes nothing.
pub fn set(changes: &[Change]) -> Result<(), LoggingError> {
    let live = LIVE.get().ok_or(LoggingError::NotInitialised)?;
    let mut current = live
        .directives
        .lock()
        .map_err(|_| LoggingError::NotInitialised)?;
    let next = apply(&current, changes)?;
    let filter =
        EnvFilter::try_new(next.render()).map_err(|e| LoggingError::Apply(e.to_string()))?;
    live.handle
        .reload(filter)
        .map_err(|e| LoggingError::Apply(e.to_string()))?;
    tracing::info!(filter = %next.render(), "log levels changed");
    *current = next;
    Ok(())
}

fn apply(current: &Directives, changes: &[Change]) -> Result<Directives, LoggingError> {
    let mut next = current.clone();
    for change in changes {
        match change {
            Change::All(level) => {
                // Envoy's `?level=` sets every logger: nothing more specific survives it.
                next = Directives::default();
                next.levels
                    .insert(String::new(), tracing_level(level)?.into());
            }
            Change::One(logger, level) => {
                let level = tracing_level(level)?;
                for target in targets(logger)? {
                    next.levels.insert(target, level.into());
                }
            }
        }
    }
    Ok(next)
}

fn tracing_level(level: &str) -> Result<&'static str, LoggingError> {
    LEVELS
        .iter()
        .find(|(name, _)| level.eq_ignore_ascii_case(name))
        .map(|(_, l)| *l)
        .ok_or_else(|| LoggingError::Level(level.into()))
}

/// The module targets a logger name covers; a raw target must be one of tollgate's modules.
fn targets(logger: &str) -> Result<Vec<String>, LoggingError> {
    if let Some((_, targets)) = LOGGERS.iter().find(|(name, _)| *name == logger) {
        return Ok(targets.iter().map(|t| t.to_string()).collect());
    }
    let valid = logger == "tollgate"
        || logger.strip_prefix("tollgate::").is_some_and(|rest| {
            !rest.is_empty()
                && rest.split("::").all(|p| {
                    !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                })
        });
    if valid {
        return Ok(vec![logger.to_string()]);
    }
    let names: Vec<&str> = LOGGERS.iter().map(|(n, _)| *n).collect();
    Err(LoggingError::Logger(logger.into(), names.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(logger: &str, level: &str) -> Change {
        Change::One(logger.into(), level.into())
    }

    #[test]
    fn a_logger_sets_each_of_its_targets_and_keeps_the_rest() {
        let d = Directives::parse("info,hyper=warn");
        let next = apply(&d, &[one("config", "debug")]).unwrap();
        assert_eq!(
            next.render(),
            "info,hyper=warn,tollgate::config=debug,tollgate::reload=debug,tollgate::snapshot=debug"
        );
        assert_eq!(next.level_of("tollgate::reload::watch"), "debug");
        assert_eq!(next.level_of("tollgate::http"), "info");
        assert_eq!(next.level_of("tollgate::reloader"), "info");
    }

    #[test]
    fn level_for_all_replaces_every_directive() {
        let d = Directives::parse("info,tollgate::http=trace");
        let next = apply(&d, &[Change::All("warning".into())]).unwrap();
        assert_eq!(next.render(), "warn");
        let listed = listing(&next);
        assert!(listed.iter().all(|(_, l)| l == "warning"), "{listed:?}");
    }

    #[test]
    fn raw_targets_are_listed_after_the_named_loggers() {
        let d = apply(
            &Directives::parse("info"),
            &[one("tollgate::http::forward", "trace")],
        )
        .unwrap();
        let listed = listing(&d);
        assert_eq!(
            listed.last().unwrap(),
            &("tollgate::http::forward".into(), "trace".into())
        );
        assert!(listed.contains(&("http".into(), "info".into())));
    }

    #[test]
    fn bad_level_or_logger_changes_nothing() {
        let d = Directives::parse("info");
        let err = apply(&d, &[one("http", "debug"), one("http", "loud")]).unwrap_err();
        assert_eq!(err, LoggingError::Level("loud".into()));
        assert!(matches!(
            apply(&d, &[one("nope", "debug")]),
            Err(LoggingError::Logger(..))
        ));
        assert!(matches!(
            apply(&d, &[one("hyper", "debug")]),
            Err(LoggingError::Logger(..))
        ));
        assert!(matches!(
            apply(&d, &[one("tollgate::", "debug")]),
            Err(LoggingError::Logger(..))
        ));
    }

    #[test]
    fn rust_log_forms_are_read() {
        let d = Directives::parse("tollgate::tls,warn,h2[conn]=debug");
        assert_eq!(d.level_of("tollgate::tls::terminate"), "trace");
        assert_eq!(d.level_of("tollgate::http"), "warn");
        assert_eq!(d.render(), "warn,tollgate::tls=trace,h2[conn]=debug");
    }
}
