//! Decoding one stream entry into the fields of a message. Anything can be
//! `XADD`ed to the stream, so every field is checked and a bad entry is a
//! [`DecodeError`] naming the field, never a panic; the reader skips it.

use redis::Value;
use redis::streams::StreamId;

const NANOS_PER_SEC: i128 = 1_000_000_000;

/// One of our entries, as the publish script wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub epoch: String,
    pub offset: u64,
    /// Nanoseconds since the Unix epoch, UTC.
    pub send_time: i128,
    pub author: String,
    pub text: String,
    pub traceparent: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("field `{0}` is missing")]
    Missing(&'static str),
    #[error("field `{0}` is not UTF-8 text")]
    NotText(&'static str),
    #[error("field `{field}` is {got:?}; expected {expected}")]
    Bad {
        field: &'static str,
        got: String,
        expected: &'static str,
    },
}

/// The fields of `entry`, checked.
pub fn decode(entry: &StreamId) -> Result<Entry, DecodeError> {
    let text = |field: &'static str| -> Result<String, DecodeError> {
        match entry.map.get(field) {
            None => Err(DecodeError::Missing(field)),
            Some(Value::BulkString(bytes)) => {
                String::from_utf8(bytes.clone()).map_err(|_| DecodeError::NotText(field))
            }
            Some(Value::SimpleString(s)) => Ok(s.clone()),
            Some(_) => Err(DecodeError::NotText(field)),
        }
    };
    let offset = text("offset")?;
    let bad_offset = || DecodeError::Bad {
        field: "offset",
        got: offset.clone(),
        expected: "a decimal offset from 1",
    };
    let parsed_offset = offset
        .parse::<u64>()
        .ok()
        .filter(|o| *o > 0 && offset.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(bad_offset)?;
    let send_time = text("sendTime")?;
    let traceparent = match entry.map.get("traceparent") {
        None => None,
        Some(_) => Some(text("traceparent")?),
    };
    Ok(Entry {
        epoch: text("epoch")?,
        offset: parsed_offset,
        send_time: parse_send_time(&send_time).ok_or_else(|| DecodeError::Bad {
            field: "sendTime",
            got: send_time.clone(),
            expected: "<seconds>.<9-digit nanoseconds>",
        })?,
        author: text("author")?,
        text: text("text")?,
        traceparent,
    })
}

/// `<seconds>.<nanoseconds>` (exactly 9 digits) into Unix nanoseconds.
/// `None` for anything else (signs, fewer digits, more than 12 digits of seconds).
pub fn parse_send_time(s: &str) -> Option<i128> {
    let (sec, nsec) = s.split_once('.')?;
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if !digits(sec) || nsec.len() != 9 || !digits(nsec) || sec.len() > 12 {
        return None;
    }
    Some(sec.parse::<i128>().ok()? * NANOS_PER_SEC + nsec.parse::<i128>().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn entry(fields: &[(&str, &[u8])]) -> StreamId {
        StreamId {
            id: "1-0".into(),
            map: fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Value::BulkString(v.to_vec())))
                .collect::<HashMap<_, _>>(),
            milliseconds_elapsed_from_delivery: None,
            delivered_count: None,
        }
    }

    const GOOD: [(&str, &[u8]); 5] = [
        ("epoch", b"e1"),
        ("offset", b"7"),
        ("sendTime", b"1700000000.000000001"),
        ("author", b"ann"),
        ("text", b"hi"),
    ];

    #[test]
    fn decodes_what_the_script_writes() {
        let e = decode(&entry(&GOOD)).unwrap();
        assert_eq!(e.offset, 7);
        assert_eq!(e.send_time, 1_700_000_000 * NANOS_PER_SEC + 1);
        assert_eq!((e.author.as_str(), e.text.as_str()), ("ann", "hi"));
        assert_eq!(e.traceparent, None);
    }

    #[test]
    fn names_the_bad_field() {
        let with = |field: &str, value: &'static [u8]| {
            let mut fields: Vec<(&str, &[u8])> =
                GOOD.iter().filter(|(k, _)| *k != field).copied().collect();
            fields.push((field, value));
            decode(&entry(&fields)).unwrap_err().to_string()
        };
        assert!(with("offset", b"0").contains("`offset`"));
        assert!(with("offset", b"+3").contains("`offset`"));
        assert!(with("sendTime", b"17.5").contains("`sendTime`"));
        assert!(with("sendTime", b"x.000000001").contains("`sendTime`"));
        assert!(with("author", b"\xff").contains("`author`"));
        let missing = decode(&entry(&GOOD[1..])).unwrap_err();
        assert_eq!(missing, DecodeError::Missing("epoch"));
        assert_eq!(
            decode(&entry(&[("garbage", b"1")])).unwrap_err(),
            DecodeError::Missing("offset")
        );
    }
}
