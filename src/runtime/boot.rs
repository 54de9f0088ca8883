//! Starting the cores: check the environment, then run one pinned glommio
//! executor per distinct configured CPU, each joined to the others by the
//! mailbox mesh, and report when each shard is up.
//!
//! A CPU listed more than once runs that many shards on its one executor,
//! as tasks that take turns cooperatively and reach each other through
//! in-thread queues. Two executors on one CPU would instead take turns at
//! the kernel's tick (4 ms with HZ=250), because a loaded executor almost
//! never blocks: every message between them would wait for the other's
//! slice to end.
//!
//! What runs for each shard is the caller's: it gets a [`Seat`] (its index,
//! the shard count, its ends of the mesh) and whatever per-shard payload it
//! prepared, and says through [`Ready`] when it is serving or why it could
//! not start.

use super::env_check;
use super::mailbox::{build_local, build_mesh, Inbox, LocalEnds, Mesh, MeshEnds};
use crate::errors::StartupError;
use glommio::{LocalExecutor, LocalExecutorBuilder, Placement};
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

/// Entries of each of the executor's io_uring rings, in the order tried.
///
/// Why deep: every reactor turn glommio cancels its preemption timer, and
/// the kernel's cancel first walks one bucket of the ring's poll table,
/// which holds a poll for every open connection. The kernel sizes that
/// table from the ring: glommio's default 128 entries give 8 buckets, so at
/// 10,000 connections each turn walked ~1,250 polls (3.5% of the server's
/// time under fan-out, 69% at 19,000); 4096 entries give the kernel's
/// maximum of 256 buckets (0.2% and 10%; README, "The reactor's ring").
/// The depth is also glommio's throughput-preemption count (a task queue
/// is asked to yield after that many completions); `PREEMPT_AFTER` still
/// bounds a queue's run in time. The rings then take ~1.2 MiB per
/// executor. Where the kernel cannot give that (before Linux 5.12 rings
/// count against the locked-memory limit), the executor starts with
/// glommio's default and says so.
const RING_DEPTHS: [usize; 2] = [4096, 128];

/// One shard's place in the set: its index, the count, its mesh ends.
pub struct Seat<M: Send + Sized> {
    pub index: usize,
    pub count: usize,
    pub cpu: usize,
    mesh: MeshEnds<M>,
    local: LocalEnds<M>,
}

impl<M: Send + Sized + 'static> Seat<M> {
    /// Connects this shard's mesh ends (waits for every peer on another
    /// executor to connect).
    pub async fn connect(self) -> (Mesh<M>, Vec<Inbox<M>>) {
        Mesh::connect(self.mesh, self.local).await
    }
}

/// The shards one executor will run, on its CPU.
struct ExecutorPlan<M: Send + Sized, P> {
    cpu: usize,
    shards: Vec<ShardPlan<M, P>>,
}

/// One shard before its executor starts: its index, its ring ends, the
/// caller's payload for it.
struct ShardPlan<M: Send + Sized, P> {
    index: usize,
    mesh: MeshEnds<M>,
    payload: P,
}

/// How a shard reports that it started (or why it could not).
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

/// Runs `body(seat, payload, ready)` for each shard of `cpus` (one payload
/// each, in order) on one pinned executor per distinct CPU, and returns
/// their threads once every shard reported [`Ready::up`]; the first failure
/// is returned instead.
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
    // Shards grouped by CPU, in order of first appearance.
    let mut executors: Vec<ExecutorPlan<M, P>> = Vec::new();
    for (index, (mesh, payload)) in build_mesh::<M>(cpus).into_iter().zip(payloads).enumerate() {
        let cpu = cpus[index];
        let shard = ShardPlan {
            index,
            mesh,
            payload,
        };
        match executors.iter_mut().find(|e| e.cpu == cpu) {
            Some(executor) => executor.shards.push(shard),
            None => executors.push(ExecutorPlan {
                cpu,
                shards: vec![shard],
            }),
        }
    }
    let mut threads = Vec::new();
    for ExecutorPlan { cpu, shards } in executors {
        let indices: Vec<usize> = shards.iter().map(|s| s.index).collect();
        let name = match indices.as_slice() {
            [one] => format!("shard-{one}"),
            many => {
                let many: Vec<String> = many.iter().map(usize::to_string).collect();
                format!("shards-{}", many.join("-"))
            }
        };
        let ready = Ready(ready_tx.clone());
        let body = body.clone();
        let thread = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                let executor = match make_executor(cpu, &name) {
                    Ok(executor) => executor,
                    Err(why) => return ready.failed(StartupError::Shard { cpu, why }),
                };
                executor.run(async move {
                    let locals = build_local::<M>(&indices);
                    let tasks: Vec<_> = shards
                        .into_iter()
                        .zip(locals)
                        .map(
                            |(
                                ShardPlan {
                                    index,
                                    mesh,
                                    payload,
                                },
                                local,
                            )| {
                                let seat = Seat {
                                    index,
                                    count,
                                    cpu,
                                    mesh,
                                    local,
                                };
                                let ready = Ready(ready.0.clone());
                                glommio::spawn_local(body.clone()(seat, payload, ready))
                            },
                        )
                        .collect();
                    for task in tasks {
                        task.await;
                    }
                });
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

/// The executor for one CPU, with the deepest ring of `RING_DEPTHS` the
/// kernel grants; the error of the last try if none.
fn make_executor(cpu: usize, name: &str) -> Result<LocalExecutor, String> {
    let mut failure = String::new();
    for depth in RING_DEPTHS {
        let made = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name(name)
            .io_memory(IO_MEMORY)
            .ring_depth(depth)
            // Long work yields (`yield_now`) once it has run this long, so
            // the reactor polls sockets at least this often.
            .preempt_timer(PREEMPT_AFTER)
            .make();
        match made {
            Ok(executor) => {
                if depth != RING_DEPTHS[0] {
                    log::warn!(
                        "CPU {cpu}: io_uring rings of {} entries refused ({failure}); running \
                         with {depth}, which costs more per turn with many connections \
                         (README, \"The reactor's ring\")",
                        RING_DEPTHS[0]
                    );
                }
                return Ok(executor);
            }
            Err(e) => failure = e.to_string(),
        }
    }
    Err(failure)
}
