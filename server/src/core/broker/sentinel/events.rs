//! What a Sentinel announces about a failover, on its Pub/Sub channels
//! (Redis's `sentinel.c`, `sentinelEvent`; the channel is the event's name):
//! that a failover of a master started or went one step further, that it
//! ended without a new primary (aborted, or over by its timeout), or that the
//! master switched to another node.
//!
//! Payloads name their master: `master <name> <ip> <port>` for the master's
//! own events, `slave <ip:port> <ip> <port> @ <name> <ip> <port>` for a
//! replica's, and `<name> <old ip> <old port> <new ip> <new port>` for
//! `+switch-master`. Events of other masters are ignored.

/// The leader's steps, from the start of a failover to the promotion of a
/// replica and the reconfiguration of the others. Only the Sentinel leading
/// the failover announces the steps after `+try-failover`.
pub(super) const STARTED: [&str; 8] = [
    "+try-failover",
    "+elected-leader",
    "+failover-state-select-slave",
    "+selected-slave",
    "+failover-state-send-slaveof-noone",
    "+failover-state-wait-promotion",
    "+promoted-slave",
    "+failover-state-reconf-slaves",
];
/// A failover over without `+switch-master` from this Sentinel yet.
pub(super) const ENDED: [&str; 2] = ["+failover-end", "+failover-end-for-timeout"];
/// `-failover-abort-not-elected`, `-no-good-slave`, `-slave-timeout`: no
/// new primary, the old one stays.
pub(super) const ABORTED: &str = "-failover-abort-*";
/// The master is another node now.
pub(super) const SWITCH_MASTER: &str = "+switch-master";

/// One event about our master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Event {
    /// A failover started or moved on (one of [`STARTED`]).
    Started,
    /// Aborted, or ended on this Sentinel without naming a new primary.
    Ended,
    /// `+switch-master`: the primary is now this `host:port`.
    Switched(String, u16),
}

/// The event on `channel` with `payload`, if it concerns `master`.
pub(super) fn parse(channel: &str, payload: &str, master: &str) -> Option<Event> {
    let words: Vec<&str> = payload.split_whitespace().collect();
    if channel == SWITCH_MASTER {
        let [name, _, _, host, port] = words[..] else {
            return None;
        };
        if name != master {
            return None;
        }
        return Some(Event::Switched(host.to_owned(), port.parse().ok()?));
    }
    let named = match words.first() {
        Some(&"master") => words.get(1),
        _ => words
            .iter()
            .position(|w| *w == "@")
            .and_then(|at| words.get(at + 1)),
    };
    if named != Some(&master) {
        return None;
    }
    if STARTED.contains(&channel) {
        Some(Event::Started)
    } else if ENDED.contains(&channel) || channel.starts_with("-failover-abort-") {
        Some(Event::Ended)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASTER: &str = "master mymaster 127.0.0.1 6379";
    const REPLICA: &str = "slave 127.0.0.1:6380 127.0.0.1 6380 @ mymaster 127.0.0.1 6379";

    #[test]
    fn every_step_of_a_failover_of_our_master_starts_a_pause() {
        for channel in [
            "+try-failover",
            "+elected-leader",
            "+failover-state-select-slave",
        ] {
            assert_eq!(parse(channel, MASTER, "mymaster"), Some(Event::Started));
        }
        for channel in ["+selected-slave", "+promoted-slave"] {
            assert_eq!(parse(channel, REPLICA, "mymaster"), Some(Event::Started));
        }
    }

    #[test]
    fn aborts_and_ends_end_it_and_a_switch_names_the_new_primary() {
        for channel in ["-failover-abort-not-elected", "+failover-end-for-timeout"] {
            assert_eq!(parse(channel, MASTER, "mymaster"), Some(Event::Ended));
        }
        let switch = "mymaster 127.0.0.1 6379 127.0.0.1 6380";
        assert_eq!(
            parse(SWITCH_MASTER, switch, "mymaster"),
            Some(Event::Switched("127.0.0.1".into(), 6380))
        );
    }

    #[test]
    fn events_of_other_masters_and_other_events_are_ignored() {
        assert_eq!(parse("+try-failover", MASTER, "other"), None);
        assert_eq!(parse("+promoted-slave", REPLICA, "mymaster2"), None);
        assert_eq!(
            parse(SWITCH_MASTER, "other 1.2.3.4 1 1.2.3.4 2", "mymaster"),
            None
        );
        assert_eq!(parse("+sdown", MASTER, "mymaster"), None);
        assert_eq!(parse(SWITCH_MASTER, "mymaster garbage", "mymaster"), None);
        assert_eq!(parse("+try-failover", "", "mymaster"), None);
    }
}
