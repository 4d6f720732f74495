//! The position an `/events` stream resumes from: `Last-Event-ID`, else
//! `?since=`, parsed as the server parses `messenger-since`.
//!
//! Invariants: a malformed position is a 400 naming where it came from and
//! the form `<epoch>:<offset>`, quoting it by the one rule
//! (`messenger_proto::quote`); so is a repeated one (two `Last-Event-ID`
//! headers, or two `since` parameters), never whichever came first; an epoch
//! longer than [`MAX_EPOCH_BYTES`] never reaches the server.

use super::{LAST_EVENT_ID, Since};
use crate::error::ApiError;
use axum::extract::{Query, rejection::QueryRejection};
use axum::http::HeaderMap;
use messenger_proto::header_values;
use messenger_proto::quote::{quote, quote_bytes};

/// `Last-Event-ID`, else `?since=`, parsed as the server parses `messenger-since`.
/// `raw` is the request's query string, in which `since` is counted.
pub(super) fn position(
    headers: &HeaderMap,
    raw: Option<&str>,
    query: Result<Query<Since>, QueryRejection>,
) -> Result<Option<(String, u64)>, ApiError> {
    // A comma-joined list counts as repeated headers (RFC 9110 §5.3).
    let copies = header_values(headers.get_all(LAST_EVENT_ID).iter().map(|v| v.as_bytes()));
    if copies > 1 {
        return Err(ApiError::BadPosition(format!(
            "Last-Event-ID was sent {copies} times; send it once"
        )));
    }
    if let Some(value) = headers.get(LAST_EVENT_ID) {
        let text = value.to_str().unwrap_or("\u{fffd}");
        return parse_position(text)
            .map(Some)
            .map_err(|e| bad_position("Last-Event-ID", &quote_bytes(value.as_bytes()), e));
    }
    let copies = raw.map_or(0, |raw| {
        form_urlencoded::parse(raw.as_bytes())
            .filter(|(key, _)| key == "since")
            .count()
    });
    if copies > 1 {
        return Err(ApiError::BadPosition(format!(
            "since was sent {copies} times; send it once"
        )));
    }
    let Query(Since { since }) =
        query.map_err(|r| ApiError::BadPosition(format!("invalid query: {}", r.body_text())))?;
    match since {
        None => Ok(None),
        Some(text) => parse_position(&text)
            .map(Some)
            .map_err(|e| bad_position("since", &quote(&text), e)),
    }
}

/// The 400 for a position; `got` is already quoted.
fn bad_position(what: &str, got: &str, why: BadPosition) -> ApiError {
    ApiError::BadPosition(match why {
        BadPosition::Form => {
            format!("{what} {got} is not <epoch>:<offset> (an event id, e.g. 1a2b3c:42)")
        }
        BadPosition::EpochTooLong => format!(
            "{what} {got}: the epoch is longer than {MAX_EPOCH_BYTES} bytes \
             (<epoch>:<offset>: an event id's epoch is 16 or 17 characters)"
        ),
        BadPosition::OffsetTooLarge => format!(
            "{what} {got}: the offset is larger than <epoch>:<offset> allows (at most {})",
            u64::MAX
        ),
    })
}

/// Why a position does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadPosition {
    /// Not `<epoch>:<offset>`.
    Form,
    /// The form is right, but the offset is past `u64::MAX`.
    OffsetTooLarge,
    /// The epoch is longer than [`MAX_EPOCH_BYTES`].
    EpochTooLong,
}

/// The longest epoch a position may carry. The server's epochs are 16 hex
/// digits (in-process) or 16–17 decimal digits (a broker's `TIME`), so this
/// leaves a wide margin; what matters is that it is far below the server's
/// header-size limit, since the epoch travels as `messenger-since` metadata
/// on the HTTP/2 connection every `/events` stream of this client shares,
/// and a header the server refuses tears that connection down for all.
pub const MAX_EPOCH_BYTES: usize = 64;

/// `<epoch>:<offset>`: a non-empty epoch of visible ASCII but `,` (the
/// last `:` separates) of at most [`MAX_EPOCH_BYTES`] and a decimal u64, as
/// the server's `messenger-since`.
pub fn parse_position(text: &str) -> Result<(String, u64), BadPosition> {
    let (epoch, offset) = text.rsplit_once(':').ok_or(BadPosition::Form)?;
    if epoch.len() > MAX_EPOCH_BYTES {
        return Err(BadPosition::EpochTooLong);
    }
    // No comma: `E:1,E:2` (two positions joined) would read as the epoch
    // `E:1,E` and resume with a gap instead of being refused.
    let visible = !epoch.is_empty() && epoch.bytes().all(|b| b.is_ascii_graphic() && b != b',');
    let digits = !offset.is_empty() && offset.bytes().all(|b| b.is_ascii_digit());
    if !(visible && digits) {
        return Err(BadPosition::Form);
    }
    let offset = offset.parse().map_err(|_| BadPosition::OffsetTooLarge)?;
    Ok((epoch.to_owned(), offset))
}
