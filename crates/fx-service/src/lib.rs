//! fx-service (placeholder; being built).
