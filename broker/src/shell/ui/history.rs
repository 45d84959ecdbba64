//! The dominant shares of roles and frameworks over time, for the UI's
//! overview: a bounded ring of samples taken by the shell's tick loop every
//! `broker.ui.history.interval`, drawn as an inline SVG (no JavaScript).
//!
//! Bounds: at most `broker.ui.history.samples` samples, each with at most
//! [`SERIES_MAX`] roles and as many frameworks (the largest shares), so
//! the history's memory does not grow with the number of frameworks.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use maud::{html, Markup};

/// Roles (and frameworks) one sample keeps at most: the largest shares.
pub const SERIES_MAX: usize = 16;

#[derive(Debug, Clone)]
struct Sample {
    /// Wall-clock time of the sample.
    at: Duration,
    roles: Vec<(String, f64)>,
    frameworks: Vec<(String, f64)>,
}

#[derive(Debug)]
pub struct History {
    samples: VecDeque<Sample>,
    max: usize,
    every: Duration,
    /// Monotonic time of the last sample.
    last: Option<Duration>,
}

fn largest(mut shares: Vec<(String, f64)>) -> Vec<(String, f64)> {
    shares.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    shares.truncate(SERIES_MAX);
    shares
}

impl History {
    pub fn new(max: usize, every: Duration) -> History {
        History { samples: VecDeque::new(), max: max.max(2), every, last: None }
    }

    /// True when a sample is due at monotonic time `now`.
    pub fn due(&self, now: Duration) -> bool {
        self.last.is_none_or(|last| now.saturating_sub(last) >= self.every)
    }

    /// Records the shares seen at `now` (monotonic) / `at` (wall clock).
    pub fn record(&mut self, now: Duration, at: Duration, roles: Vec<(String, f64)>, frameworks: Vec<(String, f64)>) {
        self.last = Some(now);
        self.samples.push_back(Sample { at, roles: largest(roles), frameworks: largest(frameworks) });
        while self.samples.len() > self.max {
            self.samples.pop_front();
        }
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// The span the samples cover.
    pub fn span(&self) -> Duration {
        match (self.samples.front(), self.samples.back()) {
            (Some(first), Some(last)) => last.at.saturating_sub(first.at),
            _ => Duration::ZERO,
        }
    }

    /// A chart of the roles' shares (`frameworks: false`) or the
    /// frameworks', of the series whose name `show` takes in (what the
    /// caller may see).
    pub fn chart(&self, frameworks: bool, show: impl Fn(&str) -> bool) -> Markup {
        // name → share at each sample index (absent: not among the largest).
        let mut series: BTreeMap<&str, Vec<Option<f64>>> = BTreeMap::new();
        let n = self.samples.len();
        for (i, sample) in self.samples.iter().enumerate() {
            let shares = if frameworks { &sample.frameworks } else { &sample.roles };
            for (name, share) in shares {
                series.entry(name.as_str()).or_insert_with(|| vec![None; n])[i] = Some(*share);
            }
        }
        // Asked once a series, not once a sample.
        series.retain(|name, _| show(name));
        if n < 2 || series.is_empty() {
            return html! { p.muted { "Not enough samples yet (one every " (self.every.as_secs_f64()) " s)." } };
        }
        const W: f64 = 600.0;
        const H: f64 = 120.0;
        let x = |i: usize| i as f64 * W / (n - 1) as f64;
        let y = |share: f64| H - share.clamp(0.0, 1.0) * H;
        html! {
            svg.chart width="650" height="140" viewBox="0 -10 650 140" role="img" aria-label=(if frameworks { "framework shares over time" } else { "role shares over time" }) {
                @for level in [1.0, 0.5, 0.0] {
                    line x1="0" y1=(y(level)) x2=(W) y2=(y(level)) class="grid" {}
                    text x=(W + 6.0) y=(y(level) + 4.0) font-size="11" fill="#777" { (percent(level)) }
                }
                @for (k, (name, points)) in series.iter().enumerate() {
                    polyline fill="none" stroke=(PALETTE[k % PALETTE.len()]) stroke-width="2"
                        points=(points.iter().enumerate().map(|(i, s)| format!("{:.1},{:.1}", x(i), y(s.unwrap_or(0.0)))).collect::<Vec<_>>().join(" ")) {
                        title { (name) }
                    }
                }
            }
            ul.legend {
                @for (k, (name, points)) in series.iter().enumerate() {
                    li {
                        span.swatch style={ "background:" (PALETTE[k % PALETTE.len()]) } {}
                        (name) " " span.muted { (percent(points.last().copied().flatten().unwrap_or(0.0))) }
                    }
                }
            }
        }
    }
}

pub fn percent(share: f64) -> String {
    format!("{:.1}%", share * 100.0)
}

const PALETTE: [&str; 8] = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_history_is_bounded_in_samples_and_series() {
        let mut h = History::new(3, Duration::from_secs(10));
        assert!(h.due(Duration::ZERO));
        for i in 0..5u64 {
            let roles = (0..40).map(|r| (format!("r{r}"), r as f64 / 100.0)).collect();
            h.record(Duration::from_secs(10 * i), Duration::from_secs(1000 + 10 * i), roles, Vec::new());
        }
        assert_eq!(h.len(), 3);
        assert_eq!(h.span(), Duration::from_secs(20));
        assert!(h.samples.iter().all(|s| s.roles.len() == SERIES_MAX));
        assert_eq!(h.samples[0].roles[0].0, "r39", "the largest shares are kept");
        assert!(!h.due(Duration::from_secs(45)));
        assert!(h.due(Duration::from_secs(50)));
    }

    #[test]
    fn the_chart_escapes_names() {
        let mut h = History::new(10, Duration::from_secs(1));
        for i in 0..2u64 {
            h.record(Duration::from_secs(i), Duration::from_secs(i), vec![("<script>x</script>".to_owned(), 0.5)], Vec::new());
        }
        let svg = h.chart(false, |_| true).into_string();
        assert!(!svg.contains("<script>"), "{svg}");
        assert!(svg.contains("&lt;script&gt;x&lt;/script&gt;"), "{svg}");
        assert!(svg.contains("points=\"0.0,60.0 600.0,60.0\""), "{svg}");
    }
}
