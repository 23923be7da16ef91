//! `blit-agent`: the `blitd` daemon. It serves its modules over a gRPC control plane
//! (`session`, `admin`, health) behind one gate (`auth`), with a raw TCP data plane
//! (`dataplane`) bound to the same address, and `/metrics` + `/healthz` over HTTP
//! (`metrics`), advertised over mDNS (`mdns`). `config` is the TOML file and flags;
//! `modules` resolves every network path beneath its module root (as the module's
//! identity); `jobs` pulls from other agents on a caller's behalf, from the sources
//! `peers` admits.

pub mod admin;
pub mod auth;
pub mod config;
pub mod dataplane;
pub mod jobs;
pub mod mdns;
pub mod metrics;
pub mod modules;
pub mod peers;
pub mod server;
pub mod session;
