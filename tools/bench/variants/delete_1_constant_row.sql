-- One queue row of constants per write: no time, no payload, no defaults computed.
-- TETHER_BENCH_AFTER_TRACK (tether-bench capture); BENCHMARKS.md, "The floor of an UPDATE and a DELETE".
DROP TRIGGER tether_delete_tracked;
CREATE TRIGGER tether_delete_tracked AFTER DELETE ON tracked BEGIN
    INSERT INTO tether_mutation_logs (entity_id, model, operation, payload, timestamp, created_at, updated_at)
    VALUES (OLD.tether_id, 'Tracked', 'delete', '{}', 1, '', '');
END;
