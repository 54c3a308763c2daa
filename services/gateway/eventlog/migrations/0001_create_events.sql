-- The feedback event log: one row per event; the event id is the idempotency key of RecordFeedback.
CREATE TABLE events (
    event_id   text PRIMARY KEY,
    user_id    text NOT NULL,
    item_id    text NOT NULL,
    event_type text NOT NULL,
    value      double precision NOT NULL,
    ts         timestamptz NOT NULL,
    device     text NOT NULL DEFAULT '',
    surface    text NOT NULL DEFAULT '',
    received   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX events_user_ts ON events (user_id, ts);
