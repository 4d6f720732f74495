//! End-to-end tests: the real server and client libraries in-process on
//! 127.0.0.1:0, spoken to over real gRPC and HTTP. Helpers live in
//! `messenger_tests` (tests/src/lib.rs).

mod auth;
mod churn;
mod client;
mod config;
mod config_words;
mod contract;
mod counted;
mod deadline;
mod debug;
mod events;
mod gen_certs;
mod health;
mod healthcheck;
mod host;
mod logs;
mod make_run;
mod metrics;
mod ordering;
mod overload;
mod propagation;
mod quotes;
mod reflection;
mod resume;
mod secrets;
mod shutdown;
mod slow;
mod subscribe_words;
mod tls;
mod tls_field;
mod tls_refused;
mod traces;
mod w3c;
