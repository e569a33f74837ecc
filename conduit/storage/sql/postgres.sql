-- The delivery queue's statements on PostgreSQL (conduit/storage/queue_postgres.py). {jobs},
-- {messages} and {webhooks} stand for each table's columns, qualified, in the models' order.
-- Lists are bound as arrays, so every statement has one text and asyncpg reuses its prepared
-- statement; the worker's claim and its finish are one round trip each.

-- name: index_plans
-- The worker's statements find jobs by id or through their indexes. Without fresh statistics (a
-- queue that grew fast, autovacuum behind) the planner takes the table for the few rows it had
-- and reads all of it instead: once per finish and per claim, each slower as the table grows.
-- So the worker's transactions plan without sequential scans (set_config's third argument: this
-- transaction only), and without bitmap scans: the leases index keeps an entry for each finished
-- job's leased row version until vacuum, and a bitmap scan visits each of their heap rows on
-- every claim, where a plain index scan marks them dead once and skips them from then on.
SELECT set_config('enable_seqscan', 'off', true), set_config('enable_bitmapscan', 'off', true);

-- name: claim_turn
-- Claims take turns (a transaction-level advisory lock, released at commit), so that each sees
-- the leases the one before it took and no webhook goes over its cap with many workers.
SELECT pg_advisory_xact_lock(:namespace, 0);

-- name: index_plans_and_claim_turn
-- Both, in one round trip, for a claim that is its transaction's first statement.
SELECT set_config('enable_seqscan', 'off', true), set_config('enable_bitmapscan', 'off', true),
       pg_advisory_xact_lock(:namespace, 0);

-- name: claim
-- Lease due jobs and count the attempt; each with its message and its webhook. Webhooks with
-- :per_webhook jobs under a live lease are skipped; of the oldest :scan due jobs of the others
-- (SKIP LOCKED: rows another transaction is finishing), each webhook gets what its free slots
-- allow, round-robin (the first job of each webhook, then the second...), up to :limit.
WITH busy AS (
    SELECT webhook_id, count(*) AS leased FROM delivery_jobs
    WHERE locked_until >= :at GROUP BY webhook_id
), due AS (
    SELECT id, webhook_id, next_attempt_at FROM delivery_jobs
    WHERE status = 'queued' AND next_attempt_at <= :at AND (locked_until IS NULL OR locked_until < :at)
      AND webhook_id NOT IN (SELECT webhook_id FROM busy WHERE leased >= :per_webhook)
    ORDER BY next_attempt_at LIMIT :scan
    FOR UPDATE SKIP LOCKED
), ranked AS (
    SELECT due.id, due.next_attempt_at, coalesce(busy.leased, 0)
           + row_number() OVER (PARTITION BY due.webhook_id ORDER BY due.next_attempt_at) AS slot
    FROM due LEFT JOIN busy ON busy.webhook_id = due.webhook_id
), picked AS (
    SELECT id FROM ranked WHERE slot <= :per_webhook ORDER BY slot, next_attempt_at LIMIT :limit
), delivery_jobs AS (
    UPDATE delivery_jobs AS job SET attempts = job.attempts + 1, locked_until = :until
    FROM picked WHERE job.id = picked.id
    RETURNING job.*
)
SELECT {jobs}, {messages}, {webhooks}
FROM delivery_jobs JOIN messages ON delivery_jobs.message_id = messages.id
JOIN webhooks ON delivery_jobs.webhook_id = webhooks.id;

-- name: next_due
-- When the earliest queued job that no worker holds becomes (or became) due.
SELECT next_attempt_at FROM delivery_jobs
WHERE status = 'queued' AND locked_until IS NULL
ORDER BY next_attempt_at LIMIT 1;

-- name: renew
-- Extend the leases still held, given as two arrays: ids and the locked_until each was leased
-- with. No "status = 'queued'" term: a job leaves the queue only through finish_held, fail or
-- reschedule, which clear its lease, so a held lease means a queued job.
UPDATE delivery_jobs AS job SET locked_until = :until
FROM unnest(CAST(:ids AS text[]), CAST(:untils AS timestamptz[])) AS lease(id, until)
WHERE job.id = lease.id AND job.locked_until = lease.until
RETURNING job.id;

-- name: still_held
-- Locked until the caller commits: a lease cannot be taken over meanwhile.
SELECT job.id FROM delivery_jobs AS job
JOIN unnest(CAST(:ids AS text[]), CAST(:untils AS timestamptz[])) AS lease(id, until)
  ON job.id = lease.id AND job.locked_until = lease.until
ORDER BY job.id
FOR UPDATE OF job;

-- name: finish_held
WITH finished AS (
    UPDATE delivery_jobs AS job SET status = :status, finished_at = :at, locked_until = NULL, last_error = ''
    FROM unnest(CAST(:ids AS text[]), CAST(:untils AS timestamptz[])) AS lease(id, until)
    WHERE job.id = lease.id AND job.locked_until = lease.until
    RETURNING job.id, job.message_id
)
SELECT id FROM finished;

-- name: finish_held_and_drop
-- finish_held, and the drop of each message no queued job needs any more, in one statement. Its
-- parts see one snapshot, where the jobs being finished are still queued: hence "not one of them".
WITH finished AS (
    UPDATE delivery_jobs AS job SET status = :status, finished_at = :at, locked_until = NULL, last_error = ''
    FROM unnest(CAST(:ids AS text[]), CAST(:untils AS timestamptz[])) AS lease(id, until)
    WHERE job.id = lease.id AND job.locked_until = lease.until
    RETURNING job.id, job.message_id
), dropped AS (
    DELETE FROM messages
    WHERE messages.id IN (SELECT message_id FROM finished)
      AND NOT EXISTS (SELECT 1 FROM delivery_jobs
                      WHERE delivery_jobs.message_id = messages.id AND delivery_jobs.status = 'queued'
                        AND delivery_jobs.id NOT IN (SELECT id FROM finished))
)
SELECT id FROM finished;

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
WHERE id = ANY(CAST(:ids AS text[]))
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
