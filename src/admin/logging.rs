//! `/logging`: GET lists the loggers and their levels; POST with `?level=`, `?<logger>=` or
//! `?paths=a:l,b:l` changes them (all or nothing).

use http::StatusCode;

use super::{text, AdminResponse, Query};
use crate::logging::{self, Change};

pub(super) fn logging(query: &Query) -> AdminResponse {
    if !query.is_empty() {
        let changes = match changes(query) {
            Ok(c) => c,
            Err(e) => return text(StatusCode::BAD_REQUEST, format!("{e}\n")),
        };
        if let Err(e) = logging::set(&changes) {
            let status = match e {
                logging::LoggingError::Level(_) | logging::LoggingError::Logger(..) => {
                    StatusCode::BAD_REQUEST
                }
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            return text(status, format!("{e}\n"));
        }
    }
    match logging::levels() {
        Ok(levels) => text(StatusCode::OK, listing(&levels)),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

/// Envoy's listing: `active loggers:` then `  <name>: <level>` per logger.
fn listing(levels: &[(String, String)]) -> String {
    let mut body = String::from("active loggers:\n");
    for (name, level) in levels {
        body.push_str(&format!("  {name}: {level}\n"));
    }
    body
}

fn changes(query: &Query) -> Result<Vec<Change>, String> {
    let mut changes = Vec::new();
    for (key, value) in &query.0 {
        match key.as_str() {
            "level" => changes.push(Change::All(value.clone())),
            "paths" => {
                for pair in value.split(',').filter(|p| !p.is_empty()) {
                    // The level follows the last colon: raw targets have `::` in them.
                    let Some((logger, level)) = pair.rsplit_once(':') else {
                        return Err(format!(
                            "bad paths entry {pair:?}: expected <logger>:<level>, e.g. paths=http:debug,tls:trace"
                        ));
                    };
                    changes.push(Change::One(logger.into(), level.into()));
                }
            }
            logger => changes.push(Change::One(logger.into(), value.clone())),
        }
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_forms_become_changes() {
        let q = Query::parse("paths=http:debug,tollgate::tls:trace&upstream=info&level=warning");
        assert_eq!(
            changes(&q).unwrap(),
            vec![
                Change::One("http".into(), "debug".into()),
                Change::One("tollgate::tls".into(), "trace".into()),
                Change::One("upstream".into(), "info".into()),
                Change::All("warning".into()),
            ]
        );
        assert!(changes(&Query::parse("paths=http")).is_err());
    }
}
