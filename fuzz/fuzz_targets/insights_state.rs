#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| trailwatch_fuzz::insights_state(data));
