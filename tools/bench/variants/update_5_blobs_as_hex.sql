-- The row read back, BLOBs as hex (JSON cannot hold them): the generated payload, without the WHEN.
-- TETHER_BENCH_AFTER_TRACK (tether-bench capture); BENCHMARKS.md, "The floor of an UPDATE and a DELETE".
DROP TRIGGER tether_update_tracked;
CREATE TRIGGER tether_update_tracked AFTER UPDATE OF title, status, priority, due_date ON tracked BEGIN
    INSERT INTO tether_mutation_logs (entity_id, model, operation, payload, timestamp)
    SELECT NEW.tether_id, 'Tracked', 'update',
           json_object('title', CASE typeof(t.title) WHEN 'blob' THEN hex(t.title) WHEN 'text' THEN t.title || '' ELSE t.title END, 'status', CASE typeof(t.status) WHEN 'blob' THEN hex(t.status) WHEN 'text' THEN t.status || '' ELSE t.status END, 'priority', CASE typeof(t.priority) WHEN 'blob' THEN hex(t.priority) WHEN 'text' THEN t.priority || '' ELSE t.priority END, 'due_date', CASE typeof(t.due_date) WHEN 'blob' THEN hex(t.due_date) WHEN 'text' THEN t.due_date || '' ELSE t.due_date END),
           CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER)
      FROM tracked AS t WHERE t.rowid = NEW.rowid;
END;
