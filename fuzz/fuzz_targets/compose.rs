//! The compose parser must never panic, whatever the bytes (the API feeds it request bodies).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let mut inputs = berth::spec::Inputs::default();
        inputs.vars.insert("TAG".into(), "1".into());
        inputs.files.insert("app.env".into(), "A=1\n".into());
        let _ = berth::spec::parse(text, "fuzz", &inputs);
        let _ = berth::spec::referenced_vars(text);
        let _ = berth::spec::env_files(text);
    }
});
