//! A TCP proxy on a loopback port that a test can cut and restore.
//!
//! While open it forwards every connection to the target. `cut()` closes
//! every forwarded connection at once and refuses new ones (accepted, then
//! closed immediately), as if the target had gone away; `restore()` lets
//! connections through again.
//!
//! A proxy started with [`TcpProxy::start_http2`] reads what the target
//! sends as HTTP/2 frames, so `drop_answers(n)` can lose the next `n`
//! HTTP/2 (gRPC) answers: the request reaches the target and is acted on,
//! but when the target's response headers come back the proxy closes that
//! connection instead of passing them on — the call's outcome is unknown
//! to the caller, as after a provider crash or a reset between the
//! provider's commit and its reply.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// HTTP/2 frame type of a HEADERS frame (RFC 9113, section 6.2).
const HEADERS_FRAME: u8 = 0x1;

/// A cuttable TCP forwarder; stops when dropped.
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: JoinHandle<()>,
}

#[derive(Debug)]
struct Shared {
    /// The target speaks HTTP/2 (cleartext): answers are forwarded frame by frame.
    http2: bool,
    open: watch::Sender<bool>,
    answers_to_drop: AtomicU32,
    answers_dropped: AtomicU32,
}

impl Shared {
    /// Whether the answer now coming back is to be lost (and counted).
    fn take_dropped_answer(&self) -> bool {
        let taken = self
            .answers_to_drop
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            })
            .is_ok();
        if taken {
            self.answers_dropped.fetch_add(1, Ordering::SeqCst);
        }
        taken
    }
}

impl TcpProxy {
    /// Starts forwarding `127.0.0.1:<free port>` to `target`, any protocol.
    pub async fn start(target: SocketAddr) -> std::io::Result<Self> {
        Self::start_with(target, false).await
    }

    /// Starts forwarding to an HTTP/2 (gRPC) `target`, able to lose answers.
    pub async fn start_http2(target: SocketAddr) -> std::io::Result<Self> {
        Self::start_with(target, true).await
    }

    async fn start_with(target: SocketAddr, http2: bool) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            http2,
            open: watch::Sender::new(true),
            answers_to_drop: AtomicU32::new(0),
            answers_dropped: AtomicU32::new(0),
        });
        let acceptor = tokio::spawn(accept_loop(listener, target, Arc::clone(&shared)));
        Ok(Self {
            addr,
            shared,
            acceptor,
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every connection and refuses new ones.
    pub fn cut(&self) {
        self.shared.open.send_replace(false);
    }

    /// Forwards new connections again.
    pub fn restore(&self) {
        self.shared.open.send_replace(true);
    }

    /// Loses the next `n` HTTP/2 answers after their requests were
    /// delivered (a proxy from [`TcpProxy::start_http2`] only).
    pub fn drop_answers(&self, n: u32) {
        assert!(
            self.shared.http2,
            "drop_answers needs TcpProxy::start_http2"
        );
        self.shared.answers_to_drop.store(n, Ordering::SeqCst);
    }

    /// Answers lost so far by [`TcpProxy::drop_answers`].
    pub fn answers_dropped(&self) -> u32 {
        self.shared.answers_dropped.load(Ordering::SeqCst)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.acceptor.abort();
        self.cut();
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, shared: Arc<Shared>) {
    while let Ok((client, _)) = listener.accept().await {
        if !*shared.open.borrow() {
            drop(client);
            continue;
        }
        tokio::spawn(forward(client, target, Arc::clone(&shared)));
    }
}

async fn forward(client: TcpStream, target: SocketAddr, shared: Arc<Shared>) {
    let Ok(upstream) = TcpStream::connect(target).await else {
        return;
    };
    let mut open = shared.open.subscribe();
    let (client_read, client_write) = client.into_split();
    let (upstream_read, upstream_write) = upstream.into_split();
    let answers = async {
        if shared.http2 {
            copy_answers(upstream_read, client_write, &shared).await
        } else {
            copy(upstream_read, client_write).await
        }
    };
    tokio::select! {
        _ = copy(client_read, upstream_write) => {}
        _ = answers => {}
        _ = open.wait_for(|open| !*open) => {}
    }
}

/// Bytes go through untouched.
async fn copy(mut from: OwnedReadHalf, mut to: OwnedWriteHalf) -> std::io::Result<()> {
    tokio::io::copy(&mut from, &mut to).await.map(drop)
}

/// Answers go through frame by frame (the target's side of an HTTP/2
/// connection is a plain sequence of frames), so a response's HEADERS frame
/// can be withheld — the connection then ends, taking the answer with it.
async fn copy_answers(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    shared: &Shared,
) -> std::io::Result<()> {
    let mut header = [0_u8; 9];
    loop {
        from.read_exact(&mut header).await?;
        let length =
            usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
        let kind = header[3];
        let stream_id =
            u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff;
        let mut payload = vec![0_u8; length];
        from.read_exact(&mut payload).await?;
        if kind == HEADERS_FRAME && stream_id != 0 && shared.take_dropped_answer() {
            return Ok(());
        }
        to.write_all(&header).await?;
        to.write_all(&payload).await?;
    }
}
