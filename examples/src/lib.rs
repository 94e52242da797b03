//! Runnable example programs for imagekit live in this package's `examples/` targets; run one with
//! `cargo run -p imagekit-examples --example NAME -- --help`.
