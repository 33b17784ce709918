-- Newest wins compares the state an item saw before reading with the state recorded at its
-- commit. "Not recorded" then and now can hide a file recorded and removed meanwhile: the
-- removal leaves a tombstone here, with when, so the commit can tell. Kept a day.
CREATE TABLE source_removals (
  key        text COLLATE "C" PRIMARY KEY,
  removed_at timestamptz NOT NULL
);
CREATE INDEX source_removals_at_idx ON source_removals (removed_at);
