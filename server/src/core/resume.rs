//! The resume protocol's metadata (proto/CONTRACT.md, "Opt-in extensions"): what a
//! `ReadMessages` caller asks for, and the response headers that answer it.
//! Parsing is strict: a malformed `messenger-since` is a [`BadSince`]
//! naming the header and the expected form, and any of the three request
//! headers sent more than once is [`BadReadOptions::Repeated`] (which copy
//! would count is a guess the caller cannot see), and a flag other than `1`
//! or `0` is [`BadReadOptions::BadFlag`]: never a silent plain subscribe.
//! The gRPC layer answers all three INVALID_ARGUMENT.

use crate::core::hub::{Resume, Subscription};
use messenger_proto::quote::{quote, quote_bytes};
use messenger_proto::{
    EPOCH_METADATA, HEAD_OFFSET_METADATA, OFFSETS_METADATA, RECOVERED_METADATA, SINCE_METADATA,
    TRACE_CONTEXT_METADATA, field_str, field_value, header_values,
};
use tonic::metadata::{AsciiMetadataValue, MetadataMap};

/// A `messenger-since` that is not `<epoch>:<offset>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "metadata `{header}` must be `<epoch>:<offset>`: the `messenger-epoch` response \
     header of an earlier ReadMessages and a decimal offset (0: before the first message); got {got}"
)]
pub struct BadSince {
    pub header: &'static str,
    pub got: String,
}

/// Why a `ReadMessages` call's opt-in metadata was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadReadOptions {
    #[error(transparent)]
    Since(#[from] BadSince),
    /// One of the opt-in headers came `count` times, as separate headers
    /// (gRPC metadata may repeat a key) or comma-joined; these take one
    /// value each.
    #[error("metadata `{header}` was sent {count} times; send it once")]
    Repeated { header: &'static str, count: usize },
    /// A flag header held something other than `1` (on) or `0` (off).
    #[error("metadata `{header}` must be 1 (on) or 0 (off), got {value}")]
    BadFlag { header: &'static str, value: String },
}

/// The opt-in flag `header`: absent or `0` is off, `1` is on; anything else
/// is refused rather than read as off (a caller who sent `true` would
/// otherwise never learn why nothing changed).
fn flag(metadata: &MetadataMap, header: &'static str) -> Result<bool, BadReadOptions> {
    match metadata.get(header).map(|v| field_value(v.as_bytes())) {
        None | Some(b"0") => Ok(false),
        Some(b"1") => Ok(true),
        Some(other) => Err(BadReadOptions::BadFlag {
            header,
            value: quote_bytes(other),
        }),
    }
}

/// The request headers of the opt-in extensions, each taking one value.
const OPTION_HEADERS: [&str; 3] = [SINCE_METADATA, OFFSETS_METADATA, TRACE_CONTEXT_METADATA];

/// The opt-in extensions a subscriber asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ReadOptions {
    /// `messenger-trace-context: 1`.
    pub wants_trace: bool,
    /// `messenger-offsets: 1`, or implied by `since`.
    pub wants_offsets: bool,
    /// `messenger-since: <epoch>:<offset>`.
    pub since: Option<(String, u64)>,
}

impl ReadOptions {
    /// Reads the request metadata: `messenger-since` can be malformed, and
    /// any of the three can be repeated.
    pub(crate) fn from_metadata(metadata: &MetadataMap) -> Result<Self, BadReadOptions> {
        for header in OPTION_HEADERS {
            // A comma-joined list is the same as repeated headers (RFC 9110
            // §5.3); a proxy may join them. None of the three values holds a
            // comma.
            let count = header_values(metadata.get_all(header).iter().map(|v| v.as_bytes()));
            if count > 1 {
                return Err(BadReadOptions::Repeated { header, count });
            }
        }
        let since = metadata
            .get(SINCE_METADATA)
            .map(|v| parse_since(field_str(v.as_bytes())))
            .transpose()?;
        Ok(Self {
            wants_trace: flag(metadata, TRACE_CONTEXT_METADATA)?,
            wants_offsets: flag(metadata, OFFSETS_METADATA)? || since.is_some(),
            since,
        })
    }
}

/// `<epoch>:<offset>`: a non-empty epoch of visible ASCII (the last `:`
/// separates) and a decimal u64. `None` is a value that was not ASCII.
pub(crate) fn parse_since(value: Option<&str>) -> Result<(String, u64), BadSince> {
    let bad = || BadSince {
        header: SINCE_METADATA,
        got: value.map_or_else(|| "a non-ASCII value".to_owned(), quote),
    };
    let (epoch, offset) = value.and_then(|v| v.rsplit_once(':')).ok_or_else(bad)?;
    if epoch.is_empty() || !epoch.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad());
    }
    if offset.is_empty() || !offset.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    // All digits, so the only way to fail is a number past u64::MAX: say so
    // rather than that the form is wrong.
    let offset = offset.parse().map_err(|_| {
        let mut e = bad();
        e.got.push_str(&format!(
            ", whose offset is larger than the largest offset ({})",
            u64::MAX
        ));
        e
    })?;
    Ok((epoch.to_owned(), offset))
}

/// Adds `messenger-epoch`; `messenger-head-offset` when offsets were asked
/// for; `messenger-recovered` when a position was given.
pub(crate) fn set_headers(
    metadata: &mut MetadataMap,
    options: &ReadOptions,
    subscription: &Subscription,
) {
    let epoch = subscription.epoch();
    match AsciiMetadataValue::try_from(epoch) {
        Ok(v) => {
            metadata.insert(EPOCH_METADATA, v);
        }
        Err(_) => tracing::error!(epoch, "engine epoch is not ASCII; header omitted"),
    }
    if options.wants_offsets {
        metadata.insert(
            HEAD_OFFSET_METADATA,
            AsciiMetadataValue::from(subscription.head()),
        );
    }
    let recovered = match subscription.resume() {
        Resume::NotAsked => return,
        Resume::Recovered { .. } => "true",
        Resume::Gap(_) => "false",
    };
    metadata.insert(
        RECOVERED_METADATA,
        AsciiMetadataValue::from_static(recovered),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_the_documented_form() {
        assert_eq!(parse_since(Some("abc:0")).unwrap(), ("abc".into(), 0));
        assert_eq!(parse_since(Some("a:b:42")).unwrap(), ("a:b".into(), 42));
        assert_eq!(
            parse_since(Some("e:18446744073709551615")).unwrap().1,
            u64::MAX
        );
    }

    #[test]
    fn since_refuses_anything_else_naming_the_header_and_form() {
        for bad in [
            "",
            "abc",
            ":5",
            "abc:",
            "abc:-1",
            "abc:+1",
            "abc:1.5",
            "abc: 1",
            "a b:1",
            "abc:18446744073709551616",
        ] {
            let e = parse_since(Some(bad)).unwrap_err().to_string();
            assert!(
                e.contains("messenger-since") && e.contains("<epoch>:<offset>"),
                "{bad}: {e}"
            );
        }
        let e = parse_since(None).unwrap_err().to_string();
        assert!(e.contains("non-ASCII"), "{e}");
    }

    /// A new user's report: an offset past u64::MAX was called malformed.
    #[test]
    fn an_offset_too_large_is_named_as_such() {
        let e = parse_since(Some("00:99999999999999999999999"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("larger than the largest offset (18446744073709551615)"),
            "{e}"
        );
        let e = parse_since(Some("00:9x")).unwrap_err().to_string();
        assert!(!e.contains("larger"), "{e}");
    }

    #[test]
    fn offsets_are_implied_by_since_and_flags_are_1_or_0() {
        let mut m = MetadataMap::new();
        m.insert(OFFSETS_METADATA, AsciiMetadataValue::from_static("0"));
        assert_eq!(
            ReadOptions::from_metadata(&m).unwrap(),
            ReadOptions::default()
        );
        m.insert(SINCE_METADATA, AsciiMetadataValue::from_static("e:3"));
        let o = ReadOptions::from_metadata(&m).unwrap();
        assert!(o.wants_offsets && o.since == Some(("e".into(), 3)));
        m.insert(OFFSETS_METADATA, AsciiMetadataValue::from_static("1"));
        assert!(ReadOptions::from_metadata(&m).unwrap().wants_offsets);
    }

    #[test]
    fn a_flag_other_than_1_or_0_is_refused_naming_it() {
        for (header, value) in [
            (OFFSETS_METADATA, "yes"),
            (OFFSETS_METADATA, "true"),
            (TRACE_CONTEXT_METADATA, "2"),
            (TRACE_CONTEXT_METADATA, ""),
        ] {
            let mut m = MetadataMap::new();
            m.insert(header, value.parse().unwrap());
            let err = ReadOptions::from_metadata(&m).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("metadata `{header}` must be 1 (on) or 0 (off), got {value:?}")
            );
        }
    }
}
