-- Lets the offline pipeline read the events received since its last run without a full scan.
CREATE INDEX events_received ON events (received);
