//! A latency histogram of fixed log-linear buckets: 64 buckets per power of two, so a reported
//! percentile is at most 1/64 (1.6 %) above the true value, recording is an index computation
//! and an increment, and merging two histograms is adding their arrays.

use std::time::Duration;

/// Sub-buckets per power of two: 2^SUB_BITS.
const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;
/// Values are nanoseconds below 2^MAX_BITS (about 18 minutes); longer ones are recorded as that.
const MAX_BITS: u32 = 40;
const MAX_VALUE: u64 = (1 << MAX_BITS) - 1;
/// Values below 2·SUB have a bucket each; above, each power of two has SUB buckets.
const BUCKETS: usize = (2 * SUB + (MAX_BITS - SUB_BITS - 1) as u64 * SUB) as usize;

/// Recorded durations, in nanoseconds.
#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    count: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            count: 0,
            max: 0,
        }
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.count)
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

/// The bucket of `v` (nanoseconds, at most MAX_VALUE).
fn index_of(v: u64) -> usize {
    if v < 2 * SUB {
        return v as usize;
    }
    let exponent = 63 - v.leading_zeros(); // ≥ SUB_BITS + 1
    let shift = exponent - SUB_BITS;
    let mantissa = v >> shift; // in [SUB, 2·SUB)
    (2 * SUB + u64::from(exponent - SUB_BITS - 1) * SUB + (mantissa - SUB)) as usize
}

/// The largest value that falls into bucket `i`.
fn highest_in(i: usize) -> u64 {
    let i = i as u64;
    if i < 2 * SUB {
        return i;
    }
    let k = i - 2 * SUB;
    let shift = (k / SUB) as u32 + 1;
    let mantissa = k % SUB + SUB;
    ((mantissa + 1) << shift) - 1
}

impl Histogram {
    pub fn record(&mut self, d: Duration) {
        let v = u64::try_from(d.as_nanos())
            .unwrap_or(MAX_VALUE)
            .min(MAX_VALUE);
        if let Some(c) = self.counts.get_mut(index_of(v)) {
            *c += 1;
        }
        self.count += 1;
        self.max = self.max.max(v);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The longest recorded duration, exactly; `None` when nothing was recorded.
    pub fn max(&self) -> Option<Duration> {
        (self.count > 0).then(|| Duration::from_nanos(self.max))
    }

    /// The duration at or below which a fraction `q` (0 < q ≤ 1) of the recorded ones lie: the
    /// top of the bucket holding the value of rank ⌈q·count⌉, never above the exact maximum.
    pub fn percentile(&self, q: f64) -> Option<Duration> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(Duration::from_nanos(highest_in(i).min(self.max)));
            }
        }
        self.max()
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.count += other.count;
        self.max = self.max.max(other.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(us: u64) -> Duration {
        Duration::from_micros(us)
    }

    /// Every value lands in a bucket whose range holds it, and the buckets tile the range.
    #[test]
    fn buckets_hold_their_values_and_tile_the_range() {
        let mut previous_high = None;
        for i in 0..BUCKETS {
            let high = highest_in(i);
            let low = previous_high.map_or(0, |h: u64| h + 1);
            assert!(low <= high, "bucket {i}: {low} > {high}");
            assert_eq!(index_of(low), i, "low end of bucket {i}");
            assert_eq!(index_of(high), i, "high end of bucket {i}");
            // The relative width of a bucket bounds the error of a percentile.
            assert!(
                (high - low) as f64 <= low as f64 / SUB as f64 + 1.0,
                "bucket {i}"
            );
            previous_high = Some(high);
        }
        assert_eq!(previous_high, Some(MAX_VALUE));
    }

    #[test]
    fn empty_histogram_has_no_percentiles() {
        let h = Histogram::default();
        assert_eq!(h.percentile(0.5), None);
        assert_eq!(h.max(), None);
        assert_eq!(h.count(), 0);
    }

    #[test]
    fn percentiles_of_a_uniform_range_are_within_the_bucket_precision() {
        let mut h = Histogram::default();
        for us in 1..=1000 {
            h.record(micros(us));
        }
        assert_eq!(h.count(), 1000);
        for (q, exact_us) in [(0.5, 500.0), (0.9, 900.0), (0.99, 990.0)] {
            let got = h.percentile(q).unwrap().as_nanos() as f64 / 1000.0;
            assert!(
                got >= exact_us && got <= exact_us * (1.0 + 1.0 / SUB as f64),
                "p{q}: {got} µs, exact {exact_us} µs"
            );
        }
        assert_eq!(h.max(), Some(micros(1000)));
        assert_eq!(h.percentile(1.0), Some(micros(1000)));
    }

    #[test]
    fn a_tail_is_seen_by_p99_and_max_but_not_p50() {
        let mut h = Histogram::default();
        for _ in 0..980 {
            h.record(micros(200));
        }
        for _ in 0..20 {
            h.record(Duration::from_millis(50));
        }
        let p50 = h.percentile(0.5).unwrap();
        assert!(p50 >= micros(200) && p50 < micros(204), "{p50:?}");
        let p99 = h.percentile(0.99).unwrap();
        assert!(p99 >= Duration::from_millis(50), "{p99:?}");
        assert_eq!(h.max(), Some(Duration::from_millis(50)));
    }

    #[test]
    fn small_values_are_exact_and_huge_ones_are_capped() {
        let mut h = Histogram::default();
        h.record(Duration::from_nanos(7));
        assert_eq!(h.percentile(0.5), Some(Duration::from_nanos(7)));
        h.record(Duration::from_secs(1_000_000));
        assert_eq!(h.max(), Some(Duration::from_nanos(MAX_VALUE)));
    }

    #[test]
    fn merged_histograms_count_both() {
        let mut a = Histogram::default();
        let mut b = Histogram::default();
        for us in 1..=500 {
            a.record(micros(us));
        }
        for us in 501..=1000 {
            b.record(micros(us));
        }
        a.merge(&b);
        assert_eq!(a.count(), 1000);
        assert_eq!(a.max(), Some(micros(1000)));
        let p50 = a.percentile(0.5).unwrap();
        assert!(p50 >= micros(500) && p50 <= micros(508), "{p50:?}");
    }
}
