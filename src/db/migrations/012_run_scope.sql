-- A targeted run's scope (POST /data?user_id=...&prefix=...), for GET /runs/:id and for a
-- trigger on another instance to tell whether the run covers it: {"user_ids": [...] | null,
-- "prefix": "..." | null}. NULL: the whole bucket.
ALTER TABLE runs ADD COLUMN scope jsonb;
