//! End-to-end tests: real agent binaries, the real Docker engine, the busybox test image.
//! Each test uses its own app names and its own agent (own node id), so they run in parallel.

mod access;
mod autoscale;
mod backends;
mod bed;
mod harness;

mod cluster;
mod concurrency;
mod configsets;
mod console;
mod dashboards;
mod dashrefs;
mod exec;
mod hardening;
mod health;
mod inputs;
mod jobs;
mod lifecycle;
mod logs;
mod metrics;
mod multihost;
mod network;
mod offline;
mod overlap;
mod recovery;
mod registry;
mod releases;
mod router;
mod seed;
mod service;
mod tls;
mod versions;
mod volumes;
mod wild;
