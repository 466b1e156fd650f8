#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| trailwatch_fuzz::trail_config(data));
