//! `blit-core`: Blit's transfer engine.
//!
//! One pipeline, stages with typed boundaries:
//!
//! ```text
//!  TransferSpec ──▶ roots::open_source / open_destination ──▶ per directory, in a pool
//!                                                                  of workers:
//!
//!    source dir ── sys::dir::list (getdents64 + statx) ──▶ Vec<Entry> ──┐
//!                                         filter::Filter drops excluded │
//!    dest dir ──── sys::dir::list ─────────────────────▶ Vec<Entry> ────┤
//!                                                                       ▼
//!                                       plan::diff (pure) ──▶ Vec<Action>
//!                                                                       │
//!        Mkdir/Enter ─▶ subdirectory visits queued to the pool          │
//!        Copy/Resume ─▶ copy::Copier (reflink | copy_file_range | sparse | buffered)
//!                       into an O_TMPFILE or temp name, metadata, then linkat/rename
//!                       (a large file: prefault warms the page cache ahead of the copy)
//!        Symlink/Special/SetMeta/HardLink/Delete ─▶ applied or deferred
//!                                                                       ▼
//!  end of run: hard links → mirror deletes (bounded) → directory metadata → Report
//! ```
//!
//! The engine knows nothing about terminals or flags: front ends build a
//! [`TransferSpec`], run a [`Transfer`], watch [`Stats`] and receive [`Event`]s through an
//! [`Observer`], and get a [`Report`] back. A file that fails is recorded in
//! `Report::failures` and the run goes on.
//!
//! Across machines the same pipeline is split by role (`session`: the source walks and
//! sends, the destination plans and writes through `transfer::remote`), its messages are
//! the `blit/v1` protocol (`wire`: conversions, constants, data-plane records), and
//! [`agent::AgentClient`] is the one client of an agent: a spec with an
//! [`Endpoint::Agent`] end runs through it (push, pull, or a job agent to agent), as do
//! the admin calls.

pub mod agent;
pub mod agent_path;
pub mod checksum;
pub mod copy;
pub mod delete;
pub mod discovery;
pub mod entry;
pub mod error;
pub mod filter;
pub mod plan;
pub mod prefault;
pub mod report;
pub mod resume;
pub mod roots;
pub mod session;
pub mod spec;
pub mod sync;
pub mod sys;
pub mod tls;
pub mod transfer;
pub mod walk;
pub mod wire;

pub use agent_path::AgentPath;
pub use copy::Reflink;
pub use entry::{Entry, EntryKind, Meta, Timestamp};
pub use error::Error;
pub use filter::{Filter, RuleKind};
pub use report::{Change, Event, Failure, Observer, Quiet, Report, Stats, StatsSnapshot};
pub use spec::{Compare, Endpoint, Limits, Mode, Options, Preserve, TransferSpec};
pub use transfer::Transfer;
