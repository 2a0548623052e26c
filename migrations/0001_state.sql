-- glassdrill's state: the schedule, runs, key proofs, locks and the
-- notification outbox. Portable SQL (SQLite and PostgreSQL): times are
-- milliseconds since the Unix epoch (UTC), counts and flags (0/1) are
-- BIGINT, ids are TEXT. The evidence bundles stay files; this only indexes
-- them (`glassdrill state rebuild` recreates the runs from them).

CREATE TABLE drills (
    drill_id TEXT PRIMARY KEY,
    -- The drawn next due time; NULL: to be drawn (once).
    due_ms BIGINT,
    due_why TEXT,
    drawn_ms BIGINT,
    -- Set: no automatic run until a person runs the drill (a FAIL, or a
    -- sign-in that may have happened in a run that did not finish).
    hold_reason TEXT,
    -- An ERROR before any sign-in attempt is retried, not before this.
    retry_ms BIGINT,
    retries BIGINT NOT NULL DEFAULT 0,
    -- When the last overdue notification went out (daily reminders).
    overdue_notified_ms BIGINT,
    -- When custodians were last told a custodian drill is due.
    custody_reminded_ms BIGINT,
    -- Set while the drill file is broken: the drill is skipped.
    disabled_reason TEXT,
    -- A summary of the drill's runs, kept up to date with them
    -- (src/state/summaries.sql), so `status` reads one row per drill.
    last_verdict TEXT,
    last_run_ms BIGINT,
    last_pass_ms BIGINT,
    last_latency_ms BIGINT,
    n_pass BIGINT NOT NULL DEFAULT 0,
    n_fail BIGINT NOT NULL DEFAULT 0,
    n_error BIGINT NOT NULL DEFAULT 0,
    n_interrupted BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE runs (
    run_id TEXT PRIMARY KEY,
    drill_id TEXT NOT NULL,
    -- daemon, run, or recovered.
    origin TEXT NOT NULL,
    started_ms BIGINT NOT NULL,
    ended_ms BIGINT,
    -- The stage a run in progress has reached.
    stage TEXT,
    verdict TEXT,
    sign_in_attempted BIGINT NOT NULL DEFAULT 0,
    key_id TEXT,
    bundle TEXT,
    -- Sign-in to the slowest counted alert's delivery.
    alert_latency_ms BIGINT
);

CREATE INDEX runs_by_drill ON runs (drill_id, started_ms);
CREATE INDEX runs_unfinished ON runs (ended_ms);

CREATE TABLE key_proofs (
    drill_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    proven_ms BIGINT NOT NULL,
    PRIMARY KEY (drill_id, key_id)
);

CREATE TABLE locks (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    host TEXT NOT NULL,
    pid BIGINT NOT NULL,
    acquired_ms BIGINT NOT NULL
);

CREATE TABLE notifications (
    id TEXT PRIMARY KEY,
    created_ms BIGINT NOT NULL,
    drill_id TEXT,
    -- One row per channel: `smtp`, `webhook:<n>`.
    channel TEXT NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_ms BIGINT NOT NULL,
    delivered_ms BIGINT,
    last_error TEXT
);
