//! test-support (placeholder; being built).
