//! perch's integration tests: one binary (one link), one module per area.
//! `support` starts perch (in this process or as `perch serve --dev`) and
//! talks to it; run one area with `cargo test --test it <module>::`.

mod support;

mod acme;
mod backup;
mod cli;
mod cli_account;
mod completions;
mod corrupt_db;
mod crash;
mod federation;
mod firehose_fanout;
mod firehose_frames;
mod fiu;
mod hardening_auth;
mod hardening_dos;
mod hardening_net;
mod hardening_repo;
mod hostile_car;
mod hostile_identity;
mod hostile_records;
mod init;
mod interop;
mod jwt_attacks;
mod lexicon_crosscheck;
mod listen;
mod node_crosscheck;
mod notify;
mod owner_page;
mod powercut;
mod read_after_write;
mod restore_seq;
mod server;
mod ssrf;
mod tidy;
mod tls_files;
mod welcome;
