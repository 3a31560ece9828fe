-- 0003: the shared quarantine. Blobs are content-addressed (the SHA-256 of their bytes, in
-- hex) and held once however many items share them; their bytes are bytea rows of at most
-- 1 MiB (`quarantine_chunks`, seq from 0) under one header row, so an original of any size
-- is written and read a chunk at a time and no value nears bytea's 1 GB limit. Items refer
-- to their blob by a foreign key: no committed item can point at a removed blob.
-- Text that is ordered or compared (ids, times, hashes) is COLLATE "C": bytewise, as in
-- SQLite, whatever the database's locale.
CREATE TABLE quarantine_blobs (
    sha256 TEXT COLLATE "C" PRIMARY KEY CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    size BIGINT NOT NULL CHECK (size >= 0),
    chunks BIGINT NOT NULL CHECK (chunks >= 0)
);
CREATE TABLE quarantine_chunks (
    sha256 TEXT COLLATE "C" NOT NULL REFERENCES quarantine_blobs (sha256) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    data BYTEA NOT NULL,
    PRIMARY KEY (sha256, seq)
);
-- Originals are mostly compressed already (zip, docx, pdf): stored out of line without a
-- second, useless compression attempt.
ALTER TABLE quarantine_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
CREATE TABLE quarantine_items (
    id TEXT COLLATE "C" PRIMARY KEY,
    source TEXT NOT NULL,
    origin_id TEXT NOT NULL,
    name TEXT,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    sha256 TEXT COLLATE "C" NOT NULL REFERENCES quarantine_blobs (sha256),
    size BIGINT NOT NULL,
    at TEXT COLLATE "C" NOT NULL,
    report TEXT NOT NULL,
    mail_from TEXT,
    rcpt_to TEXT[] NOT NULL,
    subject TEXT,
    detected_type TEXT,
    node TEXT NOT NULL
);
CREATE INDEX quarantine_items_at ON quarantine_items (at, id);
CREATE INDEX quarantine_items_sha256 ON quarantine_items (sha256);
