//! gateway-upstream (placeholder; being built).
