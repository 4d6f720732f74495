//! The page's routes and the headers every response carries, and `/events`
//! answering at once (never hanging) when it cannot open a subscription.

use super::*;

const CSP_START: &str = "default-src 'self'";

fn assert_security_headers(r: &Reply, what: &str) {
    let csp = r.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.starts_with(CSP_START), "{what}: {csp}");
    assert!(!csp.contains("unsafe-inline"), "{what}: {csp}");
    assert_eq!(
        r.headers[header::X_CONTENT_TYPE_OPTIONS],
        "nosniff",
        "{what}"
    );
}

#[tokio::test]
async fn the_page_its_script_and_style_are_separate_routes_with_their_types() {
    let c = client(Answer::Accept, |_| {});
    for (path, content_type, needle) in [
        (
            "/",
            "text/html; charset=utf-8",
            "<script src=\"/app.js\" defer></script>",
        ),
        ("/app.js", "text/javascript; charset=utf-8", "textContent"),
        (
            "/app.css",
            "text/css; charset=utf-8",
            "prefers-color-scheme: dark",
        ),
    ] {
        let r = c.call(Method::GET, path, &[], Body::empty()).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert_eq!(r.headers[header::CONTENT_TYPE], content_type, "{path}");
        let body = String::from_utf8(r.body.to_vec()).unwrap();
        assert!(body.contains(needle), "{path}");
        assert_security_headers(&r, path);
    }
    let js = c.call(Method::GET, "/app.js", &[], Body::empty()).await;
    let js = String::from_utf8(js.body.to_vec()).unwrap();
    assert!(
        !js.contains("innerHTML") && !js.contains("insertAdjacentHTML"),
        "text only"
    );
    let icon = c
        .call(Method::GET, "/favicon.ico", &[], Body::empty())
        .await;
    assert_eq!(icon.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn every_response_carries_the_csp_and_nosniff() {
    let c = client(Answer::Accept, |_| {});
    let sent = c.send(GOOD).await;
    assert_security_headers(&sent, "200 JSON");
    let missing = c.call(Method::GET, "/nope", &[], Body::empty()).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_security_headers(&missing, "404");
    let panicked = client(Answer::Panic, |_| {}).send(GOOD).await;
    assert_eq!(panicked.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_security_headers(&panicked, "a handler panic");
}

#[tokio::test]
async fn events_answer_503_with_retry_after_when_no_subscription_opens() {
    let c = client(Answer::Accept, |_| {});
    let r = c.call(Method::GET, "/events", &[], Body::empty()).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.retry_after(), Some("1"));
    assert!(r.error().contains("unreachable"), "{}", r.error());
    assert_security_headers(&r, "/events 503");
    let bad = [("last-event-id", "no position")];
    let r = c.call(Method::GET, "/events", &bad, Body::empty()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.error().starts_with("Last-Event-ID \"no position\""),
        "{}",
        r.error()
    );
}

/// A cap of 0 turns `/events` off: 404 naming the variable, no
/// `Retry-After` (a retry cannot succeed). Past a cap above 0 (503 with
/// `Retry-After`): e2e `events::bounds`.
#[tokio::test]
async fn events_turned_off_are_404_and_after_stop_503() {
    let c = client(Answer::Accept, |s| {
        s.events = crate::events::EventStreams::new(unreachable_backend(), 0)
    });
    let r = c.call(Method::GET, "/events", &[], Body::empty()).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.retry_after(), None);
    assert!(
        r.error().contains("MESSENGER_MAX_EVENT_STREAMS=0") && r.error().contains("turned off"),
        "{}",
        r.error()
    );
    let stopped = client(Answer::Accept, |s| s.events.stop());
    let r = stopped
        .call(Method::GET, "/events", &[], Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.error().contains("shutting down"), "{}", r.error());
}

#[tokio::test]
async fn openapi_lists_the_page_and_events() {
    let c = client(Answer::Accept, |_| {});
    let doc = c
        .call(Method::GET, "/openapi.json", &[], Body::empty())
        .await
        .json();
    for path in ["/", "/app.js", "/app.css", "/favicon.ico", "/events"] {
        assert!(doc["paths"][path]["get"].is_object(), "{path}");
    }
    let ok = &doc["paths"]["/events"]["get"]["responses"]["200"]["content"];
    assert!(ok["text/event-stream"].is_object(), "{ok}");
}

#[test]
fn positions_parse_as_the_server_parses_messenger_since() {
    use crate::events::{BadPosition, parse_position};
    assert_eq!(parse_position("a:b:7"), Ok(("a:b".into(), 7)));
    assert_eq!(parse_position("e:0"), Ok(("e".into(), 0)));
    assert_eq!(
        parse_position("e:18446744073709551615"),
        Ok(("e".into(), u64::MAX))
    );
    // A new user's report: this was called "not <epoch>:<offset>".
    assert_eq!(
        parse_position("00:99999999999999999999999"),
        Err(BadPosition::OffsetTooLarge)
    );
    let epoch = "e".repeat(crate::events::MAX_EPOCH_BYTES);
    assert_eq!(
        parse_position(&format!("{epoch}:1")),
        Ok((epoch.clone(), 1))
    );
    assert_eq!(
        parse_position(&format!("{epoch}e:1")),
        Err(BadPosition::EpochTooLong)
    );
    for bad in ["", ":", "e:", ":1", "e:-1", "e:+1", "e:1x", "e 1:2", "é:1"] {
        assert_eq!(parse_position(bad), Err(BadPosition::Form), "{bad}");
    }
}
