//! The parsing rules, case by case. The `traceparent` and `tracestate` cases
//! follow the W3C trace-context test suite (`test/test.py`), restated here.

use super::*;
use std::collections::HashMap;

const TRACE: &str = "12345678901234567890123456789012";
const SPAN: &str = "1234567890123456";

fn tp(value: &str) -> Result<TraceParent, InvalidTraceParent> {
    TraceParent::parse(value)
}

#[test]
fn valid_traceparents_keep_ids_and_the_sampled_flag() {
    let cases = [
        (format!("00-{TRACE}-{SPAN}-01"), true),
        (format!("00-{TRACE}-{SPAN}-00"), false),
        // Reserved flags are ignored; only the sampled bit is kept.
        (format!("00-{TRACE}-{SPAN}-09"), true),
        (format!("00-{TRACE}-{SPAN}-fe"), false),
        // Optional whitespace around the value.
        (format!(" 00-{TRACE}-{SPAN}-01"), true),
        (format!("\t00-{TRACE}-{SPAN}-01"), true),
        (format!("00-{TRACE}-{SPAN}-01 "), true),
        (format!("\t 00-{TRACE}-{SPAN}-01 \t"), true),
        // A future version: exactly four fields, or more after a '-'.
        (format!("cc-{TRACE}-{SPAN}-01"), true),
        (
            format!("cc-{TRACE}-{SPAN}-01-what-the-future-will-be-like"),
            true,
        ),
        (format!("01-{TRACE}-{SPAN}-00-"), false),
    ];
    for (value, sampled) in cases {
        let parsed = tp(&value).unwrap_or_else(|e| panic!("{value:?}: {e}"));
        assert_eq!(parsed.trace_id.to_string(), TRACE, "{value:?}");
        assert_eq!(parsed.parent_id.to_string(), SPAN, "{value:?}");
        assert_eq!(parsed.sampled, sampled, "{value:?}");
        // What we send on is always version 00 with only the sampled flag.
        let flags = if sampled { "01" } else { "00" };
        assert_eq!(parsed.to_string(), format!("00-{TRACE}-{SPAN}-{flags}"));
    }
}

#[test]
fn invalid_traceparents_are_refused_with_the_reason() {
    use InvalidTraceParent as E;
    let t31 = &TRACE[..31];
    let s15 = &SPAN[..15];
    let cases = [
        // The repro: a one-digit trace-id.
        ("00-1-0c1d2e3f4a5b6c7d-01".to_owned(), E::Length),
        (String::new(), E::Version),
        ("garbage".to_owned(), E::Version),
        // Version 00 with anything after the flags.
        (format!("00-{TRACE}-{SPAN}-01."), E::Length),
        (format!("00-{TRACE}-{SPAN}-01-"), E::Length),
        (
            format!("00-{TRACE}-{SPAN}-01-what-the-future-will-be-like"),
            E::Length,
        ),
        // A future version whose extra part does not start with '-'.
        (
            format!("cc-{TRACE}-{SPAN}-01.what-the-future-will-be-like"),
            E::FutureLength,
        ),
        (format!("cc-{TRACE}-{SPAN}-1"), E::FutureLength),
        (format!("ff-{TRACE}-{SPAN}-01"), E::ForbiddenVersion),
        (format!(".0-{TRACE}-{SPAN}-01"), E::Version),
        (format!("0.-{TRACE}-{SPAN}-01"), E::Version),
        (format!("000-{TRACE}-{SPAN}-01"), E::Version),
        (format!("0000-{TRACE}-{SPAN}-01"), E::Version),
        (format!("0-{TRACE}-{SPAN}-01"), E::Version),
        (format!("0A-{TRACE}-{SPAN}-01"), E::Version),
        (format!("00-{}-{SPAN}-01", "0".repeat(32)), E::ZeroTraceId),
        (format!("00-{TRACE}-{}-01", "0".repeat(16)), E::ZeroParentId),
        (format!("00-.{}-{SPAN}-01", &TRACE[1..]), E::TraceId),
        (format!("00-{t31}.-{SPAN}-01"), E::TraceId),
        (format!("00-+{t31}-{SPAN}-01"), E::TraceId),
        (
            format!("00-{}-{SPAN}-01", TRACE.replace('1', "A")),
            E::TraceId,
        ),
        (format!("00-{TRACE}3-{SPAN}-01"), E::Length),
        (format!("00-{t31}-{SPAN}-01"), E::Length),
        (format!("00-{t31}-{SPAN}0-01"), E::Separator),
        (format!("00-{TRACE}-.{}-01", &SPAN[1..]), E::ParentId),
        (format!("00-{TRACE}-{s15}.-01"), E::ParentId),
        (
            format!("00-{TRACE}-{}-01", SPAN.replace('1', "B")),
            E::ParentId,
        ),
        (format!("00-{TRACE}-{SPAN}7-01"), E::Length),
        (format!("00-{TRACE}-{s15}-01"), E::Length),
        (format!("00-{TRACE}-{SPAN}-.0"), E::Flags),
        (format!("00-{TRACE}-{SPAN}-0."), E::Flags),
        (format!("00-{TRACE}-{SPAN}-0A"), E::Flags),
        (format!("00-{TRACE}-{SPAN}-001"), E::Length),
        (format!("00-{TRACE}-{SPAN}-1"), E::Length),
        (format!("00_{TRACE}_{SPAN}_01"), E::Version),
        (format!("00-{TRACE}_{SPAN}-01"), E::Separator),
    ];
    for (value, why) in cases {
        assert_eq!(tp(&value), Err(why), "{value:?}");
    }
}

#[test]
fn hex_is_lower_case_digits_only() {
    assert_eq!(hex(b"0f"), Some(15));
    assert_eq!(hex(b"ff"), Some(255));
    for bad in [&b""[..], b"F0", b"+1", b"-1", b" 1", b"g0"] {
        assert_eq!(hex(bad), None, "{bad:?}");
    }
    assert_eq!(hex(&[b'f'; 32]), Some(u128::MAX));
    assert_eq!(hex(&[b'0'; 33]), None);
}

fn ts(lines: &[&str]) -> String {
    parse_tracestate(lines.iter().copied()).header()
}

#[test]
fn tracestate_lines_combine_in_order() {
    assert_eq!(
        ts(&["foo=1,bar=2", "rojo=1,congo=2", "baz=3"]),
        "foo=1,bar=2,rojo=1,congo=2,baz=3"
    );
    assert_eq!(ts(&["foo=1", ""]), "foo=1");
    assert_eq!(ts(&["", "foo=1"]), "foo=1");
    assert_eq!(ts(&[""]), "");
    assert_eq!(ts(&[" , ,\t,"]), "");
}

#[test]
fn tracestate_whitespace_around_members_is_optional() {
    for line in [
        "foo=1 \t , \t bar=2, \t baz=3",
        "foo=1\t \t,\t \tbar=2,\t \tbaz=3",
    ] {
        assert_eq!(ts(&[line]), "foo=1,bar=2,baz=3", "{line:?}");
    }
    for line in [" foo=1", "\tfoo=1", "foo=1 ", "foo=1\t", "\t foo=1 \t"] {
        assert_eq!(ts(&[line]), "foo=1", "{line:?}");
    }
    // Leading spaces of a value are part of it.
    assert_eq!(ts(&["foo= 1"]), "foo= 1");
}

#[test]
fn tracestate_keeps_every_allowed_character() {
    let key = "abcdefghijklmnopqrstuvwxyz0123456789_-*/";
    let value: String = (0x20u8..=0x7e)
        .filter(|c| *c != b',' && *c != b'=')
        .map(char::from)
        .collect();
    for key in [key.to_owned(), format!("{key}@a-z0-9_-*/")] {
        let member = format!("{key}={value}");
        assert_eq!(ts(&[&member]), member);
    }
}

#[test]
fn tracestate_drops_invalid_members_only() {
    let cases = [
        ("foo =1,bar=2", "bar=2"),
        ("FOO=1,bar=2", "bar=2"),
        ("foo.bar=1,bar=2", "bar=2"),
        ("foo@=1,bar=2", "bar=2"),
        ("@foo=1,bar=2", "bar=2"),
        ("foo@@bar=1,bar=2", "bar=2"),
        ("foo@bar@baz=1,bar=2", "bar=2"),
        ("foo@1bar=1,bar=2", "bar=2"),
        ("1foo=1,bar=2", "bar=2"),
        ("foo=bar=baz,bar=2", "bar=2"),
        ("foo=,bar=3", "bar=3"),
        ("foo,bar=3", "bar=3"),
        ("foo=\u{7f},bar=3", "bar=3"),
        ("foo=caf\u{e9},bar=3", "bar=3"),
    ];
    for (line, kept) in cases {
        assert_eq!(ts(&[line]), kept, "{line:?}");
    }
}

#[test]
fn tracestate_key_and_value_lengths() {
    let z = |n| "z".repeat(n);
    assert_eq!(
        ts(&["foo=1", &format!("{}=1", z(256))]),
        format!("foo=1,{}=1", z(256))
    );
    assert_eq!(ts(&["foo=1", &format!("{}=1", z(257))]), "foo=1");
    let tenant_max = format!("{}@{}=1", "t".repeat(241), "v".repeat(13));
    assert_eq!(ts(&["foo=1", &tenant_max]), format!("foo=1,{tenant_max}"));
    // A 14-character system-id is valid, but the SDK cannot hold it: only
    // that member goes.
    let system_max = format!("t@{}=1", "v".repeat(14));
    assert!(valid_key(system_max.trim_end_matches("=1")));
    assert_eq!(ts(&["foo=1", &system_max]), "foo=1");
    assert_eq!(ts(&["foo=1", &format!("{}@v=1", "t".repeat(242))]), "foo=1");
    assert_eq!(ts(&["foo=1", &format!("t@{}=1", "v".repeat(15))]), "foo=1");
    assert_eq!(ts(&[&format!("foo={}", z(256))]), format!("foo={}", z(256)));
    assert_eq!(ts(&[&format!("foo={}", z(257))]), "");
}

#[test]
fn tracestate_drops_every_member_of_a_repeated_key() {
    for lines in [
        &["foo=1,foo=1"][..],
        &["foo=1,foo=2"],
        &["foo=1", "foo=1"],
        &["foo=1", "foo=2"],
    ] {
        assert_eq!(ts(lines), "", "{lines:?}");
    }
    assert_eq!(ts(&["a=1,foo=1,b=2", "foo=2,c=3"]), "a=1,b=2,c=3");
}

#[test]
fn tracestate_keeps_the_first_32_members() {
    let members: Vec<String> = (1..=33).map(|i| format!("bar{i:02}={i:02}")).collect();
    let first_32 = members[..32].join(",");
    assert_eq!(ts(&[&first_32]), first_32);
    let all = members.join(",");
    assert_eq!(ts(&[&all]), first_32);
}

#[test]
fn tracestate_is_cut_to_512_characters_largest_first() {
    // 32 members of a 256-character key and value: about 16 KiB, none fits.
    let huge: Vec<String> = (0..32)
        .map(|i| {
            format!(
                "{}={}",
                format!("k{i:02}").repeat(86)[..256].to_owned(),
                "v".repeat(256)
            )
        })
        .collect();
    assert_eq!(ts(&[&huge.join(",")]), "");
    // Small members survive between large ones, in order.
    let line = format!("a=1,{},b=2,{},c=3", huge[0], huge[1]);
    assert_eq!(ts(&[&line]), "a=1,b=2,c=3");
    // Large members go before the 32-member cut reaches small ones.
    let line = format!("a=1,{},b=2", huge.join(","));
    assert_eq!(ts(&[&line]), "a=1,b=2");
    // Among large members the largest goes first: 200 + 300 + commas > 512.
    let m200 = format!("m={}", "x".repeat(198));
    let m300 = format!("n={}", "y".repeat(256));
    let m100 = format!("o={}", "z".repeat(98));
    let line = format!("{m200},{m300},{m100}");
    assert_eq!(ts(&[&line]), format!("{m200},{m100}"));
    // Without large members the end goes first.
    let small: Vec<String> = (0..10)
        .map(|i| format!("k{i}={}", "s".repeat(60)))
        .collect();
    let kept = ts(&[&small.join(",")]);
    assert!(kept.len() <= MAX_TRACESTATE_LEN, "{}", kept.len());
    // 8 × 63 + 7 commas = 511.
    assert_eq!(kept, small[..8].join(","));
}

#[test]
fn the_propagator_reads_one_traceparent_and_all_tracestate_lines() {
    struct Lines(HashMap<&'static str, Vec<&'static str>>);
    impl Extractor for Lines {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|v| v.first().copied())
        }
        fn keys(&self) -> Vec<&str> {
            self.0.keys().copied().collect()
        }
        fn get_all(&self, key: &str) -> Option<Vec<&str>> {
            self.0.get(key).cloned()
        }
    }
    let one = "00-12345678901234567890123456789011-1234567890123456-01";
    let two = "00-12345678901234567890123456789012-1234567890123456-01";
    let read = |pairs: &[(&'static str, Vec<&'static str>)]| {
        W3cPropagator::read(&Lines(pairs.iter().cloned().collect()))
    };
    assert_eq!(read(&[]), Ok(None));
    assert_eq!(
        read(&[(TRACEPARENT, vec![one, two])]),
        Err(InvalidTraceParent::Repeated)
    );
    let sc = read(&[(TRACEPARENT, vec![one]), (TRACESTATE, vec!["a=1", "b=2"])])
        .unwrap()
        .unwrap();
    assert!(sc.is_remote() && sc.is_sampled());
    assert_eq!(sc.trace_state().header(), "a=1,b=2");
    // Not even looked at without a valid parent.
    assert_eq!(
        read(&[
            (TRACEPARENT, vec!["00-1-0c1d2e3f4a5b6c7d-01"]),
            (TRACESTATE, vec!["a=1"])
        ]),
        Err(InvalidTraceParent::Length)
    );
}

#[test]
fn injection_never_writes_an_empty_tracestate() {
    let parent = TraceParent::parse(&format!("00-{TRACE}-{SPAN}-00")).unwrap();
    for (state, want) in [
        (TraceState::NONE, None),
        (
            TraceState::from_key_value([("a", "1")]).unwrap(),
            Some("a=1"),
        ),
    ] {
        let cx = Context::new().with_remote_span_context(parent.span_context(state));
        let mut out = HashMap::<String, String>::new();
        W3cPropagator.inject_context(&cx, &mut out);
        assert_eq!(
            out.get(TRACEPARENT).map(String::as_str),
            Some(format!("00-{TRACE}-{SPAN}-00").as_str())
        );
        assert_eq!(out.get(TRACESTATE).map(String::as_str), want);
    }
    let mut out = HashMap::<String, String>::new();
    W3cPropagator.inject_context(&Context::new(), &mut out);
    assert!(out.is_empty());
}

#[test]
fn a_hostile_tracestate_is_cut_in_one_pass() {
    // 100,000 members (about 1 MiB): linear work, and the first 32 remain.
    let members: Vec<String> = (0..100_000).map(|i| format!("k{i}=1")).collect();
    let state = parse_tracestate([members.join(",").as_str()]);
    assert_eq!(state.header(), members[..32].join(","));
}
