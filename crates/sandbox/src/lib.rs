//! The rootless container in which one `RUN` step executes.
//!
//! Pipeline position: called by `solver` for exec ops. It knows nothing about Dockerfiles: it
//! takes a root filesystem, mounts, a process description and a uid/gid mapping, runs the
//! process in new user, mount, pid, ipc and uts namespaces, and reports its output and exit code.
#![deny(missing_docs)]
