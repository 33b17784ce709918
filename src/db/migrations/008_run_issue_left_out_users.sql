-- Users whose one per-user warning of a run was left out past the cap (RUN_ISSUES_LIMIT).
-- Later items of the run carry that user's warning again and find no run_issues row to
-- replace; this keeps them from counting it as left out once more.
CREATE TABLE run_issue_left_out_users (
  run_id  bigint NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  user_id text   NOT NULL,
  PRIMARY KEY (run_id, user_id)
);
