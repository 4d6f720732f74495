//! Reading PEM files named by variables: certificates, private keys, and a
//! certificate with its key. Every error names the variable and the file;
//! no key material ever appears in one.
//!
//! Invariants: a file that is unreadable, holds no PEM item of the expected
//! kind, or holds malformed PEM is an error, never an empty trust store; a
//! key is accepted only with the certificate it belongs to (the check rustls
//! makes in `CertifiedKey::from_der`, made here at start so a mismatch is
//! one clear line instead of a failed handshake later).

use super::TlsError;
use rustls::InconsistentKeys;
use rustls::crypto::ring;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use tonic::transport::{Certificate, Identity};

/// A certificate chain and its private key, checked to belong together.
pub struct IdentityFiles {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// The two files' PEM text, as read.
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

/// Reads a PEM file of one or more certificates (a CA bundle or a chain).
pub fn read_certificates(var: &'static str, path: &Path) -> Result<Certificate, TlsError> {
    read_certificate_ders(var, path)?;
    Ok(Certificate::from_pem(read(var, path)?))
}

/// The certificates of a PEM file, DER; at least one.
pub fn read_certificate_ders(
    var: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_bytes = read(var, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem_bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(var, path, e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            var,
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub(super) fn read_key_der(
    var: &'static str,
    path: &Path,
) -> Result<PrivateKeyDer<'static>, TlsError> {
    match PrivateKeyDer::from_pem_slice(&read(var, path)?) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) => Err(TlsError::NoKey {
            var,
            path: path.to_owned(),
        }),
        Err(e) => Err(invalid(var, path, e)),
    }
}

/// Why rustls (through webpki) cannot use a leaf certificate, with the fix
/// for the one people actually meet.
fn unusable(e: &webpki::Error) -> String {
    match e {
        webpki::Error::UnsupportedCertVersion => "it is an X.509 v1 certificate (what \
            `openssl x509 -req` issues without an extensions file), and rustls needs v3; \
            re-issue it with `-extfile` naming any extension, e.g. basicConstraints=CA:FALSE"
            .to_owned(),
        e => format!("not a usable X.509 certificate ({e})"),
    }
}

/// Reads a certificate chain and its private key (for tonic).
pub fn read_identity(
    cert: (&'static str, &Path),
    key: (&'static str, &Path),
) -> Result<Identity, TlsError> {
    let files = read_identity_files(cert, key)?;
    Ok(Identity::from_pem(files.cert_pem, files.key_pem))
}

/// Reads a certificate chain (its first certificate is the leaf) and its
/// private key; [`TlsError::KeyMismatch`] when the key is not the leaf's.
pub fn read_identity_files(
    (cert_var, cert): (&'static str, &Path),
    (key_var, key): (&'static str, &Path),
) -> Result<IdentityFiles, TlsError> {
    let chain = read_certificate_ders(cert_var, cert)?;
    let key_der = read_key_der(key_var, key)?;
    let provider = ring::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key_der.clone_key())
        .map_err(|e| TlsError::InvalidPem {
            var: key_var,
            path: key.to_owned(),
            reason: format!("not a usable private key ({e})"),
        })?;
    if let Some(leaf) = chain.first()
        && let Err(e) = webpki::EndEntityCert::try_from(leaf)
    {
        return Err(TlsError::UnusableCertificate {
            var: cert_var,
            path: cert.to_owned(),
            reason: unusable(&e),
        });
    }
    let certified = CertifiedKey::new(chain.clone(), signing);
    if let Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) =
        certified.keys_match()
    {
        return Err(TlsError::KeyMismatch {
            key_var,
            key: key.to_owned(),
            cert_var,
            cert: cert.to_owned(),
        });
    }
    Ok(IdentityFiles {
        chain,
        key: key_der,
        cert_pem: read(cert_var, cert)?,
        key_pem: read(key_var, key)?,
    })
}

/// Both or neither of a cert/key pair; names the variable that is missing.
pub fn pair<'a>(
    (cert_var, cert): (&'static str, Option<&'a Path>),
    (key_var, key): (&'static str, Option<&'a Path>),
) -> Result<Option<(&'a Path, &'a Path)>, TlsError> {
    match (cert, key) {
        (Some(c), Some(k)) => Ok(Some((c, k))),
        (None, None) => Ok(None),
        (Some(_), None) => Err(TlsError::Incomplete {
            set: cert_var,
            missing: key_var,
        }),
        (None, Some(_)) => Err(TlsError::Incomplete {
            set: key_var,
            missing: cert_var,
        }),
    }
}

pub(super) fn read(var: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        var,
        path: path.to_owned(),
        source,
    })
}

fn invalid(var: &'static str, path: &Path, e: pem::Error) -> TlsError {
    TlsError::InvalidPem {
        var,
        path: path.to_owned(),
        reason: e.to_string(),
    }
}
