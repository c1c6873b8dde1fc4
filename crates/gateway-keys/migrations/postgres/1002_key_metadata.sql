-- Free-form metadata of a key (a JSON object as text; NULL is {}),
-- edited with PATCH /v1/keys/{id}.
ALTER TABLE gk_keys ADD COLUMN metadata TEXT;
