-- A user's files may be spread over many work items. Each item resolves the user from what is
-- recorded, through this index: the newest valid CSV and image of a user are the first
-- entries, so the cost does not grow with the user's number of files.
CREATE INDEX source_files_user_newest_idx ON source_files (user_id, kind, last_modified DESC, key) WHERE status = 'ok';

-- One "several folders" warning per user per run: later items of the run replace it.
ALTER TABLE run_issues ADD COLUMN user_id text;
CREATE UNIQUE INDEX run_issues_user_idx ON run_issues (run_id, user_id) WHERE user_id IS NOT NULL;

-- run_issues are capped per run (RUN_ISSUES_LIMIT). Items of a run count here what they
-- recorded and what they left out; its row is locked last in an item's transaction, which
-- keeps the cap exact. Not a column of runs: items hold that row FOR SHARE.
CREATE TABLE run_issue_tally (
  run_id   bigint  PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
  recorded integer NOT NULL DEFAULT 0,
  left_out bigint  NOT NULL DEFAULT 0
);
