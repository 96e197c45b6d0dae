//! The Postgres side of suggestions (preferences, agent runs, suggestion actions), used by
//! the user instances that process events and by the API routes.

pub mod store;
