//! `ServerMessageResponse` encoded once per message, written to every
//! subscriber's stream as the same bytes.
//!
//! [`Encoded`] holds fields 1–3 (`author`, `text`, `sendTime`), which every
//! subscriber receives, as prost encodes them, in shared [`Bytes`]. A
//! [`Frame`] is one delivery: those bytes and the opt-in fields 4
//! (`traceparent`) and 5 (`offset`), appended after them only when set. A
//! frame made with [`Frame::shared`] holds the message that owns the bytes
//! (the subscriber's own share of it, moved in), so a delivery touches no
//! reference count of the bytes themselves: at K=1000 that count is shared by
//! a thousand frames on every core, and its bumps were 4% of the server's CPU
//! (tests/bench/README.md, issue 28). Prost writes fields in tag order and leaves out empty strings and
//! zeros, so a frame's bytes are exactly `ServerMessageResponse::encode` of the
//! same values: grpcurl and every other client see no difference.
//!
//! [`FrameCodec`] is the `ReadMessages` codec of the generated server (see
//! `build.rs`): it copies a frame into tonic's batch buffer, where tonic adds
//! the gRPC length prefix and hands every frame ready at one wake-up to h2 as
//! one chunk.

use bytes::{BufMut, Bytes, BytesMut};
use prost::encoding::{
    WireType, encode_key, encode_varint, encoded_len_varint, key_len, message, uint64,
};
use prost_types::Timestamp;
use std::sync::Arc;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, EncodeBuf, Encoder};
use tonic_prost::ProstDecoder;

/// Bytes tonic reserves for a stream's batch buffer when the stream starts.
/// Small, because most subscribers are idle most of the time and the buffer
/// grows to the batch it holds; tonic's default is 8 KiB per stream.
pub const STREAM_BUFFER_BYTES: usize = 0;

/// Bytes tonic reserves to decode the `ReadMessages` request (an empty
/// message; the buffer grows if a peer sends more).
pub const REQUEST_BUFFER_BYTES: usize = 64;

/// A batch is handed to h2 once it reaches this many bytes (tonic's default),
/// even if more frames are ready.
pub const STREAM_YIELD_BYTES: usize = 32 * 1024;

/// Fields 1–3 of one `ServerMessageResponse`, encoded; cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded(Bytes);

impl Encoded {
    /// Encodes `author`, `text` and `send_time` as prost does for
    /// `ServerMessageResponse` (tags 1, 2, 3; empty strings left out).
    pub fn new(author: &str, text: &str, send_time: &Timestamp) -> Self {
        let len = str_len(1, author) + str_len(2, text) + message::encoded_len(3, send_time);
        let mut buf = BytesMut::with_capacity(len);
        put_str(1, author, &mut buf);
        put_str(2, text, &mut buf);
        message::encode(3, send_time, &mut buf);
        Self(buf.freeze())
    }

    /// Encoded length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What owns a message's [`Encoded`] bytes (the server's history entry).
pub trait HoldsEncoded: Send + Sync + 'static {
    fn encoded(&self) -> &Encoded;
}

/// Where a frame's fields 1–3 come from.
#[derive(Clone)]
enum Body {
    /// Its own reference to the bytes.
    Bytes(Encoded),
    /// A share of the message that holds them.
    Shared(Arc<dyn HoldsEncoded>),
}

impl Body {
    fn bytes(&self) -> &Bytes {
        match self {
            Self::Bytes(e) => &e.0,
            Self::Shared(owner) => &owner.encoded().0,
        }
    }
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Body").field(self.bytes()).finish()
    }
}

/// One `ServerMessageResponse` on its way to one subscriber.
#[derive(Debug, Clone)]
pub struct Frame {
    body: Body,
    /// Field 4; `None` or empty: absent.
    traceparent: Option<String>,
    /// Field 5; 0: absent.
    offset: u64,
}

impl Frame {
    /// The shared fields only: what a plain subscriber receives.
    pub fn new(body: &Encoded) -> Self {
        Self {
            body: Body::Bytes(body.clone()),
            traceparent: None,
            offset: 0,
        }
    }

    /// The shared fields of the message `owner` holds, keeping `owner`
    /// (moved in, not cloned) until the frame is encoded.
    pub fn shared(owner: Arc<dyn HoldsEncoded>) -> Self {
        Self {
            body: Body::Shared(owner),
            traceparent: None,
            offset: 0,
        }
    }

    /// Adds field 4 (the opt-in trace context).
    pub fn with_traceparent(mut self, traceparent: Option<String>) -> Self {
        self.traceparent = traceparent;
        self
    }

    /// Adds field 5 (the opt-in offset); 0 leaves it out.
    pub fn with_offset(mut self, offset: u64) -> Self {
        self.offset = offset;
        self
    }

    /// Encoded length in bytes, without the gRPC length prefix.
    pub fn encoded_len(&self) -> usize {
        self.body.bytes().len()
            + self.traceparent.as_deref().map_or(0, |t| str_len(4, t))
            + if self.offset == 0 {
                0
            } else {
                uint64::encoded_len(5, &self.offset)
            }
    }

    /// Appends the frame's protobuf bytes to `buf`.
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_slice(self.body.bytes());
        if let Some(t) = &self.traceparent {
            put_str(4, t, buf);
        }
        if self.offset != 0 {
            uint64::encode(5, &self.offset, buf);
        }
    }
}

/// Bytes of a proto3 string field; an empty string is left out.
fn str_len(tag: u32, s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        key_len(tag) + encoded_len_varint(s.len() as u64) + s.len()
    }
}

/// Writes a proto3 string field as prost does; an empty string is left out.
fn put_str(tag: u32, s: &str, buf: &mut impl BufMut) {
    if !s.is_empty() {
        encode_key(tag, WireType::LengthDelimited, buf);
        encode_varint(s.len() as u64, buf);
        buf.put_slice(s.as_bytes());
    }
}

/// `google.protobuf.Empty`, as prost maps it: the `ReadMessages` request.
pub type Empty = ();

/// `ReadMessages`: decodes the `google.protobuf.Empty` request with prost and
/// encodes [`Frame`]s as they are.
#[derive(Debug, Clone, Copy, Default)]
pub struct FrameCodec;

impl Codec for FrameCodec {
    type Encode = Frame;
    type Decode = ();
    type Encoder = FrameEncoder;
    type Decoder = ProstDecoder<()>;

    fn encoder(&mut self) -> Self::Encoder {
        FrameEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        // The request is an empty message: tonic's default 8 KiB would be
        // allocated per subscription for nothing.
        ProstDecoder::new(BufferSettings::new(
            REQUEST_BUFFER_BYTES,
            STREAM_YIELD_BYTES,
        ))
    }
}

/// See [`FrameCodec`].
#[derive(Debug, Clone, Copy, Default)]
pub struct FrameEncoder;

impl Encoder for FrameEncoder {
    type Item = Frame;
    type Error = Status;

    fn encode(&mut self, item: Frame, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.reserve(item.encoded_len());
        item.encode(buf);
        Ok(())
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::new(STREAM_BUFFER_BYTES, STREAM_YIELD_BYTES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::ServerMessageResponse;
    use crate::time::to_timestamp;
    use proptest::prelude::*;
    use prost::Message;

    fn prost_bytes(m: &ServerMessageResponse) -> Vec<u8> {
        m.encode_to_vec()
    }

    /// A message holding its encoding, as the server's history entry does.
    struct Held(Encoded);

    impl HoldsEncoded for Held {
        fn encoded(&self) -> &Encoded {
            &self.0
        }
    }

    /// The frame's bytes, the same whether it refers to the bytes or holds
    /// the message that owns them.
    fn frame_bytes(m: &ServerMessageResponse) -> Vec<u8> {
        let body = Encoded::new(&m.author, &m.text, m.send_time.as_ref().unwrap());
        let shared = Frame::shared(Arc::new(Held(body.clone())));
        let mut bytes = [Frame::new(&body), shared].map(|frame| {
            let frame = frame
                .with_traceparent(Some(m.traceparent.clone()))
                .with_offset(m.offset);
            let mut out = Vec::new();
            frame.encode(&mut out);
            assert_eq!(out.len(), frame.encoded_len());
            out
        });
        assert_eq!(bytes[0], bytes[1]);
        std::mem::take(&mut bytes[0])
    }

    proptest! {
        #[test]
        fn frame_bytes_are_prost_bytes(
            author in ".{0,40}",
            text in prop_oneof![".{0,40}", ".{100,300}"],
            nanos in prop_oneof![Just(0i128), any::<i64>().prop_map(i128::from)],
            traceparent in prop_oneof![Just(String::new()), "[0-9a-f-]{55}"],
            offset in prop_oneof![Just(0u64), any::<u64>()],
        ) {
            let m = ServerMessageResponse {
                author,
                text,
                send_time: Some(to_timestamp(nanos)),
                traceparent,
                offset,
            };
            prop_assert_eq!(frame_bytes(&m), prost_bytes(&m));
        }
    }

    #[test]
    fn a_plain_frame_is_the_shared_bytes() {
        let ts = to_timestamp(1_700_000_000_123_456_789);
        let body = Encoded::new("a", "b", &ts);
        let mut out = Vec::new();
        Frame::new(&body).encode(&mut out);
        assert_eq!(out, body.0.as_ref());
    }
}
