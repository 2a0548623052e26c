-- Which machine a registered host name is on (/etc/machine-id): two
-- machines under one host name (a cloned image) would take each other's
-- leases for dead; the second is refused at its start.
ALTER TABLE hosts ADD COLUMN machine TEXT;
