//! Shared by imagekit's integration tests: the real peers `dev/test` starts, found through the
//! environment it exports. Without a peer a test is skipped — or fails when IMAGEKIT_REAL_PEERS=1.
#![allow(dead_code)]

use std::path::PathBuf;

use imagekit::openstack::glance::Glance;
use imagekit::openstack::{ConfigSources, Session};
use imagekit::store::GlanceStore;

/// The peer whose location `var` holds, or `None` (with a note) when it does not run.
pub fn peer(var: &str, what: &str) -> Option<PathBuf> {
    match std::env::var_os(var) {
        Some(p) => Some(p.into()),
        None => {
            assert_ne!(
                std::env::var("IMAGEKIT_REAL_PEERS").as_deref(),
                Ok("1"),
                "{what} not running: use dev/test"
            );
            eprintln!("skipped: {what} not running (dev/setup-test-deps, then dev/test)");
            None
        }
    }
}

/// The clouds.yaml of the real Keystone/Glance.
pub fn clouds_file() -> Option<PathBuf> {
    peer("IMAGEKIT_OPENSTACK_CLOUDS", "real Keystone/Glance")
}

/// The port of the sshd that `dev/ssh-peer` started in `dir` (2222 unless it says otherwise).
pub fn sshd_port(dir: &std::path::Path) -> u16 {
    std::fs::read_to_string(dir.join("port"))
        .ok()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or(2222)
}

/// The real sshd of `dev/ssh-peer`, standing in for test machines.
pub struct Sshd {
    /// The user it lets in.
    pub user: String,
    /// Its port.
    pub port: u16,
    /// The file a mock cloud authorizes boot-test keys in.
    pub authorized_keys: PathBuf,
}

/// The sshd peer, when it runs.
pub fn sshd() -> Option<Sshd> {
    let dir = peer("IMAGEKIT_SSHD", "sshd")?;
    Some(Sshd {
        user: std::fs::read_to_string(dir.join("user")).unwrap().trim().to_string(),
        port: sshd_port(&dir),
        authorized_keys: dir.join("authorized_keys"),
    })
}

/// Writes an executable file, and the directories it is in.
pub fn executable(path: &std::path::Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

/// The mock cloud's machines (servers, deployed nodes) are the local sshd: they answer on
/// 127.0.0.1, and the keys cloud-init would install land in the sshd's `authorized_keys`.
pub fn machines_are_sshd(cloud: &imagekit::openstack::testing::MockOpenStack, sshd: &Sshd) {
    cloud
        .set_server_address("127.0.0.1")
        .authorize_keys_in(&sshd.authorized_keys);
}

/// Nova on a mock cloud whose servers are the local sshd, polling fast enough for tests.
pub fn nova_on_sshd(
    cloud: &imagekit::openstack::testing::MockOpenStack,
    sshd: &Sshd,
) -> imagekit::boot_test::NovaCompute {
    use std::time::Duration;
    machines_are_sshd(cloud, sshd);
    imagekit::boot_test::NovaCompute::new(
        cloud.client(),
        imagekit::boot_test::NovaOptions::new("m1.small")
            .ssh_port(sshd.port)
            .poll(Duration::from_millis(5), Duration::from_millis(20))
            .timeouts(Duration::from_secs(30), Duration::from_secs(30)),
    )
}

/// A session on one cloud of that clouds.yaml (`imagekit-admin`, `imagekit-demo`).
pub fn session(clouds: &std::path::Path, cloud: &str) -> Session {
    openstack_client::Client::builder()
        .cloud(cloud)
        .sources(ConfigSources::file(clouds))
        .build()
        .unwrap()
        .session()
        .clone()
}

/// Glance of one cloud of that clouds.yaml.
pub fn glance_store(clouds: &std::path::Path, cloud: &str) -> GlanceStore {
    GlanceStore::new(cloud, Glance::new(session(clouds, cloud)))
}

/// Glance of the admin project, when the peers run.
pub fn admin_glance() -> Option<GlanceStore> {
    Some(glance_store(&clouds_file()?, "imagekit-admin"))
}

/// The password of user `imagekit` on the real registries (:5002 Basic, :5003 token).
pub fn registry_password() -> Option<String> {
    let dir = peer("IMAGEKIT_REGISTRY_PEERS", "real registries")?;
    Some(std::fs::read_to_string(dir.join("password")).unwrap())
}

/// A registry client logged in to :5002 and :5003 as `imagekit`.
pub fn registry_client(password: &str) -> registry_client::Client {
    let cred = || registry_client::Credential::Basic {
        username: "imagekit".into(),
        password: password.to_string().into(),
    };
    registry_client::Client::builder()
        .credential("127.0.0.1:5002", cred())
        .credential("127.0.0.1:5003", cred())
        .build()
        .unwrap()
}
