//! Mutual TLS between routers and `cyfr host`: the host's server side (its certificate,
//! client certificates required and checked against a CA, the router's name against an
//! allowlist) and the router's client side (the CA it trusts for its hosts, the
//! certificate it presents). The signed host token is still required on top: TLS says
//! which router is connecting, the token which request it sends.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use tokio_rustls::rustls::{
    self,
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName},
};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of a PEM file (a chain, or a CA bundle).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading {}", path.display()))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .with_context(|| format!("{}: not PEM certificates", path.display()))?;
    if certs.is_empty() {
        bail!("{}: no certificate in it", path.display());
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path)
        .with_context(|| format!("{}: no PEM private key in it", path.display()))
}

fn roots(ca: &Path) -> Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for c in load_certs(ca)? {
        roots
            .add(c)
            .with_context(|| format!("{}: not a usable CA certificate", ca.display()))?;
    }
    Ok(roots)
}

/// The TLS side of `cyfr host --tls-cert/--tls-key [--client-ca] [--allow-router]`.
pub struct ServerTls {
    /// Accepts connections with the host's certificate (and, with a client CA, only
    /// clients presenting a certificate it signed).
    pub acceptor: tokio_rustls::TlsAcceptor,
    /// Names (DNS SAN) one of which a router's certificate must carry; empty: any
    /// certificate the CA signed.
    allowed_routers: Vec<String>,
}

impl ServerTls {
    /// The host's certificate chain and key; `client_ca`: require client certificates
    /// signed by it; `allowed_routers`: and carrying one of these names.
    pub fn new(
        cert: &Path,
        key: &Path,
        client_ca: Option<&Path>,
        allowed_routers: Vec<String>,
    ) -> Result<ServerTls> {
        if client_ca.is_none() && !allowed_routers.is_empty() {
            bail!(
                "--allow-router needs --client-ca: router names are read from client certificates"
            );
        }
        for n in &allowed_routers {
            ServerName::try_from(n.as_str())
                .map_err(|_| anyhow::anyhow!("--allow-router {n}: not a DNS name"))?;
        }
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?;
        let builder = match client_ca {
            Some(ca) => builder.with_client_cert_verifier(
                rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots(ca)?),
                    provider(),
                )
                .build()
                .context("client CA")?,
            ),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(load_certs(cert)?, load_key(key)?)
            .context("the host's TLS certificate and key")?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(ServerTls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            allowed_routers,
        })
    }

    /// The allowed router name the connection's client certificate carries, `Some("")`
    /// when no allowlist is configured, `None` when the router is not allowed.
    pub fn router_of(&self, conn: &rustls::ServerConnection) -> Option<String> {
        if self.allowed_routers.is_empty() {
            return Some(String::new());
        }
        let leaf = conn.peer_certificates()?.first()?;
        let parsed = rustls::server::ParsedCertificate::try_from(leaf).ok()?;
        self.allowed_routers
            .iter()
            .find(|n| {
                ServerName::try_from(n.as_str())
                    .is_ok_and(|sn| rustls::client::verify_server_name(&parsed, &sn).is_ok())
            })
            .cloned()
    }
}

/// A router's TLS client for its hosts: `ca` (else the webpki roots) verifies them, and
/// `identity` (certificate chain, key) is presented when a host asks for one.
pub fn client_config(
    ca: Option<&Path>,
    identity: Option<(&Path, &Path)>,
) -> Result<Arc<rustls::ClientConfig>> {
    let roots = match ca {
        Some(ca) => roots(ca)?,
        None => {
            let mut r = rustls::RootCertStore::empty();
            r.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            r
        }
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let mut config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
            .context("the router's client certificate and key")?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The router's TLS client from the environment of `cyfr up` (our runner's equivalent of
/// Spin's runtime-config client TLS): `CYFR_HOST_CA` (PEM CA bundle the hosts' certificates
/// chain to), `CYFR_HOST_CLIENT_CERT` and `CYFR_HOST_CLIENT_KEY` (PEM). `None` when none
/// is set: hosts are reached with the default client.
pub fn client_from_env() -> Result<Option<Arc<rustls::ClientConfig>>> {
    let var = |n: &str| std::env::var_os(n).filter(|v| !v.is_empty());
    let (ca, cert, key) = (
        var("CYFR_HOST_CA"),
        var("CYFR_HOST_CLIENT_CERT"),
        var("CYFR_HOST_CLIENT_KEY"),
    );
    if ca.is_none() && cert.is_none() && key.is_none() {
        return Ok(None);
    }
    let identity = match (&cert, &key) {
        (Some(c), Some(k)) => Some((Path::new(c), Path::new(k))),
        (None, None) => None,
        _ => bail!("set both CYFR_HOST_CLIENT_CERT and CYFR_HOST_CLIENT_KEY, or neither"),
    };
    client_config(ca.as_deref().map(Path::new), identity).map(Some)
}
