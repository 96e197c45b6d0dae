//! End-to-end scenarios against real workerd (Miniflare), real PostgreSQL and the
//! provider sandbox. One binary; one module per area. Each test starts its own stack.

mod e2e_code_repos;
mod e2e_coordinator;
mod e2e_dashboard;
mod e2e_deploy;
mod e2e_event_loop;
mod e2e_foundation;
mod e2e_lifecycle;
mod e2e_propagation;
mod e2e_scripts;
mod e2e_security;
mod e2e_suggestions;
mod e2e_sync;
mod e2e_webhooks;
