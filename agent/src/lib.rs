//! `blit-agent`: the `blitd` daemon. It serves its modules over a gRPC control plane
//! (`session`, `admin`, health) behind one gate (`auth`), with the port of the raw TCP
//! data plane (`data_port`) bound to the same address, and `/metrics` + `/healthz` over HTTP
//! (`metrics`), advertised over mDNS (`mdns`). `config` is the TOML file and flags;
//! `modules` resolves every network path beneath its module root (as the module's
//! identity); `jobs` pulls from other agents on a caller's behalf, from the sources
//! `peers` admits. Before a peer has authenticated it gets little (`limits`):
//! connections are accepted with back-off (`accept`), seated with caps and deadlines
//! (`admission`, `control`), calls are guarded (`requests`), and floods are logged at a
//! rate limit (`tally`).

pub mod accept;
pub mod admin;
pub mod admission;
pub mod auth;
pub mod config;
pub mod control;
pub mod data_port;
pub mod jobs;
pub mod limits;
pub mod mdns;
pub mod metrics;
pub mod modules;
pub mod peers;
pub mod requests;
pub mod server;
pub mod session;
pub mod tally;
