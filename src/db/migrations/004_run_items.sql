-- One row per work item (a batch of users) a run committed, written in the item's own
-- transaction. It makes an item retried after its lease ran out a no-op, gives the run its
-- counts whichever instance did the work, and says which instance that was.
CREATE TABLE run_items (
  run_id    bigint      NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  item_no   integer     NOT NULL,
  instance  text        NOT NULL,
  users     integer     NOT NULL DEFAULT 0,
  read      integer     NOT NULL DEFAULT 0,
  new       integer     NOT NULL DEFAULT 0,
  updated   integer     NOT NULL DEFAULT 0,
  rejected  integer     NOT NULL DEFAULT 0,
  done_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (run_id, item_no)
);
