-- Erasure (DELETE /data/:user_id, and ON_SOURCE_DELETE=erase). Nothing here keeps the user_id
-- in clear: entries and tombstones name the user by a salted SHA-256, with a salt drawn once per
-- database, so the log alone does not list who was erased, while the service can still match a
-- user's files against it and an operator who knows an id can ask about it.
ALTER TABLE pipeline_state ADD COLUMN erasure_salt bytea NOT NULL
  DEFAULT (uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()));

-- The audit log: when, whom (hashed) and why. No name, birth date or photo.
CREATE TABLE erasures (
  id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  erased_at  timestamptz NOT NULL DEFAULT now(),
  user_hash  bytea       NOT NULL,
  reason     text        NOT NULL CHECK (reason IN ('api', 'source_delete')),
  -- Files whose versions were tombstoned.
  files      integer     NOT NULL,
  -- The run that found the CSV gone, for a source delete.
  run_id     bigint REFERENCES runs (id) ON DELETE SET NULL
);
CREATE INDEX erasures_user_idx ON erasures (user_hash);

-- The versions of a user's files recorded at its erasure: no run imports them again. A new
-- version (another etag or size) of a file for that user_id imports as usual.
-- - An API erasure matches by user, whatever the key (key_hash null), so a copy of an erased file
--   under another folder stays erased too; and no version modified before it imports either
--   (erasures.erased_at: it was in the bucket then, and a run may have read it just before).
-- - A source delete matches by key (key_hash: the key's salted hash), and has no such time rule:
--   its CSV went, and the same CSV under another key (a move whose copy was not seen yet) is
--   not the file that went.
CREATE TABLE erasure_tombstones (
  user_hash   bytea  NOT NULL,
  key_hash    bytea,
  etag        text   NOT NULL,
  size        bigint NOT NULL,
  erasure_id  bigint NOT NULL REFERENCES erasures (id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX erasure_tombstones_version_idx ON erasure_tombstones (user_hash, etag, size, coalesce(key_hash, '\x'::bytea));
CREATE INDEX erasure_tombstones_key_idx ON erasure_tombstones (key_hash) WHERE key_hash IS NOT NULL;

-- A file of an erased user keeps its record, with its data cleared, so incremental runs do not
-- read it again; a full run reads it, finds it tombstoned and records it so once more.
ALTER TABLE source_files DROP CONSTRAINT source_files_status_check;
ALTER TABLE source_files ADD CONSTRAINT source_files_status_check CHECK (status IN ('ok', 'rejected', 'erased'));

-- An erasure removes the run_issues that name the user's files: their reasons may quote them.
CREATE INDEX run_issues_key_idx ON run_issues (key);
CREATE INDEX run_issues_user_id_idx ON run_issues (user_id) WHERE user_id IS NOT NULL;
CREATE INDEX run_issue_left_out_users_user_idx ON run_issue_left_out_users (user_id);

-- Users a run erased because their last CSV went from the bucket (ON_SOURCE_DELETE=erase).
ALTER TABLE runs ADD COLUMN erased integer NOT NULL DEFAULT 0;
ALTER TABLE run_items ADD COLUMN erased integer NOT NULL DEFAULT 0;
