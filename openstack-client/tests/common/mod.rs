//! Helpers for the real-peer tests: where the peers' clouds.yaml is, and unique names.
#![allow(dead_code)]

use std::path::PathBuf;

use openstack_client::{CloudConfig, ConfigSources};

pub fn clouds_file() -> Option<PathBuf> {
    match std::env::var_os("IMAGEKIT_OPENSTACK_CLOUDS") {
        Some(p) => Some(PathBuf::from(p)),
        None if std::env::var("IMAGEKIT_REAL_PEERS").as_deref() == Ok("1") => {
            panic!("IMAGEKIT_REAL_PEERS=1 but no Keystone/Glance: run dev/setup-openstack-peers, then dev/test")
        }
        None => {
            eprintln!("skipped: real Keystone/Glance not running (run dev/setup-openstack-peers, then dev/test)");
            None
        }
    }
}

pub fn cloud(name: &str) -> Option<CloudConfig> {
    let file = clouds_file()?;
    let src = ConfigSources {
        env: [("OS_CLIENT_CONFIG_FILE".to_string(), file.display().to_string())].into(),
        dirs: vec![],
    };
    Some(CloudConfig::load_from(Some(name), &src).unwrap())
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{}", std::process::id(), rand_suffix())
}

pub fn rand_suffix() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64 % 1_000_000_007
}
