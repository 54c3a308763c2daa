-- What Recommend showed: one row per (request, position); the pair is the idempotency key of a flush.
CREATE TABLE impressions (
    request_id     text NOT NULL,
    position       integer NOT NULL,
    user_id        text NOT NULL,
    item_id        text NOT NULL,
    bundle_version text NOT NULL,
    source         text NOT NULL,
    score          double precision NOT NULL,
    retrieval      double precision NOT NULL,
    ranking        double precision NOT NULL,
    rerank         double precision NOT NULL,
    degraded       text NOT NULL DEFAULT '',
    ts             timestamptz NOT NULL,
    PRIMARY KEY (request_id, position)
);

CREATE INDEX impressions_user_ts ON impressions (user_id, ts);
