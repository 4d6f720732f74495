//! Byte limits on the fields of a `SendMessageRequest`: the wire rule the
//! server enforces before a message is accepted (it refuses an oversized
//! field with INVALID_ARGUMENT naming the field).
//!
//! Invariants:
//! - A field's length is its UTF-8 byte length (`str::len`), never its
//!   character count: the limit bounds memory and frame size, not text.
//! - `author` is checked before `text`, so a request with both fields over
//!   their limits is reported for `author`.
//! - A field exactly at its limit is accepted.
//!
//! This module knows nothing of gRPC statuses or environment variables; the
//! server wraps [`FieldTooLong`] in its own error, which adds both.

use crate::pb::SendMessageRequest;

/// A limited field of `SendMessageRequest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Author,
    Text,
}

impl Field {
    /// The field's name in `messenger.proto`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Author => "author",
            Self::Text => "text",
        }
    }
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A field longer than its limit: which field, its length and the limit, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("`{field}` is {len} bytes; the limit is {max} bytes")]
pub struct FieldTooLong {
    pub field: Field,
    pub len: usize,
    pub max: usize,
}

/// The largest accepted `author` and `text`, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_author_bytes: usize,
    pub max_text_bytes: usize,
}

impl Limits {
    /// The limit on `field`, in bytes.
    pub fn max(&self, field: Field) -> usize {
        match field {
            Field::Author => self.max_author_bytes,
            Field::Text => self.max_text_bytes,
        }
    }

    /// Checks a request's field sizes; the first field over its limit is the error.
    pub fn check(&self, req: &SendMessageRequest) -> Result<(), FieldTooLong> {
        self.check_field(Field::Author, &req.author)?;
        self.check_field(Field::Text, &req.text)
    }

    fn check_field(&self, field: Field, value: &str) -> Result<(), FieldTooLong> {
        let (len, max) = (value.len(), self.max(field));
        if len > max {
            return Err(FieldTooLong { field, len, max });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_author_bytes: 4,
        max_text_bytes: 8,
    };

    fn request(author: &str, text: &str) -> SendMessageRequest {
        SendMessageRequest {
            author: author.into(),
            text: text.into(),
        }
    }

    #[test]
    fn accepts_fields_at_their_limits() {
        assert_eq!(LIMITS.check(&request("abcd", "12345678")), Ok(()));
        assert_eq!(LIMITS.check(&request("", "")), Ok(()));
    }

    #[test]
    fn names_the_first_field_over_its_limit() {
        let e = LIMITS.check(&request("abcde", "123456789")).unwrap_err();
        assert_eq!(
            e,
            FieldTooLong {
                field: Field::Author,
                len: 5,
                max: 4
            }
        );
        assert_eq!(e.to_string(), "`author` is 5 bytes; the limit is 4 bytes");
        let e = LIMITS.check(&request("ab", "123456789")).unwrap_err();
        assert_eq!((e.field, e.len, e.max), (Field::Text, 9, 8));
    }

    #[test]
    fn counts_utf8_bytes_not_characters() {
        // Five characters (within 8), ten bytes (over 8).
        let e = LIMITS.check(&request("", "ééééé")).unwrap_err();
        assert_eq!((e.field, e.len), (Field::Text, 10));
        assert!(LIMITS.check(&request("éé", "")).is_ok());
    }
}
