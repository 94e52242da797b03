//! The clients users already have — the `openstack` CLI (python-openstackclient, with
//! python-ironicclient's `baremetal` commands), python-glanceclient's `glance` CLI and
//! openstacksdk — against the testing kit's [`MockOpenStack`]: the everyday workflows work, and
//! answer what a user sees on a real cloud.
//! Skipped when the clients are not installed (`dev/setup-openstack-peers` installs them under
//! `$IMAGEKIT_PEERS_DIR`, default `/tmp/imagekit-peers`), failed then under `IMAGEKIT_REAL_PEERS=1`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use md5::Digest as _;
use openstack_client::testing::MockOpenStack;
use serde_json::Value;

/// A client installed under `$IMAGEKIT_PEERS_DIR` (`venv-clients/bin/openstack`), when it is.
fn installed(rel: &str) -> Option<PathBuf> {
    let root =
        std::env::var_os("IMAGEKIT_PEERS_DIR").map_or_else(|| PathBuf::from("/tmp/imagekit-peers"), PathBuf::from);
    let path = root.join(rel);
    // The venv's marker: a venv still being installed, or left half-installed, is not installed.
    let venv_done = path
        .ancestors()
        .nth(2)
        .is_some_and(|venv| venv.join(".installed").is_file());
    if path.is_file() && venv_done {
        return Some(path);
    }
    assert_ne!(
        std::env::var("IMAGEKIT_REAL_PEERS").as_deref(),
        Ok("1"),
        "{} is not installed: dev/setup-openstack-peers",
        path.display()
    );
    eprintln!(
        "skipped: {} is not installed (dev/setup-openstack-peers)",
        path.display()
    );
    None
}

/// What a client printed, and how it exited.
struct Run {
    code: i32,
    out: String,
    err: String,
}

/// The kit, and a directory with its `clouds.yaml` (cloud `kit`) that the clients run in.
struct Kit {
    cloud: MockOpenStack,
    dir: tempfile::TempDir,
}

impl Kit {
    /// A fresh kit whose servers are `ACTIVE` at the first look and gone at the first look after
    /// their delete: the CLIs poll every few seconds, and a test need not wait on them.
    async fn start() -> Kit {
        let cloud = MockOpenStack::start().await;
        cloud.set_build_polls(0).set_delete_polls(0);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("clouds.yaml"), cloud.clouds_yaml("kit")).unwrap();
        Kit { cloud, dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs `program args` in the kit's directory with no `OS_*` variable but `extra_env`; the
    /// mock keeps serving meanwhile (the child runs on its own; this task only awaits it).
    async fn run(&self, program: &Path, args: &[&str], extra_env: &[(&str, String)]) -> Run {
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args).current_dir(self.dir.path()).kill_on_drop(true);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("OS_") {
                cmd.env_remove(k);
            }
        }
        // No user's clouds.yaml, cache or config may leak in, nor a proxy that would carry
        // requests for 127.0.0.1 away.
        cmd.env("HOME", self.dir.path()).env("XDG_CONFIG_HOME", self.dir.path());
        for proxy in [
            "http_proxy",
            "https_proxy",
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "ALL_PROXY",
            "all_proxy",
        ] {
            cmd.env_remove(proxy);
        }
        cmd.env("no_proxy", "127.0.0.1,localhost")
            .env("NO_PROXY", "127.0.0.1,localhost");
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let out = tokio::time::timeout(Duration::from_secs(90), cmd.output())
            .await
            .unwrap_or_else(|_| panic!("{} {args:?} did not finish in 90 s", program.display()))
            .unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            out: String::from_utf8_lossy(&out.stdout).into_owned(),
            err: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// The `openstack` CLI on the kit (`--os-cloud kit`).
struct Openstack<'a> {
    kit: &'a Kit,
    bin: PathBuf,
}

impl Openstack<'_> {
    async fn run(&self, args: &[&str]) -> Run {
        let mut all = vec!["--os-cloud", "kit"];
        all.extend_from_slice(args);
        let conf = self.kit.path("clouds.yaml").display().to_string();
        self.kit.run(&self.bin, &all, &[("OS_CLIENT_CONFIG_FILE", conf)]).await
    }

    /// Runs it and insists on success; its stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let r = self.run(args).await;
        assert_eq!(r.code, 0, "openstack {args:?}:\n{}\n{}", r.out, r.err);
        r.out
    }

    /// Runs it with `-f json`; the document it printed.
    async fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend_from_slice(&["-f", "json"]);
        let out = self.ok(&all).await;
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("openstack {args:?} printed no JSON ({e}):\n{out}"))
    }
}

/// Some bytes that are no image format in particular, as `raw` images are.
fn image_bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

fn md5_hex(b: &[u8]) -> String {
    hex::encode(md5::Md5::digest(b))
}

fn sha512_hex(b: &[u8]) -> String {
    hex::encode(sha2::Sha512::digest(b))
}

fn kinds(kit: &Kit) -> Vec<&'static str> {
    kit.cloud.leaks().iter().map(|l| l.kind).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openstack_cli_uploads_lists_renames_downloads_and_deletes_images() {
    let Some(bin) = installed("venv-clients/bin/openstack") else {
        return;
    };
    let kit = Kit::start().await;
    let os = Openstack { kit: &kit, bin };
    let data = image_bytes(3 << 20);
    std::fs::write(kit.path("cc9.raw"), &data).unwrap();

    let created = os
        .json(&[
            "image",
            "create",
            "--file",
            "cc9.raw",
            "--disk-format",
            "raw",
            "--container-format",
            "bare",
            "CC9 TEST",
        ])
        .await;
    assert_eq!(created["status"], "active", "{created}");
    assert_eq!(created["name"], "CC9 TEST");
    assert_eq!(created["size"], data.len());
    assert_eq!(created["checksum"], md5_hex(&data));
    assert_eq!(created["disk_format"], "raw");
    assert_eq!(created["container_format"], "bare");
    let id = created["id"].as_str().unwrap().to_string();

    let listed = os.json(&["image", "list"]).await;
    assert_eq!(
        listed,
        serde_json::json!([{"ID": id, "Name": "CC9 TEST", "Status": "active"}])
    );

    let shown = os.json(&["image", "show", "CC9 TEST"]).await;
    assert_eq!(shown["id"], id.as_str());
    assert_eq!(shown["properties"]["os_hash_algo"], "sha512");
    assert_eq!(shown["properties"]["os_hash_value"], sha512_hex(&data));

    os.ok(&[
        "image",
        "set",
        "--property",
        "os_distro=centos",
        "--name",
        "CC9",
        "CC9 TEST",
    ])
    .await;
    let renamed = os.json(&["image", "show", &id]).await;
    assert_eq!(renamed["name"], "CC9");
    assert_eq!(renamed["properties"]["os_distro"], "centos");

    os.ok(&["image", "save", "--file", "saved.raw", "CC9"]).await;
    assert!(
        std::fs::read(kit.path("saved.raw")).unwrap() == data,
        "the saved image differs"
    );

    os.ok(&["image", "delete", "CC9"]).await;
    let gone = os.run(&["image", "show", &id]).await;
    assert_ne!(gone.code, 0);
    assert!(gone.err.contains("No Image found for"), "{}", gone.err);
    assert!(kit.cloud.leaks().is_empty(), "{:?}", kit.cloud.leaks());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openstack_cli_boots_powers_snapshots_and_deletes_a_server_with_a_floating_ip() {
    let Some(bin) = installed("venv-clients/bin/openstack") else {
        return;
    };
    let kit = Kit::start().await;
    let os = Openstack { kit: &kit, bin };
    std::fs::write(kit.path("base.raw"), image_bytes(1 << 20)).unwrap();
    let image = os
        .json(&[
            "image",
            "create",
            "--file",
            "base.raw",
            "--disk-format",
            "raw",
            "--container-format",
            "bare",
            "base",
        ])
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();

    let flavors = os.json(&["flavor", "list"]).await;
    let names: Vec<&str> = flavors
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["Name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"m1.small"), "{flavors}");
    let small = os.json(&["flavor", "show", "m1.small"]).await;
    assert_eq!(
        (small["ram"].as_u64(), small["vcpus"].as_u64(), small["disk"].as_u64()),
        (Some(2048), Some(1), Some(20))
    );

    let networks = os.json(&["network", "list"]).await;
    let mut net_names: Vec<&str> = networks
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["Name"].as_str().unwrap())
        .collect();
    net_names.sort_unstable();
    assert_eq!(net_names, ["private", "public"]);
    let subnets = os.json(&["subnet", "list"]).await;
    let cidrs: Vec<&str> = subnets
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["Subnet"].as_str().unwrap())
        .collect();
    assert!(cidrs.contains(&"10.0.0.0/24"), "{subnets}");

    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILoHooKbctibFeDOgy/LT+VR8yc2D6KyztNyXwBQ1SDi releasebot";
    std::fs::write(kit.path("bot.pub"), key).unwrap();
    let kp = os.json(&["keypair", "create", "--public-key", "bot.pub", "bot"]).await;
    assert_eq!(kp["name"], "bot");
    // What `ssh-keygen -l -E md5 -f bot.pub` prints.
    assert_eq!(kp["fingerprint"], "fa:4b:3f:7e:6a:01:0f:21:b8:66:93:e3:4e:f5:62:87");

    let server = os
        .json(&[
            "server",
            "create",
            "--image",
            "base",
            "--flavor",
            "m1.small",
            "--network",
            "private",
            "--key-name",
            "bot",
            "--wait",
            "vm1",
        ])
        .await;
    assert_eq!(server["status"], "ACTIVE", "{server}");
    assert_eq!(server["name"], "vm1");
    assert_eq!(server["key_name"], "bot");
    assert_eq!(server["image"], format!("base ({image})"));
    assert_eq!(server["flavor"]["original_name"], "m1.small");
    let id = server["id"].as_str().unwrap().to_string();
    let fixed = server["addresses"]["private"][0].as_str().unwrap().to_string();

    let servers = os.json(&["server", "list"]).await;
    assert_eq!(servers.as_array().unwrap().len(), 1, "{servers}");
    assert_eq!(servers[0]["Name"], "vm1");
    assert_eq!(servers[0]["Status"], "ACTIVE");
    assert_eq!(servers[0]["Image"], "base", "the image is named by its id: {servers}");
    assert_eq!(servers[0]["Flavor"], "m1.small");
    assert_eq!(servers[0]["Networks"]["private"], serde_json::json!([fixed]));

    let status = |v: Value| v["status"].as_str().unwrap().to_string();
    os.ok(&["server", "stop", "vm1"]).await;
    let stopped = os.json(&["server", "list", "--status", "SHUTOFF"]).await;
    assert_eq!(stopped[0]["Name"], "vm1", "{stopped}");
    assert_eq!(stopped[0]["Status"], "SHUTOFF");
    assert_eq!(
        os.json(&["server", "list", "--status", "ACTIVE"]).await,
        serde_json::json!([])
    );
    os.ok(&["server", "start", "vm1"]).await;
    // Nova reboots only a running server: this one started.
    os.ok(&["server", "reboot", "--wait", "vm1"]).await;
    assert_eq!(status(os.json(&["server", "show", &id]).await), "ACTIVE");

    let snap = os
        .json(&["server", "image", "create", "--name", "vm1-snap", "--wait", "vm1"])
        .await;
    assert_eq!(snap["status"], "active", "{snap}");
    assert_eq!(snap["properties"]["instance_uuid"], id.as_str());
    assert_eq!(snap["properties"]["image_type"], "snapshot");

    let fip = os.json(&["floating", "ip", "create", "public"]).await;
    let address = fip["floating_ip_address"].as_str().unwrap().to_string();
    assert_eq!(fip["status"], "DOWN");
    os.ok(&["server", "add", "floating", "ip", "vm1", &address]).await;
    let fips = os.json(&["floating", "ip", "list"]).await;
    assert_eq!(fips[0]["Floating IP Address"], address.as_str(), "{fips}");
    assert_eq!(fips[0]["Fixed IP Address"], fixed.as_str(), "{fips}");
    let shown = os.json(&["server", "show", "vm1"]).await;
    assert_eq!(shown["addresses"]["private"], serde_json::json!([fixed, address]));

    os.ok(&["floating", "ip", "delete", &address]).await;
    os.ok(&["server", "delete", "--wait", "vm1"]).await;
    os.ok(&["keypair", "delete", "bot"]).await;
    assert!(kit.cloud.server(&id).is_none());
    // The images stay, as a release's do.
    assert_eq!(kinds(&kit), ["image", "image"], "{:?}", kit.cloud.leaks());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openstack_cli_lists_shows_and_deploys_baremetal_nodes() {
    let Some(bin) = installed("venv-clients/bin/openstack") else {
        return;
    };
    let kit = Kit::start().await;
    let os = Openstack { kit: &kit, bin };
    let uuid = kit.cloud.add_ironic_node("bm-0", "baremetal-gold");
    kit.cloud.add_ironic_node("bm-1", "baremetal-gold");

    let nodes = os.json(&["baremetal", "node", "list"]).await;
    assert_eq!(nodes.as_array().unwrap().len(), 2, "{nodes}");
    assert_eq!(nodes[0]["uuid"], uuid.as_str(), "{nodes}");
    assert_eq!(nodes[0]["name"], "bm-0");
    assert_eq!(nodes[0]["provision_state"], "available");
    assert_eq!(nodes[0]["power_state"], "power off");
    assert_eq!(nodes[0]["maintenance"], false);

    let node = os.json(&["baremetal", "node", "show", "bm-0"]).await;
    assert_eq!(node["uuid"], uuid.as_str());
    assert_eq!(node["resource_class"], "baremetal-gold");
    assert_eq!(node["provision_state"], "available");

    os.ok(&[
        "baremetal",
        "node",
        "maintenance",
        "set",
        "--reason",
        "disk swap",
        "bm-1",
    ])
    .await;
    let bm1 = os.json(&["baremetal", "node", "show", "bm-1"]).await;
    assert_eq!(bm1["maintenance"], true);
    assert_eq!(bm1["maintenance_reason"], "disk swap");
    os.ok(&["baremetal", "node", "maintenance", "unset", "bm-1"]).await;

    // `--wait` fails unless the node reaches the state the action leads to.
    os.ok(&["baremetal", "node", "manage", "--wait", "30", "bm-0"]).await;
    os.ok(&["baremetal", "node", "provide", "--wait", "30", "bm-0"]).await;

    let refused = os.run(&["baremetal", "node", "deploy", "bm-0"]).await;
    assert_ne!(refused.code, 0);
    assert!(refused.err.contains("image_source is missing"), "{}", refused.err);
    os.ok(&[
        "baremetal",
        "node",
        "set",
        "--instance-info",
        "image_source=http://images.kit.invalid/cc9.raw",
        "bm-0",
    ])
    .await;
    os.ok(&["baremetal", "node", "deploy", "--wait", "30", "bm-0"]).await;
    let deployed = os.json(&["baremetal", "node", "show", "bm-0"]).await;
    assert_eq!(deployed["provision_state"], "active", "{deployed}");
    assert_eq!(deployed["power_state"], "power on");
    assert_eq!(
        deployed["instance_info"]["image_source"],
        "http://images.kit.invalid/cc9.raw"
    );
    assert_eq!(kinds(&kit), ["deployed_node"]);

    os.ok(&["baremetal", "node", "undeploy", "--wait", "60", "bm-0"]).await;
    let back = os.json(&["baremetal", "node", "show", "bm-0"]).await;
    assert_eq!(back["provision_state"], "available", "{back}");
    assert_eq!(back["instance_info"], serde_json::json!({}));
    assert!(kit.cloud.leaks().is_empty(), "{:?}", kit.cloud.leaks());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openstack_cli_reports_what_the_kit_does_not_implement_by_name() {
    let Some(bin) = installed("venv-clients/bin/openstack") else {
        return;
    };
    let kit = Kit::start().await;
    let os = Openstack { kit: &kit, bin };
    for (args, named) in [
        (
            &["security", "group", "list"][..],
            "MockOpenStack's Neutron does not implement GET /security-groups",
        ),
        (
            &["project", "list"][..],
            "MockOpenStack's Keystone does not implement GET /projects",
        ),
    ] {
        let r = os.run(args).await;
        assert_ne!(r.code, 0, "{args:?} succeeded: {}", r.out);
        assert!(r.err.contains("501") && r.err.contains(named), "{args:?}: {}", r.err);
    }
}

/// The `glance` CLI's environment for the kit: it reads no clouds.yaml.
fn glance_env(kit: &Kit) -> Vec<(&'static str, String)> {
    vec![
        ("OS_AUTH_URL", kit.cloud.auth_url().to_string()),
        ("OS_USERNAME", "admin".into()),
        ("OS_PASSWORD", "secret".into()),
        ("OS_PROJECT_NAME", "admin".into()),
        ("OS_USER_DOMAIN_NAME", "Default".into()),
        ("OS_PROJECT_DOMAIN_NAME", "Default".into()),
        ("OS_IMAGE_API_VERSION", "2".into()),
    ]
}

/// The `Property | Value` table `glance image-show` and friends print, as a map (values
/// wrapped over several rows joined again).
fn glance_table(out: &str) -> std::collections::BTreeMap<String, String> {
    let mut map = std::collections::BTreeMap::new();
    let mut last = String::new();
    for line in out.lines().filter(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let [k, v] = cells[..] else { continue };
        if k == "Property" {
            continue;
        }
        if k.is_empty() {
            map.entry(last.clone()).or_insert_with(String::new).push_str(v);
        } else {
            last = k.to_string();
            map.insert(last.clone(), v.to_string());
        }
    }
    map
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glance_cli_uploads_lists_shows_downloads_updates_and_deletes_images() {
    let Some(glance) = installed("venv-glance/bin/glance") else {
        return;
    };
    let kit = Kit::start().await;
    let env = glance_env(&kit);
    let run = |args: &'static [&'static str]| {
        let (kit, glance, env) = (&kit, &glance, &env);
        async move {
            let r = kit.run(glance, args, env).await;
            assert_eq!(r.code, 0, "glance {args:?}:\n{}\n{}", r.out, r.err);
            r.out
        }
    };
    let data = image_bytes(2 << 20);
    std::fs::write(kit.path("cc9.raw"), &data).unwrap();

    let created = glance_table(
        &run(&[
            "image-create",
            "--name",
            "CC9 TEST",
            "--disk-format",
            "raw",
            "--container-format",
            "bare",
            "--file",
            "cc9.raw",
            "--progress",
        ])
        .await,
    );
    assert_eq!(created["status"], "active", "{created:?}");
    assert_eq!(created["size"], data.len().to_string());
    assert_eq!(created["checksum"], md5_hex(&data));
    assert_eq!(created["os_hash_algo"], "sha512");
    assert_eq!(created["os_hash_value"], sha512_hex(&data));
    let id = created["id"].clone();

    let listed = run(&["image-list"]).await;
    assert!(listed.contains(&format!("| {id} | CC9 TEST |")), "{listed}");

    let show = |id: String| {
        let (kit, glance, env) = (&kit, &glance, &env);
        async move { kit.run(glance, &["image-show", &id], env).await }
    };
    let shown = show(id.clone()).await;
    assert_eq!(glance_table(&shown.out)["name"], "CC9 TEST");

    let updated = kit
        .run(
            &glance,
            &["image-update", "--name", "CC9", "--property", "os_distro=centos", &id],
            &env,
        )
        .await;
    assert_eq!(updated.code, 0, "{}", updated.err);
    let updated = glance_table(&updated.out);
    assert_eq!(
        (updated["name"].as_str(), updated["os_distro"].as_str()),
        ("CC9", "centos")
    );

    let download = kit
        .run(&glance, &["image-download", "--file", "got.raw", &id], &env)
        .await;
    assert_eq!(download.code, 0, "{}", download.err);
    assert!(
        std::fs::read(kit.path("got.raw")).unwrap() == data,
        "the downloaded image differs"
    );

    let deleted = kit.run(&glance, &["image-delete", &id], &env).await;
    assert_eq!(deleted.code, 0, "{}", deleted.err);
    let gone = show(id.clone()).await;
    assert_eq!(gone.code, 1);
    assert!(
        gone.err
            .contains(&format!("404 Not Found: No image found with ID {id}")),
        "{}",
        gone.err
    );
    assert!(!run(&["image-list"]).await.contains(&id));
    assert!(kit.cloud.leaks().is_empty(), "{:?}", kit.cloud.leaks());
}

/// A release bot on openstacksdk: uploads an image and waits for it, boots a server from it and
/// waits, lists, stops it, then deletes both; prints what it saw as JSON.
const SDK_SCRIPT: &str = r#"
import json, sys
import openstack

conn = openstack.connect(cloud="kit")
seen = {}
image = conn.image.create_image(
    name="CC9 SDK", filename=sys.argv[1], disk_format="raw", container_format="bare", wait=True)
image = conn.image.get_image(image.id)
seen["image"] = {"id": image.id, "status": image.status, "checksum": image.checksum,
                 "hash_algo": image.hash_algo, "hash_value": image.hash_value, "size": image.size}
seen["downloaded"] = conn.image.download_image(image).content.hex()

flavor = conn.compute.find_flavor("m1.small", ignore_missing=False)
network = conn.network.find_network("private", ignore_missing=False)
server = conn.compute.create_server(
    name="sdk-vm", image_id=image.id, flavor_id=flavor.id, networks=[{"uuid": network.id}])
server = conn.compute.wait_for_server(server, wait=60)
seen["server"] = {"id": server.id, "status": server.status, "addresses": server.addresses}
seen["servers"] = [s.name for s in conn.compute.servers()]
conn.compute.stop_server(server)
seen["stopped"] = conn.compute.wait_for_server(server, status="SHUTOFF", wait=60).status

conn.compute.delete_server(server)
conn.compute.wait_for_delete(server, wait=60)
seen["servers_after"] = [s.name for s in conn.compute.servers()]
conn.image.delete_image(image)
seen["images_after"] = [i.name for i in conn.image.images()]
print(json.dumps(seen))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openstacksdk_uploads_an_image_boots_a_server_lists_and_deletes_them() {
    let Some(python) = installed("venv-clients/bin/python") else {
        return;
    };
    let kit = Kit::start().await;
    let data = image_bytes(1 << 20);
    std::fs::write(kit.path("cc9.raw"), &data).unwrap();
    std::fs::write(kit.path("bot.py"), SDK_SCRIPT).unwrap();
    let conf = kit.path("clouds.yaml").display().to_string();
    let r = kit
        .run(&python, &["bot.py", "cc9.raw"], &[("OS_CLIENT_CONFIG_FILE", conf)])
        .await;
    assert_eq!(r.code, 0, "{}\n{}", r.out, r.err);
    let seen: Value = serde_json::from_str(r.out.trim()).unwrap_or_else(|e| panic!("{e}: {}", r.out));

    assert_eq!(seen["image"]["status"], "active", "{seen}");
    assert_eq!(seen["image"]["size"], data.len());
    assert_eq!(seen["image"]["checksum"], md5_hex(&data));
    assert_eq!(seen["image"]["hash_algo"], "sha512");
    assert_eq!(seen["image"]["hash_value"], sha512_hex(&data));
    assert!(seen["downloaded"] == hex::encode(&data), "the downloaded image differs");
    assert_eq!(seen["server"]["status"], "ACTIVE");
    assert_eq!(seen["server"]["addresses"]["private"][0]["version"], 4, "{seen}");
    assert_eq!(seen["servers"], serde_json::json!(["sdk-vm"]));
    assert_eq!(seen["stopped"], "SHUTOFF");
    assert_eq!(seen["servers_after"], serde_json::json!([]));
    assert_eq!(seen["images_after"], serde_json::json!([]));
    assert!(kit.cloud.leaks().is_empty(), "{:?}", kit.cloud.leaks());
}
