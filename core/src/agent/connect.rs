//! Connecting to an agent: resolve its address, open the control channel (TLS when asked),
//! greet it, and mark every call with the protocol version and the caller's token.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use super::address::Address;
use super::error::{ClientError, causes, status_text};
use crate::tls::{ClientTls, DataTls};
use crate::wire::pb;
use crate::wire::protocol::PROTOCOL_HEADER;

/// What a caller presents to an agent, and how long it waits.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// Bearer token, when the agent requires one.
    pub token: Option<String>,
    /// TLS on both planes, when the agent serves it.
    pub tls: Option<ClientTls>,
    pub timeouts: Timeouts,
}

/// How long connecting may take.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// The TCP (and TLS) connection of the control channel.
    pub connect: Duration,
    /// The agent's first answer (its hello) once connected: as long as a slow but live
    /// agent might need.
    pub answer: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(10),
            answer: Duration::from_secs(10),
        }
    }
}

/// Adds the protocol version and the token to every call.
#[derive(Clone)]
pub struct CallHeaders {
    token: Option<MetadataValue<Ascii>>,
    version: MetadataValue<Ascii>,
}

impl CallHeaders {
    pub fn new(token: Option<&str>) -> Result<CallHeaders, ClientError> {
        CallHeaders::with_version(token, pb::PROTOCOL_MAJOR, pb::PROTOCOL_MINOR)
    }

    /// Headers announcing another protocol version (tests of the negotiation).
    pub fn with_version(
        token: Option<&str>,
        major: u32,
        minor: u32,
    ) -> Result<CallHeaders, ClientError> {
        let token = token
            .map(|t| format!("Bearer {t}").parse())
            .transpose()
            .map_err(|_| ClientError::Invalid("the token is not valid ASCII".into()))?;
        let version = format!("{major}.{minor}")
            .parse()
            .map_err(|_| ClientError::Invalid("bad protocol version".into()))?;
        Ok(CallHeaders { token, version })
    }
}

impl Interceptor for CallHeaders {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let md = req.metadata_mut();
        md.insert(PROTOCOL_HEADER, self.version.clone());
        if let Some(t) = &self.token {
            md.insert("authorization", t.clone());
        }
        Ok(req)
    }
}

/// A channel whose calls carry [`CallHeaders`].
pub type Authorized = InterceptedService<Channel, CallHeaders>;

/// A connection to one agent. Cheap to clone; every clone shares the channel.
#[derive(Clone)]
pub struct AgentClient {
    address: Address,
    channel: Channel,
    headers: CallHeaders,
    /// The agent's address as resolved for the control channel (its data port is on the
    /// same host).
    resolved: SocketAddr,
    /// The data streams' TLS settings and the agent's expected name.
    data_tls: Option<DataTls>,
    timeouts: Timeouts,
}

impl AgentClient {
    /// Connects the control channel and waits for the agent's hello.
    pub async fn connect(
        address: &Address,
        credentials: &Credentials,
    ) -> Result<AgentClient, ClientError> {
        let failed = |message: String| ClientError::Connect {
            address: address.to_string(),
            message,
        };
        let headers = CallHeaders::new(credentials.token.as_deref())?;
        let target = address.to_string();
        let resolved = target
            .to_socket_addrs()
            .map_err(|e| failed(e.to_string()))?
            .next()
            .ok_or_else(|| failed("no address".into()))?;
        let scheme = if credentials.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{resolved}"))
            .map_err(|e| failed(e.to_string()))?
            .connect_timeout(credentials.timeouts.connect)
            .tcp_nodelay(true);
        let mut data_tls = None;
        if let Some(tls) = &credentials.tls {
            endpoint = endpoint
                .tls_config(tls.grpc(&address.host))
                .map_err(|e| failed(causes(&e)))?;
            data_tls = Some(tls.data(&address.host).map_err(|e| failed(causes(&e)))?);
        }
        let channel = endpoint.connect().await.map_err(|e| failed(causes(&e)))?;
        let client = AgentClient {
            address: address.clone(),
            channel,
            headers,
            resolved,
            data_tls,
            timeouts: credentials.timeouts,
        };
        client.greet().await.map_err(|s| failed(status_text(&s)))?;
        Ok(client)
    }

    /// Asks for the agent's hello before any real call, so that a connection the agent
    /// drops without a word (what a TLS agent does to a plain client) is told apart from
    /// one it drops later (it stopped or crashed). An answer that is an error (a token
    /// refused, say) is the agent speaking: the real call will say what is wrong.
    async fn greet(&self) -> Result<(), tonic::Status> {
        let hello = tokio::time::timeout(self.timeouts.answer, self.hello_call()).await;
        match hello {
            Err(_) => Err(tonic::Status::deadline_exceeded("the agent did not answer")),
            Ok(Err(status)) if std::error::Error::source(&status).is_some() => Err(status),
            Ok(_) => Ok(()),
        }
    }

    async fn hello_call(&self) -> Result<pb::HelloResponse, tonic::Status> {
        let hello = pb::HelloRequest {
            protocol_major: pb::PROTOCOL_MAJOR,
            protocol_minor: pb::PROTOCOL_MINOR,
        };
        Ok(self.admin().hello(hello).await?.into_inner())
    }

    /// The agent's hello: its protocol version, capabilities and build, within the answer
    /// timeout.
    pub async fn hello(&self) -> Result<pb::HelloResponse, ClientError> {
        match tokio::time::timeout(self.timeouts.answer, self.hello_call()).await {
            Ok(answer) => Ok(answer?),
            Err(_) => Err(ClientError::Call {
                code: tonic::Code::DeadlineExceeded,
                message: "the agent did not answer".into(),
            }),
        }
    }

    /// The agent this client talks to.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// The resolved control address (its data port is on the same host).
    pub(crate) fn resolved(&self) -> SocketAddr {
        self.resolved
    }

    pub(crate) fn data_tls(&self) -> Option<&DataTls> {
        self.data_tls.as_ref()
    }

    /// The channel with this client's headers: for protocol-level tests and tools that
    /// need a service this client does not wrap.
    pub fn authorized(&self) -> Authorized {
        InterceptedService::new(self.channel.clone(), self.headers.clone())
    }

    /// The channel alone, to call with other headers (tests of tokens and versions).
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    pub(crate) fn admin(&self) -> pb::admin_client::AdminClient<Authorized> {
        pb::admin_client::AdminClient::new(self.authorized())
    }

    pub(crate) fn jobs(&self) -> pb::jobs_client::JobsClient<Authorized> {
        pb::jobs_client::JobsClient::new(self.authorized())
    }

    pub(crate) fn session(&self) -> pb::session_client::SessionClient<Authorized> {
        pb::session_client::SessionClient::new(self.authorized())
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20)
    }
}
