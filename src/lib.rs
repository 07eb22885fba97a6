//! berth: one binary that turns a Docker host into a managed container platform.
//! See ARCHITECTURE.md for the codemap.

pub mod agent;
pub mod api;
pub mod atomic_file;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod daemon;
pub mod doctor;
pub mod health;
pub mod ids;
pub mod listen;
pub mod logs;
pub mod metrics;
pub mod model;
pub mod mountinfo;
pub mod pace;
pub mod plan;
pub mod rootfd;
pub mod router;
pub mod runtime;
pub mod spec;
pub mod store;
pub mod timefmt;
pub mod volumes;
pub mod wire;
