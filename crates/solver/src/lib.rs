//! Runs a build graph.
//!
//! Pipeline position: takes the DAG from `llb` and executes it, op by op, as soon as each op's
//! inputs are ready, so independent stages run in parallel. It computes cache keys, keeps the
//! persistent cache in the state directory and emits progress events for the CLI to display.
#![deny(missing_docs)]
