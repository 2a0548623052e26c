-- The signature counter each key's credential last showed a drill, so the
-- next drill can tell a counter that did not increase (a cloned key, or a
-- key reset) and the rehearsal tenant can remember it as Entra does.
CREATE TABLE key_counters (
    drill_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    sign_count BIGINT NOT NULL,
    seen_ms BIGINT NOT NULL,
    PRIMARY KEY (drill_id, key_id)
);
