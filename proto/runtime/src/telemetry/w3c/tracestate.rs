//! `tracestate` of W3C Trace Context level 1 (§3.3): the member grammar, and
//! the bounds we cut a list to before passing it on (see the invariants of
//! [`super`]).

use super::{LARGE_MEMBER_LEN, MAX_TRACESTATE_LEN, MAX_TRACESTATE_MEMBERS};
use opentelemetry::trace::TraceState;
use std::collections::HashMap;

/// The `tracestate` to propagate from all of a request's header lines, in
/// order (see the module invariants for what is dropped and cut).
pub fn parse_tracestate<'a>(lines: impl IntoIterator<Item = &'a str>) -> TraceState {
    let members: Vec<(&str, &str)> = lines
        .into_iter()
        .flat_map(|line| line.split(','))
        .map(|member| member.trim_matches([' ', '\t']))
        .filter(|member| !member.is_empty())
        .filter_map(|member| member.split_once('='))
        .filter(|(key, value)| valid_key(key) && valid_value(value))
        .collect();
    // Counted in a map: a hostile header may hold thousands of members.
    let mut seen = HashMap::<&str, usize>::with_capacity(members.len());
    for (key, _) in &members {
        *seen.entry(key).or_default() += 1;
    }
    let unique: Vec<(&str, &str)> = members
        .iter()
        .filter(|(key, _)| seen[key] == 1)
        // The SDK's own check refuses one valid form (a 14-character
        // system-id: it is off by one), and one refused member would make it
        // refuse the whole list; so such a member is dropped on its own.
        .filter(|member| TraceState::from_key_value([**member]).is_ok())
        .copied()
        .collect();
    TraceState::from_key_value(bound(unique)).unwrap_or_default()
}

/// `state` cut to the bounds, for sending (a no-op for what we parsed).
pub fn bounded_tracestate(state: &TraceState) -> TraceState {
    parse_tracestate([state.header().as_str()])
}

/// Drops whole members until the list has at most [`MAX_TRACESTATE_MEMBERS`]
/// and fits [`MAX_TRACESTATE_LEN`]: the largest of those over
/// [`LARGE_MEMBER_LEN`] first (the last of equals), then from the end.
fn bound<'a>(members: Vec<(&'a str, &'a str)>) -> Vec<(&'a str, &'a str)> {
    let len = |(k, v): &(&str, &str)| k.len() + 1 + v.len();
    let mut count = members.len();
    let mut total = members.iter().map(len).sum::<usize>() + count.saturating_sub(1);
    let over =
        |count: usize, total: usize| count > MAX_TRACESTATE_MEMBERS || total > MAX_TRACESTATE_LEN;
    let mut keep = vec![true; members.len()];
    // Linear bookkeeping, not a rescan per drop: a hostile header may hold
    // thousands of members.
    let mut large: Vec<usize> = (0..members.len())
        .filter(|&i| len(&members[i]) > LARGE_MEMBER_LEN)
        .collect();
    large.sort_unstable_by_key(|&i| std::cmp::Reverse((len(&members[i]), i)));
    let from_end = (0..members.len()).rev();
    for i in large.into_iter().chain(from_end) {
        if !over(count, total) {
            break;
        }
        if keep[i] {
            keep[i] = false;
            count -= 1;
            total -= len(&members[i]) + usize::from(count > 0);
        }
    }
    members
        .into_iter()
        .zip(keep)
        .filter_map(|(member, kept)| kept.then_some(member))
        .collect()
}

/// Level 1's `key`: `simple-key` (`lcalpha 0*255(lcalpha / DIGIT / "_" /
/// "-" / "*" / "/")`) or `tenant-id "@" system-id` with a tenant of up to
/// 241 characters starting with a letter or digit and a system of up to 14
/// starting with a letter.
pub(super) fn valid_key(key: &str) -> bool {
    let rest_ok = |s: &[u8]| {
        s.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"_-*/".contains(&c))
    };
    let b = key.as_bytes();
    match key.split_once('@') {
        None => (1..=256).contains(&b.len()) && b[0].is_ascii_lowercase() && rest_ok(&b[1..]),
        Some((tenant, system)) => {
            let (t, s) = (tenant.as_bytes(), system.as_bytes());
            (1..=241).contains(&t.len())
                && (t[0].is_ascii_lowercase() || t[0].is_ascii_digit())
                && rest_ok(&t[1..])
                && (1..=14).contains(&s.len())
                && s[0].is_ascii_lowercase()
                && rest_ok(&s[1..])
        }
    }
}

/// `value = 0*255(chr) nblk-chr`: 1 to 256 printable ASCII characters
/// without `,` and `=`, not ending in a space.
fn valid_value(value: &str) -> bool {
    let b = value.as_bytes();
    (1..=256).contains(&b.len())
        && b.iter()
            .all(|&c| (0x20..=0x7e).contains(&c) && c != b',' && c != b'=')
        && b[b.len() - 1] != b' '
}
