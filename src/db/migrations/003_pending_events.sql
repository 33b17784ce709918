-- Keys that an event (a bucket notification, the folder watch) says may have changed, waiting
-- to be processed. One row per key, so duplicate events collapse; seq grows with every event,
-- so processing forgets a key only if no newer event arrived for it meanwhile.
CREATE SEQUENCE pending_events_seq;
CREATE TABLE pending_events (
  key          text COLLATE "C" PRIMARY KEY,
  seq          bigint      NOT NULL,
  received_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX pending_events_seq_idx ON pending_events (seq);

-- When output.csv was last written, so event-driven exports can be spaced out (EXPORT_INTERVAL),
-- and whether event batches changed users since: then event processing owes the export.
ALTER TABLE pipeline_state ADD COLUMN exported_at timestamptz;
ALTER TABLE pipeline_state ADD COLUMN events_owe_export boolean NOT NULL DEFAULT false;
