-- The message that shows a job's progress (queued, position N / generating), so the next
-- start can correct it after a crash or restart instead of leaving it to say "Queued"
-- forever. It lives in the job's channel_id (the thread, for a job asked for in one):
-- an interaction's deferred response or the status reply to a member's message.
ALTER TABLE jobs ADD COLUMN status_message_id INTEGER;
