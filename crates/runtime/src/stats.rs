//! Statistics aggregates (`<<<`, `@count` ... `@hist_linear`) and stap's histogram text.
//!
//! The arithmetic follows SystemTap's runtime (`stat-common.c`, `stat.c`) for a single
//! CPU, so that `@avg`, `@variance` and the histogram buckets give the same numbers, and
//! the histogram printer follows `_stp_stat_print_histogram` row for row.

use std::fmt::Write as _;

/// Number of buckets of a log histogram (stap's `HIST_LOG_BUCKETS`).
pub(crate) const LOG_BUCKETS: usize = 128;
/// The bucket of the value 0 in a log histogram (stap's `HIST_LOG_BUCKET0`).
const LOG_BUCKET0: usize = 64;
/// How histograms are drawn: stap's compile-time `HIST_WIDTH` (bar width, default 50)
/// and `HIST_ELISION` (zero rows kept next to data before a `~`, default 2; negative
/// turns elision off), both settable with `-D`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HistLayout {
    pub(crate) width: i64,
    pub(crate) elision: i64,
}

impl Default for HistLayout {
    fn default() -> Self {
        HistLayout {
            width: 50,
            elision: 2,
        }
    }
}
/// Most buckets a linear histogram may have, under- and overflow included.
pub(crate) const MAX_LINEAR_BUCKETS: i64 = 128;

/// Which histogram, if any, an aggregate keeps; fixed per global at elaboration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HistSpec {
    /// No histogram.
    None,
    /// `@hist_log`.
    Log,
    /// `@hist_linear(x, start, stop, interval)`.
    Linear {
        /// Lower bound.
        start: i64,
        /// Upper bound as written (only used for equality checks between uses).
        stop: i64,
        /// Bucket width, never 0.
        interval: i64,
        /// Buckets including underflow and overflow.
        buckets: usize,
    },
}

impl HistSpec {
    /// Number of buckets to allocate.
    pub(crate) fn buckets(&self) -> usize {
        match self {
            HistSpec::None => 0,
            HistSpec::Log => LOG_BUCKETS,
            HistSpec::Linear { buckets, .. } => *buckets,
        }
    }

    /// Builds a linear spec, checking it like stap's `_stp_stat_calc_buckets`.
    pub(crate) fn linear(start: i64, stop: i64, interval: i64) -> Result<HistSpec, String> {
        if interval <= 0 {
            return Err("histogram: interval must be positive".into());
        }
        let buckets = (stop - start) / interval + 3;
        if !(3..=MAX_LINEAR_BUCKETS).contains(&buckets) || stop <= start {
            return Err(format!(
                "histogram: number of buckets must be between 1 and {}",
                MAX_LINEAR_BUCKETS - 2
            ));
        }
        Ok(HistSpec::Linear {
            start,
            stop,
            interval,
            buckets: buckets as usize,
        })
    }
}

/// One aggregate's data: stap's `stat_data` for one CPU.
#[derive(Clone, Debug, Default)]
pub(crate) struct Stat {
    pub(crate) count: i64,
    pub(crate) sum: i64,
    pub(crate) min: i64,
    pub(crate) max: i64,
    /// Running mean, scaled by `shift` (Welford).
    avg_s: i64,
    /// Running sum of squared differences (Welford).
    m2: i64,
    /// Running variance, scaled.
    variance_s: i64,
    /// Histogram buckets (empty when the global has no histogram).
    pub(crate) hist: Vec<i64>,
}

impl Stat {
    /// An empty aggregate with room for `spec`'s buckets.
    pub(crate) fn new(spec: &HistSpec) -> Stat {
        Stat {
            hist: vec![0; spec.buckets()],
            ..Stat::default()
        }
    }

    /// Forgets all values, keeping the histogram size.
    pub(crate) fn clear(&mut self) {
        let n = self.hist.len();
        *self = Stat::default();
        self.hist.resize(n, 0);
    }

    /// `x <<< val`, as `__stp_stat_add` does it.
    #[inline]
    pub(crate) fn add(&mut self, val: i64, spec: &HistSpec, shift: u32) {
        if self.count == 0 {
            self.count = 1;
            self.sum = val;
            self.min = val;
            self.max = val;
            self.avg_s = val.wrapping_shl(shift);
            self.m2 = 0;
        } else {
            self.count += 1;
            self.sum = self.sum.wrapping_add(val);
            if val > self.max {
                self.max = val;
            }
            if val < self.min {
                self.min = val;
            }
            // stap keeps `delta` in a C `int`; the truncation is reproduced on purpose
            // so that @variance matches stap's output.
            let scaled = val.wrapping_shl(shift);
            let delta = scaled.wrapping_sub(self.avg_s) as i32 as i64;
            self.avg_s = self.avg_s.wrapping_add(delta / self.count);
            self.m2 = self
                .m2
                .wrapping_add(delta.wrapping_mul(scaled.wrapping_sub(self.avg_s)));
            self.variance_s = self.m2 / (self.count - 1);
        }
        match spec {
            HistSpec::None => {}
            HistSpec::Log => {
                let b = log_bucket(val);
                if let Some(h) = self.hist.get_mut(b) {
                    *h += 1;
                }
            }
            HistSpec::Linear {
                start,
                interval,
                buckets,
                ..
            } => {
                let v = val.wrapping_sub(*start);
                let mut b = if v < 0 {
                    0
                } else {
                    (v as u64 / *interval as u64) as i64 + 1
                };
                if b >= *buckets as i64 - 1 {
                    b = *buckets as i64 - 1;
                }
                if let Some(h) = self.hist.get_mut(b as usize) {
                    *h += 1;
                }
            }
        }
    }

    /// `@avg`: the sum divided by the count, truncated like C. Caller checks count > 0.
    pub(crate) fn avg(&self) -> i64 {
        if self.count == 0 {
            0
        } else {
            self.sum.wrapping_div(self.count)
        }
    }

    /// `@variance(x, shift)`, aggregated the way `_stp_stat_get` does for one CPU.
    pub(crate) fn variance(&self, shift: u32) -> i64 {
        if self.count == 0 {
            return 0;
        }
        let agg_avg_s = self.sum.wrapping_shl(shift).wrapping_div(self.count);
        let d = self.avg_s.wrapping_sub(agg_avg_s);
        let s1 = self.count.wrapping_mul(d).wrapping_mul(d);
        let s2 = (self.count - 1).wrapping_mul(self.variance_s);
        let var_s = if self.count - 1 == 0 {
            0
        } else {
            s1.wrapping_add(s2).wrapping_div(self.count - 1)
        };
        var_s >> (2 * shift).min(63)
    }
}

/// stap's `_stp_val_to_bucket`: bucket 64 holds 0, 65 + k holds [2^k, 2^(k+1)), and
/// negative values mirror below 64.
#[inline]
pub(crate) fn log_bucket(val: i64) -> usize {
    if val == 0 {
        return LOG_BUCKET0;
    }
    let u = val.unsigned_abs();
    let r = 128 - u.leading_zeros() as usize;
    let b = if val < 0 { 128 - r } else { r };
    b.min(LOG_BUCKETS - 1)
}

/// stap's `_stp_bucket_to_val`: the lower bound printed for a log bucket.
fn log_bucket_val(b: usize) -> i64 {
    if b == LOG_BUCKET0 {
        0
    } else if b < LOG_BUCKET0 {
        i64::MIN >> b
    } else {
        1i64 << (b - LOG_BUCKET0 - 1)
    }
}

/// Digits needed to print `v` in decimal, with its sign (stap's `needed_space`).
fn needed_space(v: i64) -> i64 {
    if v == 0 {
        return 1;
    }
    let mut n = if v < 0 { 1 } else { 0 };
    let mut u = v.unsigned_abs();
    while u != 0 {
        u /= 10;
        n += 1;
    }
    n
}

/// Renders a histogram exactly as stap's `_stp_stat_print_histogram` does. The caller
/// checks that the aggregate is not empty (stap reports "empty aggregate" first).
pub(crate) fn print_histogram(out: &mut String, spec: &HistSpec, st: &Stat, layout: HistLayout) {
    let (hist_width, hist_elision) = (layout.width, layout.elision);
    let h = &st.hist;
    let nb = h.len() as i64;
    if nb == 0 {
        return;
    }
    let is_log = matches!(spec, HistSpec::Log);
    let mut low: i64 = -1;
    let mut high: i64 = 0;
    let mut valmax: i64 = 0;
    for (i, &c) in h.iter().enumerate() {
        if c > 0 && low == -1 {
            low = i as i64;
        }
        if c > 0 {
            high = i as i64;
        }
        if c > valmax {
            valmax = c;
        }
    }
    if low < 0 {
        // No data: stap reports "empty aggregate" before printing.
        return;
    }
    // Show up to two zero rows on either side of the data.
    for _ in 0..2 {
        if is_log {
            if low != LOG_BUCKET0 as i64 && low > 0 {
                low -= 1;
            }
        } else if low > 0 {
            low -= 1;
        }
        if high < nb - 1 {
            high += 1;
        }
    }
    let (mut under, mut over) = (0, 0);
    if !is_log {
        if low == 0 && h[0] == 0 {
            low += 1;
        }
        if high == nb - 1 && h[high as usize] == 0 {
            high -= 1;
        }
        if low == 0 {
            under = 1;
        }
        if high == nb - 1 {
            over = 1;
        }
    }
    let scale = if valmax <= hist_width {
        1
    } else {
        valmax / hist_width + i64::from(valmax % hist_width != 0)
    };
    let cnt_space = needed_space(valmax);
    let mut val_space = match spec {
        HistSpec::Linear {
            start, interval, ..
        } => (needed_space(*start) + under)
            .max(needed_space(start.wrapping_add(interval.wrapping_mul(high))) + over),
        _ => needed_space(log_bucket_val(high.max(0) as usize))
            .max(needed_space(log_bucket_val(low.max(0) as usize))),
    };
    val_space = val_space.max(5);
    let _ = write!(out, "{:>w$} |", "value", w = val_space as usize);
    for _ in 0..hist_width {
        out.push('-');
    }
    out.push_str(" count\n");
    let mut eliding = false;
    let mut i = low;
    while i <= high {
        if hist_elision >= 0 {
            // stap never elides more than the number of buckets.
            let max_elide = hist_elision.min(nb);
            let min_b = low.max(i - max_elide);
            let max_b = high.min(i + max_elide);
            let elide = (min_b..=max_b).all(|k| h[k as usize] == 0);
            if elide {
                eliding = true;
                i += 1;
                continue;
            }
            if eliding {
                let _ = writeln!(out, "{:>w$} ~", "", w = val_space as usize);
                eliding = false;
            }
        }
        let (val, prefix) = match spec {
            HistSpec::Linear {
                start, interval, ..
            } => {
                if i == 0 {
                    (*start, "<")
                } else if i == nb - 1 {
                    (start.wrapping_add((i - 2).wrapping_mul(*interval)), ">")
                } else {
                    (start.wrapping_add((i - 1).wrapping_mul(*interval)), "")
                }
            }
            _ => (log_bucket_val(i as usize), ""),
        };
        let pw = (val_space - needed_space(val)).max(0) as usize;
        let _ = write!(out, "{prefix:>pw$}{val} |");
        let c = h[i as usize];
        let v = c / scale;
        for _ in 0..v {
            out.push('@');
        }
        let cw = (hist_width - v + 1 + cnt_space).max(0) as usize;
        let _ = writeln!(out, "{c:>cw$}");
        i += 1;
    }
    out.push('\n');
}
