//! Charts as SVG geometry computed here and drawn by the templates (no script, no inline
//! style: colours come from CSS classes, which the CSP allows). Pure: counts in, rectangles
//! and labels out. Every chart also has a table beside it in the page, for screen readers and
//! exact numbers.

use crate::store::BucketCount;

/// Width and height of the chart's drawing area, in SVG user units (it scales with CSS).
pub const WIDTH: i64 = 720;
pub const HEIGHT: i64 = 200;
/// Room for the axis labels under the bars.
pub const LABEL_ROOM: i64 = 20;

/// The series a status is drawn in: passed, ended otherwise, or not ended yet.
pub fn series(status: &str) -> &'static str {
    match status {
        "OK" => "ok",
        "PENDING" | "NOT_STARTED" | "PROCESSING" => "open",
        _ => "failed",
    }
}

/// The legend: (CSS class, label).
pub const LEGEND: [(&str, &str); 3] = [
    ("ok", "OK"),
    ("failed", "Ended otherwise (FAILED, CANCELLED, TIMEOUT, …)"),
    ("open", "Not ended yet (PENDING, NOT_STARTED, PROCESSING)"),
];

pub struct Rect {
    pub x: i64,
    pub y: i64,
    pub w: i64,
    pub h: i64,
    pub class: &'static str,
    /// The tooltip (`<title>`).
    pub title: String,
}

pub struct Label {
    pub x: i64,
    pub text: String,
}

/// A stacked bar chart of verifications per time bucket.
pub struct StackedBars {
    pub width: i64,
    pub height: i64,
    /// The full SVG height (bars and labels).
    pub total_height: i64,
    pub bars: Vec<Rect>,
    pub labels: Vec<Label>,
    /// The tallest bar's count (the scale).
    pub max: i64,
}

/// Bars for `buckets` consecutive buckets of `bucket_ms` starting at `start`, from the
/// store's counts; `label` names a bucket by its start, shown under every `label_every`-th.
pub fn stacked_bars(
    counts: &[BucketCount],
    start: i64,
    bucket_ms: i64,
    buckets: usize,
    label_every: usize,
    label: impl Fn(i64) -> String,
) -> StackedBars {
    let mut totals = vec![[0i64; 3]; buckets];
    for c in counts {
        let index = (c.bucket - start).div_euclid(bucket_ms.max(1));
        if let Ok(index) = usize::try_from(index)
            && index < buckets
        {
            let series = LEGEND
                .iter()
                .position(|(class, _)| *class == series(&c.key))
                .unwrap_or(1);
            totals[index][series] += c.count;
        }
    }
    let max = totals
        .iter()
        .map(|t| t.iter().sum::<i64>())
        .max()
        .unwrap_or(0);
    let slot = WIDTH / i64::try_from(buckets.max(1)).unwrap_or(1);
    let bar_width = (slot * 3 / 4).max(1);
    let mut bars = Vec::new();
    let mut labels = Vec::new();
    for (i, stack) in totals.iter().enumerate() {
        let x = i64::try_from(i).unwrap_or(0) * slot + (slot - bar_width) / 2;
        let bucket_start = start + i64::try_from(i).unwrap_or(0) * bucket_ms;
        let mut y = HEIGHT;
        for (series, count) in stack.iter().enumerate() {
            if *count == 0 {
                continue;
            }
            let h = (count * HEIGHT / max.max(1)).max(1);
            y -= h;
            let (class, name) = LEGEND[series];
            bars.push(Rect {
                x,
                y,
                w: bar_width,
                h,
                class,
                title: format!("{}: {count} {name}", label(bucket_start)),
            });
        }
        if i % label_every.max(1) == 0 {
            labels.push(Label {
                x: x + bar_width / 2,
                text: label(bucket_start),
            });
        }
    }
    StackedBars {
        width: WIDTH,
        height: HEIGHT,
        total_height: HEIGHT + LABEL_ROOM,
        bars,
        labels,
        max,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(bucket: i64, key: &str, count: i64) -> BucketCount {
        BucketCount {
            bucket,
            key: key.into(),
            count,
        }
    }

    #[test]
    fn bars_stack_per_bucket_scaled_to_the_tallest() {
        let counts = [
            count(0, "OK", 3),
            count(0, "FAILED", 1),
            count(10, "PENDING", 2),
            count(99_999, "OK", 50), // outside the window: ignored
        ];
        let chart = stacked_bars(&counts, 0, 10, 3, 1, |t| t.to_string());
        assert_eq!(chart.max, 4);
        assert_eq!(chart.bars.len(), 3);
        let ok = &chart.bars[0];
        assert_eq!((ok.class, ok.h, ok.y), ("ok", HEIGHT * 3 / 4, HEIGHT / 4));
        assert_eq!(chart.bars[1].class, "failed");
        assert_eq!(chart.bars[1].y + chart.bars[1].h, ok.y, "stacked on top");
        assert_eq!(chart.bars[2].class, "open");
        assert_eq!(chart.labels.len(), 3);
        assert!(chart.bars.iter().all(|b| b.y >= 0 && b.y + b.h <= HEIGHT));
    }

    #[test]
    fn statuses_fall_into_three_series() {
        assert_eq!(series("OK"), "ok");
        assert_eq!(series("TIMEOUT"), "failed");
        assert_eq!(series("SOMETHING_NEW"), "failed");
        assert_eq!(series("PENDING"), "open");
    }
}
