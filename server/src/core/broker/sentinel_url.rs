//! The Sentinel form of `MESSENGER_BROKER_URL` (issue 25), after the grammar
//! used around redis-py (Redis-Sentinel-Url):
//!
//! ```text
//! redis+sentinel://[user:password@]host[:port][,host[:port]...]/<master-name>
//!     [?sentinel_username=<u>&sentinel_password=<p>]
//! rediss+sentinel://...   TLS to the Sentinels and to the data nodes
//! ```
//!
//! - A Sentinel's port defaults to 26379; an IPv6 host is written in brackets.
//! - The credentials before `@` are the data nodes'; the Sentinels' own, if
//!   they need any, come in the query. All are percent-decoded.
//! - There is no `/db` part: one path segment, the master's name.
//!
//! Invariants: an error never holds a credential (only the part of the URL
//! it names, which is never userinfo or a query value); [`SentinelUrl::redacted`]
//! is the URL without any credential.

/// A parsed Sentinel URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelUrl {
    /// `rediss+sentinel://`: TLS to both the Sentinels and the data nodes.
    pub tls: bool,
    /// Host and port of each Sentinel, in the order given.
    pub sentinels: Vec<(String, u16)>,
    pub master: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub sentinel_username: Option<String>,
    pub sentinel_password: Option<String>,
}

pub const SCHEME: &str = "redis+sentinel";
pub const TLS_SCHEME: &str = "rediss+sentinel";
pub const DEFAULT_PORT: u16 = 26379;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SentinelUrlError {
    #[error("expected {SCHEME}:// or {TLS_SCHEME}://")]
    Scheme,
    #[error("no Sentinel host before the master name")]
    NoHost,
    #[error("Sentinel {0:?}: the port is not a number in 1..=65535")]
    Port(String),
    #[error("Sentinel {0:?}: an IPv6 address needs brackets, e.g. [::1]:26379")]
    Bracket(String),
    #[error("no master name: expected .../<master-name>")]
    NoMaster,
    #[error("{0:?} after the master name: a Sentinel URL has no /db part")]
    Db(String),
    #[error("unknown query parameter {0:?} (known: sentinel_username, sentinel_password)")]
    Param(String),
    #[error("a bad percent-escape in the {0}")]
    Escape(&'static str),
}

impl SentinelUrl {
    /// `true` when `url` has a Sentinel scheme (and so must parse as one).
    pub fn is_sentinel(url: &str) -> bool {
        url.split_once("://")
            .is_some_and(|(scheme, _)| scheme == SCHEME || scheme == TLS_SCHEME)
    }

    pub fn parse(url: &str) -> Result<Self, SentinelUrlError> {
        let (scheme, rest) = url.split_once("://").ok_or(SentinelUrlError::Scheme)?;
        let tls = match scheme {
            SCHEME => false,
            TLS_SCHEME => true,
            _ => return Err(SentinelUrlError::Scheme),
        };
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (userinfo, rest) = match rest.rsplit_once('@') {
            Some((userinfo, rest)) => (Some(userinfo), rest),
            None => (None, rest),
        };
        let (hosts, path) = rest.split_once('/').ok_or(SentinelUrlError::NoMaster)?;
        let (master, db) = path.split_once('/').unwrap_or((path, ""));
        if !db.is_empty() {
            return Err(SentinelUrlError::Db(db.to_owned()));
        }
        let master = decode(master, "master name")?;
        if master.is_empty() {
            return Err(SentinelUrlError::NoMaster);
        }
        let sentinels = (hosts.split(',').filter(|h| !h.is_empty()))
            .map(host_port)
            .collect::<Result<Vec<_>, _>>()?;
        if sentinels.is_empty() {
            return Err(SentinelUrlError::NoHost);
        }
        let (mut username, mut password) = (None, None);
        if let Some(userinfo) = userinfo {
            let (user, pass) = match userinfo.split_once(':') {
                Some((user, pass)) => (user, Some(pass)),
                None => (userinfo, None),
            };
            username = Some(decode(user, "user name")?).filter(|u| !u.is_empty());
            password = pass.map(|p| decode(p, "password")).transpose()?;
        }
        let (mut sentinel_username, mut sentinel_password) = (None, None);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "sentinel_username" => {
                    sentinel_username = Some(decode(value, "sentinel_username")?);
                }
                "sentinel_password" => {
                    sentinel_password = Some(decode(value, "sentinel_password")?);
                }
                other => return Err(SentinelUrlError::Param(other.to_owned())),
            }
        }
        Ok(Self {
            tls,
            sentinels,
            master,
            username,
            password,
            sentinel_username,
            sentinel_password,
        })
    }

    /// The URL without credentials: `redis+sentinel://h1:26379,h2:26380/master`.
    pub fn redacted(&self) -> String {
        let scheme = if self.tls { TLS_SCHEME } else { SCHEME };
        let hosts: Vec<String> = (self.sentinels.iter())
            .map(|(host, port)| match host.contains(':') {
                true => format!("[{host}]:{port}"),
                false => format!("{host}:{port}"),
            })
            .collect();
        format!("{scheme}://{}/{}", hosts.join(","), self.master)
    }
}

fn host_port(item: &str) -> Result<(String, u16), SentinelUrlError> {
    let port = |p: &str| {
        (p.parse::<u16>().ok())
            .filter(|p| *p > 0)
            .ok_or_else(|| SentinelUrlError::Port(item.to_owned()))
    };
    if let Some(bracketed) = item.strip_prefix('[') {
        let (host, after) =
            (bracketed.split_once(']')).ok_or(SentinelUrlError::Bracket(item.to_owned()))?;
        return match after.strip_prefix(':') {
            Some(p) => Ok((host.to_owned(), port(p)?)),
            None if after.is_empty() => Ok((host.to_owned(), DEFAULT_PORT)),
            None => Err(SentinelUrlError::Port(item.to_owned())),
        };
    }
    match item.split_once(':') {
        Some((_, p)) if p.contains(':') => Err(SentinelUrlError::Bracket(item.to_owned())),
        Some(("", _)) => Err(SentinelUrlError::NoHost),
        Some((host, p)) => Ok((host.to_owned(), port(p)?)),
        None => Ok((item.to_owned(), DEFAULT_PORT)),
    }
}

/// Percent-decodes `s` as UTF-8; `what` names the part in an error.
fn decode(s: &str, what: &'static str) -> Result<String, SentinelUrlError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .ok_or(SentinelUrlError::Escape(what))?;
            let hex = std::str::from_utf8(hex).map_err(|_| SentinelUrlError::Escape(what))?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| SentinelUrlError::Escape(what))?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| SentinelUrlError::Escape(what))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hosts_ports_master_and_credentials() {
        let url = "redis+sentinel://app:p%40ss@s1,s2:26380,[::1]:26381/mymaster\
                   ?sentinel_username=sen&sentinel_password=s%26cret";
        let parsed = SentinelUrl::parse(url).unwrap();
        assert!(!parsed.tls);
        assert_eq!(
            parsed.sentinels,
            [
                ("s1".to_owned(), 26379),
                ("s2".to_owned(), 26380),
                ("::1".to_owned(), 26381)
            ]
        );
        assert_eq!(parsed.master, "mymaster");
        assert_eq!(parsed.username.as_deref(), Some("app"));
        assert_eq!(parsed.password.as_deref(), Some("p@ss"));
        assert_eq!(parsed.sentinel_username.as_deref(), Some("sen"));
        assert_eq!(parsed.sentinel_password.as_deref(), Some("s&cret"));
        assert_eq!(
            parsed.redacted(),
            "redis+sentinel://s1:26379,s2:26380,[::1]:26381/mymaster"
        );
    }

    #[test]
    fn tls_and_a_password_without_a_user() {
        let parsed = SentinelUrl::parse("rediss+sentinel://:secret@127.0.0.1/m").unwrap();
        assert!(parsed.tls);
        assert_eq!(parsed.username, None);
        assert_eq!(parsed.password.as_deref(), Some("secret"));
        assert_eq!(parsed.sentinels, [("127.0.0.1".to_owned(), DEFAULT_PORT)]);
        assert!(SentinelUrl::is_sentinel("rediss+sentinel://h/m"));
        assert!(!SentinelUrl::is_sentinel("redis://h:6379"));
    }

    #[test]
    fn each_mistake_is_named_without_a_credential() {
        let cases = [
            ("redis://h/m", SentinelUrlError::Scheme),
            ("redis+sentinel:///m", SentinelUrlError::NoHost),
            ("redis+sentinel://h", SentinelUrlError::NoMaster),
            ("redis+sentinel://h/", SentinelUrlError::NoMaster),
            ("redis+sentinel://h/m/0", SentinelUrlError::Db("0".into())),
            (
                "redis+sentinel://h:0/m",
                SentinelUrlError::Port("h:0".into()),
            ),
            (
                "redis+sentinel://h:x/m",
                SentinelUrlError::Port("h:x".into()),
            ),
            (
                "redis+sentinel://::1/m",
                SentinelUrlError::Bracket("::1".into()),
            ),
            (
                "redis+sentinel://h/m?db=1",
                SentinelUrlError::Param("db".into()),
            ),
            (
                "redis+sentinel://u:%zzsecret@h/m",
                SentinelUrlError::Escape("password"),
            ),
        ];
        for (url, want) in cases {
            let got = SentinelUrl::parse(url).unwrap_err();
            assert_eq!(got, want, "{url}");
            assert!(!got.to_string().contains("secret"), "{got}");
        }
    }
}
