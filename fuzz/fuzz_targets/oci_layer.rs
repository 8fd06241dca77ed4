#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| aibox_fuzz::oci_layer(data));
