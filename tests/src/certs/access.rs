//! Read access for the compose stack's containers to the secrets `make certs`
//! writes (ops/compose/secure.yml mounts the directory at
//! /run/secrets/messenger).
//!
//! The server and clients run as uid [`CONTAINER_UID`], not as the user who
//! made the files, so a 0600 key is unreadable to them. The narrowest grant
//! that works on Docker and rootful podman alike is a POSIX ACL entry
//! `user:10001:r--` on each file the containers read: the kernel checks it
//! on the bind mount whatever the engine, the owner can set it without root,
//! and the file stays unreadable to every other user (mode 0640 with group
//! permissions masked to the ACL's `r`, group owner itself granted nothing).
//! Where the file system has no ACLs, the file falls back to 0644 and the
//! caller says so. Rootless podman maps uid 10001 to a subordinate uid, which
//! no entry here names: there, `--shared-keys` (0644) is what works.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The uid:gid our images run as (server/Dockerfile, client/Dockerfile).
pub const CONTAINER_UID: u32 = 10001;

/// How a file was made readable to the containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// 0600 for the owner, plus `user:<uid>:r--`.
    Acl,
    /// 0644: no ACL support here, or asked for (`--shared-keys`).
    WorldReadable,
}

// linux/posix_acl_xattr.h: a version word, then (tag, perm, id) entries sorted by tag.
const ACL_XATTR: &str = "system.posix_acl_access";
const ACL_VERSION: u32 = 2;
const USER_OBJ: u16 = 0x01;
const USER: u16 = 0x02;
const GROUP_OBJ: u16 = 0x04;
const MASK: u16 = 0x10;
const OTHER: u16 = 0x20;
const UNDEFINED_ID: u32 = u32::MAX;

/// The xattr value of `user::rw-, user:<uid>:r--, group::---, mask::r--, other::---`.
pub fn acl_owner_and(uid: u32) -> Vec<u8> {
    let entries: [(u16, u16, u32); 5] = [
        (USER_OBJ, 6, UNDEFINED_ID),
        (USER, 4, uid),
        (GROUP_OBJ, 0, UNDEFINED_ID),
        (MASK, 4, UNDEFINED_ID),
        (OTHER, 0, UNDEFINED_ID),
    ];
    let mut value = ACL_VERSION.to_le_bytes().to_vec();
    for (tag, perm, id) in entries {
        value.extend_from_slice(&tag.to_le_bytes());
        value.extend_from_slice(&perm.to_le_bytes());
        value.extend_from_slice(&id.to_le_bytes());
    }
    value
}

/// Makes `path` readable by `uid` as narrowly as the file system allows
/// (module docs); `shared` asks for 0644 outright. Also applied to files that
/// already exist, so a kept set is fixed too.
pub fn grant_read(path: &Path, uid: u32, shared: bool) -> io::Result<Access> {
    if !shared {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        let name = CString::new(path.as_os_str().as_bytes())?;
        let attr = CString::new(ACL_XATTR).expect("no NUL in a constant");
        let value = acl_owner_and(uid);
        // SAFETY: both strings are NUL-terminated and live across the call;
        // value is a valid buffer of value.len() bytes.
        let rc = unsafe {
            libc::setxattr(
                name.as_ptr(),
                attr.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        };
        if rc == 0 {
            return Ok(Access::Acl);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EOPNOTSUPP) {
            return Err(err);
        }
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))?;
    Ok(Access::WorldReadable)
}
