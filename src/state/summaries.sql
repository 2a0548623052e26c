-- Recomputes the run summary columns of `drills` from `runs` (portable
-- SQL; every subquery is served by the runs_by_drill index). glassdrill
-- appends a WHERE clause to refresh one drill; the benchmark runs it as
-- it is, over every drill.
UPDATE drills SET
    last_verdict = (SELECT r.verdict FROM runs r WHERE r.drill_id = drills.drill_id AND r.verdict IS NOT NULL ORDER BY r.started_ms DESC LIMIT 1),
    last_run_ms = (SELECT MAX(r.started_ms) FROM runs r WHERE r.drill_id = drills.drill_id),
    last_pass_ms = (SELECT MAX(r.started_ms) FROM runs r WHERE r.drill_id = drills.drill_id AND r.verdict = 'PASS'),
    last_latency_ms = (SELECT r.alert_latency_ms FROM runs r WHERE r.drill_id = drills.drill_id AND r.alert_latency_ms IS NOT NULL ORDER BY r.started_ms DESC LIMIT 1),
    n_pass = (SELECT COUNT(*) FROM runs r WHERE r.drill_id = drills.drill_id AND r.verdict = 'PASS'),
    n_fail = (SELECT COUNT(*) FROM runs r WHERE r.drill_id = drills.drill_id AND r.verdict = 'FAIL'),
    n_error = (SELECT COUNT(*) FROM runs r WHERE r.drill_id = drills.drill_id AND r.verdict = 'ERROR'),
    n_interrupted = (SELECT COUNT(*) FROM runs r WHERE r.drill_id = drills.drill_id AND r.verdict = 'INTERRUPTED')
