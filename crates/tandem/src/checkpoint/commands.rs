//! The checkpoint commands and the `INFO persistence` fields.
//!
//! * `CHECKPOINT [FULL|INCREMENTAL]` — takes a checkpoint now; replies with
//!   its id once it is durable (an error if it failed). Without an argument,
//!   incremental when there is a base, else full.
//! * `SAVE` — a full checkpoint; `+OK` once durable (Redis's reply).
//! * `BGSAVE` — starts a full checkpoint; `+Background saving started`.
//! * `LASTSAVE` — Unix time (seconds) of the newest durable checkpoint.

use std::fmt::Write;

use bytes::Bytes;
use tandem_resp::Frame;

use super::restore::Verified;
use super::service::{Outcome, Requested, Started};
use crate::cmd::args::is;
use crate::cmd::CommandError;
use crate::server::session::DeferredReply;
use crate::server::Shared;

/// `CHECKPOINT [FULL|INCREMENTAL]`: the reply (the id) comes once durable.
pub fn checkpoint(shared: &Shared, args: &[Bytes]) -> Result<DeferredReply, CommandError> {
    let requested = match args.get(1) {
        None => Requested::Incremental,
        Some(word) if is(word, "full") => Requested::Full,
        Some(word) if is(word, "incremental") => Requested::Incremental,
        Some(_) => return Err(CommandError::Syntax),
    };
    if args.len() > 2 {
        return Err(CommandError::Syntax);
    }
    let started =
        shared.checkpoints.start(&shared.db, requested).map_err(|busy| CommandError::err(busy.to_string()))?;
    Ok(reply_when_done(started, |verified| Frame::Integer(verified.id as i64)))
}

/// `SAVE`: a full checkpoint, `+OK` once durable.
pub fn save(shared: &Shared) -> Result<DeferredReply, CommandError> {
    let started = shared
        .checkpoints
        .start(&shared.db, Requested::Full)
        .map_err(|_| CommandError::err("Background save already in progress"))?;
    Ok(reply_when_done(started, |_| Frame::ok()))
}

fn reply_when_done(started: Started, done: fn(Verified) -> Frame) -> DeferredReply {
    Box::pin(async move {
        match started.outcome.await {
            Ok(Outcome::Done(verified)) => done(verified),
            Ok(Outcome::Failed(message)) => {
                CommandError::err(format!("checkpoint {} failed: {message}", started.id)).to_frame()
            }
            Err(_) => CommandError::err("the checkpoint thread stopped without an outcome").to_frame(),
        }
    })
}

/// `BGSAVE [SCHEDULE]`: starts a full checkpoint and replies at once.
pub fn bgsave(shared: &Shared, args: &[Bytes]) -> Result<Frame, CommandError> {
    if args.len() > 2 || args.get(1).is_some_and(|word| !is(word, "schedule")) {
        return Err(CommandError::Syntax);
    }
    match shared.checkpoints.start(&shared.db, Requested::Full) {
        Ok(_) => Ok(Frame::simple("Background saving started")),
        Err(_) => Err(CommandError::err("Background save already in progress")),
    }
}

/// `LASTSAVE`: Unix seconds of the newest durable checkpoint (start time if none).
pub fn lastsave(shared: &Shared) -> Frame {
    Frame::Integer((shared.checkpoints.status().last_success_unix_ms / 1000) as i64)
}

/// Appends the checkpoint fields of `INFO persistence`.
pub fn info(shared: &Shared, text: &mut String) {
    let status = shared.checkpoints.status();
    let mut line = |key: &str, value: &dyn std::fmt::Display| {
        let _ = write!(text, "{key}:{value}\r\n");
    };
    let last_index = status.last_success.as_ref().map_or(0, |last| last.log_index);
    line("rdb_changes_since_last_save", &shared.db.last_index().0.saturating_sub(last_index));
    line("rdb_bgsave_in_progress", &u8::from(status.in_progress.is_some()));
    line("rdb_last_save_time", &(status.last_success_unix_ms / 1000));
    let attempt = status.last_attempt.clone().unwrap_or_default();
    let failed = attempt.error.is_some();
    line("rdb_last_bgsave_status", &if failed { "err" } else { "ok" });
    line("rdb_last_bgsave_time_sec", &attempt.kind.map_or(-1, |_| attempt.duration.as_secs() as i64));
    let current = status.in_progress.map_or(-1, |(_, _, started)| started.elapsed().as_secs() as i64);
    line("rdb_current_bgsave_time_sec", &current);
    line("checkpoint_in_progress_id", &status.in_progress.map_or(0, |(id, _, _)| id));
    let last = status.last_success.as_ref();
    line("checkpoint_last_id", &last.map_or(0, |last| last.id));
    line("checkpoint_last_kind", &last.map_or("none", |last| last.kind.as_str()));
    line("checkpoint_last_index", &last_index);
    line("checkpoint_last_bytes", &last.map_or(0, |last| last.bytes));
    line("checkpoint_last_attempt_id", &attempt.id);
    line("checkpoint_last_duration_ms", &attempt.duration.as_millis());
    line("checkpoint_last_stall_us", &attempt.stall.as_micros());
    line("checkpoint_last_buckets", &attempt.buckets);
    line("checkpoint_last_error", &attempt.error.as_deref().unwrap_or("").replace(['\r', '\n'], " "));
    line("checkpoints_succeeded", &status.succeeded);
    line("checkpoints_failed", &status.failed);
    let (loaded_id, loaded_index) = status.loaded.unwrap_or((0, 0));
    line("checkpoint_loaded_id", &loaded_id);
    line("checkpoint_loaded_index", &loaded_index);
    line("checkpoint_skipped_at_start", &status.skipped_at_start);
    let (layers_created, layers_pending) = shared.db.with_keyspace(|keyspace| keyspace.layer_counts());
    line("checkpoint_layers_created", &layers_created);
    line("checkpoint_layers_pending", &layers_pending);
}
