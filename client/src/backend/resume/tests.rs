//! The resume decisions, message by message, without a server.

use super::*;

fn headers(pairs: &[(&'static str, &'static str)]) -> MetadataMap {
    let mut m = MetadataMap::new();
    for (k, v) in pairs {
        m.insert(*k, AsciiMetadataValue::from_static(v));
    }
    m
}

fn since(r: &mut Resumer) -> Option<String> {
    let mut m = MetadataMap::new();
    r.request_metadata(&mut m);
    assert_eq!(m.get(OFFSETS_METADATA).unwrap(), "1");
    m.get(SINCE_METADATA)
        .map(|v| v.to_str().unwrap().to_owned())
}

const KEEP: Received = Received::Keep {
    replayed: false,
    now_live: false,
};

#[test]
fn first_plain_then_resumes_from_the_head_or_the_last_buffered() {
    let mut r = Resumer::new(Metrics::new());
    assert_eq!(since(&mut r), None);
    let first = [("messenger-epoch", "e"), ("messenger-head-offset", "7")];
    assert_eq!(r.on_headers(&headers(&first)), Headers::Live);
    assert_eq!(
        since(&mut r).as_deref(),
        Some("e:7"),
        "nothing received: from the head"
    );
    let recovered = [
        ("messenger-epoch", "e"),
        ("messenger-head-offset", "10"),
        ("messenger-recovered", "true"),
    ];
    assert_eq!(r.on_headers(&headers(&recovered)), Headers::Replay);
    let replayed = |now_live| Received::Keep {
        replayed: true,
        now_live,
    };
    assert_eq!(r.on_message(8), replayed(false));
    assert_eq!(r.on_message(8), Received::Duplicate);
    assert_eq!(r.on_message(9), replayed(false));
    assert_eq!(r.on_message(10), replayed(true));
    assert_eq!(r.on_message(11), KEEP);
    assert_eq!(since(&mut r).as_deref(), Some("e:11"));
}

#[test]
fn a_gap_in_the_same_epoch_moves_the_position_to_the_new_head() {
    let mut r = Resumer::new(Metrics::new());
    r.on_headers(&headers(&[
        ("messenger-epoch", "e"),
        ("messenger-head-offset", "0"),
    ]));
    assert_eq!(r.on_message(1), KEEP);
    since(&mut r);
    let gap = [
        ("messenger-epoch", "e"),
        ("messenger-head-offset", "3"),
        ("messenger-recovered", "false"),
    ];
    assert_eq!(r.on_headers(&headers(&gap)), Headers::Live);
    assert_eq!(r.take_gap(), Some(Gap { missed: Some(2) }), "2 and 3");
    assert_eq!(r.take_gap(), None, "told once");
    assert_eq!(r.on_message(2), Received::Duplicate, "below the new head");
    assert_eq!(r.on_message(4), KEEP);
    assert_eq!(since(&mut r).as_deref(), Some("e:4"));
}

/// A position ahead of the head in the same epoch (a caller's `?since=`) is
/// started live at the head, a gap of 0: not a new epoch, nothing replayed.
#[test]
fn a_position_ahead_of_the_head_starts_live_at_the_head() {
    let mut r = Resumer::since(
        "e".into(),
        u64::MAX,
        ResumeCounters {
            recovered_resumes: metrics::Counter::noop(),
            gaps: metrics::Counter::noop(),
            recovered_messages: metrics::Counter::noop(),
        },
    );
    assert_eq!(since(&mut r), Some(format!("e:{}", u64::MAX)));
    let ahead = [
        ("messenger-epoch", "e"),
        ("messenger-head-offset", "18"),
        ("messenger-recovered", "false"),
    ];
    assert_eq!(r.on_headers(&headers(&ahead)), Headers::Live);
    assert_eq!(r.take_gap(), Some(Gap { missed: Some(0) }));
    assert_eq!(r.position(), Some(("e", 18)));
    assert_eq!(r.on_message(19), KEEP, "live from the head");
}

/// A new epoch's messages all came after the loss: none is skipped. The
/// stream is re-opened from `<new epoch>:0`, and that replay is resumed
/// like any other.
#[test]
fn a_new_epoch_is_resumed_from_its_start() {
    let mut r = Resumer::new(Metrics::new());
    r.on_headers(&headers(&[
        ("messenger-epoch", "e"),
        ("messenger-head-offset", "0"),
    ]));
    assert_eq!(r.on_message(1), KEEP);
    assert_eq!(since(&mut r).as_deref(), Some("e:1"));
    let lost = [
        ("messenger-epoch", "f"),
        ("messenger-head-offset", "2"),
        ("messenger-recovered", "false"),
    ];
    assert_eq!(r.on_headers(&headers(&lost)), Headers::Again);
    assert_eq!(r.take_gap(), Some(Gap { missed: None }), "history lost");
    assert_eq!(r.position(), Some(("f", 0)));
    assert_eq!(since(&mut r).as_deref(), Some("f:0"));
    let replay = [
        ("messenger-epoch", "f"),
        ("messenger-head-offset", "2"),
        ("messenger-recovered", "true"),
    ];
    assert_eq!(r.on_headers(&headers(&replay)), Headers::Replay);
    let replayed = |now_live| Received::Keep {
        replayed: true,
        now_live,
    };
    assert_eq!(r.on_message(1), replayed(false));
    assert_eq!(r.on_message(2), replayed(true));
    assert_eq!(since(&mut r).as_deref(), Some("f:2"));
}

fn ended(pairs: &[(&'static str, &'static str)]) -> tonic::Status {
    let mut status = tonic::Status::unavailable("server shutting down");
    *status.metadata_mut() = headers(pairs);
    status
}

/// Issue 26, item 7: a stream drained to this client's position by a
/// graceful shutdown is no gap when the next server has a new epoch; a
/// stream that just broke, or was drained past it, still is.
#[test]
fn a_new_epoch_after_a_drain_to_the_position_is_no_gap() {
    let new_epoch = [
        ("messenger-epoch", "f"),
        ("messenger-head-offset", "0"),
        ("messenger-recovered", "false"),
    ];
    for (trailer, gap) in [(Some("2"), false), (Some("3"), true), (None, true)] {
        let mut r = Resumer::new(Metrics::new());
        r.on_headers(&headers(&[
            ("messenger-epoch", "e"),
            ("messenger-head-offset", "0"),
        ]));
        assert_eq!((r.on_message(1), r.on_message(2)), (KEEP, KEEP));
        let end = match trailer {
            Some(last) => ended(&[("messenger-last-offset", last)]),
            None => ended(&[]),
        };
        assert_eq!(r.on_end(&end), !gap, "{trailer:?}");
        assert_eq!(since(&mut r).as_deref(), Some("e:2"));
        assert_eq!(r.on_headers(&headers(&new_epoch)), Headers::Again);
        assert_eq!(since(&mut r).as_deref(), Some("f:0"), "{trailer:?}");
        assert!(r.drained.is_none(), "a drain is used once");
    }
}

#[test]
fn a_server_without_offsets_gets_plain_resubscriptions() {
    let mut r = Resumer::new(Metrics::new());
    assert_eq!(r.on_headers(&MetadataMap::new()), Headers::Live);
    assert_eq!(r.on_message(0), KEEP);
    assert_eq!(since(&mut r), None);
}
