//! Certificates and tokens made at run time with rcgen, for the tests and for
//! `make certs` (the `gen-certs` binary). No key is ever committed.
//!
//! [`Ca`] issues server and client certificates; [`TestPki`] writes a full
//! set into a temporary directory that is removed on drop; [`write_dev_set`]
//! writes the file names the deployment consumes (see [`DEV_FILES`]).
//! Certificates as people make them with the `openssl` CLI: [`openssl`].

use chrono::{Datelike, Duration, Utc};
use rand::Rng;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

mod access;
mod openssl;
pub use access::{Access, CONTAINER_UID, acl_owner_and, grant_read};
pub use openssl::{SAN_LOCALHOST, openssl_self_signed, openssl_v1_client, req_x509};

/// rcgen's date for `days` from today (negative: in the past).
macro_rules! days_from_now {
    ($days:expr) => {{
        let d = Utc::now() + Duration::days($days);
        rcgen::date_time_ymd(d.year(), d.month() as u8, d.day() as u8)
    }};
}

/// Subject alternative names of the server certificate: the compose service
/// name, and local access.
pub const SERVER_SANS: &[&str] = &["server", "localhost", "127.0.0.1"];

/// What [`write_dev_set`] writes, in order. Another component (compose)
/// consumes exactly these names.
pub const DEV_FILES: &[&str] = &[
    "ca.pem",
    "server.pem",
    "server.key",
    "client.pem",
    "client.key",
    "tokens",
    "client1.env",
    "client2.env",
];

/// What the containers read of [`DEV_FILES`] besides the certificates: their
/// keys and the server's token table ([`share_dev_set`]). The `<author>.env`
/// files are read by compose on the host, so they stay the owner's.
pub const CONTAINER_SECRETS: &[&str] = &["server.key", "client.key", "tokens"];

/// Authors of the development tokens, one `<author>.env` each.
pub const DEV_AUTHORS: &[&str] = &["client1", "client2"];

/// A certificate and its private key, PEM.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A certificate authority that lives only in memory.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Ca {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("no SANs");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        set_validity(&mut params);
        let key = KeyPair::generate().expect("key generation");
        let cert = params.self_signed(&key).expect("self-signed CA");
        Self {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A server certificate for `sans` (DNS names or IP addresses).
    pub fn server(&self, sans: &[&str]) -> Leaf {
        self.leaf(
            sans,
            sans.first().copied().unwrap_or("server"),
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A server certificate for `sans`, valid from `from_days` to `to_days`
    /// days from today (negative: in the past), e.g. an expired one.
    pub fn server_valid(&self, sans: &[&str], from_days: i64, to_days: i64) -> Leaf {
        self.leaf_valid(
            sans,
            sans.first().copied().unwrap_or("server"),
            ExtendedKeyUsagePurpose::ServerAuth,
            (from_days, to_days),
        )
    }

    /// A client certificate named `name`.
    pub fn client(&self, name: &str) -> Leaf {
        self.leaf(&[], name, ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn leaf(&self, sans: &[&str], name: &str, usage: ExtendedKeyUsagePurpose) -> Leaf {
        self.leaf_valid(sans, name, usage, (-1, 730))
    }

    fn leaf_valid(
        &self,
        sans: &[&str],
        name: &str,
        usage: ExtendedKeyUsagePurpose,
        (from_days, to_days): (i64, i64),
    ) -> Leaf {
        let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
        let mut params = CertificateParams::new(sans).expect("valid SANs");
        params.distinguished_name.push(DnType::CommonName, name);
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        params.not_before = days_from_now!(from_days);
        params.not_after = days_from_now!(to_days);
        let key = KeyPair::generate().expect("key generation");
        let cert = params.signed_by(&key, &self.issuer).expect("signed leaf");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// Valid from yesterday (clock skew) for about two years.
fn set_validity(params: &mut CertificateParams) {
    params.not_before = days_from_now!(-1);
    params.not_after = days_from_now!(730);
}

/// 32 random bytes, hex: a bearer token.
pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A CA, a server certificate (for [`SERVER_SANS`]), a client certificate,
/// and a second CA that signed neither, written to a temporary directory.
pub struct TestPki {
    pub dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A client certificate from [`TestPki::other_ca`], which the server does not trust.
    pub stranger_cert: PathBuf,
    pub stranger_key: PathBuf,
    /// A CA that signed neither the server's nor the client's certificate.
    pub other_ca: PathBuf,
}

impl TestPki {
    pub fn generate() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = Ca::new("messenger test CA");
        let other = Ca::new("some other CA");
        let server = ca.server(SERVER_SANS);
        let client = ca.client("client1");
        let stranger = other.client("stranger");
        let file = |name: &str, contents: &str| {
            let path = dir.path().join(name);
            write_file(&path, contents, 0o600).expect("write test PKI file");
            path
        };
        Self {
            ca: file("ca.pem", ca.pem()),
            server_cert: file("server.pem", &server.cert_pem),
            server_key: file("server.key", &server.key_pem),
            client_cert: file("client.pem", &client.cert_pem),
            client_key: file("client.key", &client.key_pem),
            stranger_cert: file("stranger.pem", &stranger.cert_pem),
            stranger_key: file("stranger.key", &stranger.key_pem),
            other_ca: file("other-ca.pem", other.pem()),
            dir,
        }
    }

    /// Writes `contents` to a file in the directory; returns its path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        write_file(&path, contents, 0o600).expect("write test file");
        path
    }
}

/// Writes [`DEV_FILES`] into `dir`: certificates 0644; keys, tokens and env
/// files 0600, or 0644 with `shared_keys`. [`share_dev_set`] then gives the
/// containers' user read access. The CA's key is not kept: to issue more,
/// generate a new set.
pub fn write_dev_set(dir: &Path, shared_keys: bool) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let secret_mode = if shared_keys { 0o644 } else { 0o600 };
    let ca = Ca::new("messenger dev CA");
    let server = ca.server(SERVER_SANS);
    let client = ca.client("messenger-client");
    let tokens: Vec<(String, &str)> = DEV_AUTHORS.iter().map(|a| (random_token(), *a)).collect();
    let mut table = String::from(
        "# token author (the author is the rest of the line); reload the server with SIGHUP\n",
    );
    for (token, author) in &tokens {
        table.push_str(&format!("{token} {author}\n"));
    }
    let mut files: Vec<(String, String, u32)> = vec![
        ("ca.pem".into(), ca.pem().to_owned(), 0o644),
        ("server.pem".into(), server.cert_pem, 0o644),
        ("server.key".into(), server.key_pem, secret_mode),
        ("client.pem".into(), client.cert_pem, 0o644),
        ("client.key".into(), client.key_pem, secret_mode),
        ("tokens".into(), table, secret_mode),
    ];
    for (token, author) in &tokens {
        let env = format!("MESSENGER_CLIENT_TOKEN={token}\n");
        files.push((format!("{author}.env"), env, secret_mode));
    }
    let mut written = Vec::new();
    for (name, contents, mode) in files {
        let path = dir.join(name);
        write_file(&path, &contents, mode)?;
        written.push(path);
    }
    Ok(written)
}

/// Makes [`CONTAINER_SECRETS`] in `dir` readable by [`CONTAINER_UID`] (an
/// ACL entry, else 0644: see [`grant_read`]), or every secret 0644 with
/// `shared_keys`. Idempotent, so `make certs` also fixes a set it keeps.
pub fn share_dev_set(dir: &Path, shared_keys: bool) -> std::io::Result<Vec<(PathBuf, Access)>> {
    let mut out = Vec::new();
    for name in CONTAINER_SECRETS {
        let path = dir.join(name);
        out.push((path.clone(), grant_read(&path, CONTAINER_UID, shared_keys)?));
    }
    if shared_keys {
        for author in DEV_AUTHORS {
            let path = dir.join(format!("{author}.env"));
            out.push((path.clone(), grant_read(&path, CONTAINER_UID, true)?));
        }
    }
    Ok(out)
}

/// Creates or truncates `path` with `mode` (also applied to an existing file).
fn write_file(path: &Path, contents: &str, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    file.write_all(contents.as_bytes())
}
