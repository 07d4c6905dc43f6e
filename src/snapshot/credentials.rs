//! Every terminating TLS server's credential must resolve and validate; a failure is an error on
//! that server only (reference §1.5, with tollgate's stricter "report it" stance).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use super::gateway::{class_of, SelectedGateway, ServerRef};
use super::{Options, ServerClass};
use crate::config::{Diagnostic, Resource, Severity};
use crate::tls::{credential, Credential, Credentials};

/// Credentials of terminating servers, by (`ns/gateway`, port name): port names are unique in a
/// Gateway and, unlike positions, survive servers being reordered.
pub type Resolved = HashMap<(String, String), Vec<Credential>>;

/// Resolves every selected server's credentials, including servers a port conflict dropped: a
/// broken credential is worth reporting whichever server wins. Failures are errors on the server;
/// a server whose credential loaded before keeps that one (a certificate and key replaced one
/// after the other mismatch for a moment; a bad update must not take a host down).
pub(crate) fn resolve(
    gateways: &[SelectedGateway<'_>],
    resources: &[Arc<Resource>],
    opts: &Options,
    previous: &Resolved,
    diags: &mut Vec<Diagnostic>,
) -> Resolved {
    let mut resolved = Resolved::new();
    let credentials = Credentials::new(&opts.certs_dir, &opts.gateway_namespace, resources);
    let servers = gateways.iter().flat_map(|g| {
        g.spec
            .servers
            .iter()
            .enumerate()
            .map(move |(i, s)| (g, i, s))
    });
    for (gateway, index, server) in servers {
        let server = ServerRef {
            gateway,
            index,
            server,
            hosts: Vec::new(),
            https_redirect: false,
        };
        let protocol = server.protocol();
        let Some(tls) = server
            .server
            .tls
            .as_ref()
            .filter(|_| class_of(protocol) == ServerClass::Tls)
        else {
            continue;
        };
        let mode = tls.mode.as_deref().unwrap_or("PASSTHROUGH");
        let client_ca = matches!(mode, "MUTUAL" | "OPTIONAL_MUTUAL");
        if !(client_ca || mode == "SIMPLE") {
            continue;
        }
        let gateway_ns = &server.gateway.resource.key.namespace;
        let mut found = Vec::new();
        let mut failed = false;
        let names = tls.credential_name.iter().chain(&tls.credential_names);
        for (i, name) in names.enumerate() {
            // With credentialNames, the client CA comes from the first one (Istio).
            match credentials.resolve(name, gateway_ns, client_ca && i == 0) {
                Ok(credential) => found.push(credential),
                Err(e) => {
                    let field = match tls.credential_name {
                        Some(_) => "tls.credentialName".to_string(),
                        None => format!("tls.credentialNames[{i}]"),
                    };
                    failed = true;
                    diags.push(server.diag(
                        Severity::Error,
                        &field,
                        format!("{e}; handshakes for this server's hosts fail"),
                    ));
                }
            }
        }
        if let (Some(cert), Some(key)) = (&tls.server_certificate, &tls.private_key) {
            let ca = tls
                .ca_certificates
                .as_deref()
                .filter(|_| client_ca)
                .map(Path::new);
            let crl = tls.ca_crl.as_deref().filter(|_| client_ca).map(Path::new);
            match credential::from_files(Path::new(cert), Path::new(key), ca, crl) {
                Ok(credential) => found.push(credential),
                Err(e) => {
                    failed = true;
                    let message = format!("{e}; handshakes for this server's hosts fail");
                    diags.push(server.diag(Severity::Error, "tls.serverCertificate", message));
                }
            }
        }
        let key = (gateway.key.clone(), server.port_name().to_string());
        if !failed && !found.is_empty() {
            resolved.insert(key, found);
        } else if let Some(last_good) = previous.get(&key) {
            let message =
                "the previously loaded credential stays in force until this is fixed".to_string();
            diags.push(server.diag(Severity::Info, "tls", message));
            resolved.insert(key, last_good.clone());
        }
    }
    resolved
}
