-- Exports no longer hold the run lock, so items and event batches commit while output.csv is
-- written. Each commit that changes users bumps output_version; an export records the version
-- its snapshot saw, and output.csv is stale while the table has moved past it.
ALTER TABLE pipeline_state ADD COLUMN output_version bigint NOT NULL DEFAULT 0;
