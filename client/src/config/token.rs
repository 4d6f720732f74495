//! The client's bearer token (`MESSENGER_CLIENT_TOKEN`): validated once, at
//! start, and never shown, neither by `Debug` nor in any error.

use super::ENV_CLIENT_TOKEN;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};

/// Longest bearer token, in bytes. The server refuses a header list over 16
/// KiB (hyper's default) as a whole call; with this bound, everything this
/// client adds to a call (token, `traceparent`, a `tracestate` of at most 512
/// characters, `messenger-trace-context`) stays under 5 KiB.
pub const MAX_TOKEN_BYTES: usize = 4096;

/// A bearer token. Its `Debug` never shows it, and neither does any error.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The `authorization` metadata value, marked sensitive (HPACK never
    /// indexes it, `Debug` hides it).
    pub fn metadata(&self) -> Result<AsciiMetadataValue, String> {
        let token = self.0.trim();
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "{ENV_CLIENT_TOKEN} must be printable ASCII without spaces (value not shown)"
            ));
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(format!(
                "{ENV_CLIENT_TOKEN} is longer than {MAX_TOKEN_BYTES} bytes (value not shown)"
            ));
        }
        let mut value = MetadataValue::try_from(format!("Bearer {token}"))
            .map_err(|_| format!("{ENV_CLIENT_TOKEN} is not valid metadata (value not shown)"))?;
        value.set_sensitive(true);
        Ok(value)
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Accepts any string, so that clap never echoes a token in an error;
/// [`Token::metadata`] validates it.
pub(super) fn parse_token(s: &str) -> Result<Token, std::convert::Infallible> {
    Ok(Token::new(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use clap::Parser;

    #[test]
    fn token_is_validated_and_never_shown() {
        let secret = "s3cret-t0ken";
        let token = Token::new(secret);
        assert_eq!(token.metadata().unwrap(), "Bearer s3cret-t0ken");
        assert!(!format!("{token:?}").contains(secret));
        assert!(!format!("{:?}", token.metadata().unwrap()).contains(secret));
        let long = "t".repeat(MAX_TOKEN_BYTES + 1);
        assert!(Token::new("t".repeat(MAX_TOKEN_BYTES)).metadata().is_ok());
        for bad in ["", "two words", "tökén", long.as_str()] {
            let e = Token::new(bad).metadata().unwrap_err();
            assert!(bad.is_empty() || !e.contains(bad), "{e}");
            assert!(e.contains(ENV_CLIENT_TOKEN), "{e}");
        }
        let config = Config::try_parse_from(["c", "--client-token", secret]).unwrap();
        assert!(!format!("{config:?}").contains(secret));
    }
}
