-- What the protocol needs: the time, and an update's row as JSON, taken from NEW.
-- TETHER_BENCH_AFTER_TRACK (tether-bench capture); BENCHMARKS.md, "The floor of an UPDATE and a DELETE".
DROP TRIGGER tether_update_tracked;
CREATE TRIGGER tether_update_tracked AFTER UPDATE OF title, status, priority, due_date ON tracked BEGIN
    INSERT INTO tether_mutation_logs (entity_id, model, operation, payload, timestamp)
    VALUES (NEW.tether_id, 'Tracked', 'update',
            json_object('title', NEW.title, 'status', NEW.status, 'priority', NEW.priority, 'due_date', NEW.due_date),
            CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER));
END;
