//! Benchmarks for tcodec live in `benches/`; see `BENCHMARKS.md` for results and
//! `benches/report.py` for how the ratio tables are made.
