//! Metrics: cgroup and host readers, line-protocol and Prometheus encoders, sinks.
pub mod cgroup;
pub mod collect;
pub mod host;
pub mod line;
