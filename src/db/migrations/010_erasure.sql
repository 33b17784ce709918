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

-- The versions of a user's files recorded at its erasure: no run imports them again, nor any
-- version modified before the erasure (erased_at: it was in the bucket then, and a run may have
-- read it just before). A new version (another etag or size, modified after) of a file for that
-- user_id imports as usual. Matched by user, not by key, so a copy of an erased file under
-- another folder stays erased too.
CREATE TABLE erasure_tombstones (
  user_hash   bytea  NOT NULL,
  etag        text   NOT NULL,
  size        bigint NOT NULL,
  erasure_id  bigint NOT NULL REFERENCES erasures (id) ON DELETE CASCADE,
  PRIMARY KEY (user_hash, etag, size)
);

-- A file of an erased user keeps its record, with its data cleared, so incremental runs do not
-- read it again; a full run reads it, finds it tombstoned and records it so once more.
ALTER TABLE source_files DROP CONSTRAINT source_files_status_check;
ALTER TABLE source_files ADD CONSTRAINT source_files_status_check CHECK (status IN ('ok', 'rejected', 'erased'));

-- An erasure removes the run_issues that name the user's files: their reasons may quote them.
CREATE INDEX run_issues_key_idx ON run_issues (key);

-- Users a run erased because their last CSV went from the bucket (ON_SOURCE_DELETE=erase).
ALTER TABLE runs ADD COLUMN erased integer NOT NULL DEFAULT 0;
ALTER TABLE run_items ADD COLUMN erased integer NOT NULL DEFAULT 0;
