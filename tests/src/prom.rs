//! A minimal Prometheus text-format (0.0.4) parser and scraper: samples with
//! their labels, `# HELP` and `# TYPE` lines, and lookups by name plus a
//! label subset.

use crate::within;
use std::collections::BTreeMap;
use std::time::Duration;

/// One sample line: `name{labels} value [timestamp]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    /// Whether every `(key, value)` of `subset` is among the labels.
    pub fn matches(&self, name: &str, subset: &[(&str, &str)]) -> bool {
        self.name == name
            && subset
                .iter()
                .all(|(k, v)| self.labels.get(*k).is_some_and(|l| l == v))
    }
}

/// A parsed scrape.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    pub samples: Vec<Sample>,
    /// Metric family name to its HELP text.
    pub help: BTreeMap<String, String>,
    /// Metric family name to its TYPE (`counter`, `gauge`, `histogram`, ...).
    pub types: BTreeMap<String, String>,
}

impl Metrics {
    /// Parses the text format; an unparsable line is an error naming it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut out = Self::default();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
                out.help.insert(name.into(), help.into());
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').ok_or(format!("bad TYPE: {line}"))?;
                out.types.insert(name.into(), kind.trim().into());
            } else if !line.starts_with('#') {
                out.samples.push(parse_sample(line)?);
            }
        }
        Ok(out)
    }

    /// Samples named `name` carrying every label of `subset`.
    pub fn samples<'a>(
        &'a self,
        name: &'a str,
        subset: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| s.matches(name, subset))
    }

    /// The value of the one sample matching; `None` if there is none.
    /// Panics if several match, since the caller meant one series.
    pub fn value(&self, name: &str, subset: &[(&str, &str)]) -> Option<f64> {
        let found: Vec<&Sample> = self.samples(name, subset).collect();
        assert!(
            found.len() <= 1,
            "{name}{subset:?} matches {} series: {found:?}",
            found.len()
        );
        found.first().map(|s| s.value)
    }

    /// The sum over every matching sample (0 if none).
    pub fn sum(&self, name: &str, subset: &[(&str, &str)]) -> f64 {
        self.samples(name, subset).map(|s| s.value).sum()
    }

    /// Whether the family has any sample: `name` itself or, for histograms and
    /// summaries, `name_bucket`/`name_sum`/`name_count`.
    pub fn has_metric(&self, name: &str) -> bool {
        self.samples
            .iter()
            .any(|s| family(&s.name) == name || s.name == name)
    }

    /// The `le` bounds of `name_bucket` series, ascending, `+Inf` included.
    pub fn bucket_bounds(&self, name: &str) -> Vec<f64> {
        let bucket = format!("{name}_bucket");
        let mut les: Vec<f64> = self
            .samples(&bucket, &[])
            .filter_map(|s| s.labels.get("le").and_then(|le| parse_value(le).ok()))
            .collect();
        les.sort_by(f64::total_cmp);
        les.dedup();
        les
    }
}

/// Cumulative `(le, count)` pairs of histogram `name` summed over the series
/// matching `subset`, ascending by `le`.
pub fn cumulative_buckets(m: &Metrics, name: &str, subset: &[(&str, &str)]) -> Vec<(f64, f64)> {
    let bucket = format!("{name}_bucket");
    m.bucket_bounds(name)
        .into_iter()
        .map(|le| {
            let count: f64 = m
                .samples(&bucket, subset)
                .filter(|s| {
                    s.labels
                        .get("le")
                        .and_then(|v| parse_value(v).ok())
                        .is_some_and(|v| v == le)
                })
                .map(|s| s.value)
                .sum();
            (le, count)
        })
        .collect()
}

/// The `q` quantile of what histogram `name` observed between scrapes
/// `before` and `after`, interpolated linearly inside the bucket as
/// Prometheus' `histogram_quantile` does. `None` if nothing was observed.
pub fn quantile_between(
    before: &Metrics,
    after: &Metrics,
    name: &str,
    subset: &[(&str, &str)],
    q: f64,
) -> Option<f64> {
    let old = cumulative_buckets(before, name, subset);
    let new = cumulative_buckets(after, name, subset);
    let delta: Vec<(f64, f64)> = new
        .iter()
        .map(|&(le, n)| {
            let was = old.iter().find(|(l, _)| *l == le).map_or(0.0, |(_, c)| *c);
            (le, n - was)
        })
        .collect();
    let total = delta.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for &(le, count) in &delta {
        if count >= rank {
            if le.is_infinite() {
                return Some(lower);
            }
            let in_bucket = count - below;
            let frac = if in_bucket > 0.0 {
                (rank - below) / in_bucket
            } else {
                1.0
            };
            return Some(lower + (le - lower) * frac);
        }
        (lower, below) = (le, count);
    }
    Some(lower)
}

/// The family a sample belongs to: strips `_bucket`, `_sum` and `_count`.
fn family(sample: &str) -> &str {
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|suffix| sample.strip_suffix(suffix))
        .unwrap_or(sample)
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let bad = || format!("bad sample line: {line}");
    let name_end = line.find(['{', ' ', '\t']).ok_or_else(bad)?;
    let name = &line[..name_end];
    let (labels, rest) = if line[name_end..].starts_with('{') {
        parse_labels(&line[name_end + 1..]).ok_or_else(bad)?
    } else {
        (BTreeMap::new(), &line[name_end..])
    };
    let value = rest.split_whitespace().next().ok_or_else(bad)?;
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value: parse_value(value).map_err(|_| bad())?,
    })
}

/// Parses `k="v",...}` and returns the labels and what follows the `}`.
fn parse_labels(mut s: &str) -> Option<(BTreeMap<String, String>, &str)> {
    let mut labels = BTreeMap::new();
    loop {
        s = s.trim_start_matches([' ', ',']);
        if let Some(rest) = s.strip_prefix('}') {
            return Some((labels, rest));
        }
        let (key, rest) = s.split_once('=')?;
        let rest = rest.strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        labels.insert(key.trim().to_owned(), value);
        s = &rest[end + 1..];
    }
}

fn parse_value(s: &str) -> Result<f64, std::num::ParseFloatError> {
    match s {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse(),
    }
}

/// GETs `url` and parses it; fails the test on any error.
pub async fn scrape(url: &str) -> Metrics {
    let response = within(&format!("scrape {url}"), reqwest::get(url))
        .await
        .unwrap_or_else(|e| panic!("scrape {url}: {e}"));
    assert!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    let text = response.text().await.expect("metrics body");
    Metrics::parse(&text).unwrap_or_else(|e| panic!("{url}: {e}"))
}

/// Re-scrapes `url` until `pred` holds (bounded); returns that scrape.
pub async fn wait_metrics(url: &str, what: &str, pred: impl Fn(&Metrics) -> bool) -> Metrics {
    within(&format!("{url}: {what}"), async {
        loop {
            let metrics = scrape(url).await;
            if pred(&metrics) {
                break metrics;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"# HELP http_requests_total Requests "served".
# TYPE http_requests_total counter
http_requests_total{method="POST",route="/a",status="200"} 3
http_requests_total{method="POST",route="/a",status="500"} 1
http_requests_total{method="GET",route="/b\"q\\",status="200"} 2 1712345678000
# TYPE lat_seconds histogram
lat_seconds_bucket{le="0.00005"} 0
lat_seconds_bucket{le="1"} 4
lat_seconds_bucket{le="+Inf"} 5
lat_seconds_sum 1.5e0
lat_seconds_count 5
up 1
"#;

    #[test]
    fn parses_samples_help_and_types() {
        let m = Metrics::parse(SAMPLE).unwrap();
        assert_eq!(m.samples.len(), 9);
        assert_eq!(m.help["http_requests_total"], "Requests \"served\".");
        assert_eq!(m.types["lat_seconds"], "histogram");
        assert_eq!(
            m.value("http_requests_total", &[("status", "500")]),
            Some(1.0)
        );
        assert_eq!(
            m.value("http_requests_total", &[("route", "/b\"q\\")]),
            Some(2.0)
        );
        assert_eq!(m.sum("http_requests_total", &[("method", "POST")]), 4.0);
        assert_eq!(m.sum("nope", &[]), 0.0);
        assert_eq!(m.value("up", &[]), Some(1.0));
        assert_eq!(m.value("lat_seconds_sum", &[]), Some(1.5));
        assert!(m.has_metric("lat_seconds") && m.has_metric("up"));
        assert!(!m.has_metric("lat"));
        assert_eq!(
            m.bucket_bounds("lat_seconds"),
            [0.00005, 1.0, f64::INFINITY]
        );
    }

    #[test]
    #[should_panic(expected = "matches 2 series")]
    fn value_refuses_an_ambiguous_subset() {
        Metrics::parse(SAMPLE)
            .unwrap()
            .value("http_requests_total", &[("method", "POST")]);
    }

    #[test]
    fn rejects_garbage() {
        assert!(Metrics::parse("metric{le=\"1\" 3").is_err());
        assert!(Metrics::parse("metric abc").is_err());
    }
}
