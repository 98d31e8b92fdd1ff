-- One queue row with its capture time (a function call: SQLite then journals the statement).
-- TETHER_BENCH_AFTER_TRACK (tether-bench capture); BENCHMARKS.md, "The floor of an UPDATE and a DELETE".
DROP TRIGGER tether_delete_tracked;
CREATE TRIGGER tether_delete_tracked AFTER DELETE ON tracked BEGIN
    INSERT INTO tether_mutation_logs (entity_id, model, operation, payload, timestamp, locator)
    VALUES (OLD.tether_id, 'Tracked', 'delete', '{}', CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER), OLD.id);
END;
