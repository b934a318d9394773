-- Jobs, conversation turns and stored images.
-- Discord CDN URLs are never stored (they expire); message and thread ids are.

-- Every image Peel keeps (references and results), content-addressed under DATA_DIR/images.
CREATE TABLE images (
    sha256      TEXT PRIMARY KEY,
    mime        TEXT NOT NULL,
    size        INTEGER NOT NULL,
    created_at  INTEGER NOT NULL DEFAULT (unixepoch())
);

-- One row per generate or edit turn, keyed by the interaction or message id that asked
-- for it, so a duplicated event is recognised and ignored.
CREATE TABLE jobs (
    key             TEXT PRIMARY KEY,
    kind            TEXT NOT NULL CHECK (kind IN ('imagine', 'edit')),
    status          TEXT NOT NULL CHECK (status IN
                        ('queued', 'running', 'done', 'failed', 'cancelled', 'interrupted')),
    guild_id        INTEGER,
    channel_id      INTEGER NOT NULL,
    user_id         INTEGER NOT NULL,
    prompt          TEXT NOT NULL,
    aspect_ratio    TEXT,
    count           INTEGER NOT NULL DEFAULT 1,
    parent_turn_id  INTEGER REFERENCES turns(id),
    -- Where the result goes: the thread to post in, the message to reply to.
    thread_id       INTEGER,
    reply_to_id     INTEGER,
    start_thread    INTEGER NOT NULL DEFAULT 0,
    -- Conversation lane: jobs sharing one run one after another (a thread's edits).
    lane            TEXT,
    error           TEXT,
    created_at      INTEGER NOT NULL DEFAULT (unixepoch()),
    updated_at      INTEGER NOT NULL DEFAULT (unixepoch())
);
CREATE INDEX jobs_status ON jobs (status);
CREATE INDEX jobs_user ON jobs (guild_id, user_id, status);

CREATE TABLE job_references (
    job_key   TEXT NOT NULL REFERENCES jobs(key) ON DELETE CASCADE,
    position  INTEGER NOT NULL,
    sha256    TEXT NOT NULL REFERENCES images(sha256),
    PRIMARY KEY (job_key, position)
);

-- A finished turn of a conversation. parent_id links edits to what they edited.
CREATE TABLE turns (
    id                   INTEGER PRIMARY KEY,
    job_key              TEXT NOT NULL UNIQUE REFERENCES jobs(key),
    parent_id            INTEGER REFERENCES turns(id),
    root_id              INTEGER REFERENCES turns(id),
    guild_id             INTEGER,
    channel_id           INTEGER NOT NULL,
    thread_id            INTEGER,
    message_id           INTEGER UNIQUE,
    user_id              INTEGER NOT NULL,
    prompt               TEXT NOT NULL,
    aspect_ratio         TEXT,
    caption              TEXT,
    provider             TEXT NOT NULL,
    model                TEXT NOT NULL,
    input_tokens         INTEGER NOT NULL DEFAULT 0,
    output_image_tokens  INTEGER NOT NULL DEFAULT 0,
    output_text_tokens   INTEGER NOT NULL DEFAULT 0,
    thinking_tokens      INTEGER NOT NULL DEFAULT 0,
    usage_reported       INTEGER NOT NULL DEFAULT 1,
    cost_micro_usd       INTEGER NOT NULL DEFAULT 0,
    created_at           INTEGER NOT NULL DEFAULT (unixepoch())
);
CREATE INDEX turns_thread ON turns (thread_id, id);

CREATE TABLE turn_images (
    turn_id   INTEGER NOT NULL REFERENCES turns(id) ON DELETE CASCADE,
    position  INTEGER NOT NULL,
    sha256    TEXT NOT NULL REFERENCES images(sha256),
    PRIMARY KEY (turn_id, position)
);

-- A result thread and whose conversation it is.
CREATE TABLE threads (
    thread_id     INTEGER PRIMARY KEY,
    guild_id      INTEGER,
    channel_id    INTEGER NOT NULL,
    owner_id      INTEGER NOT NULL,
    root_turn_id  INTEGER NOT NULL REFERENCES turns(id),
    created_at    INTEGER NOT NULL DEFAULT (unixepoch())
);

-- Small facts the bot keeps between runs (e.g. the hash of the last synced command set).
CREATE TABLE meta (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
