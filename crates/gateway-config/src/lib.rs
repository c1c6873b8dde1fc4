//! gateway-config (placeholder; being built).
