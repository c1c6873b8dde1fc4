//! gateway-keys (placeholder; being built).
