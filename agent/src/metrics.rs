//! The agent's Prometheus metrics and its small HTTP server for `/metrics`, `/healthz`
//! and `/readyz`. Every name starts with `blit_agent_` (besides `blit_build_info`, whose
//! labels say which version and which component is running), and every label takes its
//! values from a small fixed set (outcome, error kind, result), so the number of series
//! stays bounded whatever the agent transfers.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use blit_core::Report;
use prometheus::{Encoder, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

/// Which end of a session this agent was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Source,
    Destination,
}

pub struct Metrics {
    registry: Registry,
    bytes_sent: IntCounter,
    bytes_received: IntCounter,
    files: IntCounterVec,
    file_errors: IntCounterVec,
    active_transfers: IntGauge,
    active_streams: IntGauge,
    sessions: IntCounterVec,
}

/// Decrements the active-transfer gauge when dropped.
pub struct Active<'m>(&'m Metrics);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.active_transfers.dec();
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let build = IntGauge::with_opts(
            Opts::new("blit_build_info", "Build information.")
                .const_label("version", env!("CARGO_PKG_VERSION"))
                .const_label("component", "agent"),
        )
        .expect("valid metric");
        build.set(1);
        registry.register(Box::new(build)).expect("unique metric");
        Metrics {
            bytes_sent: counter(
                "blit_agent_bytes_sent_total",
                "File bytes this agent sent as a source.",
            ),
            bytes_received: counter(
                "blit_agent_bytes_received_total",
                "File bytes this agent wrote as a destination.",
            ),
            files: counter_vec(
                "blit_agent_files_total",
                "Files handled, by outcome.",
                &["outcome"],
            ),
            file_errors: counter_vec(
                "blit_agent_file_errors_total",
                "Per-file errors, by kind.",
                &["kind"],
            ),
            active_transfers: gauge(
                "blit_agent_active_transfers",
                "Sessions and jobs running now.",
            ),
            active_streams: gauge("blit_agent_active_streams", "Data-plane streams open now."),
            sessions: counter_vec(
                "blit_agent_sessions_total",
                "Sessions ended, by result.",
                &["result"],
            ),
            registry,
        }
    }

    pub fn session_started(&self) -> Active<'_> {
        self.active_transfers.inc();
        Active(self)
    }

    pub fn streams(&self, delta: i64) {
        self.active_streams.add(delta);
    }

    pub fn session_finished(&self, role: Role, report: &Report) {
        match role {
            Role::Source => self.bytes_sent.inc_by(report.bytes_copied),
            Role::Destination => self.bytes_received.inc_by(report.bytes_copied),
        }
        self.files
            .with_label_values(&["copied"])
            .inc_by(report.files_copied);
        self.files
            .with_label_values(&["skipped"])
            .inc_by(report.files_skipped);
        self.files
            .with_label_values(&["failed"])
            .inc_by(report.failures.len() as u64);
        for f in &report.failures {
            self.file_errors
                .with_label_values(&[error_kind(&f.operation)])
                .inc();
        }
        let result = if report.is_partial() {
            "partial"
        } else {
            "success"
        };
        self.sessions.with_label_values(&[result]).inc();
    }

    pub fn session_failed(&self) {
        self.sessions.with_label_values(&["failed"]).inc();
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

/// A bounded label for a failure's operation.
fn error_kind(operation: &str) -> &'static str {
    match operation {
        "copy" => "copy",
        "delete" => "delete",
        "stat" | "stat destination" | "read directory" | "open directory" => "read",
        "set metadata" | "set directory metadata" => "metadata",
        _ => "other",
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `addr`; returns the bound address.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let m = metrics.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                        m.render(),
                    )
                }
            }),
        )
        .route(
            "/healthz",
            get(|| async { (StatusCode::OK, "ok\n").into_response() }),
        )
        .route(
            "/readyz",
            get(|| async { (StatusCode::OK, "ok\n").into_response() }),
        );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("metrics server stopped: {e}");
        }
    });
    Ok(bound)
}
