//! The subscriber's view of a `ServerMessageResponse`: only what it checks,
//! decoded without allocating.
//!
//! A full prost decode builds two `String`s per message (allocation, copy,
//! UTF-8 check) that the subscriber reads once and drops. [`Delivery`]
//! implements `prost::Message` by hand over the same wire format
//! (proto/messenger.proto): `author` (1) is only compared with the probe
//! author, `text` (2) only has its id header parsed ([`message::decode`]),
//! `sendTime` (3) is read as seconds and nanos, the opt-in `offset` (5) as a
//! varint; every other field (e.g. `traceparent`, 4) is skipped, as prost
//! skips unknown fields. It plugs into
//! tonic's `ProstCodec`, so framing and errors are tonic's own.

use crate::conn::PROBE_AUTHOR;
use crate::message;
use bytes::Buf;
use prost::DecodeError;
use prost::encoding::{DecodeContext, WireType, decode_varint, skip_field};

/// gRPC path of `ReadMessages` (proto/messenger.proto).
pub(crate) const READ_MESSAGES: &str = "/mes_grpc.MessengerServer/ReadMessages";

/// What a subscriber needs of one delivered message.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(crate) struct Delivery {
    /// `author` is [`PROBE_AUTHOR`].
    pub(crate) probe: bool,
    /// (publisher, seq) from a measured message's text, if it has the header.
    pub(crate) id: Option<(usize, u64)>,
    /// `sendTime` as unix nanoseconds; 0 when absent.
    pub(crate) send_time: i128,
    /// The publisher's send stamp from the text ([`message::clock_nanos`]).
    pub(crate) sent_at: Option<u64>,
    /// `offset` (opt-in, `messenger-offsets: 1`); 0 when absent.
    pub(crate) offset: u64,
}

/// Reads a length prefix and hands the next `len` bytes to `f` (from the
/// buffer's current chunk when contiguous, else from a copy).
fn with_bytes<B: Buf, T>(buf: &mut B, f: impl FnOnce(&[u8]) -> T) -> Result<T, DecodeError> {
    let len = decode_varint(buf)? as usize;
    if len > buf.remaining() {
        // prost has no other public way to make a DecodeError; its generated
        // code raises this same one.
        #[allow(deprecated)]
        return Err(DecodeError::new("buffer underflow"));
    }
    if buf.chunk().len() >= len {
        let value = f(&buf.chunk()[..len]);
        buf.advance(len);
        Ok(value)
    } else {
        Ok(f(&buf.copy_to_bytes(len)))
    }
}

/// `google.protobuf.Timestamp` (seconds = 1, nanos = 2) as unix nanos.
fn timestamp(bytes: &[u8]) -> Result<i128, DecodeError> {
    let (mut seconds, mut nanos) = (0i64, 0i32);
    let mut buf = bytes;
    let ctx = DecodeContext::default();
    while buf.has_remaining() {
        let (tag, wire_type) = prost::encoding::decode_key(&mut buf)?;
        match (tag, wire_type) {
            (1, WireType::Varint) => seconds = decode_varint(&mut buf)? as i64,
            (2, WireType::Varint) => nanos = decode_varint(&mut buf)? as i32,
            _ => skip_field(wire_type, tag, &mut buf, ctx.clone())?,
        }
    }
    Ok(i128::from(seconds) * 1_000_000_000 + i128::from(nanos))
}

impl prost::Message for Delivery {
    fn encode_raw(&self, _buf: &mut impl bytes::BufMut) {
        unreachable!("Delivery is only decoded")
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        match (tag, wire_type) {
            (1, WireType::LengthDelimited) => {
                self.probe = with_bytes(buf, |b| b == PROBE_AUTHOR.as_bytes())?;
            }
            (2, WireType::LengthDelimited) => {
                (self.id, self.sent_at) =
                    with_bytes(buf, |b| (message::decode_bytes(b), message::sent_bytes(b)))?;
            }
            (3, WireType::LengthDelimited) => {
                self.send_time = with_bytes(buf, timestamp)??;
            }
            (5, WireType::Varint) => self.offset = decode_varint(buf)?,
            _ => skip_field(wire_type, tag, buf, ctx)?,
        }
        Ok(())
    }

    fn encoded_len(&self) -> usize {
        0
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use messenger_proto::pb::ServerMessageResponse;
    use prost::Message as _;

    fn decoded(m: &ServerMessageResponse) -> Delivery {
        Delivery::decode(m.encode_to_vec().as_slice()).expect("decodes")
    }

    #[test]
    fn matches_the_full_decode() {
        let mut text = String::new();
        message::encode(3, 42, 99, 64, &mut text);
        let sent = prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 123_456_789,
        };
        let full = ServerMessageResponse {
            author: "bench".to_owned(),
            text,
            send_time: Some(sent),
            traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned(),
            offset: 7,
        };
        let d = decoded(&full);
        assert_eq!(d.id, Some((3, 42)));
        assert_eq!(d.sent_at, Some(99));
        assert!(!d.probe);
        assert_eq!(d.send_time, 1_700_000_000_123_456_789);
        assert_eq!(d.offset, 7);
        let probe = ServerMessageResponse {
            author: PROBE_AUTHOR.to_owned(),
            text: "probe".to_owned(),
            ..Default::default()
        };
        assert_eq!(
            decoded(&probe),
            Delivery {
                probe: true,
                id: None,
                send_time: 0,
                sent_at: None,
                offset: 0,
            }
        );
        assert!(Delivery::decode(&[0x12, 0x05, b'a'][..]).is_err());
    }
}
