//! Every messenger call is counted once in `grpc_server_started_total` and
//! `grpc_server_handled_total`, also one that ends before its handler runs:
//! a malformed or missing request message, too many of them, a head the
//! port refuses, a passed deadline, a caller gone while its message was
//! awaited, a stream this server's h2 reset for the caller's protocol error.
//! They appeared in no metric before, so an operator saw OK traffic only
//! while callers got errors.

use bytes::Bytes;
use messenger_tests::procs::spawn_server;
use messenger_tests::prom::wait_metrics;
use messenger_tests::raw::{Raw, SEND_PATH, encoded_request, frame, grpc_status};
use messenger_tests::within;
use tonic::Code;

const GRPC: &str = "application/grpc";
const READ_PATH: &str = "/mes_grpc.MessengerServer/ReadMessages";

/// What, path, extra headers, body, the code it ends with.
type Call = (
    &'static str,
    &'static str,
    Vec<(&'static str, &'static str)>,
    Vec<u8>,
    Code,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_ended_before_their_handler_are_counted_once_with_their_code() {
    let server = spawn_server(&[]).await;
    let mut raw = Raw::connect(server.grpc_addr).await;
    let good = encoded_request(b"counted once");
    let good = frame(false, good.len() as u32, &good);
    // Field 1 as a varint where a string is due: unparsable protobuf.
    let garbage = frame(false, 2, &[0x08, 0x96]);
    let empty = frame(false, 0, &[]);
    let calls: [Call; 6] = [
        ("unparsable", SEND_PATH, vec![], garbage, Code::Internal),
        (
            "two requests",
            SEND_PATH,
            vec![],
            [good.clone(), good.clone()].concat(),
            Code::Unimplemented,
        ),
        (
            "grpc-timeout 0n",
            SEND_PATH,
            vec![("grpc-timeout", "0n")],
            good.clone(),
            Code::DeadlineExceeded,
        ),
        (
            "no request",
            READ_PATH,
            vec![],
            Vec::new(),
            Code::Unimplemented,
        ),
        (
            "refused by the handler",
            READ_PATH,
            vec![("messenger-since", "garbage")],
            empty,
            Code::InvalidArgument,
        ),
        ("handled: OK", SEND_PATH, vec![], good.clone(), Code::Ok),
    ];
    for (what, path, headers, body, want) in calls {
        let (code, message) = raw.call_with(path, GRPC, &headers, body).await;
        assert_eq!(code, want as i32, "{what}: {message}");
    }
    // Refused by its head: HTTP 415, INVALID_ARGUMENT.
    let json = [("content-type", "application/json")];
    let (http, code, _) = raw.head_only("POST", SEND_PATH, &json).await;
    assert_eq!((http, code), (415, Code::InvalidArgument as i32));
    // Its message never ends: the deadline passes while it is awaited.
    let (response, _held_open) = raw
        .open_with(SEND_PATH, GRPC, &[("grpc-timeout", "200m")])
        .await;
    let (code, _) = grpc_status(response).await;
    assert_eq!(code, Code::DeadlineExceeded as i32);
    // The caller resets the call before its message has ended, with any
    // code: mid-message, or after a whole one but before END_STREAM (which
    // tonic took for the end of the body, and published it).
    let resets = [
        (&good[..3], h2::Reason::CANCEL),
        (&good[..3], h2::Reason::INTERNAL_ERROR),
        (&good[..], h2::Reason::CANCEL),
    ];
    for (sent, reason) in resets {
        let (response, mut send) = raw.open(SEND_PATH, GRPC).await;
        send.send_data(Bytes::from(sent.to_vec()), false).unwrap();
        send.send_reset(reason);
        drop(response);
    }
    // This server's h2 resets the stream itself: a `content-length` the DATA
    // frames fall short of, or overrun. The caller sees RST_STREAM
    // (PROTOCOL_ERROR), which gRPC maps to INTERNAL: counted as such, not as
    // the caller's reset, and nothing is published.
    let longer = (good.len() + 1).to_string();
    let shorter = (good.len() - 1).to_string();
    let mismatched = [
        (SEND_PATH, &longer),
        (SEND_PATH, &shorter),
        (READ_PATH, &longer),
    ];
    for (path, length) in mismatched {
        let headers = [("content-length", length.as_str())];
        let (response, mut send) = raw.open_with(path, GRPC, &headers).await;
        send.send_data(Bytes::from(good.clone()), true).unwrap();
        let reset = within("the server's reset", response)
            .await
            .expect_err("the server resets a stream whose length does not match");
        assert_eq!(
            reset.reason(),
            Some(h2::Reason::PROTOCOL_ERROR),
            "{path} with content-length {length}: {reset}"
        );
    }

    let send = |code| {
        [
            ("grpc_method", "SendMessage"),
            ("grpc_code", code),
            ("grpc_service", "mes_grpc.MessengerServer"),
            ("grpc_type", "unary"),
        ]
    };
    let m = wait_metrics(&server.metrics_url(), "every call counted", |m| {
        let handled = |method| m.sum("grpc_server_handled_total", &[("grpc_method", method)]);
        handled("SendMessage") >= 11.0 && handled("ReadMessages") >= 3.0
    })
    .await;
    let handled = |labels: &[(&str, &str)]| m.sum("grpc_server_handled_total", labels);
    let counts = [
        ("Internal", 3.0),
        ("Unimplemented", 1.0),
        ("DeadlineExceeded", 2.0),
        ("InvalidArgument", 1.0),
        ("Canceled", 3.0),
        ("OK", 1.0),
    ];
    for (code, want) in counts {
        assert_eq!(handled(&send(code)), want, "SendMessage {code}");
    }
    let all_sends = handled(&[("grpc_method", "SendMessage")]);
    assert_eq!(all_sends, 11.0, "nothing counted twice");
    for code in ["Unimplemented", "InvalidArgument", "Internal"] {
        let read = [("grpc_method", "ReadMessages"), ("grpc_code", code)];
        assert_eq!(handled(&read), 1.0, "ReadMessages {code}");
    }
    let started = |method| m.sum("grpc_server_started_total", &[("grpc_method", method)]);
    assert_eq!(
        (started("SendMessage"), started("ReadMessages")),
        (11.0, 3.0)
    );
    let timed = |method| {
        m.sum(
            "grpc_server_handling_seconds_count",
            &[("grpc_method", method)],
        )
    };
    assert_eq!((timed("SendMessage"), timed("ReadMessages")), (11.0, 3.0));
    let accepted = m.value("messenger_messages_accepted_total", &[]);
    assert_eq!(
        accepted,
        Some(1.0),
        "a reset call's message is not published, nor one of a mismatched length"
    );
}
