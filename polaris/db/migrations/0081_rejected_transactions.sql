-- A StartTransaction answered Blocked, Expired, Invalid or ConcurrentTx is no session: it
-- never counts as active for its card (the concurrency check), and it is closed when its
-- connector reports Available or a later StartTransaction comes on that connector. Rows left
-- open by earlier versions (each made every later Authorize of the card answer ConcurrentTx)
-- are closed here, at their start, with no energy.
UPDATE ocpp.transactions
SET stop_timestamp = start_timestamp, meter_stop = meter_start, stop_reason = 'DeAuthorized',
    stopped_by = 'inferred', stuck_since = NULL, updated_at = now()
WHERE stop_timestamp IS NULL AND id_tag_status IS NOT NULL AND id_tag_status <> 'Accepted';

-- Active sessions of a card (Authorize's ConcurrentTx check) are the accepted open ones.
CREATE INDEX transactions_active_tag_idx ON ocpp.transactions (lower(id_tag))
    WHERE stop_timestamp IS NULL AND coalesce(id_tag_status, 'Accepted') = 'Accepted';
