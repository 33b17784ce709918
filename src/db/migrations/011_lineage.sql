-- Lineage: which file versions each row was joined from, and which run last wrote it (GET
-- /data's `source`). csv_* is the CSV resolveUser chose, img_* its image (null without one).
-- changed_run_id and changed_at say which run last changed the row, its data or its lineage,
-- and when; updated_at keeps meaning the last change of the data. No foreign key to runs: a
-- row outlives the history of runs.
ALTER TABLE users
  ADD COLUMN csv_key        text,
  ADD COLUMN csv_etag       text,
  ADD COLUMN img_key        text,
  ADD COLUMN img_etag       text,
  ADD COLUMN changed_run_id bigint,
  ADD COLUMN changed_at     timestamptz;

-- Backfill from source_files where it can be derived: the user's newest valid CSV, by
-- last_modified DESC then key (resolveUser's order), named only if the row holds its values,
-- and the valid image at img_path (<bucket>/<key>; bucket names have no "/") holding the row's
-- image values. Anything else (a row joined from a version since replaced by a rejected one,
-- or from a file since deleted) stays null: unknown, never a guess. changed_run_id and
-- changed_at stay null: which run wrote these rows was not recorded.
UPDATE users u SET csv_key = f.key, csv_etag = f.etag
FROM (
  SELECT DISTINCT ON (user_id) user_id, key, etag, first_name, last_name, birthts
  FROM source_files WHERE kind = 'csv' AND status = 'ok'
  ORDER BY user_id, last_modified DESC, key
) f
WHERE f.user_id = u.user_id
  AND (f.first_name, f.last_name, 'epoch'::timestamptz + f.birthts * interval '1 millisecond')
    = (u.first_name, u.last_name, u.birthdate);

UPDATE users u SET img_key = f.key, img_etag = f.etag
FROM source_files f
WHERE u.img_path IS NOT NULL AND f.key = substr(u.img_path, strpos(u.img_path, '/') + 1)
  AND f.user_id = u.user_id AND f.kind = 'image' AND f.status = 'ok'
  AND (f.img_format, f.img_width, f.img_height) IS NOT DISTINCT FROM (u.img_format, u.img_width, u.img_height);
