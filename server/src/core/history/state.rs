//! The state directory (`MESSENGER_STATE_DIR`): the in-process engine's
//! `sendTime` high-water mark, kept across restarts so that the first stamp
//! of a new process is strictly later than every stamp of the ones before,
//! even when the clock stepped back by more than the downtime (a VM restore,
//! an NTP step at boot, a move to a host whose clock is behind).
//!
//! Invariants:
//! - **The mark covers every stamp.** No stamp is handed out before a mark
//!   at or above it is durable: written to `send-time.tmp`, fsync'd, renamed
//!   over [`MARK_FILE`] and the directory fsync'd. A crash at any point
//!   leaves the old mark or the new one, never a torn or lower one.
//! - **The hot path does not wait for the disk.** The mark is written
//!   [`LEAD_NANOS`] ahead of the newest stamp, by a writer thread that is
//!   asked for a new one once stamps come within half the lead of it, so in
//!   steady traffic no publish waits for an fsync (each costs 4–100 ms on a
//!   busy disk: measured, README). A publish waits only when stamps outrun
//!   the writer: the first one after an idle spell longer than the lead.
//! - **A graceful stop leaves the exact mark.** [`SendTimeMark::close`]
//!   writes the newest stamp itself, so a restart does not jump ahead of the
//!   clock; after a crash the next process stamps from the written mark, up
//!   to [`LEAD_NANOS`] ahead of the clock, until the clock passes it.
//! - **A mark that cannot be written refuses messages** ([`StateError`]),
//!   since a stamp it does not cover could be repeated after a restart.
//!
//! Out of scope: a state directory rolled back with its machine (a VM
//! restored from a snapshot) holds an old mark, and stamps after it may go
//! back to the snapshot's time.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::app::config::ENV_STATE_DIR;

/// The file that holds the mark: Unix nanoseconds, UTC, in decimal.
pub(crate) const MARK_FILE: &str = "send-time";
/// How far ahead of the newest stamp the mark is written: the most a
/// restart after a crash can put stamps ahead of the clock.
pub(crate) const LEAD_NANOS: i128 = 2_000_000_000;
/// Longest a publish waits for the mark before it is refused.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the state directory cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StateError {
    #[error("{ENV_STATE_DIR}={dir}: cannot use it ({error}); point it at a writable directory")]
    Dir { dir: PathBuf, error: String },
    #[error(
        "{file} ({ENV_STATE_DIR}) does not hold a sendTime mark (Unix nanoseconds) but {got:?}; \
         remove it to start without one (sendTime may then go back once, if the clock is behind)"
    )]
    Corrupt { file: PathBuf, got: String },
    #[error(
        "cannot write the sendTime mark {file} ({ENV_STATE_DIR}): {error}; messages are refused \
         until it can be written (check free space and permissions)"
    )]
    Write { file: PathBuf, error: String },
}

/// The engine's handle on the mark (see the module docs). Used under the
/// hub's lock.
pub(crate) struct SendTimeMark {
    shared: Arc<Shared>,
    /// The mark last asked of the writer.
    asked: i128,
    /// A mark known to be durable.
    durable: i128,
    /// The mark found at start: every earlier stamp is at or below it.
    floor: i128,
    writer: Option<JoinHandle<()>>,
}

struct Shared {
    file: PathBuf,
    state: Mutex<Writer>,
    /// Wakes the writer: a new mark is wanted, or it must stop.
    wanted: Condvar,
    /// Wakes waiting publishes: an attempt finished.
    written: Condvar,
}

#[derive(Default)]
struct Writer {
    want: i128,
    durable: i128,
    /// Attempts finished, so a waiter knows one ended after it asked.
    attempts: u64,
    /// The last attempt's failure; the writer waits until a publish asks again.
    error: Option<StateError>,
    /// Write this exact mark, then stop.
    last: Option<i128>,
    stop: bool,
}

impl SendTimeMark {
    /// Opens `dir` (created if missing), reads the mark of the runs before
    /// and writes one [`LEAD_NANOS`] ahead of `max(mark, now)`, so a directory
    /// that cannot be written is refused at start.
    pub(crate) fn open(dir: &Path, now: i128) -> Result<Self, StateError> {
        let dir_error = |e: std::io::Error| StateError::Dir {
            dir: dir.to_owned(),
            error: e.to_string(),
        };
        fs::create_dir_all(dir).map_err(dir_error)?;
        let file = dir.join(MARK_FILE);
        let floor = match fs::read_to_string(&file) {
            Ok(text) => text
                .trim()
                .parse::<i128>()
                .map_err(|_| StateError::Corrupt {
                    file: file.clone(),
                    got: text.chars().take(40).collect(),
                })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(dir_error(e)),
        };
        let first = floor.max(now) + LEAD_NANOS;
        write_mark(&file, first)?;
        let shared = Arc::new(Shared {
            file,
            state: Mutex::new(Writer {
                want: first,
                durable: first,
                ..Writer::default()
            }),
            wanted: Condvar::new(),
            written: Condvar::new(),
        });
        let writer = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("send-time-mark".into())
                .spawn(move || shared.run())
                .map_err(dir_error)?
        };
        Ok(Self {
            shared,
            asked: first,
            durable: first,
            floor,
            writer: Some(writer),
        })
    }

    /// The mark the runs before left (0: none): every stamp they handed out
    /// is at or below it.
    pub(crate) fn floor(&self) -> i128 {
        self.floor
    }

    /// The mark file.
    pub(crate) fn file(&self) -> &Path {
        &self.shared.file
    }

    /// Returns once a mark at or above `stamp` is durable; asks the writer
    /// for the next one when `stamp` comes within half the lead of it.
    pub(crate) fn cover(&mut self, stamp: i128) -> Result<(), StateError> {
        if stamp + LEAD_NANOS / 2 > self.asked {
            self.asked = stamp + LEAD_NANOS;
            let mut w = self.shared.lock();
            w.want = w.want.max(self.asked);
            self.shared.wanted.notify_one();
        }
        if stamp <= self.durable {
            return Ok(());
        }
        self.durable = self.shared.wait_durable(stamp)?;
        Ok(())
    }

    /// Writes `last` (the newest stamp handed out) as the exact mark and
    /// stops the writer: a graceful restart then continues from `last`.
    pub(crate) fn close(&mut self, last: i128) {
        {
            let mut w = self.shared.lock();
            w.last = Some(last.max(self.floor));
            w.stop = true;
            self.shared.wanted.notify_one();
        }
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl Drop for SendTimeMark {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wanted.notify_one();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Writer> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until the durable mark reaches `stamp`, re-asking once after a
    /// failed attempt; the error of an attempt that ends without it.
    fn wait_durable(&self, stamp: i128) -> Result<i128, StateError> {
        let mut w = self.lock();
        if w.durable >= stamp {
            return Ok(w.durable);
        }
        if w.error.take().is_some() {
            self.wanted.notify_one();
        }
        let asked_at = w.attempts;
        loop {
            if w.durable >= stamp {
                return Ok(w.durable);
            }
            if let (true, Some(e)) = (w.attempts > asked_at, &w.error) {
                return Err(e.clone());
            }
            let (next, timeout) = self
                .written
                .wait_timeout(w, WRITE_TIMEOUT)
                .unwrap_or_else(|e| e.into_inner());
            w = next;
            if timeout.timed_out() && w.durable < stamp {
                return Err(StateError::Write {
                    file: self.file.clone(),
                    error: format!("not written within {WRITE_TIMEOUT:?}"),
                });
            }
        }
    }

    /// The writer thread: writes each mark asked for, then the last one.
    fn run(&self) {
        let mut w = self.lock();
        loop {
            if w.stop {
                if let Some(last) = w.last.take() {
                    drop(w);
                    if let Err(e) = write_mark(&self.file, last) {
                        tracing::warn!(error = %e, "the exact sendTime mark was not written; the one ahead stays");
                    }
                }
                return;
            }
            if w.want <= w.durable || w.error.is_some() {
                w = self.wanted.wait(w).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            let want = w.want;
            drop(w);
            let result = write_mark(&self.file, want);
            w = self.lock();
            w.attempts += 1;
            match result {
                Ok(()) => w.durable = w.durable.max(want),
                Err(e) => {
                    tracing::error!(error = %e, "sendTime mark not written");
                    w.error = Some(e);
                }
            }
            self.written.notify_all();
        }
    }
}

/// Replaces `file` with `mark`, durably (see the module docs).
fn write_mark(file: &Path, mark: i128) -> Result<(), StateError> {
    let error = |e: std::io::Error| StateError::Write {
        file: file.to_owned(),
        error: e.to_string(),
    };
    let tmp = file.with_extension("tmp");
    let mut f = fs::File::create(&tmp).map_err(error)?;
    writeln!(f, "{mark}").map_err(error)?;
    f.sync_all().map_err(error)?;
    fs::rename(&tmp, file).map_err(error)?;
    if let Some(dir) = file.parent() {
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(error)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
