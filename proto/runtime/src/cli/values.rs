//! The value parsers of both binaries' settings, one per kind of value, so
//! that every setting of a kind fails with the same words: what is wrong and
//! what is accepted.
//!
//! - [`number`]: every numeric setting (ports included). A negative, a
//!   fraction or a number too large says "`v` is not in `min..=max`", and
//!   anything else "expected a whole number in `min..=max`" (never clap's
//!   "invalid digit found in string").
//! - [`ip_addr`]: every address to listen on. A host name says to give an IP
//!   instead, naming the two usual ones.
//! - [`port_of`]: the port of a `host:port`, told apart as missing, not a
//!   number, or out of range.

use std::net::IpAddr;

/// A whole number in `min..=max`, as `T`: use it as clap's
/// `value_parser = number::<T>(min, max)`.
pub fn number<T>(
    min: u64,
    max: u64,
) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
where
    T: TryFrom<u64> + Clone + Send + Sync + 'static,
{
    move |value: &str| {
        let digits = value.strip_prefix(['-', '+']).unwrap_or(value);
        let is_integer = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
        let is_decimal = !is_integer
            && digits.split_once('.').is_some_and(|(a, b)| {
                !(a.is_empty() && b.is_empty())
                    && a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit())
            });
        if !is_integer && !is_decimal {
            return Err(format!("expected a whole number in {min}..={max}"));
        }
        let out_of_range = || format!("{value} is not in {min}..={max}");
        if is_decimal || (value.starts_with('-') && digits.bytes().any(|b| b != b'0')) {
            return Err(out_of_range());
        }
        let n: u64 = digits.parse().map_err(|_| out_of_range())?;
        if !(min..=max).contains(&n) {
            return Err(out_of_range());
        }
        T::try_from(n).map_err(|_| out_of_range())
    }
}

/// An IP address to listen on; a host name is refused with a hint, since
/// a listener binds addresses, not names.
pub fn ip_addr(value: &str) -> Result<IpAddr, String> {
    value.parse().map_err(|_| {
        "not an IP address; give an IP, e.g. 127.0.0.1 (this host only), 0.0.0.0 (every \
         IPv4 interface) or :: (every interface)"
            .to_owned()
    })
}

/// The port of `authority` (`host:port`, `[v6]:port`): `Err` says whether
/// it is missing, not a number, or out of range.
pub fn port_of(authority: &str) -> Result<u16, String> {
    let after_host = match authority.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or("", |(_, after)| after),
        None => authority.rfind(':').map_or("", |i| &authority[i..]),
    };
    let Some(port) = after_host.strip_prefix(':').filter(|p| !p.is_empty()) else {
        return Err("has no port".to_owned());
    };
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("port {port:?} is not a number"));
    }
    match port.parse::<u16>() {
        Ok(0) => Err("port 0 cannot be connected to; ports are 1..=65535".to_owned()),
        Ok(p) => Ok(p),
        Err(_) => Err(format!("port {port} is out of range; ports are 1..=65535")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_say_what_is_wrong_and_what_is_accepted() {
        let parse = number::<u16>(1, 100);
        assert_eq!(parse("1"), Ok(1));
        assert_eq!(parse("100"), Ok(100));
        assert_eq!(parse("+7"), Ok(7));
        for (value, says) in [
            ("-5", "-5 is not in 1..=100"),
            ("-0", "-0 is not in 1..=100"),
            ("0", "0 is not in 1..=100"),
            ("101", "101 is not in 1..=100"),
            ("1.5", "1.5 is not in 1..=100"),
            (
                "99999999999999999999999",
                "99999999999999999999999 is not in 1..=100",
            ),
            ("x", "expected a whole number in 1..=100"),
            ("", "expected a whole number in 1..=100"),
            ("1e3", "expected a whole number in 1..=100"),
            (" 5", "expected a whole number in 1..=100"),
            ("-", "expected a whole number in 1..=100"),
        ] {
            assert_eq!(parse(value).unwrap_err(), says, "{value:?}");
        }
        // A bound above the type's range is caught, not wrapped.
        assert!(number::<u16>(0, 100_000)("70000").is_err());
        assert_eq!(number::<u64>(0, 10)("-0"), Ok(0));
    }

    #[test]
    fn an_ip_is_required_and_a_name_gets_a_hint() {
        assert!(ip_addr("127.0.0.1").is_ok());
        assert!(ip_addr("::").is_ok());
        let e = ip_addr("localhost").unwrap_err();
        assert!(e.contains("127.0.0.1") && e.contains("0.0.0.0"), "{e}");
    }

    #[test]
    fn ports_are_told_apart() {
        assert_eq!(port_of("127.0.0.1:51075"), Ok(51075));
        assert_eq!(port_of("[::1]:1"), Ok(1));
        assert_eq!(port_of("localhost").unwrap_err(), "has no port");
        assert_eq!(port_of("[::1]").unwrap_err(), "has no port");
        assert_eq!(port_of("h:").unwrap_err(), "has no port");
        assert!(
            port_of("127.0.0.1:99999")
                .unwrap_err()
                .contains("99999 is out of range")
        );
        assert!(port_of("h:0").unwrap_err().contains("port 0"));
        assert!(
            port_of("h:x1")
                .unwrap_err()
                .contains("\"x1\" is not a number")
        );
    }
}
