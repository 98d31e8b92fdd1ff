-- One queue row with its capture time (a function call: SQLite then journals the statement).
-- TETHER_BENCH_AFTER_TRACK (tether-bench capture); BENCHMARKS.md, "The floor of an UPDATE and a DELETE".
DROP TRIGGER tether_update_tracked;
CREATE TRIGGER tether_update_tracked AFTER UPDATE OF title, status, priority, due_date ON tracked BEGIN
    INSERT INTO tether_mutation_logs (entity_id, model, operation, payload, timestamp)
    VALUES (NEW.tether_id, 'Tracked', 'update', '{}', CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER));
END;
