//! The JSON rate parsers: Open Exchange Rates and Frankfurter (Fixer).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = fx::Format::detect(data);
    if let Ok(batch) = fx::parse::json::parse_oxr(data) {
        gatehouse_fuzz::check_batch(fx::Format::Oxr, data, &batch);
    }
    if let Ok(batch) = fx::parse::json::parse_frankfurter(data) {
        gatehouse_fuzz::check_batch(fx::Format::Frankfurter, data, &batch);
    }
});
