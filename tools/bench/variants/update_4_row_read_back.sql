-- The row read back from the table (it may have been changed again by a trigger of the application's).
-- TETHER_BENCH_AFTER_TRACK (tether-bench capture); BENCHMARKS.md, "The floor of an UPDATE and a DELETE".
DROP TRIGGER tether_update_tracked;
CREATE TRIGGER tether_update_tracked AFTER UPDATE OF title, status, priority, due_date ON tracked BEGIN
    INSERT INTO tether_mutation_logs (entity_id, model, operation, payload, timestamp)
    SELECT NEW.tether_id, 'Tracked', 'update',
           json_object('title', t.title, 'status', t.status, 'priority', t.priority, 'due_date', t.due_date),
           CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER)
      FROM tracked AS t WHERE t.rowid = NEW.rowid;
END;
