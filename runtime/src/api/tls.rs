//! TLS for the REST API through rustls (ring, as etcd-client's): the
//! server's certificate from `restapi.certfile`/`keyfile`, and the CA that
//! keel's own calls to its peers' APIs verify them with (`restapi.cafile`).
//! Every failure is one line naming the file, for a clear exit at startup.

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::config::{RestApi, VerifyClient};

/// The server side, when `restapi.certfile` is set.
pub fn server_config(restapi: &RestApi) -> Result<Option<Arc<ServerConfig>>, String> {
    let Some(certfile) = &restapi.certfile else {
        return Ok(None);
    };
    if restapi.keyfile_password.is_some() {
        return Err(
            "restapi.keyfile_password: encrypted private keys are not supported; decrypt the key".into()
        );
    }
    let keyfile = restapi.keyfile.as_deref().unwrap_or(certfile);
    let certs = certificates(certfile, "restapi.certfile")?;
    let key = PrivateKeyDer::from_pem_file(keyfile)
        .map_err(|e| format!("restapi.keyfile {}: no usable private key: {e}", keyfile.display()))?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    // `verify_client`: client certificates signed by `cafile`; `optional`
    // lets clients without one connect, and the unsafe methods then
    // answer 403 (see `access`).
    let builder = match restapi.verify_client {
        None | Some(VerifyClient::None) => builder.with_no_client_auth(),
        Some(mode) => {
            let Some(cafile) = &restapi.cafile else {
                return Err(
                    "restapi.verify_client needs restapi.cafile, the CA of the client certificates".into()
                );
            };
            let mut roots = RootCertStore::empty();
            for cert in certificates(cafile, "restapi.cafile")? {
                roots.add(cert).map_err(|e| format!("restapi.cafile {}: {e}", cafile.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
            let verifier =
                if mode == VerifyClient::Optional { verifier.allow_unauthenticated() } else { verifier };
            let verifier =
                verifier.build().map_err(|e| format!("restapi.cafile {}: {e}", cafile.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config =
        builder.with_single_cert(certs, key).map_err(|e| format!("restapi.certfile/keyfile: {e}"))?;
    let mut config = config;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Arc::new(config)))
}

/// The client side, for `https` peers: `restapi.cafile` as the only root,
/// and this node's own certificate as the client's, for peers with
/// `verify_client` (Patroni's members call each other the same way).
/// `None` without a cafile (an `https` peer then cannot be verified).
pub fn client_config(restapi: &RestApi) -> Result<Option<Arc<ClientConfig>>, String> {
    let Some(cafile) = &restapi.cafile else {
        return Ok(None);
    };
    let mut roots = RootCertStore::empty();
    for cert in certificates(cafile, "restapi.cafile")? {
        roots.add(cert).map_err(|e| format!("restapi.cafile {}: {e}", cafile.display()))?;
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots);
    let config = match &restapi.certfile {
        Some(certfile) => {
            let keyfile = restapi.keyfile.as_deref().unwrap_or(certfile);
            let certs = certificates(certfile, "restapi.certfile")?;
            let key = PrivateKeyDer::from_pem_file(keyfile)
                .map_err(|e| format!("restapi.keyfile {}: no usable private key: {e}", keyfile.display()))?;
            builder.with_client_auth_cert(certs, key).map_err(|e| format!("restapi.certfile/keyfile: {e}"))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Some(Arc::new(config)))
}

fn provider() -> Arc<tokio_rustls::rustls::crypto::CryptoProvider> {
    Arc::new(tokio_rustls::rustls::crypto::ring::default_provider())
}

fn certificates(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{what} {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{what} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{what} {}: no certificate in it", path.display()));
    }
    Ok(certs)
}
