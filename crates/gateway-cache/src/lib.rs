//! gateway-cache (placeholder; being built).
