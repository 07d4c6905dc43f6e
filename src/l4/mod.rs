//! Layer 4: opaque TCP streams (TCP ports, TLS PASSTHROUGH, TLS-terminated `tcp` routes)
//! forwarded to an upstream with the proxy core's clusters and balancers.

mod buffer;
pub mod forward;
mod metered;
mod pool;
pub mod relay;
mod splice;

pub use forward::{forward, forward_stream, Origin};
