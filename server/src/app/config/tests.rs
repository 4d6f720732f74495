use super::*;

#[test]
fn defaults_match_flags() {
    // clap also reads MESSENGER_* from the environment; the comparison
    // means something only when none is set (as in CI).
    let parsed = Config::try_parse_from(["messenger-server"]).unwrap();
    let from_env = std::env::vars().any(|(k, _)| k.starts_with("MESSENGER_"));
    if !from_env {
        assert_eq!(parsed, Config::default());
    }
}

#[test]
fn rejects_bad_values() {
    assert!(Config::try_parse_from(["s", "--port", "70000"]).is_err());
    assert!(Config::try_parse_from(["s", "--subscriber-queue", "0"]).is_err());
    assert!(Config::try_parse_from(["s", "--log-format", "xml"]).is_err());
    assert!(Config::try_parse_from(["s", "--max-subscribers", "0"]).is_err());
    assert!(Config::try_parse_from(["s", "--max-concurrent-sends", "0"]).is_err());
    assert!(Config::try_parse_from(["s", "--keepalive-interval-ms", "5"]).is_err());
    assert!(Config::try_parse_from(["s", "--history-size", "-1"]).is_err());
    assert!(Config::try_parse_from(["s", "--history-bytes", "lots"]).is_err());
    for bad in [
        "localhost:6379",
        "http://h:1",
        "redis://h:notaport",
        "unix:///tmp/r",
        "redis+sentinel://h",
        "redis+sentinel://h:0/m",
        "redis+sentinel://h/m/0",
    ] {
        assert!(
            Config::try_parse_from(["s", "--broker-url", bad]).is_err(),
            "{bad}"
        );
    }
    assert!(Config::try_parse_from(["s", "--broker-stream", ""]).is_err());
}

#[test]
fn accepts_redis_urls() {
    for good in [
        "redis://127.0.0.1:6379",
        "redis://h:1/2",
        "rediss://h:6380",
        "redis+sentinel://s1,s2:26380/mymaster",
        "rediss+sentinel://u:p@[::1]:26379/m?sentinel_password=x",
    ] {
        let c = Config::try_parse_from(["s", "--broker-url", good]).unwrap();
        assert_eq!(c.broker_url.as_deref(), Some(good));
    }
}
