//! Token authentication for `mes_grpc.MessengerServer` (not health or
//! reflection): the token table, its constant-time lookup, and its reload.
//!
//! The tokens file ([`ENV_AUTH_TOKENS_FILE`]) has one `token author` pair per
//! line: the token is the first whitespace-separated word, the author is the
//! rest of the line with surrounding whitespace trimmed, so authors may
//! contain spaces. Blank lines and lines starting with `#` are ignored.
//!
//! Invariants:
//! - Every call carries `authorization: Bearer <token>`, once. No, repeated
//!   (also joined with commas, `Bearer a, Bearer b`, RFC 9110 §5.3) or
//!   malformed metadata (a token with whitespace inside: a token is one word
//!   of the file) gives UNAUTHENTICATED; a token that is not in the table gives
//!   PERMISSION_DENIED; a `SendMessage` whose author is not the token's gives
//!   PERMISSION_DENIED. Replies and logs never contain a token, nor say which
//!   part of a token was wrong.
//! - Lookup is constant-time in the token: the presented token is hashed to a
//!   fixed-size SHA-256 digest, which is compared with `subtle` against every
//!   entry's digest, with no early exit. Its length and content decide no branch.
//! - The table is only replaced whole: a reload that fails keeps the previous
//!   table. Reload happens on SIGHUP ([`reload_on_sighup`]). Calls already
//!   authenticated keep going, except that an open `ReadMessages` stream whose
//!   token was revoked ends with PERMISSION_DENIED as soon as the reload is
//!   done (it wakes every stream), message or not.

use crate::app::config::ENV_AUTH_TOKENS_FILE;
use crate::grpc::error::ServiceError;
use http::HeaderMap;
use messenger_proto::field_str;
use parking_lot::RwLock;
use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use subtle::{ConditionallySelectable, ConstantTimeEq};

/// Metadata key of the credentials, as in HTTP.
pub const AUTHORIZATION: &str = messenger_proto::AUTHORIZATION_METADATA;

type TokenDigest = [u8; 32];

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read {ENV_AUTH_TOKENS_FILE} file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{ENV_AUTH_TOKENS_FILE} file {path}, line {line}: {what}")]
    Syntax {
        path: PathBuf,
        line: usize,
        what: &'static str,
    },
}

/// The tokens and the author each may post as.
#[derive(Default)]
pub struct TokenTable {
    entries: Vec<(TokenDigest, Arc<str>)>,
}

impl TokenTable {
    /// Parses the file format; errors give the line number and never its text.
    pub fn parse(text: &str) -> Result<Self, (usize, &'static str)> {
        let mut entries: Vec<(TokenDigest, Arc<str>)> = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |what| (index + 1, what);
            let (token, author) = line
                .split_once(char::is_whitespace)
                .ok_or_else(|| err("a token without an author; expected `token author`"))?;
            if !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(err("the token has non-ASCII characters"));
            }
            let digest = digest(token.as_bytes());
            if entries.iter().any(|(d, _)| *d == digest) {
                return Err(err("the token is listed twice"));
            }
            entries.push((digest, author.trim().into()));
        }
        Ok(Self { entries })
    }

    pub fn load(path: &Path) -> Result<Self, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|(line, what)| AuthError::Syntax {
            path: path.to_owned(),
            line,
            what,
        })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The author `token` may post as, if it is in the table.
    pub fn author(&self, token: &[u8]) -> Option<Arc<str>> {
        self.author_of(&digest(token))
    }

    /// Scans every entry whatever matches, selecting the match without a branch.
    fn author_of(&self, digest: &TokenDigest) -> Option<Arc<str>> {
        let mut found = subtle::Choice::from(0);
        let mut index = 0u64;
        for (i, (entry, _)) in self.entries.iter().enumerate() {
            let equal = ct_equal(entry, digest);
            index.conditional_assign(&(i as u64), equal);
            found |= equal;
        }
        bool::from(found).then(|| Arc::clone(&self.entries[index as usize].1))
    }
}

/// Fixed-size digest of a token of any length, so comparing it takes the same
/// path for every token.
fn digest(token: &[u8]) -> TokenDigest {
    Sha256::digest(token).into()
}

fn ct_equal(a: &TokenDigest, b: &TokenDigest) -> subtle::Choice {
    #[cfg(test)]
    tests::count_comparison();
    a.ct_eq(b)
}

/// The shared, reloadable token table.
#[derive(Clone)]
pub struct Auth {
    path: PathBuf,
    table: Arc<RwLock<Arc<TokenTable>>>,
    /// Bumped by every successful reload.
    generation: Arc<AtomicU64>,
    /// The generation again, for [`reload_on_sighup`]'s task to wake on.
    reloads: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Auth {
    pub fn load(path: &Path) -> Result<Self, AuthError> {
        let table = TokenTable::load(path)?;
        Ok(Self {
            path: path.to_owned(),
            table: Arc::new(RwLock::new(Arc::new(table))),
            generation: Arc::new(AtomicU64::new(0)),
            reloads: Arc::new(tokio::sync::watch::Sender::new(0)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn tokens(&self) -> usize {
        self.table.read().len()
    }

    /// Re-reads the file; on error the previous table stays. Returns the
    /// number of tokens now accepted.
    pub fn reload(&self) -> Result<usize, AuthError> {
        let table = TokenTable::load(&self.path)?;
        let count = table.len();
        *self.table.write() = Arc::new(table);
        let generation = self.generation.fetch_add(1, Ordering::Release) + 1;
        self.reloads.send_replace(generation);
        Ok(count)
    }

    /// Checks the call's bearer token; see the module doc for the statuses
    /// ([`ServiceError::code`] maps the refusals to them).
    pub fn authenticate(&self, metadata: &HeaderMap) -> Result<Principal, ServiceError> {
        let token = bearer(metadata)?;
        let digest = digest(token.as_bytes());
        let generation = self.generation.load(Ordering::Acquire);
        let table = Arc::clone(&self.table.read());
        match table.author_of(&digest) {
            Some(author) => Ok(Principal {
                author,
                digest,
                generation,
                auth: self.clone(),
            }),
            None => {
                tracing::debug!(reason = "unknown token", "call rejected");
                Err(ServiceError::UnknownToken)
            }
        }
    }
}

/// The `Bearer` token of the call's metadata (its HTTP/2 headers).
fn bearer(metadata: &HeaderMap) -> Result<&str, ServiceError> {
    let count = metadata.get_all(AUTHORIZATION).iter().count();
    if count > 1 {
        tracing::debug!(reason = "repeated authorization metadata", "call rejected");
        return Err(ServiceError::RepeatedCredentials { count });
    }
    let Some(value) = metadata.get(AUTHORIZATION) else {
        tracing::debug!(reason = "no authorization metadata", "call rejected");
        return Err(ServiceError::NoCredentials);
    };
    let token = field_str(value.as_bytes())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty());
    let Some(token) = token else {
        tracing::debug!(reason = "malformed authorization metadata", "call rejected");
        return Err(ServiceError::MalformedCredentials);
    };
    // A token is one word of the tokens file, so whitespace inside means
    // something else: most often copies joined with commas, the other way
    // HTTP repeats a field (RFC 9110 §5.3). A comma alone may be part of a
    // token; a comma before another `Bearer` scheme is not.
    if token.contains(char::is_whitespace) {
        let count = 1 + joined_bearers(token);
        if count > 1 {
            tracing::debug!(reason = "repeated authorization metadata", "call rejected");
            return Err(ServiceError::RepeatedCredentials { count });
        }
        tracing::debug!(reason = "malformed authorization metadata", "call rejected");
        return Err(ServiceError::MalformedCredentials);
    }
    Ok(token)
}

/// How many more `Bearer <token>` credentials follow a comma in `credentials`
/// (the text after the first scheme): `a, Bearer b` has one.
fn joined_bearers(credentials: &str) -> usize {
    credentials
        .split(',')
        .skip(1)
        .filter(|part| {
            part.trim_start()
                .split_once(char::is_whitespace)
                .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        })
        .count()
}

/// An authenticated caller, put into the request's extensions by
/// [`Admission`](crate::grpc::admission::Admission).
#[derive(Clone)]
pub struct Principal {
    author: Arc<str>,
    digest: TokenDigest,
    /// The table generation the token was last checked against.
    generation: u64,
    auth: Auth,
}

impl Principal {
    /// Whether this caller may post as `author`.
    pub fn may_post_as(&self, author: &str) -> bool {
        *self.author == *author
    }

    /// Whether the token is still in the table; re-checked only after a reload.
    pub fn still_valid(&mut self) -> bool {
        let now = self.auth.generation.load(Ordering::Acquire);
        if now == self.generation {
            return true;
        }
        self.generation = now;
        let table = Arc::clone(&self.auth.table.read());
        table.author_of(&self.digest).is_some()
    }
}

impl std::fmt::Debug for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Principal")
            .field("author", &self.author)
            .finish_non_exhaustive()
    }
}

/// Reloads `auth` on every SIGHUP, logging the outcome (never a token), and
/// calls `reloaded` after every successful reload, however it came (a
/// SIGHUP, or [`Auth::reload`] called directly): the server wakes every
/// stream there, so one whose token was revoked ends at once, not with the
/// next message. The handler is installed before this returns, so a SIGHUP
/// that arrives later is never fatal to the process.
pub fn reload_on_sighup(
    auth: Auth,
    reloaded: impl Fn() + Send + 'static,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = signal(SignalKind::hangup())?;
    let mut reloads = auth.reloads.subscribe();
    Ok(tokio::spawn(async move {
        loop {
            tokio::select! {
                signal = hangup.recv() => {
                    if signal.is_none() {
                        return;
                    }
                    match auth.reload() {
                        Ok(tokens) => {
                            tracing::info!(tokens, path = %auth.path().display(), "auth tokens reloaded")
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "auth tokens reload failed; keeping the previous tokens")
                        }
                    }
                }
                changed = reloads.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    reloaded();
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests;
