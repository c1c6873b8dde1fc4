//! gateway-mirror (placeholder; being built).
