//! TLS material: PEM decoding and credential resolution (Istio's `credentialName` lookup).

pub mod client_hello;
pub mod client_verify;
pub mod credential;
pub mod ocsp;
pub mod pem;
pub mod permissions;
pub mod prefixed;
pub mod server_config;
pub mod terminate;
pub mod xfcc;

pub use credential::{Credential, CredentialError, Credentials};
