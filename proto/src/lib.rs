//! The `mes_grpc` wire crate: what travels between callers and the server,
//! and nothing else (no telemetry, exporter, CLI or TLS; those live in
//! `messenger-runtime`, `proto/runtime/`).
//!
//! - [`pb`]: generated code for the `mes_grpc` package (`messenger.proto`,
//!   proto/CONTRACT.md) and [`FILE_DESCRIPTOR_SET`] for reflection. The set includes
//!   the imported well-known types, so grpcurl resolves every type without a
//!   local `.proto`.
//! - [`SERVICE_NAME`] and the request metadata keys of the opt-in extensions.
//! - [`frame`]: a `ServerMessageResponse` encoded once and written to every
//!   subscriber as the same bytes, and the server's `ReadMessages` codec.
//! - [`time`]: how a `sendTime` is built and rendered (9 fractional digits).
//! - [`limits`]: the byte limits on `SendMessageRequest` fields and the error
//!   naming the field, its length and the limit (the server adds the status
//!   and the variable that sets the limit).
//! - [`quote`]: how every error message repeats caller input (at most 64
//!   characters, escaped, a cut marked with `…` and the length).
//!
//! Its normal dependency tree is tonic (no TLS), prost, chrono and thiserror, so the
//! bench and the fuzz targets, which need only these, build quickly.

pub mod frame;
pub mod limits;
pub mod quote;
pub mod time;

/// Generated `mes_grpc` messages, client and server.
#[allow(unreachable_pub, clippy::all)]
pub mod pb {
    tonic::include_proto!("mes_grpc");
    include!(concat!(env!("OUT_DIR"), "/mes_grpc.MessengerServer.rs"));
}

/// Encoded `FileDescriptorSet` of `messenger.proto` and its imports.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/messenger_descriptor.bin"));

/// How many values the header lines `values` carry: a comma-joined list
/// counts as that many lines (RFC 9110 §5.3: a recipient may combine
/// repeated field lines into one, separated by commas). For a header that
/// takes one value and whose values never hold a comma, more than 1 means
/// it was sent more than once.
pub fn header_values<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> usize {
    values
        .into_iter()
        .map(|v| 1 + v.iter().filter(|&&b| b == b',').count())
        .sum()
}

/// A field value without the whitespace around it: "a field value does not
/// include leading or trailing whitespace" (RFC 9110 §5.5). HTTP/1.1 parsers
/// drop it; h2 passes it on, and some gRPC clients (grpcio) send it.
pub fn field_value(value: &[u8]) -> &[u8] {
    let ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !ows(b)).unwrap_or(value.len());
    let end = value.iter().rposition(|b| !ows(b)).map_or(start, |i| i + 1);
    &value[start..end]
}

/// [`field_value`] as text, when it is visible ASCII, spaces and tabs (what
/// `http::HeaderValue::to_str` accepts); `None` otherwise.
pub fn field_str(value: &[u8]) -> Option<&str> {
    let value = field_value(value);
    let visible = |b: &u8| *b == b'\t' || (b' '..=b'~').contains(b);
    if value.iter().all(visible) {
        std::str::from_utf8(value).ok()
    } else {
        None
    }
}

/// Fully qualified service name, as used in health checks and logs.
pub const SERVICE_NAME: &str = "mes_grpc.MessengerServer";

/// `ReadMessages` request metadata by which a subscriber asks for each
/// message's `traceparent` (value `1`). Callers that don't ask never see it.
pub const TRACE_CONTEXT_METADATA: &str = "messenger-trace-context";

/// `ReadMessages` request metadata by which a subscriber asks for each
/// message's `offset` (value `1`).
pub const OFFSETS_METADATA: &str = "messenger-offsets";

/// `ReadMessages` request metadata `<epoch>:<offset>`: resume after that
/// offset from history, then live (implies offsets).
pub const SINCE_METADATA: &str = "messenger-since";

/// `ReadMessages` response header: the epoch the stream's offsets belong to.
pub const EPOCH_METADATA: &str = "messenger-epoch";

/// `ReadMessages` response header, present when offsets were asked for: the
/// offset of the newest message accepted before the subscription was
/// registered (0: none yet). A replay ends there; live messages follow it.
/// A client that has seen nothing yet resumes from it.
pub const HEAD_OFFSET_METADATA: &str = "messenger-head-offset";

/// `ReadMessages` response header, present when `messenger-since` was sent:
/// `true` if history covered the request, else `false` (the stream starts live).
pub const RECOVERED_METADATA: &str = "messenger-recovered";

/// `ReadMessages` trailer, sent to a caller that asked for offsets when the
/// server ends its stream because it is shutting down, after draining it:
/// the offset of the last message the stream sent (its head offset if it
/// sent none). That server accepts nothing more in the stream's epoch, so a
/// caller holding this offset has missed nothing of the epoch, even if its
/// next subscription finds a new one.
pub const LAST_OFFSET_METADATA: &str = "messenger-last-offset";

/// Request metadata that carries `Bearer <token>` when the server requires
/// token auth. Sensitive: never logged.
pub const AUTHORIZATION_METADATA: &str = "authorization";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_value_excludes_the_spaces_and_tabs_around_it() {
        assert_eq!(field_value(b" \t1 \t"), b"1");
        assert_eq!(field_value(b"a b"), b"a b");
        assert_eq!(field_value(b" \t "), b"");
        assert_eq!(field_str(b" Bearer t "), Some("Bearer t"));
        assert_eq!(field_str(" t\u{f6}k ".as_bytes()), None, "not ASCII");
        assert_eq!(field_str(b"a\x7fb"), None, "DEL is not visible");
    }
}
