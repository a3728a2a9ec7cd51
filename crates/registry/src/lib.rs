//! OCI distribution client.
//!
//! Pipeline position: beside `snapshot`, used by `solver` (to pull base images for `FROM`) and
//! by the CLI (`pull`, `push`, `login`, `logout`). It speaks the OCI distribution protocol with
//! Docker's reference rules and credential lookup.
#![deny(missing_docs)]
