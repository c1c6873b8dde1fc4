//! fx (placeholder; being built).
