//! Test certificates: a CA, an agent certificate it signed (for `127.0.0.1` and
//! `localhost`, usable as server and client), a client certificate, and an unrelated CA
//! that signed nothing here — written as PEM files for `blitd`'s `[tls]` and `blit
//! --tls-*`.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// PEM files under one directory.
pub struct Pki {
    pub ca: PathBuf,
    pub agent_cert: PathBuf,
    pub agent_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A CA that signed none of the certificates above.
    pub other_ca: PathBuf,
}

fn ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::new()).expect("no names");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("self-signed CA");
    (cert.pem(), Issuer::new(params, key))
}

fn leaf(
    issuer: &Issuer<'static, KeyPair>,
    name: &str,
    sans: &[&str],
    usages: &[ExtendedKeyUsagePurpose],
) -> (String, String) {
    let mut params = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .expect("valid names");
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = usages.to_vec();
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, issuer).expect("signed leaf");
    (cert.pem(), key.serialize_pem())
}

impl Pki {
    /// Generates fresh keys and certificates into `dir`.
    pub fn new(dir: &Path) -> Pki {
        fs::create_dir_all(dir).expect("pki dir");
        let (ca_pem, issuer) = ca("blit test CA");
        let (other_pem, _) = ca("blit unrelated CA");
        let both = [
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let (agent_pem, agent_key) = leaf(&issuer, "blitd", &["localhost", "127.0.0.1"], &both);
        let (client_pem, client_key) = leaf(
            &issuer,
            "blit client",
            &["client.blit.test"],
            &[ExtendedKeyUsagePurpose::ClientAuth],
        );
        let write = |name: &str, text: &str| {
            let p = dir.join(name);
            fs::write(&p, text).expect("write pem");
            p
        };
        Pki {
            ca: write("ca.pem", &ca_pem),
            agent_cert: write("agent.pem", &agent_pem),
            agent_key: write("agent.key", &agent_key),
            client_cert: write("client.pem", &client_pem),
            client_key: write("client.key", &client_key),
            other_ca: write("other-ca.pem", &other_pem),
        }
    }
}
