//! The ECB CSV parser (history and latest-day layouts).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = fx::Format::detect(data);
    if let Ok(batch) = fx::parse::ecb::parse_csv(data) {
        gatehouse_fuzz::check_batch(fx::Format::EcbCsv, data, &batch);
    }
});
