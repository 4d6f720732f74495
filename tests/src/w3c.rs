//! W3C Trace Context conformance, as the end-to-end tests drive it: the
//! cases of the W3C test suite (`w3c/trace-context`, `test/test.py`)
//! restated in our own words with what we expect of each, a raw HTTP/1.1
//! request that sends their header lines byte for byte (names in any case,
//! repeated lines, tabs), and a `ReadMessages` subscriber that asks for each
//! message's `traceparent`.

use crate::{WAIT, within};
use messenger_proto::TRACE_CONTEXT_METADATA;
use messenger_proto::pb::ServerMessageResponse;
use std::net::SocketAddr;
use tonic::Streaming;
use tonic::metadata::MetadataValue;

/// The suite's trace-id and parent-id.
pub const TRACE: &str = "12345678901234567890123456789012";
pub const PARENT: &str = "1234567890123456";

/// Trace ids a restarted trace must not have: the suite's, the issue's
/// zero-padded repro, and what a lenient parser makes of the malformed forms.
pub const NOT_CONTINUED: [&str; 4] = [
    TRACE,
    "00000000000000000000000000000001",
    "23456789012345678901234567890123",
    "12345678901234567890123456789011",
];

/// What must come of a case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// The caller's trace goes on: parent [`TRACE`]/[`PARENT`] with this
    /// sampled flag, and (when sampled, so the server records it) this
    /// `tracestate`, `""` for none.
    Continue { sampled: bool, tracestate: String },
    /// The `traceparent` is ignored: a new trace, no `tracestate`.
    Restart,
}

/// One request's trace headers and what must come of them.
#[derive(Debug, Clone)]
pub struct Case {
    /// Unique; sent as the message text, so a receiver can tell cases apart.
    pub name: String,
    pub headers: Vec<(String, String)>,
    pub expect: Expect,
}

fn case(name: &str, headers: &[(&str, &str)], expect: Expect) -> Case {
    Case {
        name: name.to_owned(),
        headers: headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        expect,
    }
}

fn go_on(sampled: bool, tracestate: &str) -> Expect {
    Expect::Continue {
        sampled,
        tracestate: tracestate.to_owned(),
    }
}

/// `version-TRACE-PARENT-flags`.
fn tp(version: &str, flags: &str) -> String {
    format!("{version}-{TRACE}-{PARENT}-{flags}")
}

/// Every case: `traceparent` forms (valid, invalid, edge), then `tracestate`
/// forms under a valid sampled parent.
pub fn cases() -> Vec<Case> {
    let mut all = traceparent_cases();
    all.extend(tracestate_cases());
    all
}

fn traceparent_cases() -> Vec<Case> {
    let sampled = tp("00", "01");
    let (t, p) = (TRACE, PARENT);
    let valid = [
        ("sampled", sampled.clone(), true),
        ("not sampled", tp("00", "00"), false),
        ("reserved flags ignored", tp("00", "09"), true),
        ("leading space", format!(" {sampled}"), true),
        ("leading tab", format!("\t{sampled}"), true),
        ("trailing space", format!("{sampled} "), true),
        ("trailing tab", format!("{sampled}\t"), true),
        ("whitespace both sides", format!("\t {sampled} \t"), true),
        ("future version", tp("cc", "01"), true),
        (
            "future version, more fields",
            format!("{}-what-the-future-will-be-like", tp("cc", "01")),
            true,
        ),
    ];
    let mut cases: Vec<Case> = valid
        .into_iter()
        .map(|(name, value, s)| case(name, &[("traceparent", &value)], go_on(s, "")))
        .collect();
    for name in ["TraceParent", "TrAcEpArEnT", "TRACEPARENT"] {
        let label = format!("header name {name}");
        cases.push(case(&label, &[(name, &sampled)], go_on(true, "")));
    }
    let invalid = [
        (
            "issue repro: one-digit trace-id",
            "00-1-0c1d2e3f4a5b6c7d-01".to_owned(),
        ),
        ("version 00, trailing dot", format!("{sampled}.")),
        ("version 00, trailing dash", format!("{sampled}-")),
        (
            "version 00, extra fields",
            format!("{sampled}-what-the-future-will-be-like"),
        ),
        (
            "future version, dot after flags",
            format!("{}.what-the-future-will-be-like", tp("cc", "01")),
        ),
        ("version ff", tp("ff", "01")),
        ("version .0", tp(".0", "01")),
        ("version 0.", tp("0.", "01")),
        ("version of 3 digits", tp("000", "01")),
        ("version of 4 digits", tp("0000", "01")),
        ("version of 1 digit", tp("0", "01")),
        ("version upper case", tp("0A", "01")),
        ("trace-id all zero", format!("00-{}-{p}-01", "0".repeat(32))),
        ("trace-id leading dot", format!("00-.{}-{p}-01", &t[1..])),
        ("trace-id trailing dot", format!("00-{}.-{p}-01", &t[..31])),
        ("trace-id of 33 digits", format!("00-{t}3-{p}-01")),
        ("trace-id of 31 digits", format!("00-{}-{p}-01", &t[..31])),
        (
            "trace-id with a plus sign",
            format!("00-+{}-{p}-01", &t[1..]),
        ),
        (
            "trace-id upper case",
            format!("00-{}-{p}-01", t.replace('1', "A")),
        ),
        (
            "parent-id all zero",
            format!("00-{t}-{}-01", "0".repeat(16)),
        ),
        ("parent-id leading dot", format!("00-{t}-.{}-01", &p[1..])),
        ("parent-id trailing dot", format!("00-{t}-{}.-01", &p[..15])),
        ("parent-id of 17 digits", format!("00-{t}-{p}7-01")),
        ("parent-id of 15 digits", format!("00-{t}-{}-01", &p[..15])),
        ("flags leading dot", tp("00", ".0")),
        ("flags trailing dot", tp("00", "0.")),
        ("flags of 3 digits", tp("00", "001")),
        ("flags of 1 digit", tp("00", "1")),
    ];
    for (name, value) in invalid {
        cases.push(case(name, &[("traceparent", &value)], Expect::Restart));
    }
    let first = format!("00-{}1-{p}-01", &t[..31]);
    cases.push(case(
        "two traceparent headers",
        &[("traceparent", &first), ("traceparent", &sampled)],
        Expect::Restart,
    ));
    for name in ["trace-parent", "trace.parent"] {
        let label = format!("header name {name}");
        cases.push(case(&label, &[(name, &sampled)], Expect::Restart));
    }
    cases.push(case(
        "tracestate without traceparent",
        &[("tracestate", "foo=1,bar=2")],
        Expect::Restart,
    ));
    cases
}

fn tracestate_cases() -> Vec<Case> {
    let all_key = "abcdefghijklmnopqrstuvwxyz0123456789_-*/";
    let all_value: String = (0x20u8..=0x7e)
        .filter(|c| *c != b',' && *c != b'=')
        .map(char::from)
        .collect();
    let all_chars = format!("{all_key}={all_value}");
    let all_vendor = format!("{all_key}@a-z0-9_-*/={all_value}");
    let members: Vec<String> = (1..=33).map(|i| format!("bar{i:02}={i:02}")).collect();
    let first_32 = members[..32].join(",");
    let key_256 = format!("{}=1", "z".repeat(256));
    let huge = huge_tracestate();
    let huge_all = huge.join(",");
    let huge_and_small = format!("a=1,{huge_all},b=2");
    let all_33 = members.join(",");
    let key_257 = format!("{}=1", "z".repeat(257));
    let tenant_242 = format!("{}@v=1", "t".repeat(242));
    let vendor_15 = format!("t@{}=1", "v".repeat(15));
    let cases: Vec<(&str, Vec<&str>, String)> = vec![
        ("tracestate kept", vec!["foo=1,bar=2"], "foo=1,bar=2".into()),
        (
            "tracestate lines combined in order",
            vec!["foo=1,bar=2", "rojo=1,congo=2", "baz=3"],
            "foo=1,bar=2,rojo=1,congo=2,baz=3".into(),
        ),
        ("tracestate empty", vec![""], String::new()),
        (
            "tracestate empty line first",
            vec!["", "foo=1"],
            "foo=1".into(),
        ),
        (
            "tracestate empty line last",
            vec!["foo=1", ""],
            "foo=1".into(),
        ),
        (
            "tracestate whitespace",
            vec!["foo=1 \t , \t bar=2, \t baz=3"],
            "foo=1,bar=2,baz=3".into(),
        ),
        (
            "tracestate all allowed characters",
            vec![&all_chars],
            all_chars.clone(),
        ),
        (
            "tracestate all allowed characters, vendor key",
            vec![&all_vendor],
            all_vendor.clone(),
        ),
        (
            "tracestate repeated key in one line",
            vec!["foo=1,foo=2,bar=3"],
            "bar=3".into(),
        ),
        (
            "tracestate repeated key across lines",
            vec!["foo=1", "foo=1,bar=3"],
            "bar=3".into(),
        ),
        (
            "tracestate key with space",
            vec!["foo =1,bar=2"],
            "bar=2".into(),
        ),
        (
            "tracestate upper-case key",
            vec!["FOO=1,bar=2"],
            "bar=2".into(),
        ),
        (
            "tracestate key with dot",
            vec!["foo.bar=1,bar=2"],
            "bar=2".into(),
        ),
        (
            "tracestate empty vendor",
            vec!["foo@=1,bar=2"],
            "bar=2".into(),
        ),
        (
            "tracestate empty tenant",
            vec!["@foo=1,bar=2"],
            "bar=2".into(),
        ),
        (
            "tracestate two at signs",
            vec!["foo@bar@baz=1,bar=2"],
            "bar=2".into(),
        ),
        ("tracestate 32 members", vec![&first_32], first_32.clone()),
        ("tracestate 33 members", vec![&all_33], first_32.clone()),
        (
            "tracestate key of 256",
            vec!["foo=1", &key_256],
            format!("foo=1,{key_256}"),
        ),
        (
            "tracestate key of 257",
            vec!["foo=1", &key_257],
            "foo=1".into(),
        ),
        (
            "tracestate tenant of 242",
            vec!["foo=1", &tenant_242],
            "foo=1".into(),
        ),
        (
            "tracestate vendor of 15",
            vec!["foo=1", &vendor_15],
            "foo=1".into(),
        ),
        (
            "tracestate value with equals sign",
            vec!["foo=bar=baz,bar=2"],
            "bar=2".into(),
        ),
        ("tracestate empty value", vec!["foo=,bar=3"], "bar=3".into()),
        ("tracestate of 16 KiB", vec![&huge_all], String::new()),
        (
            "tracestate of 16 KiB around small members",
            vec![&huge_and_small],
            "a=1,b=2".into(),
        ),
    ];
    let parent = tp("00", "01");
    cases
        .into_iter()
        .map(|(name, lines, want)| {
            let mut headers = vec![("traceparent", parent.as_str())];
            headers.extend(lines.iter().map(|line| ("tracestate", *line)));
            case(name, &headers, go_on(true, &want))
        })
        .collect()
}

/// The failing send: 32 members, each a 256-character key and a
/// 256-character value (16,415 characters with the commas). None fits the
/// 512-character bound on its own.
pub fn huge_tracestate() -> Vec<String> {
    (0..32)
        .map(|i| {
            let key = format!("k{i:02}{}", "x".repeat(253));
            format!("{key}={}", "v".repeat(256))
        })
        .collect()
}

/// `POST path` over a fresh HTTP/1.1 connection with `headers` written as
/// given (name case, order, repeats and whitespace kept); returns the status
/// and the body.
pub async fn post_raw(
    addr: SocketAddr,
    path: &str,
    headers: &[(String, String)],
    body: &str,
) -> (u16, String) {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    crate::http1::exchange(addr, &request).await
}

/// Opens `ReadMessages` with `messenger-trace-context: 1`; returns once the
/// subscription is registered (headers arrived).
pub async fn subscribe_traced(addr: SocketAddr) -> Streaming<ServerMessageResponse> {
    let mut client = crate::connect(addr).await;
    let mut request = tonic::Request::new(());
    request
        .metadata_mut()
        .insert(TRACE_CONTEXT_METADATA, MetadataValue::from_static("1"));
    within("ReadMessages headers", client.read_messages(request))
        .await
        .expect("subscribe")
        .into_inner()
}

/// The next message on `stream`, within [`WAIT`].
pub async fn next_message(stream: &mut Streaming<ServerMessageResponse>) -> ServerMessageResponse {
    tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("a message within the wait")
        .expect("stream healthy")
        .expect("stream open")
}

/// A `traceparent` as we write it: `00-trace-parent-flags`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parent {
    pub trace_id: String,
    pub parent_id: String,
    pub sampled: bool,
}

impl Parent {
    /// `None` unless `value` is exactly version 00 in our form.
    pub fn parse(value: &str) -> Option<Self> {
        let fields: Vec<&str> = value.split('-').collect();
        match fields.as_slice() {
            ["00", trace, parent, flags @ ("00" | "01")]
                if trace.len() == 32 && parent.len() == 16 =>
            {
                Some(Self {
                    trace_id: (*trace).to_owned(),
                    parent_id: (*parent).to_owned(),
                    sampled: *flags == "01",
                })
            }
            _ => None,
        }
    }
}
