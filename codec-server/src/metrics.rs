//! Prometheus metrics, rendered in the text exposition format at `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tcodec_json::Direction;

const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(
            d.as_micros().try_into().unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
}

/// An External Storage operation and its outcome.
type StorageLabels = (&'static str, &'static str);

/// The server's counters.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    latency: [Histogram; 2],
    payloads: [AtomicU64; 2],
    failures: Mutex<BTreeMap<&'static str, u64>>,
    in_flight: AtomicU64,
    /// CORS preflights: [refused, allowed].
    preflights: [AtomicU64; 2],
    /// Requests whose codec work ran: [on a blocking thread, on an async worker].
    work: [AtomicU64; 2],
    /// Codec work running on blocking threads now.
    blocking: std::sync::Arc<AtomicU64>,
    /// External Storage operations by (operation, outcome), and their bytes.
    storage: Mutex<BTreeMap<StorageLabels, (u64, u64)>>,
}

/// The slot of a direction's counters.
fn index(direction: Direction) -> usize {
    match direction {
        Direction::Encode => 0,
        Direction::Decode => 1,
    }
}

impl Metrics {
    /// Counts a finished request.
    pub fn request(
        &self,
        endpoint: &'static str,
        status: u16,
        latency: Option<(Direction, Duration)>,
    ) {
        *lock(&self.requests).entry((endpoint, status)).or_default() += 1;
        if let Some((e, d)) = latency {
            self.latency[index(e)].observe(d);
        }
    }

    /// Counts payloads handled.
    pub fn payloads(&self, endpoint: Direction, n: usize) {
        self.payloads[index(endpoint)].fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Counts a failed codec call by reason.
    pub fn failure(&self, reason: &'static str) {
        *lock(&self.failures).entry(reason).or_default() += 1;
    }

    /// Counts a request's codec work by where it ran (see [`crate::handlers::INLINE_MAX_BODY`]).
    pub fn work(&self, on_async_worker: bool) {
        self.work[usize::from(on_async_worker)].fetch_add(1, Ordering::Relaxed);
    }

    /// Marks codec work started on a blocking thread; the guard, dropped
    /// when the work stops (which may be after its request was answered),
    /// marks it stopped.
    pub fn blocking_work(&self) -> BlockingWork {
        self.blocking.fetch_add(1, Ordering::Relaxed);
        BlockingWork(std::sync::Arc::clone(&self.blocking))
    }

    /// Counts an External Storage operation (`fetch` or `store`) by outcome
    /// (`ok` or an error code), with the bytes it moved.
    pub fn storage(&self, operation: &'static str, outcome: &'static str, bytes: usize) {
        let mut map = lock(&self.storage);
        let entry = map.entry((operation, outcome)).or_default();
        entry.0 += 1;
        entry.1 += bytes as u64;
    }

    /// Counts a CORS preflight.
    pub fn preflight(&self, allowed: bool) {
        self.preflights[usize::from(allowed)].fetch_add(1, Ordering::Relaxed);
    }

    /// Marks a request started; the guard marks it finished.
    pub fn in_flight(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self)
    }

    /// The metrics in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let requests: Vec<String> = lock(&self.requests)
            .iter()
            .map(|((endpoint, status), n)| {
                format!("{{endpoint=\"{endpoint}\",code=\"{status}\"}} {n}")
            })
            .collect();
        family(
            &mut out,
            "tcodec_requests_total",
            "counter",
            "HTTP requests by endpoint and status code.",
            requests,
        );
        self.render_latency(&mut out);
        let payloads = DIRECTIONS.map(|e| {
            let n = self.payloads[index(e)].load(Ordering::Relaxed);
            format!("{{endpoint=\"{e}\"}} {n}")
        });
        family(
            &mut out,
            "tcodec_payloads_total",
            "counter",
            "Payloads encoded or decoded.",
            payloads,
        );
        family(
            &mut out,
            "tcodec_codec_work_total",
            "counter",
            "Encode/decode requests by where their codec work ran: small ones with keys in memory on the async workers, others on blocking threads.",
            labelled("thread", ["blocking", "async"], &self.work),
        );
        let failures: Vec<String> = lock(&self.failures)
            .iter()
            .map(|(reason, n)| format!("{{reason=\"{reason}\"}} {n}"))
            .collect();
        family(
            &mut out,
            "tcodec_codec_failures_total",
            "counter",
            "Failed encode/decode requests by reason.",
            failures,
        );
        let storage = lock(&self.storage).clone();
        family(
            &mut out,
            "tcodec_storage_operations_total",
            "counter",
            "External Storage fetches and stores by outcome.",
            storage.iter().map(|((op, outcome), (n, _))| {
                format!("{{operation=\"{op}\",outcome=\"{outcome}\"}} {n}")
            }),
        );
        family(
            &mut out,
            "tcodec_storage_bytes_total",
            "counter",
            "Bytes of objects fetched from and stored in External Storage.",
            storage.iter().map(|((op, outcome), (_, bytes))| {
                format!("{{operation=\"{op}\",outcome=\"{outcome}\"}} {bytes}")
            }),
        );
        family(
            &mut out,
            "tcodec_cors_preflights_total",
            "counter",
            "CORS preflights by whether the origin is allowed.",
            labelled("allowed", ["false", "true"], &self.preflights),
        );
        family(
            &mut out,
            "tcodec_requests_in_flight",
            "gauge",
            "Requests being handled.",
            [format!(" {}", self.in_flight.load(Ordering::Relaxed))],
        );
        family(
            &mut out,
            "tcodec_blocking_work_running",
            "gauge",
            "Codec work running on blocking threads, until it stops (a request that timed out or whose client left stops at its next payload).",
            [format!(" {}", self.blocking.load(Ordering::Relaxed))],
        );
        out
    }

    /// The latency histogram of each direction.
    fn render_latency(&self, out: &mut String) {
        let mut samples = Vec::new();
        for e in DIRECTIONS {
            let h = &self.latency[index(e)];
            for (bound, bucket) in BUCKETS.iter().zip(&h.buckets) {
                let n = bucket.load(Ordering::Relaxed);
                samples.push(format!("_bucket{{endpoint=\"{e}\",le=\"{bound}\"}} {n}"));
            }
            let count = h.count.load(Ordering::Relaxed);
            let sum = h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
            samples.push(format!("_bucket{{endpoint=\"{e}\",le=\"+Inf\"}} {count}"));
            samples.push(format!("_sum{{endpoint=\"{e}\"}} {sum}"));
            samples.push(format!("_count{{endpoint=\"{e}\"}} {count}"));
        }
        family(
            out,
            "tcodec_request_duration_seconds",
            "histogram",
            "Latency of /encode and /decode requests.",
            samples,
        );
    }
}

const DIRECTIONS: [Direction; 2] = [Direction::Encode, Direction::Decode];

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One metric family: its HELP and TYPE lines, then each sample, given as what
/// follows the family's name (labels and value).
fn family(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: impl IntoIterator<Item = String>,
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for sample in samples {
        let _ = writeln!(out, "{name}{sample}");
    }
}

/// Samples of counters told apart by one label.
fn labelled<const N: usize>(
    label: &str,
    values: [&str; N],
    counters: &[AtomicU64; N],
) -> [String; N] {
    std::array::from_fn(|i| {
        let n = counters[i].load(Ordering::Relaxed);
        format!("{{{label}=\"{}\"}} {n}", values[i])
    })
}

/// Decrements the blocking-work gauge when dropped.
pub struct BlockingWork(std::sync::Arc<AtomicU64>);

impl Drop for BlockingWork {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Decrements the in-flight gauge when dropped.
pub struct InFlight<'a>(&'a Metrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
