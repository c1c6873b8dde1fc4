//! gateway-proxy (placeholder; being built).
