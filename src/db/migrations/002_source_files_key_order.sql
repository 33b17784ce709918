-- Runs merge the bucket listing with source_files in key order, walking both at once, so
-- memory does not grow with the bucket. S3 lists keys in UTF-8 byte order, which is what
-- COLLATE "C" gives; rebuilding the primary key under it lets the index serve that order.
ALTER TABLE source_files ALTER COLUMN key TYPE text COLLATE "C";
