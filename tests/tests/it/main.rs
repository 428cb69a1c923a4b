//! Workspace-level integration tests on the fetched PP-OCRv4 det and photos.
//! (One test binary: every file links tract, and each binary costs CI a link.
//! `bench_stages` stays a binary of its own: it compares medians of timed
//! runs, which tests running beside it in other threads would disturb.)

mod bad_input;
mod ppocr_prune;
mod ppocr_reference;
mod ppocr_stages;
mod profile_attribution;
mod real_references;
mod real_stages;
mod round_trip;
