//! Rounds: a figure taken more than once, so it carries its noise.
//!
//! The suite runs each side-by-side group (ours and nats-server, ours and the
//! Redis engine, tracing off and on) `--rounds` times, alternating and
//! rotating which side goes first (A B, B A, A B for two sides and three
//! rounds; A B C, B C A, C A B for three): a ratio is taken per round,
//! between runs a few seconds apart, so slow drift on the shared machine
//! moves both sides of it, and no side always runs first or last (a run
//! right after another one's teardown is not the same as the first). Round 1 keeps the run's plain name
//! (`fanout-k100`), later rounds add `-r2`, `-r3`, so a one-round suite and
//! the chart read the same names as before.
//!
//! A figure is a [`Series`], one value per round (`None`: that round failed);
//! [`Spread`] summarises it as median, min and max. A target is met only when
//! every round has a value and every value meets it.

use serde_json::{Map, Value};

/// One value per round of a figure; `None` where that round failed.
pub(crate) type Series = Vec<Option<f64>>;

/// Name of round `r` (0-based) of the run `base`.
pub(crate) fn name(base: &str, r: usize) -> String {
    if r == 0 {
        base.to_owned()
    } else {
        format!("{base}-r{}", r + 1)
    }
}

/// How many rounds of `base` are in `runs` (0 if none).
pub(crate) fn count(runs: &Value, base: &str) -> usize {
    (0..)
        .take_while(|&r| runs.get(name(base, r)).is_some())
        .count()
}

/// The names of every round of `base` in `runs`.
pub(crate) fn names(runs: &Value, base: &str) -> Vec<String> {
    (0..count(runs, base)).map(|r| name(base, r)).collect()
}

/// One side of a group: the run's base name and how to take it (given the
/// round's run name).
pub(crate) type Side<'a> = (String, Box<dyn Fn(&str) -> Value + 'a>);

/// Runs `sides` `rounds` times into `runs`, round `r` starting at side
/// `r mod n` (A B, B A, A B ...), so each side takes each position in turn.
pub(crate) fn alternate(runs: &mut Map<String, Value>, rounds: usize, sides: &[Side<'_>]) {
    for r in 0..rounds {
        for (base, take) in rotated(sides, r) {
            let name = name(base, r);
            let value = take(&name);
            runs.insert(name, value);
        }
    }
}

/// `items` in round `r`'s order: starting at `r mod len`, wrapping around.
fn rotated<T>(items: &[T], r: usize) -> impl Iterator<Item = &T> {
    let start = if items.is_empty() { 0 } else { r % items.len() };
    items[start..].iter().chain(&items[..start])
}

/// `field` (a JSON pointer) of every round of `base`.
pub(crate) fn series(runs: &Value, base: &str, field: &str) -> Series {
    let n = count(runs, base).max(1);
    (0..n)
        .map(|r| runs[name(base, r)].pointer(field).and_then(Value::as_f64))
        .collect()
}

/// Per round, `a ÷ b` (rounds paired by index; the shorter series sets the length).
pub(crate) fn ratio(a: &Series, b: &Series) -> Series {
    a.iter()
        .zip(b)
        .map(|(a, b)| a.zip(*b).filter(|(_, b)| *b > 0.0).map(|(a, b)| a / b))
        .collect()
}

/// Per round, `f` of the value.
pub(crate) fn map(s: &Series, f: impl Fn(f64) -> f64) -> Series {
    s.iter().map(|v| v.map(&f)).collect()
}

/// Median, min and max of the rounds that have a value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Spread {
    pub(crate) median: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
}

impl Spread {
    /// `None` when no round has a value. The median of an even count is the
    /// mean of the middle two.
    pub(crate) fn of(s: &Series) -> Option<Self> {
        let mut v: Vec<f64> = s.iter().flatten().copied().collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let mid = v.len() / 2;
        let median = if v.len() % 2 == 1 {
            v[mid]
        } else {
            (v[mid - 1] + v[mid]) / 2.0
        };
        Some(Self {
            median,
            min: v[0],
            max: v[v.len() - 1],
        })
    }
}

/// Whether every round has a value and `meets` it.
pub(crate) fn every(s: &Series, meets: impl Fn(f64) -> bool) -> bool {
    !s.is_empty() && s.iter().all(|v| v.is_some_and(&meets))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rounds_are_named_counted_and_paired() {
        assert_eq!(name("fanout-k100", 0), "fanout-k100");
        assert_eq!(name("fanout-k100", 2), "fanout-k100-r3");
        let runs = json!({
            "a": {"x": 2.0}, "a-r2": {"x": 4.0}, "a-r3": {"error": "boom"},
            "b": {"x": 1.0}, "b-r2": {"x": 2.0}, "b-r3": {"x": 1.0},
        });
        assert_eq!(count(&runs, "a"), 3);
        assert_eq!(count(&runs, "c"), 0);
        let a = series(&runs, "a", "/x");
        assert_eq!(a, vec![Some(2.0), Some(4.0), None]);
        let r = ratio(&a, &series(&runs, "b", "/x"));
        assert_eq!(r, vec![Some(2.0), Some(2.0), None]);
        assert!(!every(&r, |v| v >= 1.0), "a failed round never meets");
        assert!(every(&vec![Some(1.0), Some(1.5)], |v| v >= 1.0));
        assert!(!every(&vec![Some(1.0), Some(0.9)], |v| v >= 1.0));
        assert!(!every(&vec![], |_| true));
    }

    #[test]
    fn each_side_takes_each_position_in_turn() {
        let order = std::cell::RefCell::new(Vec::new());
        let side = |base: &str| -> Side<'_> {
            let order = &order;
            (
                base.to_owned(),
                Box::new(move |name: &str| {
                    order.borrow_mut().push(name.to_owned());
                    json!({})
                }),
            )
        };
        let mut runs = Map::new();
        alternate(&mut runs, 3, &[side("a"), side("b"), side("c")]);
        let expected = [
            "a", "b", "c", "b-r2", "c-r2", "a-r2", "c-r3", "a-r3", "b-r3",
        ];
        assert_eq!(*order.borrow(), expected);
        assert_eq!(runs.len(), 9);
        order.borrow_mut().clear();
        alternate(&mut Map::new(), 2, &[side("x"), side("y")]);
        assert_eq!(*order.borrow(), ["x", "y", "y-r2", "x-r2"]);
        alternate(&mut Map::new(), 2, &[]);
    }

    #[test]
    fn spread_is_median_min_max_of_the_values_present() {
        let s = Spread::of(&vec![Some(3.0), None, Some(1.0), Some(2.0)]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        let even = Spread::of(&vec![Some(4.0), Some(1.0)]).unwrap();
        assert_eq!(even.median, 2.5);
        assert_eq!(Spread::of(&vec![None]), None);
    }
}
