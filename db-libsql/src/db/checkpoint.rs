//! WAL checkpoints off the request path.
//!
//! The shared connection runs with `wal_autocheckpoint=0`: SQLite's automatic checkpoint runs
//! inside the commit that crosses the threshold, i.e. inside some request. Instead a thread
//! with its own connection runs `PRAGMA wal_checkpoint(PASSIVE)` (which never waits for a lock
//! and never blocks readers or the writer) every [`TICK`] when something was written, and at
//! once after every [`NUDGE_EVERY`] writes. Once a checkpoint has copied every frame back, the
//! next writer starts the WAL over from its beginning, so the file stays bounded.
//!
//! Under load that moment never comes by itself: writers that never pause add frames while the
//! checkpoint copies, so it never finds the WAL fully copied, the WAL is never started over,
//! and it grows for as long as the load lasts (900 MB in 30 s of `cyfr-bench`; every write then
//! extends the file, which the kernel zero-fills page by page, and every read searches a
//! wal-index that keeps growing). So every round's passive checkpoint is followed by a
//! `RESTART` one with the shared connection — the only writer — held: it copies the few frames
//! written meanwhile while writers wait (~0.5 ms, once per round), and the next write starts
//! the WAL over. (Even a passive checkpoint that copied everything is followed by it: a write
//! between that checkpoint and the next transaction would append again.)

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;

use super::now;

/// How often the thread looks for new writes.
const TICK: Duration = Duration::from_millis(500);

/// Writes after which the thread is woken early. A committed write adds at least one page
/// (usually 2–4 with indexes) to the WAL, so this keeps it to a few thousand pages (~10 MB)
/// between checkpoints under a steady stream of writes. Rarer checkpoints copy each hot page
/// (a key's rate-limit row, the tails of `executions` and `audit`) fewer times and sync less:
/// `execution.run` ran 7–13 % faster at 1024 than at 256 (4096 gained ~2 % more).
const NUDGE_EVERY: u64 = 1024;

/// State shared by the thread, its handle and the connection's [`Signal`].
struct Shared {
    /// Statements that may have written, counted by the shared connection.
    writes: AtomicU64,
    stop: AtomicBool,
    stats: Mutex<Stats>,
}

/// What the checkpointer has done (for tests).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct Stats {
    /// Checkpoints run.
    pub runs: u64,
    /// Frames in the WAL at the last checkpoint.
    pub wal_frames: i64,
    /// Of those, how many the last checkpoint had copied into the database.
    pub checkpointed: i64,
    /// `writes` as the last complete checkpoint (every frame copied) saw it.
    pub writes_covered: u64,
}

/// How the shared connection reports writes to the checkpointer.
#[derive(Clone)]
pub(super) struct Signal {
    shared: Arc<Shared>,
    wake: SyncSender<()>,
}

impl Signal {
    /// Counts a statement that may have written to the WAL.
    pub(super) fn wrote(&self) {
        let n = self.shared.writes.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_multiple_of(NUDGE_EVERY) {
            // Full means a wake-up is already pending.
            let _ = self.wake.try_send(());
        }
    }

    /// Statements counted so far.
    #[cfg(test)]
    pub(super) fn writes(&self) -> u64 {
        self.shared.writes.load(Ordering::Relaxed)
    }
}

/// The checkpoint thread of one [`super::LocalDb`]; dropping it stops and joins the thread.
pub(super) struct Checkpointer {
    signal: Signal,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Opens the thread's own connection to `db` and starts the thread.
    pub(super) fn start(db: Arc<libsql::Database>, writer: Writer) -> anyhow::Result<Checkpointer> {
        let conn = db
            .connect()
            .context("connecting the checkpointer to the database")?;
        let shared = Arc::new(Shared {
            writes: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            stats: Mutex::new(Stats::default()),
        });
        let (wake, woken) = sync_channel(1);
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("cyfr-wal-checkpoint".into())
            .spawn(move || run(conn, db, writer, thread_shared, woken))
            .context("starting the checkpointer thread")?;
        Ok(Checkpointer {
            signal: Signal { shared, wake },
            thread: Some(thread),
        })
    }

    /// A handle for the shared connection to report writes with.
    pub(super) fn signal(&self) -> Signal {
        self.signal.clone()
    }

    /// What the thread has done so far.
    #[cfg(test)]
    pub(super) fn stats(&self) -> Stats {
        *self.signal.shared.stats.lock().unwrap()
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.signal.shared.stop.store(true, Ordering::Relaxed);
        let _ = self.signal.wake.try_send(());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The shared connection, which every write goes through; weak, so the thread never keeps it
/// open.
pub(super) type Writer = std::sync::Weak<super::Gate>;

/// The thread: checkpoint when there are writes no complete checkpoint has covered yet.
fn run(
    conn: libsql::Connection,
    _db: Arc<libsql::Database>,
    writer: Writer,
    shared: Arc<Shared>,
    woken: Receiver<()>,
) {
    let mut covered = 0;
    loop {
        if let Err(RecvTimeoutError::Disconnected) = woken.recv_timeout(TICK) {
            return;
        }
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        let writes = shared.writes.load(Ordering::Relaxed);
        if writes == covered {
            continue;
        }
        // The bulk is copied beside the writers; then, with them held off, the frames they
        // added meanwhile, and the WAL is marked to start over at the next write.
        match checkpoint(&conn, "PASSIVE").and_then(|(frames, copied)| {
            finish(&conn, &writer, &shared.stop).map(|r| r.unwrap_or((frames, copied)))
        }) {
            Ok((wal_frames, checkpointed)) => {
                // Frames a reader still needs (a session's open transaction) are left for
                // the next round: only a complete checkpoint covers the writes seen.
                let complete = checkpointed >= wal_frames;
                if complete {
                    covered = writes;
                }
                let mut stats = shared.stats.lock().unwrap();
                stats.runs += 1;
                stats.wal_frames = wal_frames;
                stats.checkpointed = checkpointed;
                if complete {
                    stats.writes_covered = writes;
                }
            }
            Err(e) => tracing::warn!("WAL checkpoint: {e:#}"),
        }
    }
}

/// A `RESTART` checkpoint with the shared connection held, so no frame is added meanwhile and
/// the next write starts the WAL over (a complete passive checkpoint alone does not: a write
/// that comes after it but before the next transaction begins appends instead); `None` if
/// the database is closing.
fn finish(
    conn: &libsql::Connection,
    writer: &Writer,
    stop: &AtomicBool,
) -> anyhow::Result<Option<(i64, i64)>> {
    let Some(writer) = writer.upgrade() else {
        return Ok(None);
    };
    // Statements hold it for microseconds at a time, never across a wait. (A session's open
    // transaction is not waited for: the RESTART then finds a reader and does what it can.)
    let held = writer.lock_now();
    if stop.load(Ordering::Relaxed) {
        return Ok(None);
    }
    let r = checkpoint(conn, "RESTART");
    drop(held);
    r.map(Some)
}

/// One checkpoint (`PASSIVE` or `RESTART`): (frames in the WAL, frames copied back).
fn checkpoint(conn: &libsql::Connection, mode: &str) -> anyhow::Result<(i64, i64)> {
    let row = now(async {
        let mut rows = conn
            .query(&format!("PRAGMA wal_checkpoint({mode})"), ())
            .await?;
        let row = rows.next().await?.context("no result row")?;
        Ok::<_, anyhow::Error>((row.get::<i64>(1)?, row.get::<i64>(2)?))
    })
    .context("the checkpoint did not complete at once")??;
    Ok(row)
}
