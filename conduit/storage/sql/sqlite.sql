-- The delivery queue's statements on SQLite, run on the sqlite3 cursor itself
-- (conduit/storage/queue_sqlite.py). {jobs}, {messages} and {webhooks} stand for each table's
-- columns, qualified, in the models' order. Lists are bound as JSON arrays (json_each), so every
-- statement has one text and sqlite3 reuses its prepared statement. Datetimes are bound as
-- SQLAlchemy stores them on SQLite: naive UTC text with microseconds, which sorts as it compares.

-- name: claim
-- Lease due jobs and count the attempt. Webhooks with :per_webhook jobs under a live lease are
-- skipped; of the oldest :scan due jobs of the others, each webhook gets what its free slots
-- allow, round-robin (the first job of each webhook, then the second...), up to :limit.
UPDATE delivery_jobs SET attempts = attempts + 1, locked_until = :until
WHERE id IN (
    WITH busy AS (
        SELECT webhook_id, count(*) AS leased FROM delivery_jobs
        WHERE locked_until >= :at GROUP BY webhook_id
    ), due AS (
        SELECT id, webhook_id, next_attempt_at FROM delivery_jobs
        WHERE status = 'queued' AND next_attempt_at <= :at AND (locked_until IS NULL OR locked_until < :at)
          AND webhook_id NOT IN (SELECT webhook_id FROM busy WHERE leased >= :per_webhook)
        ORDER BY next_attempt_at LIMIT :scan
    ), ranked AS (
        SELECT due.id, due.next_attempt_at, coalesce(busy.leased, 0)
               + row_number() OVER (PARTITION BY due.webhook_id ORDER BY due.next_attempt_at) AS slot
        FROM due LEFT JOIN busy ON busy.webhook_id = due.webhook_id
    )
    SELECT id FROM ranked WHERE slot <= :per_webhook ORDER BY slot, next_attempt_at LIMIT :limit
)
RETURNING id;

-- name: claimed
-- The claimed jobs, each with its message and its webhook (UPDATE ... RETURNING cannot feed a join).
SELECT {jobs}, {messages}, {webhooks}
FROM delivery_jobs JOIN messages ON delivery_jobs.message_id = messages.id
JOIN webhooks ON delivery_jobs.webhook_id = webhooks.id
WHERE delivery_jobs.id IN (SELECT value FROM json_each(:ids));

-- name: next_due
-- When the earliest queued job that no worker holds becomes (or became) due.
SELECT next_attempt_at FROM delivery_jobs
WHERE status = 'queued' AND locked_until IS NULL
ORDER BY next_attempt_at LIMIT 1;

-- name: renew
-- Extend the leases still held: :leases is [[id, locked_until], ...].
-- "id IN" too, for the primary key index; no "status = 'queued'" term: a job leaves the queue
-- only through finish_held, fail or reschedule, which clear its lease, so a held lease means a
-- queued job (with that term the planner read every queued job through ix_delivery_jobs_due).
UPDATE delivery_jobs SET locked_until = :until
WHERE id IN (SELECT json_extract(value, '$[0]') FROM json_each(:leases))
  AND (id, locked_until) IN (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(:leases))
RETURNING id;

-- name: still_held
SELECT id FROM delivery_jobs
WHERE id IN (SELECT json_extract(value, '$[0]') FROM json_each(:leases))
  AND (id, locked_until) IN (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(:leases));

-- name: finish_held
UPDATE delivery_jobs SET status = :status, finished_at = :at, locked_until = NULL, last_error = ''
WHERE id IN (SELECT json_extract(value, '$[0]') FROM json_each(:leases))
  AND (id, locked_until) IN (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(:leases))
RETURNING id, message_id;

-- name: fail
UPDATE delivery_jobs SET status = 'failed', finished_at = :at, locked_until = NULL, last_error = :error
WHERE id = :id
RETURNING message_id;

-- name: reschedule
-- Back in the queue after a delay; :uncount 1 for a try that was no attempt (rate limited, held).
UPDATE delivery_jobs SET next_attempt_at = :next, locked_until = NULL, last_error = :error,
                         attempts = attempts - :uncount
WHERE id = :id;

-- name: drop_finished_messages
DELETE FROM messages
WHERE id IN (SELECT value FROM json_each(:ids))
  AND NOT EXISTS (SELECT 1 FROM delivery_jobs
                  WHERE delivery_jobs.message_id = messages.id AND delivery_jobs.status = 'queued');

-- name: purge_messages
-- Up to :limit messages past retention, oldest first, that no queued job needs (a batch: the
-- housekeeping repeats it, so no transaction holds the database for a whole backlog).
DELETE FROM messages
WHERE id IN (SELECT id FROM messages
             WHERE received_at < :before
               AND NOT EXISTS (SELECT 1 FROM delivery_jobs
                               WHERE delivery_jobs.message_id = messages.id AND delivery_jobs.status = 'queued')
             ORDER BY received_at LIMIT :limit);

-- name: recipients_of
SELECT recipients FROM delivery_jobs WHERE message_id = :message_id AND webhook_id = :webhook_id
ORDER BY created_at DESC LIMIT 1;
