//! A TCP proxy in front of PostgreSQL that a test can switch off and on, so one stack sees
//! its database go away and come back while other stacks (sharing the server) do not.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

use tokio::{
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

/// The proxy; dropping it stops it.
#[derive(Debug)]
pub struct PgProxy {
    /// Port it listens on (127.0.0.1).
    pub port: u16,
    down: Arc<AtomicBool>,
    generation: Arc<std::sync::atomic::AtomicU64>,
    task: JoinHandle<()>,
}

impl PgProxy {
    /// Starts forwarding 127.0.0.1:<port> to `target` ("host:port").
    pub async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let down = Arc::new(AtomicBool::new(false));
        let generation = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let task = {
            let (down, generation) = (down.clone(), generation.clone());
            tokio::spawn(async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if down.load(Ordering::SeqCst) {
                        // The database is "stopped": the connection closes at once.
                        drop(client);
                        continue;
                    }
                    let target = target.clone();
                    let (down, generation) = (down.clone(), generation.clone());
                    let born = generation.load(Ordering::SeqCst);
                    tokio::spawn(async move {
                        let Ok(mut server) = TcpStream::connect(&target).await else {
                            return;
                        };
                        let copy = tokio::io::copy_bidirectional(&mut client, &mut server);
                        tokio::pin!(copy);
                        // Cut live connections when the database "stops".
                        loop {
                            tokio::select! {
                                _ = &mut copy => return,
                                () = tokio::time::sleep(std::time::Duration::from_millis(50)) => {
                                    if down.load(Ordering::SeqCst) || generation.load(Ordering::SeqCst) != born {
                                        return;
                                    }
                                }
                            }
                        }
                    });
                }
            })
        };
        Self {
            port,
            down,
            generation,
            task,
        }
    }

    /// Whether the database is switched off.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::SeqCst)
    }

    /// Switches the database off (every connection refused, open ones cut) or back on.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
    }
}

impl Drop for PgProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
