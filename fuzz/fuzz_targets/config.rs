//! The host config and drill file loaders (the flow file loader through the
//! drill's flow reader).
#![no_main]

use std::path::{Path, PathBuf};

use glassdrill::config::{DrillConfig, Environment, HostConfig};

libfuzzer_sys::fuzz_target!(|text: &str| {
    let dir = std::env::temp_dir();
    let env = Environment {
        cwd: dir.clone(),
        home: None,
        xdg_config_home: None,
        xdg_state_home: None,
    };
    let _ = HostConfig::parse(&dir.join("glassdrill.toml"), text, &env);
    let _ = DrillConfig::parse(Path::new("d.toml"), text, |_| {
        Ok((PathBuf::from("f.toml"), text.to_owned()))
    });
});
