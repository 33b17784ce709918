-- Users: one row per user_id, updated in place so id stays stable.
CREATE TABLE users (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  -- text, so "0042" and "42" stay different users; byte-order collation, so output.csv and
  -- keyset paging sort the same on every server whatever its locale.
  user_id     text COLLATE "C" NOT NULL UNIQUE,
  first_name  text        NOT NULL,
  last_name   text        NOT NULL,
  birthdate   timestamptz NOT NULL,
  img_path    text,
  img_format  text,
  img_width   integer,
  img_height  integer,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);
-- Age filters become birthdate ranges, so a plain b-tree on birthdate serves them.
CREATE INDEX users_birthdate_idx ON users (birthdate);

-- What each source object looked like when last processed, and what it yielded.
-- Lets a run read only new or changed objects.
CREATE TABLE source_files (
  key            text        PRIMARY KEY,
  user_id        text        NOT NULL,
  kind           text        NOT NULL CHECK (kind IN ('csv', 'image')),
  etag           text        NOT NULL,
  size           bigint      NOT NULL,
  last_modified  timestamptz NOT NULL,
  status         text        NOT NULL CHECK (status IN ('ok', 'rejected')),
  reason         text,
  first_name     text,
  last_name      text,
  birthts        bigint,
  img_format     text,
  img_width      integer,
  img_height     integer,
  processed_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX source_files_user_id_idx ON source_files (user_id);

CREATE TABLE runs (
  id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  trigger        text        NOT NULL,
  full_scan      boolean     NOT NULL DEFAULT false,
  status         text        NOT NULL DEFAULT 'running'
                             CHECK (status IN ('running', 'succeeded', 'failed', 'aborted')),
  started_at     timestamptz NOT NULL DEFAULT now(),
  finished_at    timestamptz,
  scanned        integer     NOT NULL DEFAULT 0,
  read           integer     NOT NULL DEFAULT 0,
  new            integer     NOT NULL DEFAULT 0,
  updated        integer     NOT NULL DEFAULT 0,
  unchanged      integer     NOT NULL DEFAULT 0,
  rejected       integer     NOT NULL DEFAULT 0,
  ignored        integer     NOT NULL DEFAULT 0,
  output_written boolean     NOT NULL DEFAULT false,
  progress       jsonb       NOT NULL DEFAULT '{}',
  error          text,
  host           text
);
CREATE INDEX runs_running_idx ON runs (id) WHERE status = 'running';

-- Files a run rejected or warned about, with the reason. A table rather than a JSON column
-- so a run over many bad files stays cheap to write and to page through.
CREATE TABLE run_issues (
  run_id   bigint NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  severity text   NOT NULL CHECK (severity IN ('rejected', 'warning')),
  key      text   NOT NULL,
  reason   text   NOT NULL
);
CREATE INDEX run_issues_run_idx ON run_issues (run_id, severity);

-- Singleton: whether output.csv lags behind the users table. Set in the same transaction
-- that changes users, cleared after a successful export, so a crash in between is repaired
-- by the next run.
CREATE TABLE pipeline_state (
  id            integer PRIMARY KEY CHECK (id = 1),
  output_stale  boolean NOT NULL DEFAULT true
);
INSERT INTO pipeline_state (id) VALUES (1);
