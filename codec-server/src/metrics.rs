//! Prometheus metrics, rendered in the text exposition format at `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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
}

/// Which codec endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/encode`.
    Encode,
    /// `/decode`.
    Decode,
}

impl Endpoint {
    /// The endpoint's name in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Encode => "encode",
            Self::Decode => "decode",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Encode => 0,
            Self::Decode => 1,
        }
    }
}

impl Metrics {
    /// Counts a finished request.
    pub fn request(
        &self,
        endpoint: &'static str,
        status: u16,
        latency: Option<(Endpoint, Duration)>,
    ) {
        *self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((endpoint, status))
            .or_default() += 1;
        if let Some((e, d)) = latency {
            self.latency[e.index()].observe(d);
        }
    }

    /// Counts payloads handled.
    pub fn payloads(&self, endpoint: Endpoint, n: usize) {
        self.payloads[endpoint.index()].fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Counts a failed codec call by reason.
    pub fn failure(&self, reason: &'static str) {
        *self
            .failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(reason)
            .or_default() += 1;
    }

    /// Counts a request's codec work by where it ran (see `routes::run`).
    pub fn work(&self, on_async_worker: bool) {
        self.work[usize::from(on_async_worker)].fetch_add(1, Ordering::Relaxed);
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
        let _ = writeln!(
            out,
            "# HELP tcodec_requests_total HTTP requests by endpoint and status code."
        );
        let _ = writeln!(out, "# TYPE tcodec_requests_total counter");
        for ((endpoint, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "tcodec_requests_total{{endpoint=\"{endpoint}\",code=\"{status}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP tcodec_request_duration_seconds Latency of /encode and /decode requests."
        );
        let _ = writeln!(out, "# TYPE tcodec_request_duration_seconds histogram");
        for e in [Endpoint::Encode, Endpoint::Decode] {
            let h = &self.latency[e.index()];
            for (bound, bucket) in BUCKETS.iter().zip(&h.buckets) {
                let _ = writeln!(
                    out,
                    "tcodec_request_duration_seconds_bucket{{endpoint=\"{}\",le=\"{bound}\"}} {}",
                    e.as_str(),
                    bucket.load(Ordering::Relaxed)
                );
            }
            let count = h.count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "tcodec_request_duration_seconds_bucket{{endpoint=\"{}\",le=\"+Inf\"}} {count}",
                e.as_str()
            );
            let _ = writeln!(
                out,
                "tcodec_request_duration_seconds_sum{{endpoint=\"{}\"}} {}",
                e.as_str(),
                h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
            );
            let _ = writeln!(
                out,
                "tcodec_request_duration_seconds_count{{endpoint=\"{}\"}} {count}",
                e.as_str()
            );
        }
        let _ = writeln!(
            out,
            "# HELP tcodec_payloads_total Payloads encoded or decoded."
        );
        let _ = writeln!(out, "# TYPE tcodec_payloads_total counter");
        for e in [Endpoint::Encode, Endpoint::Decode] {
            let _ = writeln!(
                out,
                "tcodec_payloads_total{{endpoint=\"{}\"}} {}",
                e.as_str(),
                self.payloads[e.index()].load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP tcodec_codec_work_total Encode/decode requests by where their codec work ran: small ones with keys in memory on the async workers, others on blocking threads."
        );
        let _ = writeln!(out, "# TYPE tcodec_codec_work_total counter");
        for (thread, n) in ["blocking", "async"].iter().zip(&self.work) {
            let _ = writeln!(
                out,
                "tcodec_codec_work_total{{thread=\"{thread}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP tcodec_codec_failures_total Failed encode/decode requests by reason."
        );
        let _ = writeln!(out, "# TYPE tcodec_codec_failures_total counter");
        for (reason, n) in self
            .failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "tcodec_codec_failures_total{{reason=\"{reason}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP tcodec_cors_preflights_total CORS preflights by whether the origin is allowed."
        );
        let _ = writeln!(out, "# TYPE tcodec_cors_preflights_total counter");
        for (allowed, n) in ["false", "true"].iter().zip(&self.preflights) {
            let n = n.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "tcodec_cors_preflights_total{{allowed=\"{allowed}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP tcodec_requests_in_flight Requests being handled."
        );
        let _ = writeln!(out, "# TYPE tcodec_requests_in_flight gauge");
        let _ = writeln!(
            out,
            "tcodec_requests_in_flight {}",
            self.in_flight.load(Ordering::Relaxed)
        );
        out
    }
}

/// Decrements the in-flight gauge when dropped.
pub struct InFlight<'a>(&'a Metrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
