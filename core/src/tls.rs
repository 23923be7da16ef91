//! TLS for both planes (rustls with the `ring` provider).
//!
//! One set of PEM files configures the gRPC control plane (tonic's TLS) and the raw data
//! streams (rustls over a blocking socket, see `session::data::Stream`), so both planes
//! verify the same identities:
//! - an agent presents its certificate and key, and may require client certificates
//!   signed by a CA (mutual TLS);
//! - a client trusts a given CA (or the system's roots) and may present its own
//!   certificate.
//!
//! Zero-copy sends (`sendfile`) are not possible through TLS: with it, the data plane
//! encrypts in user space. The agent shakes hands on data connections asynchronously
//! (tokio-rustls) and then hands the session a blocking stream.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: no PEM {what} found", path.display())]
    Pem { path: PathBuf, what: &'static str },
    #[error("no trusted root certificates found on this system (name a CA certificate to trust)")]
    NoRoots,
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
    #[error("client certificate verifier: {0}")]
    Verifier(String),
    #[error("{0:?} is not a valid TLS server name")]
    ServerName(String),
}

/// A certificate chain and its key as PEM bytes (what tonic takes).
#[derive(Clone)]
struct KeyPair {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

/// A chain and key parsed for rustls.
type Parsed = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

impl KeyPair {
    /// Reads both files and parses them once: the PEM for tonic, the DER for rustls.
    fn load(cert: &Path, key: &Path) -> Result<(KeyPair, Parsed), TlsError> {
        let pair = KeyPair {
            cert_pem: read(cert)?,
            key_pem: read(key)?,
        };
        let chain = certificates(&pair.cert_pem, cert)?;
        let parsed_key =
            PrivateKeyDer::from_pem_slice(&pair.key_pem).map_err(|_| TlsError::Pem {
                path: key.to_owned(),
                what: "private key",
            })?;
        Ok((pair, (chain, parsed_key)))
    }

    fn identity(&self) -> Identity {
        Identity::from_pem(&self.cert_pem, &self.key_pem)
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn certificates(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_owned(),
            what: "certificate",
        });
    }
    Ok(certs)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    // tonic's server side asks for the process default; make it ours.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots_from(pem: &[u8], path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(certificates(pem, path)?);
    Ok(roots)
}

/// What a data stream's client side needs: the rustls settings and the name the agent's
/// certificate must carry.
pub type DataTls = (Arc<ClientConfig>, ServerName<'static>);

/// What a client (the CLI, or an agent pulling from another) uses to reach agents.
#[derive(Clone)]
pub struct ClientTls {
    ca_pem: Option<Vec<u8>>,
    identity: Option<KeyPair>,
    data: Arc<ClientConfig>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("ca", &self.ca_pem.is_some())
            .field("client_cert", &self.identity.is_some())
            .finish()
    }
}

impl ClientTls {
    /// Trusts the CA in `ca` (PEM; the system's roots when `None`) and presents
    /// `identity` (certificate chain and key files) when given.
    pub fn load(ca: Option<&Path>, identity: Option<(&Path, &Path)>) -> Result<Self, TlsError> {
        let (ca_pem, roots) = match ca {
            Some(path) => {
                let pem = read(path)?;
                let roots = roots_from(&pem, path)?;
                (Some(pem), roots)
            }
            None => {
                let mut roots = RootCertStore::empty();
                roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
                if roots.is_empty() {
                    return Err(TlsError::NoRoots);
                }
                (None, roots)
            }
        };
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let (data, identity) = match identity {
            Some((cert, key)) => {
                let (pair, (chain, key)) = KeyPair::load(cert, key)?;
                (builder.with_client_auth_cert(chain, key)?, Some(pair))
            }
            None => (builder.with_no_client_auth(), None),
        };
        Ok(ClientTls {
            ca_pem,
            identity,
            data: Arc::new(data),
        })
    }

    /// The control plane's settings for an agent reached as `host`.
    pub fn grpc(&self, host: &str) -> ClientTlsConfig {
        let mut config = ClientTlsConfig::new().domain_name(host);
        config = match &self.ca_pem {
            Some(pem) => config.ca_certificate(Certificate::from_pem(pem)),
            None => config.with_native_roots(),
        };
        match &self.identity {
            Some(pair) => config.identity(pair.identity()),
            None => config,
        }
    }

    /// The data streams' settings and the name the agent's certificate must carry.
    pub fn data(&self, host: &str) -> Result<DataTls, TlsError> {
        let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']'))
            .map_err(|_| TlsError::ServerName(host.to_owned()))?
            .to_owned();
        Ok((self.data.clone(), name))
    }
}

/// What an agent presents, and whom it lets in.
#[derive(Clone)]
pub struct ServerTls {
    identity: KeyPair,
    client_ca_pem: Option<Vec<u8>>,
    data: Arc<ServerConfig>,
}

impl ServerTls {
    /// The agent's certificate chain and key; with `client_ca`, clients must present a
    /// certificate that CA signed.
    pub fn load(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<Self, TlsError> {
        let (identity, (chain, parsed_key)) = KeyPair::load(cert, key)?;
        let client_ca_pem = client_ca.map(read).transpose()?;
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?;
        let builder = match client_ca.zip(client_ca_pem.as_ref()) {
            Some((path, pem)) => {
                let roots = Arc::new(roots_from(pem, path)?);
                let verifier =
                    rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider())
                        .build()
                        .map_err(|e| TlsError::Verifier(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut data = builder.with_single_cert(chain, parsed_key)?;
        // A data stream's writer never reads: a session ticket left unread in its socket
        // would turn its close into a reset that can cut off the last records.
        data.send_tls13_tickets = 0;
        Ok(ServerTls {
            identity,
            client_ca_pem,
            data: Arc::new(data),
        })
    }

    /// The control plane's settings; a client that has not completed its handshake
    /// within `handshake_timeout` is disconnected.
    pub fn grpc(&self, handshake_timeout: std::time::Duration) -> ServerTlsConfig {
        let config = ServerTlsConfig::new()
            .identity(self.identity.identity())
            .timeout(handshake_timeout);
        match &self.client_ca_pem {
            Some(pem) => config.client_ca_root(Certificate::from_pem(pem)),
            None => config,
        }
    }

    /// The data streams' settings.
    pub fn data(&self) -> Arc<ServerConfig> {
        self.data.clone()
    }
}
