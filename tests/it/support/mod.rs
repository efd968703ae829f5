//! What the integration tests share: perch started in this process
//! (`in_process`) or as `perch serve --dev` (`process`, and `live` signed in
//! as its account), the one HTTP client (`client`), the firehose from the
//! subscriber's side, the database as seen beside a running server, and
//! stand-ins for the services perch reaches out to.

pub mod client;
pub mod db;
pub mod firehose;
pub mod in_process;
pub mod live;
pub mod pebble;
pub mod process;
pub mod relay;
pub mod rng;
pub mod seeded;
pub mod serial;
pub mod stand_in;

pub use client::{Client, assert_xrpc_error};
pub use in_process::InProcess;
pub use live::Perch;
