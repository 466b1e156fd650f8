#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| trailwatch_fuzz::delivery_message(data));
