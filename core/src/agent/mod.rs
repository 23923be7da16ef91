//! The one client of an agent (`blitd`). Connect with [`Credentials`] (token, TLS,
//! timeouts), then:
//!
//! - transfers with one end on the agent: [`AgentClient::push`], [`AgentClient::pull`]
//!   (and `pull_into`, which an agent uses to pull from another for a job);
//! - jobs the agent runs on a caller's behalf, agent to agent: [`AgentClient::start_job`],
//!   [`AgentClient::watch_job`] (a stream of [`Job`] snapshots), [`AgentClient::cancel_job`],
//!   [`AgentClient::list_jobs`];
//! - the admin calls: modules, listing, find, disk usage, free space, remove, completion.
//!
//! The CLI, the agent's own jobs and the operator all go through it; none of them speaks
//! gRPC by hand. Every failure is a [`ClientError`], which says whether trying again may
//! help ([`ClientError::is_retryable`]). Hints for people (which flag to try) are the front
//! end's business, not this module's.

mod address;
mod admin;
mod connect;
mod error;
mod jobs;
mod transfer;

pub use address::Address;
pub use admin::{Listing, UsageRow};
pub use connect::{AgentClient, Authorized, CallHeaders, Credentials, Timeouts};
pub use error::ClientError;
pub(crate) use error::status_text;
pub use jobs::{Job, JobRequest, JobStage};
pub use transfer::Run;

pub use crate::session::initiate::DataOptions;
