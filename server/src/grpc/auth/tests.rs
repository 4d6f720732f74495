//! Unit tests of the token table: file format, statuses, reload, and the
//! length-independent shape of the lookup.

use super::*;
use http::HeaderValue;
use std::cell::Cell;
use tonic::Code;

thread_local! {
    static COMPARISONS: Cell<usize> = const { Cell::new(0) };
}

pub(super) fn count_comparison() {
    COMPARISONS.with(|c| c.set(c.get() + 1));
}

/// Digest comparisons made by `f` on this thread.
fn comparisons<T>(f: impl FnOnce() -> T) -> (T, usize) {
    COMPARISONS.with(|c| c.set(0));
    let out = f();
    (out, COMPARISONS.with(Cell::get))
}

const FILE: &str = "\
# comment, then a blank line

tok-alice alice
  tok-bob\t Bob the Builder  \n\
tok-carol carol
";

fn metadata(value: Option<&str>) -> HeaderMap {
    let mut m = HeaderMap::new();
    if let Some(v) = value {
        m.insert(AUTHORIZATION, HeaderValue::try_from(v).unwrap());
    }
    m
}

fn temp_tokens(contents: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "messenger-auth-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::write(&path, contents).unwrap();
    path
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(0u8)
}

#[test]
fn parses_authors_with_spaces_comments_and_blank_lines() {
    let table = TokenTable::parse(FILE).unwrap();
    assert_eq!(table.len(), 3);
    assert_eq!(table.author(b"tok-alice").as_deref(), Some("alice"));
    assert_eq!(table.author(b"tok-bob").as_deref(), Some("Bob the Builder"));
    assert_eq!(table.author(b"tok-carol").as_deref(), Some("carol"));
    assert_eq!(table.author(b"tok-dave"), None);
    assert_eq!(table.author(b""), None);
}

#[test]
fn syntax_errors_give_the_line_but_not_its_text() {
    assert_eq!(TokenTable::parse("a b\nlonely\n").err().unwrap().0, 2);
    assert_eq!(TokenTable::parse("a b\na c\n").err().unwrap().0, 2);
    assert_eq!(TokenTable::parse("tökén x\n").err().unwrap().0, 1);
    let path = temp_tokens("# x\nsecret-token-without-author\n");
    let e = TokenTable::load(&path).err().unwrap().to_string();
    assert!(
        e.contains("line 2") && e.contains(ENV_AUTH_TOKENS_FILE),
        "{e}"
    );
    assert!(!e.contains("secret-token"), "{e}");
    std::fs::remove_file(path).unwrap();
}

#[test]
fn statuses_for_missing_malformed_and_wrong_tokens() {
    let path = temp_tokens(FILE);
    let auth = Auth::load(&path).unwrap();
    let code = |v| {
        auth.authenticate(&metadata(v))
            .map(|_| ())
            .unwrap_err()
            .code()
    };
    assert_eq!(code(None), Code::Unauthenticated);
    assert_eq!(code(Some("Basic dG9rLWFsaWNl")), Code::Unauthenticated);
    assert_eq!(code(Some("Bearer ")), Code::Unauthenticated);
    assert_eq!(code(Some("tok-alice")), Code::Unauthenticated);
    assert_eq!(code(Some("Bearer tok-alicf")), Code::PermissionDenied);
    // Two copies, even of a good token: which one counts would be a guess.
    let mut twice = metadata(Some("Bearer tok-alice"));
    twice.append(AUTHORIZATION, HeaderValue::from_static("Bearer tok-alice"));
    let err = auth.authenticate(&twice).map(|_| ()).unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert_eq!(
        err.to_string(),
        "the `authorization` metadata was sent 2 times; send one `Bearer <token>`"
    );
    assert_eq!(
        code(Some("Bearer tok-alice-and-more")),
        Code::PermissionDenied
    );
    // Copies joined with commas are copies too, whatever their case or spacing.
    for (joined, count) in [
        ("Bearer tok-alice, Bearer tok-alice", 2),
        ("Bearer tok-alice,bearer tok-bob", 2),
        ("Bearer tok-alice ,  BEARER tok-bob, Bearer x", 3),
    ] {
        let err = auth.authenticate(&metadata(Some(joined))).map(|_| ());
        let err = err.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{joined}");
        assert_eq!(
            err.to_string(),
            format!(
                "the `authorization` metadata was sent {count} times; send one `Bearer <token>`"
            ),
            "{joined}"
        );
    }
    // A token never holds whitespace (one word of the file): malformed.
    for spaced in [
        "Bearer tok-alice tok-bob",
        "Bearer tok-alice, tok-bob",
        "Bearer a\tb",
    ] {
        let err = auth.authenticate(&metadata(Some(spaced))).map(|_| ());
        let err = err.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{spaced}");
        assert_eq!(
            err.to_string(),
            ServiceError::MalformedCredentials.to_string()
        );
    }
    // A comma alone may be part of a token.
    assert_eq!(code(Some("Bearer tok,with-comma")), Code::PermissionDenied);
    let message = auth
        .authenticate(&metadata(Some("Bearer tok-alicf")))
        .unwrap_err()
        .to_string();
    assert!(!message.contains("tok-"), "{message}");

    let alice = auth
        .authenticate(&metadata(Some("Bearer tok-alice")))
        .unwrap();
    assert!(alice.may_post_as("alice"));
    assert!(!alice.may_post_as("carol"));
    assert!(!alice.may_post_as("alice "));
    let bob = auth
        .authenticate(&metadata(Some("bearer tok-bob")))
        .unwrap();
    assert!(bob.may_post_as("Bob the Builder"));
    assert!(!format!("{bob:?}").contains("tok-bob"));
    // Whitespace around the value is not part of it (RFC 9110 §5.5), on
    // either side: grpcio sends a leading space as written.
    for padded in [
        " Bearer tok-alice",
        "Bearer tok-alice ",
        "\t Bearer tok-alice\t",
    ] {
        let alice = auth.authenticate(&metadata(Some(padded)));
        assert!(alice.is_ok_and(|a| a.may_post_as("alice")), "{padded:?}");
    }
    std::fs::remove_file(path).unwrap();
}

#[test]
fn reload_revokes_and_a_failed_reload_keeps_the_table() {
    let path = temp_tokens(FILE);
    let auth = Auth::load(&path).unwrap();
    let mut alice = auth
        .authenticate(&metadata(Some("Bearer tok-alice")))
        .unwrap();
    let mut carol = auth
        .authenticate(&metadata(Some("Bearer tok-carol")))
        .unwrap();

    std::fs::write(&path, "tok-carol carol\ntok-new dave\n").unwrap();
    assert_eq!(auth.reload().unwrap(), 2);
    assert!(!alice.still_valid());
    assert!(carol.still_valid());
    let denied = auth.authenticate(&metadata(Some("Bearer tok-alice")));
    assert_eq!(denied.unwrap_err().code(), Code::PermissionDenied);
    assert!(auth.authenticate(&metadata(Some("Bearer tok-new"))).is_ok());

    std::fs::write(&path, "broken\n").unwrap();
    assert!(auth.reload().is_err());
    assert_eq!(auth.tokens(), 2);
    assert!(auth.authenticate(&metadata(Some("Bearer tok-new"))).is_ok());
    std::fs::remove_file(path).unwrap();
}

/// The timing property, shown by structure: whatever the presented token's
/// length or how early it matches, the lookup hashes it to 32 bytes and makes
/// exactly one 32-byte constant-time comparison per entry, with no early exit.
#[test]
fn lookup_path_is_independent_of_token_length_and_position() {
    let lines: String = (0..16)
        .map(|i| format!("token-{i:02} author{i}\n"))
        .collect();
    let table = TokenTable::parse(&lines).unwrap();
    assert_eq!(digest(b"x").len(), 32);
    assert_eq!(digest(&[b'x'; 10_000]).len(), 32);
    let cases: [(&[u8], bool); 6] = [
        (b"token-00", true),    // first entry
        (b"token-15", true),    // last entry
        (b"token-99", false),   // wrong token, right length
        (b"t", false),          // wrong length, shorter
        (&[b'x'; 4096], false), // wrong length, much longer
        (b"", false),
    ];
    for (token, known) in cases {
        let (author, n) = comparisons(|| table.author(token));
        assert_eq!(
            author.is_some(),
            known,
            "{:?}",
            String::from_utf8_lossy(token)
        );
        assert_eq!(
            n,
            table.len(),
            "comparisons for a {}-byte token",
            token.len()
        );
    }
}

/// Reports (does not assert) median lookup times for a wrong token of the
/// right and of the wrong length. Run with `--ignored --nocapture`.
#[test]
#[ignore = "timing report, not a check"]
fn report_lookup_timing() {
    let lines: String = (0..64).map(|i| format!("token-{i:026} a{i}\n")).collect();
    let table = TokenTable::parse(&lines).unwrap();
    let median = |token: &[u8]| {
        let mut samples: Vec<u128> = (0..20_001)
            .map(|_| {
                let started = std::time::Instant::now();
                std::hint::black_box(table.author(std::hint::black_box(token)));
                started.elapsed().as_nanos()
            })
            .collect();
        samples.sort_unstable();
        samples[samples.len() / 2]
    };
    let right_length = format!("token-{:026}", 999);
    eprintln!(
        "median lookup, wrong token of the right length: {} ns",
        median(right_length.as_bytes())
    );
    eprintln!(
        "median lookup, wrong token of length 3:         {} ns",
        median(b"abc")
    );
    eprintln!(
        "median lookup, the first entry's token:         {} ns",
        median(b"token-00000000000000000000000000")
    );
}
