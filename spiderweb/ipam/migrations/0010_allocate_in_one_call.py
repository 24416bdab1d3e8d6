"""`spiderweb_allocate(...)` and `spiderweb_release(...)`: a new pod's allocation and a pod's release, each one call
on the server (PostgreSQL only).

The allocation's rules stay in Python (`spiderweb.ipam.allocation`): it plans the NICs and pools from its catalog,
computes each pool's free ranges (its ranges less the reservations it last saw) and builds the rows. The function
only carries out that plan under the locks, in one round trip and one short transaction, and refuses anything off
the common path (an existing endpoint, a changed pool, no never-used address near the scan hint), which the Python
transaction then handles with every fallback. See `allocation._allocate_in_one_call` for the contract.

The release function is the release statement that was sent after the pod lock, with the lock: one statement
instead of two. It replaces the two-round-trip path, whose `spiderweb_claimed` goes with it.
"""

from importlib import import_module

from django.db import migrations

# Undoing this migration restores the function it drops, as migration 0009 created it.
CLAIMED = import_module("spiderweb.ipam.migrations.0009_claim_required_function").CREATE

KEYS = """
-- `ranges.address_key` and back: fixed-width hex (8 digits for IPv4, 32 for IPv6) <-> numeric.
CREATE OR REPLACE FUNCTION spiderweb_key_to_number(k text) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN length(k) = 8 THEN ('x' || k)::bit(32)::bigint::numeric
        ELSE ((('x' || substr(k, 1, 8))::bit(32)::bigint * 4294967296::numeric
               + ('x' || substr(k, 9, 8))::bit(32)::bigint) * 4294967296
               + ('x' || substr(k, 17, 8))::bit(32)::bigint) * 4294967296
               + ('x' || substr(k, 25, 8))::bit(32)::bigint END
$$;

CREATE OR REPLACE FUNCTION spiderweb_number_to_key(n numeric, version integer) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN version = 4 THEN lpad(to_hex(n::bigint), 8, '0')
        ELSE lpad(to_hex(div(n, 79228162514264337593543950336)::bigint), 8, '0')
          || lpad(to_hex(mod(div(n, 18446744073709551616), 4294967296)::bigint), 8, '0')
          || lpad(to_hex(mod(div(n, 4294967296), 4294967296)::bigint), 8, '0')
          || lpad(to_hex(mod(n, 4294967296)::bigint), 8, '0') END
$$;

CREATE OR REPLACE FUNCTION spiderweb_key_to_inet(k text) RETURNS inet
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN length(k) = 8 THEN '0.0.0.0'::inet + ('x' || k)::bit(32)::bigint
        ELSE (substr(k, 1, 4) || ':' || substr(k, 5, 4) || ':' || substr(k, 9, 4) || ':' || substr(k, 13, 4) || ':'
              || substr(k, 17, 4) || ':' || substr(k, 21, 4) || ':' || substr(k, 25, 4) || ':' || substr(k, 29, 4)
             )::inet END
$$;
"""

ALLOCATE = """
CREATE OR REPLACE FUNCTION spiderweb_allocate(
    p_lock_class integer,     -- allocation.POD_LOCK_CLASS: the pod lock a DEL of the pod takes too
    p_pod_uid text,
    p_sandbox text,           -- the container ID: refused when its DEL came first (a tombstone)
    p_endpoint jsonb,         -- the new ipam_endpoint row (every column but id)
    p_pools bigint[],         -- the pools the claims use, by id, ascending
    p_generations bigint[],   -- ... and the generation each was planned with
    p_reserved jsonb,         -- {"4": md5, "6": md5} of the reservations the free ranges were computed without
    p_claims jsonb,           -- [{"pool", "version", "free": [[first key, last key], ...], "row": {...}}, ...]
    p_max_probes integer      -- addresses one claim may look at before it gives up (the Python path walks on)
) RETURNS TABLE (status text, endpoint_id bigint, address_keys text[], allocation_ids bigint[], detail jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    v_ready integer;
    v_hints text[];
    v_changed jsonb;
    v_tombstoned boolean;
    v_version integer;
    v_endpoint ipam_endpoint;
    v_endpoint_id bigint;
    v_claim jsonb;
    v_range jsonb;
    v_pool bigint;
    v_seen text COLLATE "C";
    v_next numeric;
    v_last numeric;
    v_key text COLLATE "C";
    v_first_free text COLLATE "C";
    v_hint text COLLATE "C";
    v_probes integer;
    v_row ipam_allocation;
    v_id bigint;
    v_keys text[] := '{}';
    v_ids bigint[] := '{}';
BEGIN
    -- The pod lock first (the only lock of the transaction that can be waited on for long): every statement
    -- below has a snapshot taken after it was granted, so it sees what a DEL of the pod that held it committed.
    PERFORM pg_advisory_xact_lock(p_lock_class, hashtext(p_pod_uid));

    -- One statement: share-lock the pools in id order (pool edits wait for allocators, allocators never for each
    -- other), each still the planned generation, enabled and with never-used addresses left; their scan hints; the
    -- reservations of each family if they are not the ones the caller computed the free ranges without; and
    -- whether the sandbox's DEL came first (a tombstone).
    WITH locked AS (
        SELECT p.id, p.generation, p.disable, p.terminating, p.fresh_exhausted, p.scan_from FROM ipam_ippool p
        WHERE p.id = ANY(p_pools) ORDER BY p.id FOR KEY SHARE OF p
    ), reserved AS (
        SELECT f.version, coalesce((SELECT json_agg(r.ips ORDER BY r.id) FROM ipam_reservedip r
                                    WHERE r.ip_version = f.version AND NOT r.terminating), '[]')::text AS ips
        FROM (SELECT DISTINCT (c.value->>'version')::integer AS version FROM jsonb_array_elements(p_claims) AS c) f
    )
    SELECT (SELECT count(*) FROM locked l JOIN unnest(p_pools, p_generations) AS planned(id, generation)
                ON planned.id = l.id
            WHERE l.generation = planned.generation AND NOT l.disable AND NOT l.terminating AND NOT l.fresh_exhausted),
           (SELECT array_agg(l.scan_from ORDER BY l.id) FROM locked l),
           (SELECT coalesce(jsonb_object_agg(r.version::text, jsonb_build_array(md5(r.ips), r.ips::jsonb)), '{}')
            FROM reserved r WHERE md5(r.ips) IS DISTINCT FROM p_reserved->>r.version::text),
           EXISTS (SELECT 1 FROM ipam_podtombstone t WHERE t.pod_uid = p_pod_uid AND t.container_id = p_sandbox)
    INTO v_ready, v_hints, v_changed, v_tombstoned;
    IF v_ready <> cardinality(p_pools) THEN
        RETURN QUERY SELECT 'off', NULL::bigint, NULL::text[], NULL::bigint[], NULL::jsonb;
        RETURN;
    END IF;
    IF v_changed <> '{}' THEN  -- the caller learns them and asks again
        RETURN QUERY SELECT 'reserved', NULL::bigint, NULL::text[], NULL::bigint[], v_changed;
        RETURN;
    END IF;
    IF v_tombstoned THEN
        RETURN QUERY SELECT 'tombstoned', NULL::bigint, NULL::text[], NULL::bigint[], NULL::jsonb;
        RETURN;
    END IF;

    -- A new pod only: an endpoint already recorded (a retry, a re-created pod) is the Python path's to judge.
    v_endpoint := jsonb_populate_record(NULL::ipam_endpoint, p_endpoint);
    v_endpoint.id := nextval('ipam_endpoint_id_seq'::regclass);
    INSERT INTO ipam_endpoint SELECT (v_endpoint).* ON CONFLICT (namespace, name) DO NOTHING
    RETURNING id INTO v_endpoint_id;
    IF v_endpoint_id IS NULL THEN
        RETURN QUERY SELECT 'off', NULL::bigint, NULL::text[], NULL::bigint[], NULL::jsonb;
        RETURN;
    END IF;

    -- One claim per (NIC, family): walk the free ranges up from the pool's scan hint, skip every address ever
    -- used (live or released: those are reused only after the never-used ones, by the Python path) and every one
    -- whose per-address advisory lock a concurrent allocator holds, insert the row with the first other one.
    FOR v_claim IN SELECT c.value FROM jsonb_array_elements(p_claims) AS c LOOP
        v_pool := (v_claim->>'pool')::bigint;
        v_version := (v_claim->>'version')::integer;
        v_seen := v_hints[array_position(p_pools, v_pool)];
        v_first_free := NULL;
        v_id := NULL;
        v_probes := 0;
        <<walk>>
        FOR v_range IN SELECT r.value FROM jsonb_array_elements(v_claim->'free') AS r LOOP
            v_next := spiderweb_key_to_number(v_range->>0);
            v_last := spiderweb_key_to_number(v_range->>1);
            IF v_seen <> '' AND v_next < spiderweb_key_to_number(v_seen) THEN
                v_next := spiderweb_key_to_number(v_seen);
            END IF;
            WHILE v_next <= v_last LOOP
                v_probes := v_probes + 1;
                EXIT walk WHEN v_probes > p_max_probes;
                v_key := spiderweb_number_to_key(v_next, v_version);
                IF NOT EXISTS (SELECT 1 FROM ipam_releasedaddress r
                               WHERE r.pool_id = v_pool AND r.address_key = v_key) THEN
                    IF NOT pg_try_advisory_xact_lock(hashtextextended(v_version || '/' || v_key, 0)) THEN
                        v_first_free := coalesce(v_first_free, v_key);  -- claimed by a transaction in flight
                    ELSE
                        -- The live allocations are probed by the insert itself: its conflict check always uses the
                        -- unique index, where a lookup planned from statistics taken while the table was nearly
                        -- empty would scan every dead row the churn left since.
                        v_row := jsonb_populate_record(NULL::ipam_allocation, v_claim->'row');
                        v_row.id := nextval('ipam_allocation_id_seq'::regclass);
                        v_row.endpoint_id := v_endpoint_id;
                        v_row.address_key := v_key;
                        v_row.address := spiderweb_key_to_inet(v_key);
                        INSERT INTO ipam_allocation SELECT (v_row).* ON CONFLICT (pool_id, address_key) DO NOTHING
                        RETURNING id INTO v_id;
                        IF v_id IS NOT NULL THEN
                            v_first_free := coalesce(v_first_free, v_key);
                            EXIT walk;
                        END IF;
                    END IF;
                END IF;
                v_next := v_next + 1;
            END LOOP;
        END LOOP;
        IF v_id IS NULL THEN
            -- Undo the endpoint and earlier claims: the Python path starts over with every fallback.
            RAISE EXCEPTION 'spiderweb: no never-used address near the scan hint'
                USING ERRCODE = 'SW001';
        END IF;
        -- Move the hint up, unless another allocator is moving it right now (never waited for): every address
        -- below the first free one was seen used, and when that one is the address taken, the next one (this
        -- transaction commits the address and the hint together, or neither). Only inside the range: the last
        -- address of a family has no next key of the same width.
        v_hint := CASE WHEN v_first_free = v_key AND v_next < v_last THEN spiderweb_number_to_key(v_next + 1, v_version)
                       ELSE v_first_free END;
        IF v_hint > v_seen THEN
            UPDATE ipam_ippool SET scan_from = v_hint WHERE id = (
                SELECT p.id FROM ipam_ippool p WHERE p.id = v_pool AND p.scan_from = v_seen
                FOR NO KEY UPDATE SKIP LOCKED);
        END IF;
        v_keys := v_keys || v_key;
        v_ids := v_ids || v_id;
    END LOOP;
    RETURN QUERY SELECT 'ok', v_endpoint_id, v_keys, v_ids, NULL::jsonb;
END
$$;

DROP FUNCTION IF EXISTS spiderweb_claimed(bigint);
"""

RELEASE = """
CREATE OR REPLACE FUNCTION spiderweb_release(
    p_lock_class integer, p_namespace text, p_name text, p_pod_uid text,
    p_node text,              -- NULL: every node; else only the allocations made on it (node credentials)
    p_reason text,
    p_dead_sandbox text       -- '' or the container ID whose later ADD is to be refused (a tombstone)
) RETURNS SETOF text LANGUAGE plpgsql AS $$
BEGIN
    -- The pod lock first, then the release in a statement of its own: its snapshot is taken after the lock was
    -- granted, so it sees every NIC an ADD of the pod that held the lock committed.
    PERFORM pg_advisory_xact_lock(p_lock_class, hashtext(p_pod_uid));
    -- Data-modifying CTEs share one snapshot, hence the explicit exclusion of the rows being deleted when deciding
    -- whether the endpoint is now empty; the endpoint foreign key is checked at commit (deferred).
    RETURN QUERY
    WITH ep AS (
        SELECT e.id, e.namespace, e.name FROM ipam_endpoint e
        WHERE e.namespace = p_namespace AND e.name = p_name AND e.uid = p_pod_uid
        FOR UPDATE
    ), gone AS (
        DELETE FROM ipam_allocation a USING ep
        WHERE a.endpoint_id = ep.id AND a.pod_uid = p_pod_uid AND (p_node IS NULL OR a.node = p_node)
        RETURNING a.id, a.pool_id, a.address_key, a.address, a.ip_version, a.pod_uid, a.node, a.interface,
                  a.container_id, a.bound_at, ep.id AS endpoint_id, ep.namespace, ep.name
    ), recycled AS (
        INSERT INTO ipam_releasedaddress (pool_id, address_key, released_at)
        SELECT g.pool_id, g.address_key, now() FROM gone g
        ON CONFLICT (pool_id, address_key) DO UPDATE SET released_at = EXCLUDED.released_at
    ), history AS (
        INSERT INTO ipam_addresshistory (pool_id, pool_name, ip_version, address, pod_namespace, pod_name, pod_uid,
                                         node, interface, container_id, allocated_at, released_at, release_reason)
        SELECT g.pool_id, p.name, g.ip_version, g.address, g.namespace, g.name, g.pod_uid, g.node, g.interface,
               g.container_id, g.bound_at, now(), p_reason
        FROM gone g JOIN ipam_ippool p ON p.id = g.pool_id
    ), dropped AS (
        DELETE FROM ipam_endpoint e USING ep
        WHERE e.id = ep.id AND NOT EXISTS (
            SELECT 1 FROM ipam_allocation a WHERE a.endpoint_id = ep.id AND a.id NOT IN (SELECT g.id FROM gone g)
        )
    ), tombstone AS (
        INSERT INTO ipam_podtombstone (pod_uid, container_id, created_at)
        SELECT p_pod_uid, p_dead_sandbox, now() WHERE p_dead_sandbox <> ''
        ON CONFLICT (pod_uid, container_id) DO NOTHING
    )
    SELECT host(g.address) FROM gone g ORDER BY g.interface, g.ip_version;
END
$$;
"""

UNDO = """
DROP FUNCTION IF EXISTS spiderweb_release(integer, text, text, text, text, text, text);
DROP FUNCTION IF EXISTS spiderweb_allocate(integer, text, text, jsonb, bigint[], bigint[], jsonb, jsonb, integer);
DROP FUNCTION IF EXISTS spiderweb_key_to_inet(text);
DROP FUNCTION IF EXISTS spiderweb_number_to_key(numeric, integer);
DROP FUNCTION IF EXISTS spiderweb_key_to_number(text);
"""


def _run(sql):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql, None)  # no parameters: nothing in it is a placeholder

    return run


class Migration(migrations.Migration):
    dependencies = [("ipam", "0009_claim_required_function")]

    operations = [migrations.RunPython(_run(KEYS + ALLOCATE + RELEASE), _run(UNDO + CLAIMED))]
