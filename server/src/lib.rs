//! The axum generation service (API, queue, storage, share links). Its issue builds it on the networks and the
//! generator runtime; until then the crate only holds its place in the workspace.
