-- Batches take keys by the first event that named them since they were last taken, not the
-- last: a key named again and again under a flood would otherwise keep moving back into the
-- middle of the backlog, which neither end of a batch reaches. seq stays the last event's, for
-- forgetting a key only when no newer event named it. Null in rows an older version wrote
-- (during a rolling upgrade): those take seq's place.
ALTER TABLE pending_events ADD COLUMN first_seq bigint;
CREATE INDEX pending_events_first_seq_idx ON pending_events ((coalesce(first_seq, seq)));
DROP INDEX pending_events_seq_idx;
