//! Starting the cores: check the environment, then run one pinned glommio
//! executor per configured CPU, each joined to the others by the mailbox
//! mesh, and report when each is up.
//!
//! What runs on each core is the caller's: it gets a [`Seat`] (its index,
//! the shard count, its ends of the mesh) and whatever per-shard payload it
//! prepared, and says through [`Ready`] when it is serving or why it could
//! not start.

use super::env_check;
use super::mailbox::{build_mesh, Inbox, Mesh, MeshEnds};
use crate::errors::StartupError;
use glommio::{LocalExecutorBuilder, Placement};
use std::future::Future;
use std::sync::mpsc;
use std::thread::JoinHandle;

/// How long a shard's tasks may run before work that yields lets the
/// reactor look at the sockets (glommio's default is 100 ms, the whole
/// budget of the "answered within 100 ms" rule).
const PREEMPT_AFTER: std::time::Duration = std::time::Duration::from_millis(5);

/// Registered io_uring buffer memory per executor. The server reads and
/// writes sockets into its own buffers, so glommio's pool stays small.
const IO_MEMORY: usize = 64 * 1024;

/// One core's place in the set: its index, the count, its mesh ends.
pub struct Seat<M: Send + Sized> {
    pub index: usize,
    pub count: usize,
    pub cpu: usize,
    mesh: MeshEnds<M>,
}

impl<M: Send + Sized + 'static> Seat<M> {
    /// Connects this core's mesh ends (waits for every peer to connect).
    pub async fn connect(self) -> (Mesh<M>, Vec<Inbox<M>>) {
        Mesh::connect(self.mesh).await
    }
}

/// How a core reports that it started (or why it could not).
pub struct Ready(mpsc::Sender<Result<(), StartupError>>);

impl Ready {
    pub fn up(&self) {
        let _ = self.0.send(Ok(()));
    }

    pub fn failed(&self, why: StartupError) {
        let _ = self.0.send(Err(why));
    }
}

/// Checks what the executors need: file and locked-memory limits (raised
/// where allowed), io_uring, and that every CPU in `cpus` is ours to use.
pub fn check_environment(cpus: &[usize]) -> Result<(), StartupError> {
    let (nofile, memlock) = env_check::raise_limits();
    log::info!(
        "limits: open files {nofile}, locked memory {} KiB",
        memlock / 1024
    );
    env_check::check_io_uring(memlock).map_err(StartupError::Environment)?;
    let allowed = env_check::allowed_cpus();
    if let Some(cpu) = cpus.iter().find(|c| !allowed.contains(c)) {
        return Err(StartupError::Environment(format!(
            "CPU {cpu} is not available to this process (allowed: {allowed:?}); \
             pick CPUs from that list with --cpus"
        )));
    }
    Ok(())
}

/// Runs `body(seat, payload, ready)` on one pinned executor per CPU of
/// `cpus` (one payload each, in order) and returns their threads once
/// every core reported [`Ready::up`]; the first failure is returned instead.
pub fn start_cores<M, P, F, Fut>(
    cpus: &[usize],
    payloads: Vec<P>,
    body: F,
) -> Result<Vec<JoinHandle<()>>, StartupError>
where
    M: Send + Sized + 'static,
    P: Send + 'static,
    F: FnOnce(Seat<M>, P, Ready) -> Fut + Send + Clone + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let count = cpus.len();
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), StartupError>>();
    let mut threads = Vec::new();
    for (index, ((mesh, &cpu), payload)) in build_mesh::<M>(count)
        .into_iter()
        .zip(cpus)
        .zip(payloads)
        .enumerate()
    {
        let ready = Ready(ready_tx.clone());
        let body = body.clone();
        let thread = std::thread::Builder::new()
            .name(format!("shard-{index}"))
            .spawn(move || {
                let executor = LocalExecutorBuilder::new(Placement::Fixed(cpu))
                    .name(&format!("shard-{index}"))
                    .io_memory(IO_MEMORY)
                    // Long work yields (`yield_now`) once it has run this
                    // long, so the reactor polls sockets at least this often.
                    .preempt_timer(PREEMPT_AFTER)
                    .make();
                match executor {
                    Ok(executor) => {
                        let seat = Seat {
                            index,
                            count,
                            cpu,
                            mesh,
                        };
                        executor.run(body(seat, payload, ready));
                    }
                    Err(e) => ready.failed(StartupError::Shard {
                        cpu,
                        why: e.to_string(),
                    }),
                }
            })
            .map_err(|e| StartupError::Shard {
                cpu,
                why: e.to_string(),
            })?;
        threads.push(thread);
    }
    drop(ready_tx);
    for _ in 0..count {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(StartupError::Environment(
                    "a shard thread died while starting".into(),
                ))
            }
        }
    }
    Ok(threads)
}
