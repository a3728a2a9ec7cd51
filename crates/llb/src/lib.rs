//! The build graph of img: the intermediate representation between a frontend and the solver.
//!
//! Pipeline position: `frontend-dockerfile` produces a DAG of ops here (source, exec, file,
//! merge), and `solver` runs it. Every op is identified by the sha256 of its canonical
//! serialization, which includes the digests of its inputs, so equal work has an equal name no
//! matter which stage or build produced it.
#![deny(missing_docs)]
