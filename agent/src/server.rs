//! Starting the agent: bind the planes, serve until SIGTERM/SIGINT, then stop sessions at
//! a safe point (a file is never left half-written under its final name: unpublished
//! files are unnamed or temp-named, and a killed large file stays as `.part` for
//! `--resume`).
//!
//! The gRPC server gets its connections from `control` (admission caps, deadlines,
//! back-off on accept errors), its calls pass `requests` (answer deadlines, unfinished
//! message budget and stalls) and then the `auth` gate; HTTP/2 itself is limited here
//! (keepalive, streams per connection, header and message sizes). The numbers and why
//! are in `limits`.

use std::net::SocketAddr;
use std::sync::Arc;

use blit_core::wire::pb;
use tokio::sync::{Semaphore, watch};
use tonic::transport::Server;

use crate::admin::AdminService;
use crate::admission::{Admission, Caps};
use crate::auth::Gate;
use crate::config::Config;
use crate::data_port::DataPort;
use crate::jobs::JobsService;
use crate::limits;
use crate::mdns::Advertisement;
use crate::metrics::{self, Metrics};
use crate::modules::Modules;
use crate::requests::Guard;
use crate::session::SessionService;
use crate::tally::Tally;
use blit_core::discovery::Advert;
use blit_core::session::throttle::Throttle;

/// Where a started agent listens.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub control: SocketAddr,
    pub data_port: u16,
    pub http: Option<SocketAddr>,
}

/// Runs the agent until `stop` becomes true. `ready` receives the bound addresses.
pub async fn run(
    config: Config,
    ready: impl FnOnce(Bound),
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    config.validate()?;
    let modules = Arc::new(Modules::open(&config.modules)?);
    let server_tls = config.tls.as_ref().map(|t| t.server()).transpose()?;
    let client_tls = config.tls.as_ref().map(|t| t.client()).transpose()?;
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(config.bind, config.port)).await?;
    let control = listener.local_addr()?;
    let data_tls = server_tls.as_ref().map(|t| t.data());
    let data_port = DataPort::start(config.bind, config.data_ports, data_tls).await?;
    let metrics = Arc::new(Metrics::new());
    let http = match config.http_port {
        Some(port) => {
            Some(metrics::serve(SocketAddr::new(config.bind, port), metrics.clone()).await?)
        }
        None => None,
    };
    let slots = match config.limits.concurrent_transfers {
        0 => Semaphore::MAX_PERMITS,
        n => n as usize,
    };
    let gate = Gate::new(config.tokens.clone());
    let slots = Arc::new(Semaphore::new(slots));
    let jobs = JobsService::new(
        modules.clone(),
        slots.clone(),
        metrics.clone(),
        stop.clone(),
        client_tls,
    )
    .with_settings(crate::jobs::Settings::from_config(&config.jobs)?);
    let throttle = config
        .bandwidth()?
        .map(|rate| Arc::new(Throttle::new(rate)));
    let session = SessionService {
        modules: modules.clone(),
        throttle,
        data_port: data_port.clone(),
        slots,
        shutdown: stop.clone(),
        metrics: metrics.clone(),
        limits: config.limits.clone(),
    };
    let admin = AdminService { modules };
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<pb::session_server::SessionServer<SessionService>>()
        .await;
    health_reporter
        .set_serving::<pb::admin_server::AdminServer<AdminService>>()
        .await;
    health_reporter
        .set_serving::<pb::jobs_server::JobsServer<JobsService>>()
        .await;
    let session = pb::session_server::SessionServer::new(session)
        .max_decoding_message_size(limits::SESSION_MESSAGE)
        .max_encoding_message_size(limits::SESSION_MESSAGE_SENT);
    let admin = pb::admin_server::AdminServer::new(admin)
        .max_decoding_message_size(limits::CONTROL_MESSAGE);
    let jobs =
        pb::jobs_server::JobsServer::new(jobs).max_decoding_message_size(limits::CONTROL_MESSAGE);
    let health = health.max_decoding_message_size(limits::CONTROL_MESSAGE);
    ready(Bound {
        control,
        data_port: data_port.port,
        http,
    });
    // Held until the server stops; dropping it withdraws the advertisement.
    let _advertised = config.mdns.then(|| advertise(&config, control)).flatten();
    let incoming = crate::control::incoming(listener, control_admission());
    let mut server = Server::builder();
    if let Some(tls) = &server_tls {
        server = server.tls_config(tls.grpc(limits::TLS_HANDSHAKE_TIMEOUT))?;
    }
    server
        .http2_keepalive_interval(Some(limits::HTTP2_KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(limits::HTTP2_KEEPALIVE_TIMEOUT))
        .max_concurrent_streams(limits::MAX_CONCURRENT_STREAMS)
        .http2_max_header_list_size(limits::MAX_HEADER_LIST)
        .layer(Guard::new())
        .add_service(tonic::service::interceptor::InterceptedService::new(
            session,
            gate.clone(),
        ))
        .add_service(tonic::service::interceptor::InterceptedService::new(
            admin,
            gate.clone(),
        ))
        .add_service(tonic::service::interceptor::InterceptedService::new(
            jobs,
            gate.clone(),
        ))
        .add_service(tonic::service::interceptor::InterceptedService::new(
            health, gate,
        ))
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await?;
    Ok(())
}

/// The control plane's seats, its caps lowered to what the descriptor limit allows.
fn control_admission() -> Arc<Admission> {
    let waiting = limits::share_of_descriptors(limits::CONTROL_PENDING_TOTAL, 8);
    Admission::new(
        Caps {
            per_peer: limits::CONTROL_PENDING_PER_PEER.min(waiting),
            waiting,
            total: limits::share_of_descriptors(limits::CONTROL_CONNECTIONS, 4).max(waiting),
            deadline: limits::CONTROL_FIRST_REQUEST_DEADLINE,
        },
        Tally::new("control connection closed"),
    )
}

/// Announces the agent over mDNS; a failure is logged, not fatal.
fn advertise(config: &Config, control: SocketAddr) -> Option<Advertisement> {
    let advert = Advert::new(
        Advertisement::instance_name(control.port()),
        control.port(),
        config.modules.iter().map(|m| m.name.clone()).collect(),
        config.tls.is_some(),
        !config.tokens.is_empty(),
    );
    match Advertisement::start(control, &advert) {
        Ok(a) => {
            tracing::info!(name = %advert.name, "advertised over mDNS as _blit._tcp");
            Some(a)
        }
        Err(e) => {
            tracing::warn!("mDNS advertisement failed (serving anyway): {e}");
            None
        }
    }
}
