//! History and resume over real gRPC: `messenger-since` at the edges of what
//! history holds, the response headers, offsets only for callers who ask, and
//! INVALID_ARGUMENT for a malformed position.

use messenger_proto::pb::ServerMessageResponse;
use messenger_tests::*;
use std::net::SocketAddr;
use tonic::metadata::MetadataMap;
use tonic::{Code, Status, Streaming};

/// Opens `ReadMessages` with `metadata` (a key listed twice is sent twice);
/// the response headers and the stream.
async fn read_with(
    addr: SocketAddr,
    metadata: &[(&'static str, &str)],
) -> Result<(MetadataMap, Streaming<ServerMessageResponse>), Status> {
    let mut client = connect(addr).await;
    let mut request = tonic::Request::new(());
    for (key, value) in metadata {
        request
            .metadata_mut()
            .append(*key, value.parse().expect("ASCII metadata"));
    }
    let response = within("ReadMessages headers", client.read_messages(request)).await?;
    let headers = response.metadata().clone();
    Ok((headers, response.into_inner()))
}

/// `ReadMessages` with `metadata` is INVALID_ARGUMENT with exactly `want`.
async fn refused(addr: SocketAddr, metadata: &[(&'static str, &str)], want: &str) {
    let err = read_with(addr, metadata).await.map(|_| ()).expect_err(want);
    assert_eq!(err.code(), Code::InvalidArgument, "{metadata:?}: {err:?}");
    assert_eq!(err.message(), want);
}

async fn resume(
    addr: SocketAddr,
    since: &str,
) -> (Option<String>, Streaming<ServerMessageResponse>) {
    let (headers, stream) = read_with(addr, &[("messenger-since", since)])
        .await
        .expect("resume accepted");
    let recovered = headers
        .get("messenger-recovered")
        .map(|v| v.to_str().unwrap().to_owned());
    (recovered, stream)
}

/// Reads `n` messages as (offset, text).
async fn offsets(stream: &mut Streaming<ServerMessageResponse>, n: usize) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    within("stream messages", async {
        while out.len() < n {
            let m = stream
                .message()
                .await
                .expect("stream open")
                .expect("message");
            out.push((m.offset, m.text));
        }
    })
    .await;
    out
}

fn pairs(range: std::ops::RangeInclusive<u64>) -> Vec<(u64, String)> {
    range.map(|i| (i, i.to_string())).collect()
}

#[tokio::test]
async fn resume_at_the_edges_of_history() {
    let server = TestServer::start_with(|c| c.history_size = 5).await;
    let (headers, _plain) = read_with(server.addr, &[]).await.unwrap();
    assert!(
        headers.get("messenger-head-offset").is_none(),
        "only when asked"
    );
    let epoch = headers
        .get("messenger-epoch")
        .expect("every ReadMessages carries the epoch")
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        headers.get("messenger-recovered").is_none(),
        "only when asked"
    );
    let mut sender = server.grpc().await;
    for i in 1..=8 {
        grpc_send(&mut sender, "a", &i.to_string()).await.unwrap();
    }
    // History holds 4..=8.
    let (headers, _) = read_with(server.addr, &[("messenger-since", &format!("{epoch}:5"))])
        .await
        .unwrap();
    assert_eq!(
        headers.get("messenger-head-offset").unwrap(),
        "8",
        "the replay ends there"
    );
    // 0 is the position before the first message (a head offset of 0), not
    // "whatever is held": 1..=3 were evicted, so it is a gap.
    let (recovered, mut oldest) = resume(server.addr, &format!("{epoch}:0")).await;
    assert_eq!(
        recovered.as_deref(),
        Some("false"),
        "offsets 1..=3 were evicted"
    );

    let (recovered, mut middle) = resume(server.addr, &format!("{epoch}:5")).await;
    assert_eq!(recovered.as_deref(), Some("true"));
    let (recovered, mut newest) = resume(server.addr, &format!("{epoch}:8")).await;
    assert_eq!(recovered.as_deref(), Some("true"));
    let (recovered, mut evicted) = resume(server.addr, &format!("{epoch}:2")).await;
    assert_eq!(recovered.as_deref(), Some("false"), "offset 3 was evicted");
    let (recovered, mut foreign) = resume(server.addr, "0123456789abcdef:8").await;
    assert_eq!(recovered.as_deref(), Some("false"), "another epoch");

    grpc_send(&mut sender, "a", "9").await.unwrap();
    assert_eq!(offsets(&mut middle, 4).await, pairs(6..=9));
    for stream in [&mut newest, &mut evicted, &mut foreign, &mut oldest] {
        assert_eq!(offsets(stream, 1).await, pairs(9..=9), "then live");
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn offsets_only_for_callers_who_ask() {
    let server = TestServer::start().await;
    let mut plain = server.subscribe().await;
    let (headers, mut asked) = read_with(server.addr, &[("messenger-offsets", "1")])
        .await
        .unwrap();
    assert_eq!(headers.get("messenger-head-offset").unwrap(), "0");
    let mut sender = server.grpc().await;
    grpc_send(&mut sender, "a", "x").await.unwrap();
    grpc_send(&mut sender, "a", "y").await.unwrap();
    let plain: Vec<u64> = offsets(&mut plain, 2).await.iter().map(|p| p.0).collect();
    assert_eq!(plain, [0, 0], "field 5 stays unset for a plain caller");
    assert_eq!(
        offsets(&mut asked, 2).await,
        [(1, "x".into()), (2, "y".into())]
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn malformed_since_is_invalid_argument_naming_header_and_form() {
    let server = TestServer::start().await;
    for bad in [
        "",
        "no-colon",
        "abc:",
        ":7",
        "abc:-1",
        "abc:1x",
        "abc:99999999999999999999",
    ] {
        let err = read_with(server.addr, &[("messenger-since", bad)])
            .await
            .map(|_| ())
            .expect_err(bad);
        assert_eq!(err.code(), Code::InvalidArgument, "{bad}: {err:?}");
        assert!(
            err.message().contains("messenger-since") && err.message().contains("<epoch>:<offset>"),
            "{bad}: {}",
            err.message()
        );
    }
    // The server keeps serving plain callers.
    let _ok = server.subscribe().await;
    server.stop().await.unwrap();
}

/// Each opt-in header sent twice (gRPC metadata may repeat a key) is
/// INVALID_ARGUMENT naming it, not whichever copy came first: `messenger-since`
/// twice once resumed from the first and silently ignored the second.
#[tokio::test]
async fn a_repeated_opt_in_header_is_invalid_argument_naming_it() {
    let server = TestServer::start().await;
    let epoch = {
        let (headers, _) = read_with(server.addr, &[]).await.expect("plain");
        headers
            .get("messenger-epoch")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned()
    };
    let (since_1, since_2) = (format!("{epoch}:0"), format!("{epoch}:1"));
    // Comma-joined is the same as repeated (RFC 9110 §5.3): `messenger-since`
    // joined once read as an epoch `E:0,E` and resumed with a silent gap.
    let joined = format!("{since_1},{since_2}");
    let cases: [(&str, Vec<&str>); 5] = [
        ("messenger-since", vec![&since_1, &since_2]),
        ("messenger-offsets", vec!["1", "1"]),
        ("messenger-trace-context", vec!["1", "0"]),
        ("messenger-since", vec![&joined]),
        ("messenger-offsets", vec!["1,1"]),
    ];
    for (header, values) in cases {
        let metadata: Vec<_> = values.iter().map(|v| (header, *v)).collect();
        let want = format!("metadata `{header}` was sent 2 times; send it once");
        refused(server.addr, &metadata, &want).await;
    }
    // Once each is still accepted.
    read_with(
        server.addr,
        &[("messenger-since", &since_1), ("messenger-offsets", "1")],
    )
    .await
    .expect("one of each");
    server.stop().await.unwrap();
}

/// A flag read as off unless it was exactly `1` left a caller who sent
/// `true` without offsets and without a word; now only `1` and `0` pass.
#[tokio::test]
async fn an_opt_in_flag_other_than_1_or_0_is_invalid_argument_naming_it() {
    let server = TestServer::start().await;
    for (header, value) in [
        ("messenger-offsets", "true"),
        ("messenger-trace-context", "yes"),
    ] {
        let want = format!("metadata `{header}` must be 1 (on) or 0 (off), got \"{value}\"");
        refused(server.addr, &[(header, value)], &want).await;
    }
    let (headers, _) = read_with(server.addr, &[("messenger-offsets", "0")])
        .await
        .expect("0 is off");
    assert!(
        headers.get("messenger-head-offset").is_none(),
        "{headers:?}"
    );
    let (headers, _) = read_with(server.addr, &[("messenger-offsets", "1")])
        .await
        .expect("1 is on");
    assert!(
        headers.get("messenger-head-offset").is_some(),
        "{headers:?}"
    );
    // Whitespace around a value is not part of it (RFC 9110 §5.5); h2 passes
    // it on as sent.
    let (headers, _) = read_with(server.addr, &[("messenger-offsets", " 1\t")])
        .await
        .expect("a padded 1 is on");
    assert!(
        headers.get("messenger-head-offset").is_some(),
        "{headers:?}"
    );
    let epoch = headers.get("messenger-epoch").unwrap().to_str().unwrap();
    let since = format!(" {epoch}:0 ");
    let (headers, _) = read_with(server.addr, &[("messenger-since", since.as_str())])
        .await
        .expect("a padded position resumes");
    assert!(headers.get("messenger-recovered").is_some(), "{headers:?}");
    server.stop().await.unwrap();
}
