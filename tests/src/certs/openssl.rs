//! Certificates made exactly as people make them, by running the `openssl`
//! CLI (`.ci/run` installs it): the `req -x509` one-liner in its variants,
//! and the two-step recipe that issues an X.509 v1 certificate.

use std::path::{Path, PathBuf};

/// The `-addext` of the common one-liner that names this host.
pub const SAN_LOCALHOST: &str = "subjectAltName=DNS:localhost,IP:127.0.0.1";

/// `openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost
/// [-addext EXT ...] -keyout <stem>.key -out <stem>.pem` in `dir`. Returns
/// (certificate, key).
pub fn req_x509(dir: &Path, stem: &str, addext: &[&str]) -> (PathBuf, PathBuf) {
    let (cert, key) = (
        dir.join(format!("{stem}.pem")),
        dir.join(format!("{stem}.key")),
    );
    let mut command = std::process::Command::new("openssl");
    command
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=localhost"]);
    for ext in addext {
        command.args(["-addext", ext]);
    }
    let out = command
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl req failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// The self-signed certificate (`basicConstraints CA:TRUE`) that the common
/// one-liner makes, by running exactly it in `dir`:
/// `openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost
/// -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout key.pem -out cert.pem`.
/// Returns (cert.pem, key.pem). Needs `openssl` (`.ci/run` installs it).
pub fn openssl_self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    req_x509(dir, "cert", &[SAN_LOCALHOST])
}

/// A client certificate as the common two-step openssl recipe makes it:
/// a CA from `openssl req -x509`, then `openssl x509 -req` without an
/// extensions file, which issues an X.509 **v1** certificate. Returns the
/// CA, the certificate and its key, in `dir`.
pub fn openssl_v1_client(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .expect("run openssl (apt-get install openssl)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
    ]
    .iter()
    .chain(&[
        "-subj",
        "/CN=v1 CA",
        "-keyout",
        "v1-ca.key",
        "-out",
        "v1-ca.pem",
    ])
    .copied()
    .collect::<Vec<_>>());
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=v1 client",
        "-keyout",
        "v1-client.key",
        "-out",
        "v1-client.csr",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "v1-client.csr",
        "-CA",
        "v1-ca.pem",
        "-CAkey",
        "v1-ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        "v1-client.pem",
    ]);
    let [ca, cert, key] = ["v1-ca.pem", "v1-client.pem", "v1-client.key"].map(|f| dir.join(f));
    (ca, cert, key)
}
