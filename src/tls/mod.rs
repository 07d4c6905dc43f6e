//! TLS material: PEM decoding and credential resolution (Istio's `credentialName` lookup).

pub mod credential;
pub mod pem;

pub use credential::{Credential, CredentialError, Credentials};
