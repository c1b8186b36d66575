//! Durable relay state behind a trait (see `redb_store` for the embedded default).
