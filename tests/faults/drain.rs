//! SIGTERM under a steady 1,000 msg/s load: every acknowledged message
//! reaches every subscriber before its stream ends with UNAVAILABLE, and the
//! process exits 0 inside its grace period. The same for the client's HTTP
//! drain: every 200 it gave is delivered.

use crate::HEAVY;
use messenger_tests::procs::{spawn_client, spawn_server};
use messenger_tests::*;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tonic::Code;

const SENDERS: u32 = 4;
/// Per sender: 4 x 250/s = 1,000 msg/s.
const PERIOD: Duration = Duration::from_millis(4);
const GRACE_SECS: u64 = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn server_sigterm_under_load_delivers_every_ack_then_unavailable() {
    let _heavy = HEAVY.lock().await;
    let grace = GRACE_SECS.to_string();
    let server = spawn_server(&[("MESSENGER_SHUTDOWN_GRACE_SECS", grace.as_str())]).await;
    let client = spawn_client(server.grpc_addr, &[]).await;
    let (seen_tx, mut seen) = watch::channel(0usize);
    let mut readers = Vec::new();
    for i in 0..2 {
        let mut stream = server.subscribe().await;
        let seen_tx = (i == 0).then(|| seen_tx.clone());
        readers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            let status = loop {
                match stream.message().await {
                    Ok(Some(m)) => {
                        got.push(Msg::from(m).send_time);
                        if let Some(tx) = &seen_tx {
                            tx.send_replace(got.len());
                        }
                    }
                    Ok(None) => panic!("stream ended without a status"),
                    Err(status) => break status,
                }
            };
            (got, status)
        }));
    }
    let mut senders = Vec::new();
    for s in 0..SENDERS {
        let mut grpc = server.grpc().await;
        senders.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut tick = tokio::time::interval(PERIOD);
            loop {
                tick.tick().await;
                match grpc_send(&mut grpc, &format!("s{s}"), "load").await {
                    Ok(t) => acked.push(t),
                    Err(_) => return acked,
                }
            }
        }));
    }
    within("500 messages under load", seen.wait_for(|n| *n >= 500))
        .await
        .unwrap();
    let started = Instant::now();
    let code = server.proc.sigterm_and_wait().await;
    let took = started.elapsed();
    assert_eq!(code, Some(0), "{}", server.proc.tail());
    assert!(took < Duration::from_secs(GRACE_SECS), "{took:?}");

    let mut acked = BTreeSet::new();
    for s in senders {
        acked.extend(within("sender stops", s).await.unwrap());
    }
    for (i, reader) in readers.into_iter().enumerate() {
        let (got, status) = within("stream ends", reader).await.unwrap();
        assert_eq!(status.code(), Code::Unavailable, "stream {i}: {status:?}");
        assert!(got.windows(2).all(|w| w[0] < w[1]), "stream {i}: in order");
        let got: BTreeSet<String> = got.into_iter().collect();
        let missing = acked.difference(&got).count();
        assert_eq!(
            missing,
            0,
            "stream {i} missed {missing} of {} acked",
            acked.len()
        );
    }
    let buffered: BTreeSet<String> = client
        .flush()
        .await
        .into_iter()
        .map(|m| m.send_time)
        .collect();
    assert!(
        acked.is_subset(&buffered),
        "the client holds every acked message"
    );
    println!(
        "server SIGTERM at 1,000 msg/s: {} acked, all delivered to 2 streams and 1 client; \
         streams ended UNAVAILABLE; exit 0 in {took:?} (grace {GRACE_SECS} s)",
        acked.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_sigterm_under_http_load_delivers_every_200() {
    let _heavy = HEAVY.lock().await;
    let server = spawn_server(&[]).await;
    let grace = GRACE_SECS.to_string();
    let env = [("MESSENGER_SHUTDOWN_GRACE_SECS", grace.as_str())];
    let draining = spawn_client(server.grpc_addr, &env).await;
    let witness = spawn_client(server.grpc_addr, &[]).await;
    let (count_tx, mut count) = watch::channel(0usize);
    let mut senders = Vec::new();
    for s in 0..SENDERS {
        let (http, url) = (draining.http.clone(), draining.url("/sendMessage"));
        let count_tx = count_tx.clone();
        senders.push(tokio::spawn(async move {
            let (mut ok, mut refused) = (Vec::new(), 0usize);
            let mut tick = tokio::time::interval(PERIOD);
            let body = serde_json::json!({"author": format!("h{s}"), "text": "load"}).to_string();
            loop {
                tick.tick().await;
                match http.post(&url).body(body.clone()).send().await {
                    Ok(r) if r.status() == 200 => {
                        let json: serde_json::Value = r.json().await.unwrap();
                        ok.push(json["sendTime"].as_str().unwrap().to_owned());
                        count_tx.send_modify(|n| *n += 1);
                    }
                    Ok(r) => {
                        let status = r.status().as_u16();
                        let json: serde_json::Value = r.json().await.expect("a JSON error");
                        assert_eq!(status, 503, "only 503 while draining: {json}");
                        refused += 1;
                    }
                    // The listener has closed: the drain is over.
                    Err(_) => return (ok, refused),
                }
            }
        }));
    }
    within("500 HTTP sends", count.wait_for(|n| *n >= 500))
        .await
        .unwrap();
    let started = Instant::now();
    let code = draining.proc.sigterm_and_wait().await;
    let took = started.elapsed();
    assert_eq!(code, Some(0), "{}", draining.proc.tail());
    assert!(took < Duration::from_secs(GRACE_SECS), "{took:?}");
    let (mut ok, mut refused) = (BTreeSet::new(), 0);
    for s in senders {
        let (o, r) = within("HTTP sender stops", s).await.unwrap();
        ok.extend(o);
        refused += r;
    }
    let seen: BTreeSet<String> = witness
        .collect(ok.len())
        .await
        .into_iter()
        .map(|m| m.send_time)
        .collect();
    assert_eq!(seen, ok, "every 200 was delivered, and only those");
    println!(
        "client SIGTERM at 1,000 req/s: {} answered 200, all delivered; {refused} refused 503; \
         exit 0 in {took:?} (grace {GRACE_SECS} s)",
        ok.len()
    );
}
