//! The ECB XML parser (daily, 90-day and history files).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = fx::Format::detect(data);
    if let Ok(batch) = fx::parse::ecb::parse_xml(data) {
        gatehouse_fuzz::check_batch(fx::Format::EcbXml, data, &batch);
    }
});
