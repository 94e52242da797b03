//! [`Client`]: one cloud, and the service clients that use it.

use std::time::Duration;

use url::Url;

use crate::Result;
use crate::config::{CloudConfig, ConfigSources, Interface};
use crate::glance::Glance;
use crate::identity::Credentials;
use crate::ironic::Ironic;
use crate::neutron::Neutron;
use crate::nova::Nova;
use crate::session::{RetryPolicy, Session, SessionBuilder};

/// A connection to one OpenStack cloud: it authenticates once (re-authenticating before expiry)
/// and hands out the service clients, which share its session. Cheap to clone.
///
/// Build it like the other imagekit clients, with [`Client::builder`]: from a `clouds.yaml` entry,
/// from the `OS_*` environment (the default, as the `openstack` CLI does), from a parsed
/// [`CloudConfig`], or from [`Credentials`].
///
/// ```no_run
/// use openstack_client::{Client, WaitOptions, glance::ListImages, nova::{ServerId, conditions::is_active}};
///
/// # async fn demo() -> openstack_client::Result<()> {
/// let cloud = Client::builder().cloud("prod").region("cern").build()?;
/// for image in cloud.glance().list(&ListImages::new().tag("imagekit")).await? {
///     println!("{} {:?}", image.id, image.name);
/// }
/// let server = ServerId::from("0d5e7c9a-1c5f-4b1e-9a47-5b0f3e2a6c11");
/// cloud.nova().wait(&server, &is_active(), &WaitOptions::default()).await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Client {
    session: Session,
}

impl Client {
    /// Starts a builder. Without [`ClientBuilder::cloud`], [`ClientBuilder::config`] or
    /// [`ClientBuilder::credentials`] it reads `OS_CLOUD` or the `OS_*` variables.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// The cloud `OS_CLOUD` names in `clouds.yaml`, or the one the `OS_*` variables describe.
    pub fn from_env() -> Result<Client> {
        Client::builder().build()
    }

    /// The session the service clients share (tokens, catalog, retries).
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Glance (images).
    pub fn glance(&self) -> Glance {
        Glance::new(self.session.clone())
    }

    /// Cinder (volumes).
    pub fn cinder(&self) -> crate::cinder::Cinder {
        crate::cinder::Cinder::new(self.session.clone())
    }

    /// Nova (servers, flavors, keypairs, consoles).
    pub fn nova(&self) -> Nova {
        Nova::new(self.session.clone())
    }

    /// Neutron (networks, ports, floating IPs).
    pub fn neutron(&self) -> Neutron {
        Neutron::new(self.session.clone())
    }

    /// Ironic (bare-metal nodes, allocations).
    pub fn ironic(&self) -> Ironic {
        Ironic::new(self.session.clone())
    }
}

impl From<Session> for Client {
    fn from(session: Session) -> Client {
        Client { session }
    }
}

impl From<Client> for Session {
    fn from(client: Client) -> Session {
        client.session
    }
}

impl From<&Client> for Session {
    fn from(client: &Client) -> Session {
        client.session.clone()
    }
}

#[derive(Debug, Default)]
enum Source {
    #[default]
    Env,
    Cloud(String),
    Config(Box<CloudConfig>),
    Credentials(Box<Credentials>),
}

/// Builds a [`Client`]; see there. Settings made here override the cloud configuration's.
#[derive(Debug, Default)]
#[must_use]
pub struct ClientBuilder {
    source: Source,
    sources: Option<ConfigSources>,
    region: Option<String>,
    interface: Option<Interface>,
    overrides: Vec<(String, Url)>,
    retry: Option<RetryPolicy>,
    reauth_margin: Option<Duration>,
    upload_reauth_margin: Option<Duration>,
    connect_timeout: Option<Duration>,
    read_timeout: Option<Duration>,
    http: Option<reqwest::Client>,
}

impl ClientBuilder {
    /// The cloud of this name in `clouds.yaml` (and `secure.yaml`), found where openstacksdk looks.
    pub fn cloud(mut self, name: impl Into<String>) -> Self {
        self.source = Source::Cloud(name.into());
        self
    }

    /// Where [`ClientBuilder::cloud`] and the `OS_*` default look (default: the process's
    /// environment and openstacksdk's search path).
    pub fn sources(mut self, sources: ConfigSources) -> Self {
        self.sources = Some(sources);
        self
    }

    /// A cloud configuration already loaded (e.g. with [`CloudConfig::load_from`]).
    pub fn config(mut self, cloud: CloudConfig) -> Self {
        self.source = Source::Config(Box::new(cloud));
        self
    }

    /// Explicit credentials, without any configuration file.
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.source = Source::Credentials(Box::new(credentials));
        self
    }

    /// The region whose endpoints to use.
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Which catalog interface to use (default: the configuration's, else public).
    pub fn interface(mut self, interface: Interface) -> Self {
        self.interface = Some(interface);
        self
    }

    /// Use `url` for `service_type` instead of the catalog's endpoint.
    pub fn endpoint_override(mut self, service_type: impl Into<String>, url: Url) -> Self {
        self.overrides.push((service_type.into(), url));
        self
    }

    /// How transient failures are retried.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// Re-authenticate when the token has less than this left (default 5 minutes).
    pub fn reauth_margin(mut self, d: Duration) -> Self {
        self.reauth_margin = Some(d);
        self
    }

    /// The token validity an upload needs before it starts (default 30 minutes).
    pub fn upload_reauth_margin(mut self, d: Duration) -> Self {
        self.upload_reauth_margin = Some(d);
        self
    }

    /// TCP connect timeout (default 30 s).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = Some(d);
        self
    }

    /// Longest silence while reading an answer (default 300 s).
    pub fn read_timeout(mut self, d: Duration) -> Self {
        self.read_timeout = Some(d);
        self
    }

    /// Use this HTTP client (its timeouts and TLS settings then apply instead of the above).
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// Loads the configuration (a missing or malformed `clouds.yaml` is a [`crate::ConfigError`])
    /// and builds the client. Nothing is sent until the first call.
    pub fn build(self) -> Result<Client> {
        let sources = self.sources.unwrap_or_else(ConfigSources::from_process);
        let mut b: SessionBuilder = match self.source {
            Source::Env => Session::builder_for(&CloudConfig::load_from(None, &sources)?),
            Source::Cloud(name) => Session::builder_for(&CloudConfig::load_from(Some(&name), &sources)?),
            Source::Config(cloud) => Session::builder_for(&cloud),
            Source::Credentials(creds) => Session::builder(*creds),
        };
        if let Some(r) = self.region {
            b = b.region(r);
        }
        if let Some(i) = self.interface {
            b = b.interface(i);
        }
        for (svc, url) in self.overrides {
            b = b.endpoint_override(svc, url);
        }
        if let Some(p) = self.retry {
            b = b.retry(p);
        }
        if let Some(d) = self.reauth_margin {
            b = b.reauth_margin(d);
        }
        if let Some(d) = self.upload_reauth_margin {
            b = b.upload_reauth_margin(d);
        }
        if let Some(d) = self.connect_timeout {
            b = b.connect_timeout(d);
        }
        if let Some(d) = self.read_timeout {
            b = b.read_timeout(d);
        }
        if let Some(c) = self.http {
            b = b.http_client(c);
        }
        Ok(Client { session: b.build()? })
    }
}
