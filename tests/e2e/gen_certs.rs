//! `make certs` (the real `gen-certs`) leaves the keys and the token table
//! readable by the containers' uid 10001 and by nobody else, and fixes a set
//! it keeps (issue 23: a plain `make certs` made 0600 keys, so `make
//! up-secure` crash-looped, and a later `SHARED_KEYS=1` changed nothing).

use messenger_tests::certs::{CONTAINER_SECRETS, CONTAINER_UID, acl_owner_and};
use messenger_tests::procs::binary;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn gen_certs(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(binary("gen-certs"))
        .arg(dir)
        .args(args)
        .output()
        .expect("run gen-certs");
    assert!(out.status.success(), "gen-certs failed: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn acl(path: &Path) -> Option<Vec<u8>> {
    let name = CString::new(path.as_os_str().as_bytes()).unwrap();
    let attr = CString::new("system.posix_acl_access").unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: NUL-terminated strings and a buffer of buf.len() bytes.
    let n = unsafe {
        libc::getxattr(
            name.as_ptr(),
            attr.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    (n >= 0).then(|| buf[..n as usize].to_vec())
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// `cat path` as `uid` (root only: setpriv changes the uid).
fn readable_as(uid: u32, path: &Path) -> bool {
    Command::new("setpriv")
        .args([
            &format!("--reuid={uid}"),
            &format!("--regid={uid}"),
            "--clear-groups",
            "cat",
        ])
        .arg(path)
        .output()
        .expect("setpriv (util-linux)")
        .status
        .success()
}

fn assert_container_only(dir: &Path) {
    for name in CONTAINER_SECRETS {
        let path = dir.join(name);
        assert_eq!(
            acl(&path),
            Some(acl_owner_and(CONTAINER_UID)),
            "{name}: no ACL for uid 10001"
        );
        assert_eq!(
            mode(&path),
            0o640,
            "{name}: mode (group bits are the ACL mask)"
        );
        if unsafe { libc::geteuid() } == 0 {
            assert!(
                readable_as(CONTAINER_UID, &path),
                "{name}: uid 10001 can't read it"
            );
            assert!(
                !readable_as(CONTAINER_UID + 1, &path),
                "{name}: another uid can read it"
            );
        }
    }
    for author in ["client1", "client2"] {
        let env = dir.join(format!("{author}.env"));
        assert_eq!(
            (mode(&env), acl(&env)),
            (0o600, None),
            "{author}.env is compose's, on the host"
        );
    }
}

#[test]
fn a_plain_make_certs_lets_uid_10001_read_keys_and_tokens_and_nobody_else() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = tmp.path().join("secure");
    let out = gen_certs(&dir, &[]);
    assert!(out.contains("ACL user:10001:r"), "{out}");
    assert_container_only(&dir);
}

#[test]
fn a_kept_set_is_fixed_and_shared_keys_applies_to_it() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = tmp.path().join("secure");
    gen_certs(&dir, &[]);
    // As older gen-certs left them: 0600, no ACL.
    for name in CONTAINER_SECRETS {
        let path = dir.join(name);
        let c = CString::new(path.as_os_str().as_bytes()).unwrap();
        let attr = CString::new("system.posix_acl_access").unwrap();
        // SAFETY: NUL-terminated strings.
        unsafe { libc::removexattr(c.as_ptr(), attr.as_ptr()) };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let key = std::fs::read(dir.join("server.key")).unwrap();
    gen_certs(&dir, &[]);
    assert_eq!(
        std::fs::read(dir.join("server.key")).unwrap(),
        key,
        "the set was replaced, not kept"
    );
    assert_container_only(&dir);
    gen_certs(&dir, &["--shared-keys"]);
    for name in CONTAINER_SECRETS
        .iter()
        .chain(&["client1.env", "client2.env"])
    {
        assert_eq!(
            mode(&dir.join(name)) & 0o444,
            0o444,
            "{name}: --shared-keys on a kept set"
        );
    }
}
